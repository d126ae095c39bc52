"""Packages import only downwards: a package never imports one above it in LAYERS.

Parses every module's imports with ``ast`` (lazy imports inside functions included), so a new
upward import fails here before it grows into a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import avatarpose_ns

ROOT = Path(avatarpose_ns.__file__).parent

# lowest first; a package may import its own layer and the ones below it
LAYERS: tuple[tuple[str, ...], ...] = (
    ("body", "io"),
    ("scene",),
    ("fitting", "eval", "synth"),
    ("models", "dataparsers"),
    ("datamanagers", "viewer"),
    ("pipelines", "engine", "export", "method_configs"),
)
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}

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


def test_the_check_sees_an_upward_import(tmp_path):
    """The parser must find from-imports, lazy imports and relative ones, or the test above passes vacuously."""
    fake = tmp_path / "probe.py"
    fake.write_text("import numpy\n\ndef f():\n    from avatarpose_ns.pipelines import x\n"
                    "    from ..export.poses import y\n")
    found = _imports(fake, "avatarpose_ns.models.probe")
    assert {"avatarpose_ns.pipelines", "avatarpose_ns.export.poses"} <= found
