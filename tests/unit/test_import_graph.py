"""The package's modules import one way.

- **No circle anywhere**: among all modules of ``semheat_widgets``, counting every import
  statement — at module level, under ``if TYPE_CHECKING:`` (an annotation-only circle is still
  a circle a reader has to untangle) and inside functions (a lazy import that closes a circle
  is a circle all the same).
- **Layers**: what a module imports when it is loaded lies in its own layer or below
  (:data:`LAYERS`, lowest first). Imports inside functions may reach up (the :class:`Bundle`
  facade opens its detectors, discovery and comparison on demand) but never close a circle.

The graph is read from the sources (``ast``), not by importing them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import semheat_widgets

PACKAGE = Path(semheat_widgets.__file__).parent
ROOT = "semheat_widgets"
ENGINE = f"{ROOT}.engine"

# Lowest first; a module belongs to the layer of its longest matching prefix (relative to the
# package). Module-level imports may go to the same layer or lower, never higher.
LAYERS = (
    # plumbing and the lazy namespaces (their module level imports nothing above)
    ("", "errors", "arguments", "safe_io", "tables", "engine", "engine.lazy"),
    # the engine's leaves: small helpers, the bundle's format and array store, monitor names
    ("engine.vectors", "engine.tasks", "engine.metrics", "engine.pixels", "engine.image_files",
     "engine.memory",
     "engine.bundle.json_schema", "engine.bundle.schema", "engine.bundle.store",
     "engine.bundle.files", "engine.detect.names"),
    # the method's arithmetic, what opens models, what names concepts
    ("engine.heatmaps", "engine.localize", "engine.models", "engine.concepts"),
    ("engine.extract",),  # from inputs to arrays
    ("engine.pipeline.types",),  # what one stage hands the next
    ("engine.detect",),  # the defect detectors
    ("engine.bundle",),  # the Bundle class and its queries
    ("engine.pipeline", "engine.reports"),  # the analysis; what a bundle says
    ("data",),  # datasets on disk and vocabularies
    ("charts", "jobs"),  # the figures; the typed options of the long jobs
    ("zoo", "workflows", "html_report"),  # the toy world; datasets on disk -> bundles
    ("widgets", "bench"),  # the views; the benchmarks
    ("cli",),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level(body):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *(h.body for h in node.handlers)):
                yield from _module_level(block)


def import_graph(root: str = ROOT, lazy: bool = True) -> dict[str, set[str]]:
    """``{module: modules of root it imports}``: every import statement (``lazy``), or those
    run when the module is loaded."""
    folder = PACKAGE.parent.joinpath(*root.split("."))
    paths = {_module_name(p): p for p in folder.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))) \
            if lazy else _module_level(tree.body)
        targets = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                wanted = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
                wanted = [base] + [f"{base}.{a.name}" for a in node.names]
            for dotted in wanted:  # the longest prefix that is a module of ours
                parts = dotted.split(".")
                hit = next((".".join(parts[:i]) for i in range(len(parts), 0, -1)
                            if ".".join(parts[:i]) in paths), None)
                if hit is not None and hit != name:
                    targets.add(hit)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int:
    """The layer of a module: that of its longest matching prefix in :data:`LAYERS`."""
    relative = module[len(ROOT) + 1:] if module != ROOT else ""
    best, depth = None, -1
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (relative == prefix or relative.startswith(prefix + ".") or prefix == "") \
                    and len(prefix) > depth:
                best, depth = rank, len(prefix)
    return best


def test_no_module_is_in_an_import_circle():
    graph = import_graph()
    assert f"{ENGINE}.detect.fit" in graph and f"{ENGINE}.pipeline.types" in graph
    assert len(graph) > 100  # the whole package, not a corner of it
    assert cycles(graph) == []


def test_every_lazy_name_of_a_package_loads():
    """The names a package exports lazily (PEP 562) each come from the module its table says:
    none points at a module that moved away."""
    import importlib

    for package in ("engine", "engine.extract", "engine.pipeline", "engine.reports",
                    "engine.detect", "engine.bundle", "engine.models", "engine.concepts"):
        module = importlib.import_module(f"{ROOT}.{package}")
        for name in module.__all__:
            assert getattr(module, name) is not None, (package, name)


def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer():
    graph = import_graph()
    bottom = {ROOT} | {f"{ROOT}.{m}" for m in LAYERS[0] if m}
    # only the plumbing and the lazy namespaces sit at the bottom, nothing by accident
    assert sorted(m for m in graph if layer_of(m) == 0 and m not in bottom) == []


def test_what_a_module_loads_lies_at_its_layer_or_below():
    graph = import_graph(lazy=False)
    upward = sorted(f"{m} (layer {layer_of(m)}) -> {t} (layer {layer_of(t)})"
                    for m, targets in graph.items() for t in targets
                    if layer_of(t) > layer_of(m))
    assert upward == []


def test_the_layer_check_sees_an_upward_import():
    assert layer_of(f"{ENGINE}.bundle.store") < layer_of(f"{ENGINE}.detect.fit") \
        < layer_of(f"{ENGINE}.bundle.core") < layer_of(f"{ENGINE}.pipeline.stages") \
        < layer_of(f"{ROOT}.widgets.heatmap") < layer_of(f"{ROOT}.cli")


def test_the_stage_packages_keep_their_leaves():
    """The leaves other packages read stay leaves: the stage types import no stage, the
    detectors' protocol imports no detector (their registry sits above them), nothing in
    ``engine/bundle`` imports the :class:`Bundle` class, the model registry and the device
    import nothing of the package, and the concept bank and discovery import no model, so
    reading a bundle's model ids or vocabulary costs no torch (what each loads; the protocol
    not even lazily)."""
    graph = {m: {t for t in targets if t.startswith(ENGINE + ".")}
             for m, targets in import_graph(lazy=False).items()}
    detect = {m for m in graph if m.startswith(f"{ENGINE}.detect.")}
    assert not graph[f"{ENGINE}.pipeline.types"] & (detect | {f"{ENGINE}.pipeline.stages"})
    assert not import_graph()[f"{ENGINE}.detect.protocol"] & detect
    assert {f"{ENGINE}.detect.{m}" for m in ("baselines", "concept_monitor", "heatmap_monitor")} \
        <= graph[f"{ENGINE}.detect.registry"]
    core = f"{ENGINE}.bundle.core"
    for module in {m for m in graph if m.startswith(f"{ENGINE}.bundle.")} - {core}:
        assert core not in graph[module], module
    assert graph[f"{ENGINE}.bundle.store"] <= {f"{ENGINE}.vectors"}
    assert graph[f"{ENGINE}.bundle.schema"] <= {f"{ENGINE}.bundle.json_schema",
                                                f"{ENGINE}.bundle.store"}
    assert graph[f"{ENGINE}.models.registry"] == set()
    assert graph[f"{ENGINE}.models.device"] == set()
    assert graph[f"{ENGINE}.models.vlm"] <= {f"{ENGINE}.models.device", f"{ENGINE}.pixels"}
    assert graph[f"{ENGINE}.concepts.bank"] <= {f"{ENGINE}.vectors"}
    assert graph[f"{ENGINE}.concepts.discover"] <= {f"{ENGINE}.vectors"}


def test_the_engine_knows_no_view_command_line_or_toy_world():
    graph = import_graph()
    above = (f"{ROOT}.widgets", f"{ROOT}.cli", f"{ROOT}.zoo", f"{ROOT}.workflows", f"{ROOT}.data",
             f"{ROOT}.bench", f"{ROOT}.charts", f"{ROOT}.html_report", f"{ROOT}.jobs")
    for module, targets in graph.items():
        if module.startswith(ENGINE):
            assert not [t for t in targets if t.startswith(above)], module
