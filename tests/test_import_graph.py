"""The engine's modules import one way: no circle among them, and the stage packages import only
downward — the detectors (``engine/detect``) never the pipeline that runs them, the bundle's
modules (``engine/bundle``) never its class, the models (``engine/models``) never the concepts
(``engine/concepts``), and neither of them the pipeline.

The graph is read from the sources (``ast``), not by importing them: every import statement at
module level, those under ``if TYPE_CHECKING:`` included (an annotation-only circle is still a
circle a reader has to untangle); imports inside functions (deliberately lazy ones) are not
edges."""

from __future__ import annotations

import ast
from pathlib import Path

import semheat_widgets

PACKAGE = Path(semheat_widgets.__file__).parent
ENGINE = "semheat_widgets.engine"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(body):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            yield from _top_level_imports(node.body)
            yield from _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *(h.body for h in node.handlers)):
                yield from _top_level_imports(block)


def import_graph(root: str = ENGINE) -> dict[str, set[str]]:
    """``{module: modules of root it imports at module level}``."""
    folder = PACKAGE.parent.joinpath(*root.split("."))
    paths = {_module_name(p): p for p in folder.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8")).body):
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


def test_the_engine_has_no_import_cycle():
    graph = import_graph()
    assert f"{ENGINE}.detect.fit" in graph and f"{ENGINE}.stages" in graph
    assert cycles(graph) == []


def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_detectors_import_downward_only():
    graph = import_graph()
    detect = {m for m in graph if m.startswith(f"{ENGINE}.detect")}
    upper = {f"{ENGINE}.{m}" for m in ("pipeline", "bundle", "bundle.core", "figures")}
    for module in detect:
        assert not graph[module] & upper, module
    # the protocol is the bottom of the package: the detectors import it, not the reverse
    # (its registry imports them lazily, inside a function)
    assert not graph[f"{ENGINE}.detect.protocol"] & detect
    # the stage types are a leaf below both the pipeline and the stage that fits detectors
    assert f"{ENGINE}.stages" in graph[f"{ENGINE}.detect.fit"]
    assert f"{ENGINE}.stages" in graph[f"{ENGINE}.pipeline"]
    assert not graph[f"{ENGINE}.stages"] & ({f"{ENGINE}.pipeline"} | detect)


def test_the_bundle_package_imports_downward_only():
    """Inside ``engine/bundle`` nothing imports the :class:`Bundle` class (``core``, the top);
    the array store and the format, which the pipeline and the detectors import, sit at the
    bottom."""
    graph = import_graph()
    core = f"{ENGINE}.bundle.core"
    package = {m for m in graph if m.startswith(f"{ENGINE}.bundle.")}
    assert core in package and f"{ENGINE}.bundle.files" in package
    for module in package - {core}:
        assert core not in graph[module], module
    assert graph[f"{ENGINE}.bundle.store"] <= {f"{ENGINE}.vectors"}
    assert graph[f"{ENGINE}.bundle.schema"] == {f"{ENGINE}.bundle.json_schema"}
    assert graph[f"{ENGINE}.bundle.json_schema"] == set()


def test_the_model_and_concept_packages_import_downward_only():
    """``engine/models`` (what opens models) sits below ``engine/concepts`` (what names
    concepts), and neither imports the pipeline, the figures, the detectors or the
    :class:`Bundle` class; inside each, the registry, the bank and discovery are leaves, so
    reading a bundle's model ids or vocabulary costs no torch."""
    graph = import_graph()
    models = {m for m in graph if m.startswith(f"{ENGINE}.models.")}
    concepts = {m for m in graph if m.startswith(f"{ENGINE}.concepts.")}
    assert f"{ENGINE}.models.registry" in models and f"{ENGINE}.concepts.bank" in concepts
    upper = {f"{ENGINE}.{m}" for m in ("pipeline", "figures", "bundle.core", "stages")}
    upper |= {m for m in graph if m.startswith(f"{ENGINE}.detect")}
    for module in models | concepts:
        assert not graph[module] & upper, module
    for module in models:
        assert not graph[module] & concepts, module
    assert graph[f"{ENGINE}.models.registry"] == set()
    assert graph[f"{ENGINE}.models.device"] == set()
    assert graph[f"{ENGINE}.models.vlm"] <= {f"{ENGINE}.models.device", f"{ENGINE}.pixels"}
    assert graph[f"{ENGINE}.concepts.bank"] <= {f"{ENGINE}.vectors"}
    assert graph[f"{ENGINE}.concepts.discover"] <= {f"{ENGINE}.vectors"}
    assert f"{ENGINE}.concepts.discover" in graph[f"{ENGINE}.concepts.slices"]
    assert f"{ENGINE}.concepts.cam" in graph[f"{ENGINE}.concepts.grounding"]
