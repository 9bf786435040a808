# ruff: noqa: E501, E402  (a probe table: one probe per line, imports next to the probes that use them)
"""Probe the Python API with the bad arguments of issue 28 (finding 8); prints each outcome (clean line / traceback / silent wrong / worked) and the counts. Run from the repository root: PYTHONPATH=$PWD python benchmarks/probe_arguments.py"""
import sys
import os
import tempfile
sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
os.environ.setdefault("TQDM_DISABLE", "1")
import numpy as np
import torch
from helpers.tiny import CLASSES, TINY_CLIP_CFG, colour_images, make_resnet
import open_clip
from open_clip.model import CLIP
from torch.utils.data import TensorDataset
from semheat_widgets.engine.models.vlm import VLM
from semheat_widgets.engine.models.classifier import ModelSplit
from semheat_widgets.engine.pipeline import AnalysisConfig, analyze
from semheat_widgets.engine.extract.attacks import Attack
from semheat_widgets.engine.concepts.bank import ConceptBank
from semheat_widgets.engine.bundle import Bundle
from semheat_widgets.errors import SemheatError

torch.manual_seed(0)
vlm = VLM(CLIP(**TINY_CLIP_CFG), open_clip.tokenizer.SimpleTokenizer(context_length=16),
          image_size=32, name="test:tiny-clip", device="cpu")
split = ModelSplit(make_resnet(), input_size=32, name="test:resnet10")
images, labels = colour_images(96)
ds = TensorDataset(images, torch.from_numpy(labels))
cfg = AnalysisConfig(attacks=(Attack("fgsm"),), attack_limit=48, batch_size=48, thumb_size=16)
b = analyze(split, vlm, ds, classes=CLASSES, concepts=ConceptBank(["red", "green", "blue"]),
            config=cfg, name="tiny", progress=False)
d = tempfile.mkdtemp(prefix="i28_api_")
b.save(d + "/b")
n = b.n
wrong_row = CLASSES[0]
results = {}

def probe(name, fn, silent_wrong=None):
    """fn raises SemheatError -> clean; other exception -> traceback; returns -> silent
    wrong if silent_wrong(result) is True, else worked."""
    try:
        r = fn()
    except SemheatError as e:
        results[name] = ("clean", str(e).splitlines()[0][:90])
        return
    except Exception as e:
        results[name] = ("traceback", f"{type(e).__name__}: {str(e)[:80]}")
        return
    if silent_wrong is not None and silent_wrong(r):
        results[name] = ("silent wrong", repr(r)[:80])
    else:
        results[name] = ("worked", repr(r)[:60])

acc = lambda r: True  # accepted where it should have been refused
probe("cell_query(limit='5')", lambda: b.cell_query("output", wrong_row, "red", limit="5"))
probe("cell_query(limit=-1)", lambda: b.cell_query("output", wrong_row, "red", limit=-1), acc)
probe("cell_query(offset=-3)", lambda: b.cell_query("output", wrong_row, "red", offset=-3), acc)
probe("rows([-1])", lambda: b.rows([-1]), acc)
probe("rows([10**9])", lambda: b.rows([10**9]), acc)
probe("single(n)", lambda: b.single(n), acc)
probe("single(-1)", lambda: b.single(-1), acc)
probe("thumbnail(-1)", lambda: b.thumbnail(-1), acc)
probe("compare(None)", lambda: b.compare(None), acc)
probe("compare('path')", lambda: b.compare("path"), acc)
probe("Bundle.load(None)", lambda: Bundle.load(None), acc)
probe("add_concept(vector=['a'])", lambda: b.add_concept("xa", vector=["a"]), acc)
probe("add_concept(2-D vector)", lambda: b.add_concept("x2d", vector=np.ones((4, 8))), acc)
probe("add_concept('wet\\u200b') dup", lambda: (b.add_concept("wet", vector=np.random.default_rng(0).normal(size=32)), b.add_concept("wet\u200b", vector=np.random.default_rng(1).normal(size=32))), acc)
probe("add_concept('\\u200b\\u200b')", lambda: b.add_concept("\u200b\u200b", vector=np.random.default_rng(2).normal(size=32)), acc)
probe("add_concept(RTL override)", lambda: b.add_concept("abc\u202edef", vector=np.random.default_rng(3).normal(size=32)),
      lambda r: "\u202e" in "".join(b.concept_names))
from semheat_widgets.widgets import Explorer, MonitorPanel
from semheat_widgets.widgets.heatmap import HeatmapView
from semheat_widgets.widgets.detail import DetailView
from semheat_widgets.widgets.picker import ConceptPicker
probe("Explorer(None)", lambda: Explorer(None), acc)
probe("Explorer(42)", lambda: Explorer(42), acc)
def picker_none():
    p = ConceptPicker(b, vlm=vlm)
    return p.add(None)
probe("picker.add(None)", picker_none, lambda r: False)
def detail_big():
    dv = DetailView(b, classifier=split)
    dv.index = 3
    dv.index = 10**9
    return dv.index
probe("detail.index=10**9", detail_big, lambda r: r != 3)
def detail_neg():
    dv = DetailView(b, classifier=split)
    dv.index = 3
    dv.index = -5
    return dv.index
probe("detail.index=-5", detail_neg, lambda r: r not in (3, -1))
probe("HeatmapView(kind='bogus')", lambda: HeatmapView(b, kind="bogus"), acc)
def mp():
    m = MonitorPanel(b, classifier=split, task="bogus")
    return m.task
probe("MonitorPanel(task='bogus')", mp, acc)

counts = {}
for k, (cat, msg) in results.items():
    counts[cat] = counts.get(cat, 0) + 1
    print(f"{cat:13s} {k:32s} {msg}")
print("COUNTS", counts)
