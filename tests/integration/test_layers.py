"""Packages import only downwards: a package never imports one above it in LAYERS, and one beside it
only as SIDEWAYS lists.

Parses every module's imports with ``ast`` (lazy imports inside functions included), so a new
upward import fails here before it grows into a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import avatarpose_ns

ROOT = Path(avatarpose_ns.__file__).parent

# lowest first; a package may import the layers below it (and its own as SIDEWAYS says)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("commands",),  # warnings filters and one-line errors, imported by every entry point
    ("body", "io"),
    ("scene",),
    ("fitting", "eval", "synth"),
    ("models", "dataparsers", "prepare"),
    ("datamanagers", "viewer"),
    ("pipelines", "engine", "export", "render", "method_configs"),
)
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}
# the only imports between packages of one layer (importer -> imported); any other sideways import fails,
# so that e.g. models and dataparsers stay independent and eval, fitting and synth cannot form a cycle
SIDEWAYS: dict[str, set[str]] = {"synth": {"eval", "fitting"}, "method_configs": {"engine", "pipelines"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str | None = None) -> set[str]:
    """Absolute names of the project modules ``path`` (the module named ``module``) imports."""
    package = (module or _module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "avatarpose_ns" and name != "avatarpose_ns"}


def _layer_of(module: str) -> str:
    return module.split(".")[1]


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_every_package_has_a_layer():
    packages = {_layer_of(_module_name(p)) for p in _modules() if _module_name(p) != "avatarpose_ns"}
    assert packages - LEVEL.keys() == set(), "place each new package in LAYERS"


def test_no_package_imports_one_above_it():
    upward = []
    for path in _modules():
        importer = _module_name(path)
        if importer == "avatarpose_ns":
            continue
        for imported in _imports(path):
            top = _layer_of(imported)
            if top in LEVEL and LEVEL[top] > LEVEL[_layer_of(importer)]:
                upward.append(f"{importer} -> {imported}")
    assert upward == [], "upward imports:\n" + "\n".join(sorted(set(upward)))


def _package_imports() -> dict[str, set[str]]:
    """package -> the other project packages it imports."""
    graph: dict[str, set[str]] = {}
    for path in _modules():
        importer = _module_name(path)
        if importer == "avatarpose_ns":
            continue
        graph.setdefault(_layer_of(importer), set()).update(
            _layer_of(imported) for imported in _imports(path) if _layer_of(imported) != _layer_of(importer))
    return graph


def test_packages_of_one_layer_import_each_other_only_as_listed():
    sideways = sorted(f"{importer} -> {imported}" for importer, imported_set in _package_imports().items()
                      for imported in imported_set
                      if LEVEL.get(imported) == LEVEL[importer] and imported not in SIDEWAYS.get(importer, set()))
    assert sideways == [], "imports within a layer not in SIDEWAYS:\n" + "\n".join(sideways)


def test_the_model_imports_only_the_lowest_packages():
    """models/ (the maths and the nerfstudio Model) builds on body, io and scene alone: metrics, exports,
    dataparsers and the viewer read the model, never the other way round."""
    assert _package_imports()["models"] <= {"body", "io", "scene"}


def test_the_check_sees_an_upward_import(tmp_path):
    """The parser must find from-imports, lazy imports and relative ones, or the test above passes vacuously."""
    fake = tmp_path / "probe.py"
    fake.write_text("import numpy\n\ndef f():\n    from avatarpose_ns.pipelines import x\n"
                    "    from ..export.poses import y\n")
    found = _imports(fake, "avatarpose_ns.models.probe")
    assert {"avatarpose_ns.pipelines", "avatarpose_ns.export.poses"} <= found
