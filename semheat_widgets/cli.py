"""The ``semheat`` command.

    semheat toy build DIR              build the toy world (three bundles with known answers)
    semheat info BUNDLE [--json]       what a bundle (or toy world) holds
    semheat verify BUNDLE [--json]     check every value of its arrays (load reads headers)
    semheat localize BUNDLE [--json]   fault localization counts (+ accuracy on toy bundles)
    semheat monitor BUNDLE [--json]    runtime-monitor AUROCs against the baselines
    semheat bench [--json]             performance figures, as ratios measured side by side
    semheat discover BUNDLE --cell CLASS,CONCEPT [--json]   phrases behind a heatmap cell
    semheat slices BUNDLE [--json]     the mistakes' error slices, named
    semheat report BUNDLE --html OUT   a standalone HTML report (opens offline)
    semheat analyze --data ... --vlm ... --classifier ... --out BUNDLE
    semheat data rival10 --dest DIR --accept-license

Errors are one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .engine.detect.names import MONITORS
from .errors import SemheatError


def json_safe(obj):
    """``obj`` with NaN and inf as ``null`` and NumPy scalars as plain numbers: strict JSON."""
    import math

    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()  # a NumPy scalar
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _emit(obj: dict, as_json: bool, render) -> None:
    if as_json:
        print(json.dumps(json_safe(obj), indent=2, allow_nan=False))
    else:
        print(render(obj))


def _targets(path: str) -> tuple[dict[str, Path], str | None]:
    """The bundles behind a path: a single bundle, or every bundle of a toy world (and the
    world's primary bundle)."""
    from .zoo.world_file import is_world, read_world, world_bundles

    p = Path(path)
    if not p.exists():
        raise SemheatError(f"{p}: no such bundle or directory")
    if is_world(p):
        world, built = read_world(p), world_bundles(p)
        if world["primary"] not in built:
            raise SemheatError(f"the toy world {p} is only partly built (its primary bundle "
                               f"{world['primary']!r} is missing); run: semheat toy build {p}")
        return built, world["primary"]
    return {p.name: p}, None


# -- commands --------------------------------------------------------------------------------
def cmd_toy_build(args) -> int:
    import time

    from .zoo.build import build_toy_world, read_world

    started = time.time()
    job = job_from(args)
    out = build_toy_world(args.dir, **job.settings(), overwrite=args.overwrite,
                          progress=args.progress, device=args.device)
    world = read_world(out)
    print(f"toy world built in {out} ({time.time() - started:.0f} s): "
          f"{', '.join(world['bundles'])}")
    return 0


def cmd_toy_family(args) -> int:
    from .zoo.family_build import build_family
    from .zoo.family_file import read_family

    out = build_family(args.dir, job_from(args), progress=not args.quiet)
    bundles = read_family(out)["bundles"].values()
    ties, heads = (sum(b["fault"] == kind for b in bundles) for kind in ("encoder", "head"))
    print(f"fault family built in {out}: {ties} ties and {heads} head faults")
    return 0


def _one_bundle(path: str):
    from .engine.bundle import Bundle

    bundles, primary = _targets(path)
    if len(bundles) != 1 and primary is None:
        raise SemheatError(f"{path}: give one bundle")
    return Bundle.load(bundles[primary] if primary else next(iter(bundles.values())))


def cmd_discover(args) -> int:
    bundle = _one_bundle(args.bundle)
    parts = [p.strip() for p in (args.cell or "").split(",")]
    if len(parts) != 2 or not all(parts):
        raise SemheatError(f"--cell is CLASS,CONCEPT (e.g. ship,wet), got {args.cell!r}")
    row, concept = parts
    if concept not in bundle.concept_names:
        raise SemheatError(f"unknown concept {concept!r}; this bundle has "
                           f"{', '.join(bundle.concept_names)}")
    cell = bundle.cell_query("differential", row, concept)
    found = bundle.discover(cell, k=args.k, reference=args.reference)
    _emit({"bundle": bundle.name, "cell": {"class": row, "concept": concept,
                                          "kind": "differential"}, **found.to_dict()},
          args.json, _render_discovery)
    return 0


def _render_discovery(r: dict) -> str:
    lines = [f"{r['n_selection']} inputs against {r['n_reference']} ({r['reference']} class, "
             f"correct); {r['n_phrases']} phrases ranked by the {r['order_by']} space",
             f"{'phrase':28s} {'image d':>9s} {'rank':>5s} {'aligned d':>10s} {'rank':>5s}"]
    for p in r["phrases"]:
        lines.append(f"{p['phrase'][:28]:28s} {p.get('effect_image', float('nan')):9.2f} "
                     f"{p.get('rank_image', 0):5d} {p.get('effect_aligned', float('nan')):10.2f}"
                     f" {p.get('rank_aligned', 0):5d}")
    return "\n".join(lines)


def cmd_slices(args) -> int:
    bundle = _one_bundle(args.bundle)
    found = bundle.slices()
    _emit({"bundle": bundle.name, "n_mistakes": int((~bundle.column("correct")
                                                    & bundle.mask(perturbation="natural")).sum()),
           "slices": [s.to_dict() for s in found]}, args.json, _render_slices)
    return 0


def _render_slices(r: dict) -> str:
    lines = [f"{len(r['slices'])} slices of {r['n_mistakes']} mistakes"]
    for s in r["slices"]:
        mark = "named" if s["confident"] else "unnamed (no phrase sets it apart)"
        lines.append(f"- {s['size']:5d} predicted {s['predicted']}: {s['name']!r} "
                     f"(d={s['effect']:.2f}, low {s['effect_low']:.2f}, q={s['q_value']:.2g}) "
                     f"{mark}; accuracy {s['accuracy']:.2f}; verdict {s['verdict']}")
    return "\n".join(lines)


def cmd_info(args) -> int:
    from .engine.bundle import Bundle

    bundles, _ = _targets(args.bundle)
    out = {}
    for name, path in bundles.items():
        b = Bundle.load(path)
        m = b.manifest
        out[name] = {"path": str(path), "n_records": b.n, "classes": b.classes,
                     "concepts": b.concept_names, "models": m.get("models"),
                     "splits": m.get("splits"), "accuracy": m.get("accuracy"),
                     "aligner_fidelity": (m.get("aligner") or {}).get("fidelity")
                     if isinstance(m.get("aligner") or {}, dict) else None,
                     "schema_version": m.get("schema_version"), "created": m.get("created")}
    result = out if len(out) > 1 else next(iter(out.values()))
    _emit(result, args.json, lambda r: json.dumps(r, indent=2))
    return 0


def cmd_verify(args) -> int:
    """``semheat verify BUNDLE``: the full scan loading skips (every array value)."""
    from .engine.bundle import Bundle

    bundles, _ = _targets(args.bundle)
    out = {}
    for name, path in bundles.items():
        out[name] = {"path": str(path), "ok": True, **Bundle.load(path).verify()}
    result = out if len(out) > 1 else next(iter(out.values()))
    _emit(result, args.json, lambda r: json.dumps(r, indent=2))
    return 0


def _collect(path: str, report):
    from .engine.bundle import Bundle

    bundles, primary = _targets(path)
    reports = {name: report(Bundle.load(p)) for name, p in bundles.items()}
    return reports, primary


def _one_of_bundle_or_family(args, report: str, render) -> bool:
    """``--family DIR``: print the family's report (``report``, a function of
    :mod:`.zoo.family_build`) and say so; otherwise check that a bundle was given."""
    if not args.family:
        if not args.bundle:
            raise SemheatError("give a bundle or toy-world directory, or --family DIR")
        return False
    if args.bundle or getattr(args, "explain", None) is not None:
        raise SemheatError(f"give a bundle ({args.bundle or '--explain'}) or --family "
                           f"{args.family}, not both")
    from .zoo import family_build

    _emit(getattr(family_build, report)(args.family), args.json, render)
    return True


def cmd_localize(args) -> int:
    from .engine.reports.localization import localization_report

    if _one_of_bundle_or_family(args, "family_report", _render_family):
        return 0
    reports, primary = _collect(args.bundle, localization_report)
    if primary is None:
        result = next(iter(reports.values()))
    else:
        counts = {}
        truth = {}
        for rep in reports.values():
            for k, v in rep["counts"].items():
                counts[k] = counts.get(k, 0) + v
            truth.update(rep.get("ground_truth", {}))
        result = {"world": str(args.bundle), "counts": counts, "ground_truth": truth,
                  "bundles": reports}
    _emit(result, args.json, _render_localize)
    return 0


def cmd_monitor(args) -> int:
    from .engine.reports.monitors import monitor_report

    if _one_of_bundle_or_family(args, "family_monitor_report", _render_family_monitor):
        return 0
    if args.explain is not None:
        return _explain(args)
    reports, primary = _collect(args.bundle, monitor_report)
    if primary is None:
        result = next(iter(reports.values()))
    else:
        result = {"world": str(args.bundle), "primary": primary,
                  "misclassification": reports[primary]["misclassification"],
                  "adversarial": reports[primary]["adversarial"], "bundles": reports}
    _emit(result, args.json, _render_monitor)
    return 0


def _explain(args) -> int:
    """``semheat monitor BUNDLE --explain I``: why the monitor scored record I as it did."""
    from .engine.bundle import Bundle
    from .engine.reports.monitors import explain_record

    bundles, primary = _targets(args.bundle)
    if primary is not None:
        raise SemheatError("--explain needs one bundle, not a toy world: give "
                           f"{args.bundle}/{primary} (or another of {sorted(bundles)})")
    path = next(iter(bundles.values()))
    why = explain_record(Bundle.load(path), args.explain, n=args.reasons,
                         monitor=args.explain_monitor)
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in why.items()}
    if "reasons" in why:
        rounded["reasons"] = [[name, round(v, 4)] for name, v in why["reasons"]]
    _emit(rounded, args.json, _render_explain)
    return 0


