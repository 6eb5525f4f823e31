"""The package layout the README describes, enforced.

- only the FiftyOne layer (``ood_core/fo/``), the operators and the demo import fiftyone;
- no module imports another module's underscore name (privacy by package);
- modules never import each other in a circle (imports inside functions count: they tie modules as much);
- every name the benchmarks, operators and tests import from the package (inside functions too) exists: the
  benchmarks are not run by the suite, so a moved or renamed name would otherwise break them unseen;
- the public namespace is lazy: ``import ood_core`` loads neither torch nor fiftyone,
  and every public name resolves;
- the registries are the one list: every detector and run kind is described.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIFTYONE_LAYER = ("ood_core/fo/", "operators/", "ood_core/demo.py", "__init__.py")


def _modules():
    for top in ("ood_core", "operators"):
        for path in sorted((ROOT / top).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())


def _imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_only_the_fiftyone_layer_imports_fiftyone():
    offenders = []
    for rel, tree in _modules():
        if rel.startswith(FIFTYONE_LAYER):
            continue
        offenders += [f"{rel}: {m}" for m in _imported_modules(tree) if m.split(".")[0] == "fiftyone"]
    assert offenders == []


def test_the_guard_sees_a_fiftyone_import_outside_the_layer():
    # the same check on a made-up module, so the guard itself is known to work
    tree = ast.parse("def f():\n    import fiftyone.core.labels as fol\n")
    assert [m for m in _imported_modules(tree) if m.split(".")[0] == "fiftyone"] == ["fiftyone.core.labels"]


def _private_imports(tree):
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith(("ood_core", "operators"))):
            out += [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_no_module_imports_another_modules_private_names():
    offenders = [f"{rel}: {name}" for rel, tree in _modules() for name in _private_imports(tree)]
    assert offenders == []
    assert _private_imports(ast.parse("from .items import _flatten\n")) == ["_flatten"]


def _module_name(rel):
    name = rel[:-3].replace("/", ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def _import_graph(modules):
    """``{module: {modules it imports}}`` among ``modules`` (``{dotted name: (is a package, tree)}``), every import
    statement counted wherever it stands; ``from pkg import name`` is an import of ``pkg.name`` when that is one of
    the modules, else of ``pkg``."""
    graph = {}
    for name, (is_package, tree) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([node.module] if node.module else []))
                for alias in node.names:  # a module of the package, else a name the package (module) defines
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _circles(graph):
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_modules_import_each_other_in_a_circle():
    modules = {_module_name(rel): (rel.endswith("__init__.py"), tree) for rel, tree in _modules()}
    assert _circles(_import_graph(modules)) == []
    # the guard on made-up modules: a circle closed by an import inside a function is found
    made_up = {"p": (True, ast.parse("")),
               "p.a": (False, ast.parse("from .b import f\n")),
               "p.b": (False, ast.parse("def f():\n    from . import c\n")),
               "p.c": (False, ast.parse("def g():\n    from .a import h\n")),
               "p.d": (False, ast.parse("from .a import f\n"))}
    assert _circles(_import_graph(made_up)) == [["p.a", "p.b", "p.c"]]


def _unresolved_imports(files, local):
    """``(file, line, "module.name")`` of each ``from ood_core... import name`` (or ``from <local module> import
    name``, ``local`` being the folder's own scripts) in ``files`` that names nothing."""
    import importlib

    missing = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                continue
            top = node.module.split(".")[0]
            if top != "ood_core" and top not in local:
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name == "*" or hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ModuleNotFoundError:
                    missing.append((path.name, node.lineno, f"{node.module}.{alias.name}"))
    return missing


def test_every_name_imported_from_the_package_or_a_benchmark_exists(monkeypatch, tmp_path):
    bench = ROOT / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    scripts = sorted(bench.glob("*.py"))
    assert len(scripts) >= 20
    files = scripts + sorted((ROOT / "operators").rglob("*.py")) + sorted((ROOT / "tests").glob("*.py"))
    assert _unresolved_imports(files, {p.stem for p in scripts}) == []
    # the guard: a name that moved away is found, inside a function too
    stale = tmp_path / "stale.py"
    stale.write_text("def f():\n    from ood_core.fo.runs import no_such_name\n")
    assert _unresolved_imports([stale], set()) == [("stale.py", 2, "ood_core.fo.runs.no_such_name")]


def test_import_is_lazy_and_public_names_resolve():
    code = (
        "import sys, ood_core as ood\n"
        "heavy = [m for m in ('torch', 'fiftyone', 'timm', 'open_clip', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "missing = [n for n in ood.__all__ if not callable(getattr(ood, n))]\n"
        "assert not missing, missing\n"
        "print(len(ood.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 25
    with pytest.raises(AttributeError, match="no attribute 'compute_everything'"):
        import ood_core

        ood_core.compute_everything  # noqa: B018


def test_every_detector_declares_task_help_and_defaults():
    from ood_core.detectors import TASKS, detector_class, detector_names

    names = detector_names()
    assert {"knn", "mahalanobis", "lof", "class_lof", "label_agreement"} <= set(names)
    for name in names:
        cls = detector_class(name)
        assert cls.task in TASKS and cls.label and cls.summary, name
        assert cls.default_params(), name
        assert set(cls.default_params()) <= set(cls._param_names), name
    assert set(detector_names("label_issues")) >= {"class_lof", "label_agreement"}
    assert "knn" in detector_names("ood") and "label_agreement" not in detector_names("ood")


def test_run_kind_registry_drives_score_paths():
    from ood_core.errors import OODInputError
    from ood_core.fo import runs

    assert set(runs.score_kinds()) == {"ood_scores", "label_issues", "neglabel", "rap", "adaneg"}
    assert runs.score_kind("label_issues") == "label_issues" and runs.score_kind("ood") == "ood_scores"
    for name in runs.score_kinds():
        kind = runs.run_kind(name)
        assert kind.positive_class and len(kind.class_names) == 2
    assert runs.score_path({"kind": "ood_scores", "score_field": "s", "fields": ["s"]}) == "s"
    assert runs.score_path({"kind": "rap", "score_field": "s", "fields": ["s", "p"]}) == "s"
    assert runs.score_path({"kind": "ood_scores", "score_field": "s", "patches_field": "gt",
                            "fields": ["gt.detections.s"]}) == "gt.detections.s"
    assert runs.score_path({"kind": "embeddings", "fields": ["e"]}) is None
    with pytest.raises(OODInputError, match="unknown run kind 'scores'"):
        runs.run_kind("scores")
