"""Feature extraction on Ray Data: the same records as :func:`extract`, on a cluster.

The inputs become a Ray Dataset of input ids; a first ``map_batches`` stage (plain tasks) loads
and preprocesses the images (``dataset[i]``: file decoding, resizing); a second runs on a pool
of actors, each holding its own copy of the classifier and the VLM (one GPU per actor where
there are GPUs; the weights go to the cluster's object store once per extractor, however many
passes — natural, FGSM, PGD — use them), and computes features, logits, VLM embeddings and
thumbnails — after an optional attack. The driver gathers rows by *shard* (``shard_size``
consecutive ids) and writes each finished shard as one Parquet file, atomically.

Fault tolerance: Ray restarts a dead actor and retries its batch; the driver keeps the first
row of every id and, at the end, checks that every id came back exactly once. An interrupted
run resumes from its work directory: finished shards are read back, not recomputed.

Needs the ``ray`` extra: ``pip install 'semheat_widgets[ray]'``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from ...errors import SemheatError
from .local import Extracted, forward_batch

CRASH_ONCE_ENV = "SEMHEAT_RAY_CRASH_ONCE"  # test hook: "<marker file>:<id>" kills one worker once
COLUMNS = ("features", "logits", "image_emb", "thumbs")


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise SemheatError("the Ray engine needs Ray: pip install 'semheat_widgets[ray]'") \
            from None
    return ray


def _load_batch(batch: dict, dataset) -> dict:
    """Stage 1 (tasks): decode and preprocess the images of a batch of ids."""
    images, labels = [], []
    for i in batch["id"]:
        image, label = dataset[int(i)]
        images.append(np.asarray(image, dtype=np.uint8))
        labels.append(int(label))
    return {"id": np.asarray(batch["id"], dtype=np.int64), "image": np.stack(images),
            "label": np.asarray(labels, dtype=np.int64)}


def _weights_digest(module) -> str:
    """A digest of a module's weights (so that a changed model never reuses old shards)."""
    h = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _data_digest(dataset, samples: int = 16) -> str:
    """A digest of a dataset's content: its file paths (and the size they are decoded at), or its
    tensors, when it has them (through ``Subset`` and ``ConcatDataset``); otherwise its length
    and evenly spaced items."""
    h = hashlib.sha1(f"{type(dataset).__name__}:{len(dataset)}".encode())
    if hasattr(dataset, "indices") and hasattr(dataset, "dataset"):  # a Subset
        h.update(np.asarray(dataset.indices, dtype=np.int64).tobytes())
        h.update(_data_digest(dataset.dataset, samples).encode())
    elif hasattr(dataset, "datasets"):  # a ConcatDataset
        for part in dataset.datasets:
            h.update(_data_digest(part, samples).encode())
    elif getattr(dataset, "paths", None) is not None:
        for path in dataset.paths:
            h.update(str(path).encode())
        if getattr(dataset, "size", None) is not None:  # the same files decoded at another size
            h.update(f"size {dataset.size}".encode())
    elif getattr(dataset, "tensors", None) is not None:
        for tensor in dataset.tensors:
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    else:
        for i in np.linspace(0, len(dataset) - 1, min(samples, len(dataset))).astype(int):
            image, label = dataset[int(i)]
            h.update(np.asarray(image).tobytes() + str(int(label)).encode())
    return h.hexdigest()


class _ModelWorker:
    """Stage 2 (actors): classifier + VLM (+ attack) on a batch of preprocessed images."""

    def __init__(self, models: list, attack, thumb_size: int, threads: int | None):
        import ray
        import torch

        from ..models.vlm import resolve_device

        if threads:
            torch.set_num_threads(threads)
        classifier, vlm = ray.get(models[0])  # (a list: Ray leaves the reference to us)
        device = resolve_device(None)
        self.classifier = classifier.to(device).eval()
        self.vlm = vlm.to(device)
        self.attack, self.thumb_size, self.device = attack, thumb_size, device

    def __call__(self, batch: dict) -> dict:
        import torch

        self._maybe_crash(batch["id"])
        images = torch.from_numpy(np.ascontiguousarray(batch["image"])).to(self.device)
        labels = torch.from_numpy(np.asarray(batch["label"])).to(self.device)
        ids = np.asarray(batch["id"], dtype=np.int64)
        out = forward_batch(self.classifier, self.vlm, images, labels, self.attack,
                            self.thumb_size, int(ids.min()))
        return {"id": ids, "label": np.asarray(batch["label"], dtype=np.int64), **out}

    @staticmethod
    def _maybe_crash(ids) -> None:
        spec = os.environ.get(CRASH_ONCE_ENV)
        if not spec:
            return
        marker, _, when = spec.rpartition(":")
        if int(when) in set(np.asarray(ids).tolist()) and not os.path.exists(marker):
            Path(marker).write_text("crashed once")
            os._exit(1)  # a hard worker death, as when a node goes away