def _render_explain(r: dict) -> str:
    verdict = "FLAGGED" if r["flagged"] else "passed"
    lines = [f"record {r['index']}: true {r['label']}, predicted {r['prediction']}",
             f"{r['monitor']} monitor ({r['task']}): defect score {r['defect_score']} vs "
             f"threshold {r['threshold']} -> {verdict}"]
    if "reasons" in r:
        lines.append(f"  base {r['base']}; largest contributions:")
        lines += [f"    {value:+.4f}  {name}" for name, value in r["reasons"]]
    else:
        lines.append(f"  similarity to defective rows {r['sim_incorrect']}, "
                     f"to correct rows {r['sim_correct']}")
    return "\n".join(lines)


def cmd_analyze(args) -> int:
    from .workflows.job import run_analysis

    out = run_analysis(job_from(args))
    print(f"bundle written to {out}")
    return 0


def cmd_data_rival10(args) -> int:
    from .data.download import LICENSE_SUMMARY, download_rival10

    if not args.accept_license:
        raise SemheatError(f"{LICENSE_SUMMARY}. Re-run with --accept-license to agree")
    root = download_rival10(args.dest, accept_license=True, url=args.url,
                            progress=not args.quiet, timeout=args.timeout)
    print(f"RIVAL10 ready at {root}")
    return 0


