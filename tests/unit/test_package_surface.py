"""Each package says what it is for and what it offers, and keeps its underscore names to
itself (issue 24): a newcomer reads ``__init__`` to find a package's entry points."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import ray_mlops

ROOT = Path(ray_mlops.__file__).parent
PACKAGES = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))


def test_every_package_has_a_docstring_and_a_public_surface_that_resolves() -> None:
    assert {"data", "evaluate", "models", "registry", "reports", "serve", "train"} <= set(PACKAGES)
    for name in PACKAGES:
        package = importlib.import_module(f"ray_mlops.{name}")
        assert (package.__doc__ or "").strip(), f"ray_mlops.{name} has no docstring"
        public = getattr(package, "__all__", None)
        assert public, f"ray_mlops.{name} has no __all__"
        missing = [n for n in public if not hasattr(package, n)]
        assert not missing, f"ray_mlops.{name}.__all__ names what it lacks: {missing}"


def test_no_underscore_name_is_imported_from_another_package() -> None:
    crossing = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        home = parts[0] if len(parts) > 1 else None
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module):
                continue
            module = node.module.split(".")
            if module[0] != "ray_mlops" or len(module) < 3 or module[1] == home:
                continue
            private = [a.name for a in node.names if a.name.startswith("_")]
            private += [m for m in module[2:] if m.startswith("_")]
            if private:
                crossing.append(f"{path.relative_to(ROOT)}: {node.module} {private}")
    assert not crossing, crossing