class RayExtractor:
    """A drop-in replacement for :func:`extract` that runs on Ray (see the module docstring).

    ``address``: an existing cluster (``"auto"``, ``"ray://host:10001"``) or ``None`` for a
    local one; ``num_actors``: model replicas (default: one per GPU, or one per 4 CPUs);
    ``work_dir``: where shards are kept for resuming (a fresh temporary folder, removed after
    each run, when ``None``). Shards are keyed on a digest of the model weights and the data.
    """

    def __init__(self, address: str | None = None, *, num_actors: int | None = None,
                 shard_size: int = 512, work_dir=None, num_cpus: int | None = None):
        self.ray = require_ray()
        self.address, self.num_actors, self.shard_size = address, num_actors, int(shard_size)
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self._temporary = work_dir is None  # then each run's folder is removed after it
        self.num_cpus = num_cpus
        self.last_run: dict = {}
        self._models: dict[tuple, object] = {}  # (weight digests, job) -> object ref

    writes_into = True  # the pipeline may hand it its ArrayStore (see analyze)

    def _init(self):
        ray = self.ray
        if not ray.is_initialized():
            kwargs = {"address": self.address} if self.address else {"num_cpus": self.num_cpus}
            ray.init(ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False, **kwargs)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        # an actor must fit on one node: the largest node bounds its share
        node_cpus = max([n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
                        or [cpus])
        actors = self.num_actors or (gpus if gpus else max(1, cpus // 4))
        return actors, gpus, cpus, node_cpus

    def __call__(self, classifier, vlm, dataset, *, batch_size: int = 128, num_workers: int = 0,
                 thumb_size: int = 64, progress: bool = True, desc: str = "extract",
                 attack=None, out_dir=None, into=None, offset: int = 0) -> Extracted:
        n = len(dataset)
        if n == 0:
            raise SemheatError("the dataset is empty: nothing to analyse")
        actors, gpus, cpus, node_cpus = self._init()
        shard_dir = self._shard_dir(classifier, vlm, dataset, attack, thumb_size, desc)
        n_shards = -(-n // self.shard_size)
        done = {k for k in range(n_shards) if (shard_dir / f"shard-{k:05d}.parquet").is_file()}
        todo = [i for k in range(n_shards) if k not in done
                for i in range(k * self.shard_size, min(n, (k + 1) * self.shard_size))]
        self.last_run = {"shards": n_shards, "resumed_shards": len(done),
                         "computed_ids": len(todo), "actors": actors}
        if todo:
            self._run(classifier, vlm, dataset, todo, shard_dir, batch_size, thumb_size, attack,
                      actors, gpus, cpus, node_cpus, n, progress, desc)
        out = self._assemble(shard_dir, n_shards, n, into, offset)
        if self._temporary:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None
        return out

    # -- pieces -------------------------------------------------------------------------------
    def _shard_dir(self, classifier, vlm, dataset, attack, thumb_size, desc) -> Path:
        """A folder per (model weights, data, attack): a resumed run must match what it
        resumes. Without a ``work_dir`` every run gets a fresh temporary folder."""
        import tempfile

        weights = self._digests(classifier, vlm)
        key = json.dumps({"classifier": weights[0], "vlm": weights[1],
                          "data": _data_digest(dataset),
                          "attack": None if attack is None else vars(attack),
                          "thumb": thumb_size, "shard": self.shard_size, "desc": desc},
                         sort_keys=True, default=str)
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="semheat-ray-"))
        folder = self.work_dir / digest
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").write_text(key)
        return folder

    @staticmethod
    def _digests(classifier, vlm) -> tuple[str, str]:
        return _weights_digest(classifier), _weights_digest(vlm.model)

    def _model_ref(self, classifier, vlm):
        """The models in the object store, put there once per pair of weights (and Ray
        session: a reference does not outlive its session)."""
        digests = (*self._digests(classifier, vlm),
                   self.ray.get_runtime_context().get_job_id())
        if digests not in self._models:
            if classifier.device.type != "cpu" or vlm.device.type != "cpu":  # ship CPU copies
                import copy

                classifier, vlm = copy.deepcopy(classifier).cpu(), copy.deepcopy(vlm).to("cpu")
            self._models = {digests: self.ray.put((classifier, vlm))}
        return self._models[digests]

    def _run(self, classifier, vlm, dataset, todo, shard_dir, batch_size, thumb_size, attack,
             actors, gpus, cpus, node_cpus, n, progress, desc):
        from tqdm.auto import tqdm

        ray = self.ray
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours below counts rows as they land
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ids = np.asarray(todo, dtype=np.int64)
        ds = ray.data.from_items([{"id": int(i)} for i in ids],
                                 override_num_blocks=max(1, -(-len(ids) // batch_size)))
        ds = ds.map_batches(_load_batch, fn_kwargs={"dataset": dataset}, batch_size=batch_size,
                            num_cpus=0.5)
        # Loading is light next to the forward passes: the loaders share half a CPU and each
        # actor gets the rest of its share, with as many torch threads.
        # Actors are spread over the nodes (replicas where the hardware is, and a lost node
        # costs one replica, not all).
        share = max(0.5, min(node_cpus - 0.5, (cpus - 0.5) / actors))
        per_actor = {"num_gpus": 1} if gpus else {"num_cpus": share}
        threads = None if gpus else max(1, int(round(share)))
        models = [self._model_ref(classifier, vlm)]
        ds = ds.map_batches(_ModelWorker, fn_constructor_args=(models, attack, thumb_size,
                                                               threads),
                            batch_size=batch_size,
                            compute=ray.data.ActorPoolStrategy(size=actors),
                            scheduling_strategy="SPREAD", **per_actor)
        # (Ray Data restarts dead actors and retries their batches by default.)
        expected = {k: min(n, (k + 1) * self.shard_size) - k * self.shard_size
                    for k in np.unique(ids // self.shard_size).tolist()}
        pending: dict[int, dict] = {}  # shard -> {"seen": set of ids, "parts": [batches]}
        bar = tqdm(total=len(ids), desc=f"{desc} (Ray)", unit="img", disable=not progress)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            shard_of = batch["id"] // self.shard_size
            for k in np.unique(shard_of).tolist():
                entry = pending.setdefault(k, {"seen": set(), "parts": []})
                rows = np.flatnonzero(shard_of == k)
                new = [r for r in rows if int(batch["id"][r]) not in entry["seen"]]
                if not new:
                    continue  # a retried batch whose rows already arrived
                entry["seen"].update(int(batch["id"][r]) for r in new)
                entry["parts"].append({c: batch[c][new] for c in ("id", "label") + COLUMNS})
                bar.update(len(new))
                if len(entry["seen"]) == expected[k]:
                    self._write_shard(shard_dir, k, entry["parts"])
                    del pending[k]
        bar.close()
        if pending:
            missing = sum(expected[k] - len(v["seen"]) for k, v in pending.items())
            raise SemheatError(f"Ray returned no rows for {missing} inputs; run again to resume")

    @staticmethod
    def _write_shard(shard_dir: Path, k: int, parts: list[dict]) -> None:
        """One finished shard as a Parquet file (fixed-size list columns), written atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
        order = np.argsort(cols["id"], kind="stable")
        data = {"id": cols["id"][order].astype(np.int64),
                "label": cols["label"][order].astype(np.int64)}
        shapes = {}
        for c in COLUMNS:
            block = cols[c][order]
            shapes[c] = list(block.shape[1:])
            flat = pa.array(np.ascontiguousarray(block).reshape(-1))
            data[c] = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(block.shape[1:])))
        table = pa.table(data).replace_schema_metadata({"shapes": json.dumps(shapes)})
        tmp = shard_dir / f".shard-{k:05d}.tmp"
        pq.write_table(table, tmp)
        tmp.replace(shard_dir / f"shard-{k:05d}.parquet")

    def _assemble(self, shard_dir: Path, n_shards: int, n: int, into=None, offset: int = 0
                  ) -> Extracted:
        """The shards in id order: into the caller's store (rows ``offset..``) or new arrays."""
        import pyarrow.parquet as pq

        from ..bundle.store import ArrayStore

        store = into if into is not None else ArrayStore(n)
        first = offset if into is not None else 0
        seen = np.zeros(n, dtype=np.int64)
        for k in range(n_shards):
            table = pq.read_table(shard_dir / f"shard-{k:05d}.parquet")
            shapes = json.loads(table.schema.metadata[b"shapes"])
            ids = table.column("id").to_numpy()
            np.add.at(seen, ids, 1)
            if len(ids) and not (np.diff(ids) == 1).all():
                raise SemheatError(f"shard {k} of {shard_dir} does not hold consecutive ids")
            start = first + int(ids[0]) if len(ids) else first
            store.write("labels", start, table.column("label").to_numpy().astype(np.int64))
            for c in COLUMNS:
                values = table.column(c).combine_chunks().flatten().to_numpy()
                dtype = np.uint8 if c == "thumbs" else np.float32
                store.write(c, start, values.reshape(len(ids), *shapes[c]).astype(dtype))
        if not (seen == 1).all():
            raise SemheatError(f"records lost or duplicated: {int((seen == 0).sum())} missing, "
                               f"{int((seen > 1).sum())} duplicated")
        return Extracted(**{c: store[c][first:first + n] for c in
                            ("features", "logits", "image_emb", "labels", "thumbs")})