def cmd_compare(args) -> int:
    from .engine.bundle import Bundle

    result = Bundle.load(args.before).compare(Bundle.load(args.after)).to_json()
    _emit(result, args.json, _render_compare)
    return 0


def cmd_ground(args) -> int:
    from .engine.bundle import Bundle
    from .workflows.ground import ground_bundle

    result = ground_bundle(Bundle.load(args.bundle), args.limit, args.classifier)
    _emit(result, args.json, lambda r: json.dumps(r, indent=2))
    return 0


def cmd_report(args) -> int:
    from .html_report import write_report

    bundles, _ = _targets(args.bundle)
    out = write_report(list(bundles.values()), args.html, compare_with=args.compare,
                       maps=not args.no_maps, slices=not args.no_slices)
    print(f"report written to {out} ({out.stat().st_size // 1024} KiB)")
    return 0


def cmd_bench(args) -> int:
    from .bench.suite import run_benchmarks

    if args.scale:
        from .bench.scale import scale_benchmarks

        result = scale_benchmarks(args.scale, progress=not args.json)
        _emit(result, args.json, lambda r: json.dumps(r, indent=2))
        return 0
    result = run_benchmarks(records=args.records, quick=args.quick, progress=not args.json,
                            ray=args.ray, first_run=args.first_run)
    _emit(result, args.json, lambda r: json.dumps(r, indent=2))
    return 0


# -- text rendering --------------------------------------------------------------------------
def _render_localize(r: dict) -> str:
    lines = [f"verdicts of misclassified inputs: {r['counts']}"]
    for kind, e in r.get("ground_truth", {}).items():
        line = f"  known {kind} faults: n={e['n']} accuracy={e['accuracy']}"
        if "responsible_concept" in e:
            line += (f"; '{e['responsible_concept']}' ranked "
                     f"{e['responsible_concept_rank']} (top: {', '.join(e['top_concepts'])})")
        lines.append(line)
    return "\n".join(lines)


def _render_compare(r: dict) -> str:
    lines = [f"{r['before']} -> {r['after']} ({r['n_inputs']} {r['split']} inputs): accuracy "
             f"{r['accuracy']['before']} -> {r['accuracy']['after']}; "
             f"{r['flipped']['fixed']} fixed, {r['flipped']['broken']} broken"]
    for kind, k in r["known_faults"].items():
        lines.append(f"  known {kind} faults: {k.get('before')} -> {k.get('after')}")
    for cls, sep in r["separating"].items():
        for what in ("stopped", "started"):
            if sep[what]:
                names = ", ".join(e["concept"] for e in sep[what])
                lines.append(f"  {cls}: {what} separating right from wrong: {names}")
    return "\n".join(lines)


def _render_family(r: dict) -> str:
    lines = [f"{'bundle':16s} {'role':11s} {'n':>5s} {'rule':>6s} {'paper':>6s} "
             f"{'vs probe':>8s} {'paper':>6s} {'rank':>4s}"]
    for name, e in r["bundles"].items():
        f = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
        lines.append(f"{name:16s} {e['role']:11s} {e['n'] or 0:5d} {f(e['accuracy']):>6s} "
                     f"{f(e['paper_accuracy']):>6s} {f(e['probe_accuracy']):>8s} "
                     f"{f(e['probe_paper_accuracy']):>6s} "
                     f"{e.get('responsible_concept_rank') or '–'!s:>4s}")
    lines += [f"mean {k}: {v}" for k, v in r["means"].items()]
    return "\n".join(lines)


def _render_family_monitor(r: dict) -> str:
    lines = [f"{'bundle':20s} {'role':12s} {'mistakes':>8s} {'monitor':>8s} {'MSP':>6s}"]
    for name, e in r["bundles"].items():
        d = e["detectors"]
        lines.append(f"{name:20s} {e['role'] if e['counted'] else 'barely takes':12s} "
                     f"{e['n_positive'] or 0:8d} {d[e['monitor']]['auroc']:8.3f} "
                     f"{d['msp']['auroc']:6.3f}")
    lines += [f"{k}: {v}" for k, v in r["means"].items()]
    return "\n".join(lines)


def _render_monitor(r: dict) -> str:
    lines = []
    for task in ("misclassification", "adversarial"):
        t = r.get(task, {})
        if not t.get("available", True):
            lines.append(f"{task}: not available")
            continue
        lines.append(f"{task} (positives {t.get('n_positive')}, negatives {t.get('n_negative')}):")
        for name in ("concept", "heatmap", "msp", "energy", "mahalanobis", "combined"):
            if name in t:
                e = t[name]
                lines.append(f"  {name:12s} AUROC {e['auroc']}  accuracy {e.get('accuracy')}"
                             f"  TPR {e.get('tpr')}  FPR {e.get('fpr')}")
    return "\n".join(lines)


# -- parser ----------------------------------------------------------------------------------
def _counted(minimum: int):
    """An argparse type: an integer >= ``minimum``, with a one-line error otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    parse.__name__ = "count"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


POSITIVE, NON_NEGATIVE = _counted(1), _counted(0)


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr (``--help`` still shows the usage), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _option_flags(p: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's name (its ``dest``) -> the flag a user types, for error messages."""
    return {a.dest: max(a.option_strings, key=len) for a in p._actions if a.option_strings}


def _job_parser(sub, name: str, job_type, help: str, func) -> argparse.ArgumentParser:
    """A subcommand whose options are the fields of ``job_type``; call :func:`_job_done` once
    its arguments are added (the defaults then come from the job's fields)."""
    p = sub.add_parser(name, help=help)
    p.set_defaults(func=func, job_type=job_type)
    return p


def _job_done(p: argparse.ArgumentParser, job_type) -> None:
    from .jobs import defaults

    known = {a.dest for a in p._actions}
    p.set_defaults(**{k: v for k, v in defaults(job_type).items() if k in known},
                   flags=_option_flags(p))


def _names(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def _add_json(p) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _add_toy(sub) -> None:
    from .jobs import FAMILY_ROUNDS, FamilyJob, ToyWorldJob

    toy = sub.add_parser("toy", help="the embedded toy world")
    toy_sub = toy.add_subparsers(dest="toy_command", required=True)
    build = _job_parser(toy_sub, "build", ToyWorldJob, "build the toy-world bundles into DIR",
                        cmd_toy_build)
    build.add_argument("dir")
    build.add_argument("--reference", dest="n_reference", type=POSITIVE, metavar="N",
                       help="held-out inputs per training distribution (default %(default)s)")
    build.add_argument("--natural", dest="n_natural", type=POSITIVE, metavar="N",
                       help="natural test inputs (default %(default)s)")
    build.add_argument("--shift", dest="n_shift", type=NON_NEGATIVE, metavar="N",
                       help="test inputs where the encoder fault's tie breaks "
                            "(default %(default)s)")
    build.add_argument("--attack-limit", type=NON_NEGATIVE,
                       help="natural inputs attacked with FGSM and PGD (default %(default)s; "
                            "0: none)")
    build.add_argument("--monitor", choices=MONITORS,
                       help="the runtime monitor whose flags the bundles report: concept "
                            "(stacked concept-space monitor) or heatmap (the paper's); default "
                            "%(default)s")
    build.add_argument("--similarity", choices=["cosine", "euclidean"],
                       help="how the heatmap monitor compares concept profiles "
                            "(default %(default)s)")
    build.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    build.add_argument("--force", dest="overwrite", action="store_true",
                       help="replace an existing toy world")
    build.add_argument("--quiet", dest="progress", action="store_false", help="no progress bars")
    _job_done(build, ToyWorldJob)

    fam = _job_parser(toy_sub, "family", FamilyJob, "build the fault family (trains each tie's "
                      "classifier once, about half a minute each, cached)", cmd_toy_family)
    fam.add_argument("dir")
    fam.add_argument("--ties", type=_names,
                     help="comma-separated ties such as wet-ship,text-truck (default: all of "
                          "the round)")
    fam.add_argument("--round", type=int, choices=FAMILY_ROUNDS,
                     help="1: the declared family; 2: the ties held out in round 2, round 1's "
                          "becoming development (default %(default)s)")
    fam.add_argument("--reference", dest="n_reference", type=POSITIVE, metavar="N",
                     help="reference inputs of every bundle (default %(default)s)")
    fam.add_argument("--natural", dest="n_natural", type=POSITIVE, metavar="N",
                     help="natural test inputs (default %(default)s)")
    fam.add_argument("--shift", dest="n_shift", type=POSITIVE, metavar="N",
                     help="test inputs where a tie breaks (default %(default)s)")
    fam.add_argument("--train-images", dest="n_train", type=POSITIVE, metavar="N",
                     help="images each tie's classifier trains on (default %(default)s)")
    fam.add_argument("--epochs", type=POSITIVE, help="its epochs (default %(default)s)")
    fam.add_argument("--quiet", action="store_true", help="no progress bars")
    _job_done(fam, FamilyJob)


def _add_readers(sub) -> None:
    """The commands that only read bundles: info, localize, monitor, verify."""
    info = sub.add_parser("info", help="what a bundle holds")
    info.add_argument("bundle", help="a bundle directory or a toy-world directory")
    _add_json(info)
    info.set_defaults(func=cmd_info)

    loc = sub.add_parser("localize", help="fault localization figures")
    loc.add_argument("bundle", nargs="?", help="a bundle directory or a toy-world directory")
    _add_json(loc)
    loc.add_argument("--family", default=None,
                     help="a fault family directory (semheat toy family DIR): per-tie and mean "
                          "figures against both ground truths")
    loc.set_defaults(func=cmd_localize)

    mon = sub.add_parser("monitor", help="runtime monitor figures")
    mon.add_argument("bundle", nargs="?", help="a bundle directory or a toy-world directory")
    _add_json(mon)
    mon.add_argument("--family", default=None,
                     help="a fault family directory: each bundle's misclassification monitors "
                          "against maximum softmax")
    mon.add_argument("--explain", type=NON_NEGATIVE, default=None, metavar="I",
                     help="why the monitor scored record I as it did (one bundle)")
    mon.add_argument("--reasons", type=POSITIVE, default=3,
                     help="contributions listed with --explain (default %(default)s)")
    mon.add_argument("--with", dest="explain_monitor", choices=MONITORS, default=None,
                     help="explain this monitor, not the bundle's own")
    mon.set_defaults(func=cmd_monitor)

    ver = sub.add_parser("verify", help="check every value of a bundle's arrays (loading "
                                        "checks only their headers)")
    ver.add_argument("bundle", help="a bundle directory or a toy-world directory")
    _add_json(ver)
    ver.set_defaults(func=cmd_verify)


def _add_report(sub) -> None:
    rep = sub.add_parser("report", help="a standalone HTML report of a bundle or toy world")
    rep.add_argument("bundle")
    rep.add_argument("--html", required=True, help="the HTML file to write")
    rep.add_argument("--compare", default=None,
                     help="a bundle of the same inputs after a fix: adds the comparison")
    rep.add_argument("--no-maps", action="store_true",
                     help="no concept maps under the thumbnails (they re-open the classifier)")
    rep.add_argument("--no-slices", action="store_true",
                     help="no error slices (they embed a vocabulary with the VLM; with "
                          "--no-maps the report reads only the bundle: no torch)")
    rep.set_defaults(func=cmd_report)

    cmp_ = sub.add_parser("compare", help="two bundles of the same inputs: did the fix work?")
    cmp_.add_argument("before")
    cmp_.add_argument("after")
    _add_json(cmp_)
    cmp_.set_defaults(func=cmd_compare)


def _add_ground(sub) -> None:
    gr = sub.add_parser("ground", help="do concept maps point at the attributes? (toy and "
                                       "RIVAL10 bundles)")
    gr.add_argument("bundle")
    gr.add_argument("--limit", type=POSITIVE, default=600,
                    help="eval inputs checked (default %(default)s, chosen at random)")
    gr.add_argument("--classifier", default=None,
                    help="resnet18:CKPT when the bundle's classifier cannot be re-opened")
    gr.set_defaults(flags=_option_flags(gr))  # errors naming the classifier show its flag
    _add_json(gr)
    gr.set_defaults(func=cmd_ground)


def _add_analyze(sub) -> None:
    from .jobs import ENGINES, AnalysisJob

    an = _job_parser(sub, "analyze", AnalysisJob,
                     "analyse a classifier on a dataset into a bundle", cmd_analyze)
    an.add_argument("--data", required=True, help="rival10:DIR or folder:DIR")
    an.add_argument("--vlm", required=True, help="open_clip:ARCH:TAG (TAG none = random) or toy")
    an.add_argument("--classifier", help="resnet18 or resnet18:CKPT (default %(default)s)")
    an.add_argument("--train-epochs", type=NON_NEGATIVE,
                    help="fine-tune the classifier on the train split first "
                         "(default %(default)s)")
    an.add_argument("--out", required=True, help="the bundle directory to write")
    an.add_argument("--attributes", dest="attributes_csv", metavar="CSV",
                    help="attributes CSV for folder data")
    an.add_argument("--concepts", type=_names, help="comma-separated concepts (folder data)")
    an.add_argument("--reference-fraction", type=float,
                    help="share of the train split held out as reference (default %(default)s)")
    an.add_argument("--attack-limit", type=NON_NEGATIVE,
                    help="inputs attacked with FGSM and PGD (default %(default)s; 0: no "
                         "attacks)")
    an.add_argument("--image-size", type=POSITIVE, metavar="N",
                    help="the side images are decoded at for the classifier (shorter side, "
                         "centre crop; default %(default)s)")
    an.add_argument("--batch-size", type=POSITIVE, help="default %(default)s")
    an.add_argument("--workers", dest="num_workers", type=NON_NEGATIVE, metavar="N",
                    help="DataLoader workers (default %(default)s)")
    an.add_argument("--device", help="cpu, cuda, ... (default: auto)")
    an.add_argument("--monitor", choices=MONITORS,
                    help="runtime monitor whose flags the bundle reports: concept (stacked "
                         "concept-space monitor) or heatmap (the paper's); default %(default)s")
    an.add_argument("--engine", choices=ENGINES,
                    help="where the forward passes run (ray: pip install "
                         "'semheat_widgets[ray]'); default %(default)s")
    an.add_argument("--ray-address",
                    help="an existing Ray cluster (auto, ray://HOST:10001); default: local")
    an.add_argument("--ray-actors", type=POSITIVE,
                    help="model replicas on Ray (default: one per GPU, or per 4 CPUs)")
    an.add_argument("--ray-shard-size", type=POSITIVE,
                    help="inputs per finished shard kept for resuming (default %(default)s)")
    an.add_argument("--force", dest="overwrite", action="store_true",
                    help="replace an existing bundle")
    an.add_argument("--quiet", dest="progress", action="store_false", help="no progress bars")
    _job_done(an, AnalysisJob)


def _add_data(sub) -> None:
    data = sub.add_parser("data", help="datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    rv = data_sub.add_parser("rival10", help="download and unpack RIVAL10")
    rv.add_argument("--dest", required=True)
    rv.add_argument("--accept-license", action="store_true",
                    help="agree to RIVAL10's terms (non-commercial research; ImageNet terms)")
    rv.add_argument("--url", default=None, help="another archive URL (a mirror)")
    rv.add_argument("--timeout", type=_positive_float, default=30)
    rv.add_argument("--quiet", action="store_true")
    rv.set_defaults(func=cmd_data_rival10)


def _add_discovery(sub) -> None:
    dis = sub.add_parser("discover", help="the vocabulary phrases behind a heatmap cell")
    dis.add_argument("bundle")
    dis.add_argument("--cell", required=True, help="CLASS,CONCEPT: the differential cell "
                                                   "(the inputs wrongly predicted CLASS)")
    dis.add_argument("--reference", choices=["predicted", "true"], default="predicted",
                     help="compare with the correct inputs of the same predicted or true class "
                          "(default %(default)s)")
    dis.add_argument("--k", type=POSITIVE, default=20,
                     help="phrases listed (default %(default)s)")
    _add_json(dis)
    dis.set_defaults(func=cmd_discover)

    sl = sub.add_parser("slices", help="the mistakes grouped into named error slices")
    sl.add_argument("bundle")
    _add_json(sl)
    sl.set_defaults(func=cmd_slices)


def _add_bench(sub) -> None:
    bench = sub.add_parser("bench", help="performance benchmarks (ratios)")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--records", type=POSITIVE, default=1_000_000)
    bench.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    bench.add_argument("--first-run", action="store_true",
                       help="also time a new user's first explorer and full toy build (minutes)")
    bench.add_argument("--scale", type=POSITIVE, action="append", metavar="N",
                       help="instead: analysis of N synthetic inputs in bounded memory (peak "
                            "memory, time against one pass; then load, explorer and click "
                            "times on that bundle); repeat for several N")
    bench.add_argument("--ray", action="store_true",
                       help="also compare Ray extraction with local extraction (needs the extra)")
    bench.set_defaults(func=cmd_bench)


SUBCOMMANDS = (_add_toy, _add_readers, _add_report, _add_ground, _add_analyze, _add_data,
               _add_discovery, _add_bench)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="semheat", description="Semantic heatmaps for debugging "
                                 "vision classifiers with vision-language models.")
    ap.add_argument("--version", action="version", version=f"semheat {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return ap


def job_from(args):
    """The typed job a job subcommand's arguments describe (:mod:`.jobs`)."""
    from dataclasses import fields

    return args.job_type(**{f.name: getattr(args, f.name) for f in fields(args.job_type)
                            if hasattr(args, f.name)})


def in_flags(exc: SemheatError, flags: dict) -> str:
    """The error's first line, with the options it names (``exc.options``, else
    ``exc.option``) as their flags: ``image_size`` -> ``--image-size``, a switch's
    ``overwrite=True`` -> ``--force``."""
    import re

    line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    option = getattr(exc, "option", None)
    for name in getattr(exc, "options", None) or ((option,) if option else ()):
        if name in flags:
            line = re.sub(rf"(?<![\w-]){re.escape(name)}(=True)?(?![\w=])",
                          lambda _m, flag=flags[name]: flag, line)
    return line


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "device", None) is not None:
            from .engine.models.vlm import resolve_device

            resolve_device(args.device)  # an unknown or absent device: one line, before work
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe surfaces here, inside the handlers, not at exit
        return status
    except SemheatError as exc:
        print(f"semheat: error: {in_flags(exc, getattr(args, 'flags', {}))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("semheat: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `semheat info B --json | head -1`: the reader left early
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141
    except Exception as exc:  # a full disk anywhere: one line, never a traceback
        from .safe_io import disk_full, is_space_error

        if not is_space_error(exc):
            raise
        where = getattr(exc, "filename", None) or getattr(args, "out", None) or "the output"
        print(f"semheat: error: {str(disk_full(where)).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
