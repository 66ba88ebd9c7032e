"""The package's arrows point one way (README "Layout"): checked on every module's imports.

reduction <- engine <- models <- run; data, tasks, metrics below run; analysis reads run folders
and never imports the engine, the models or the runner. Old module names left as aliases of moved
modules (``fastadasp._moved``) are not code and are skipped."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fastadasp"

# what each sub-package may import from the project (besides itself and fastadasp.errors)
ALLOWED = {
    "reduction": set(),
    "engine": {"reduction"},
    "data": set(),
    "metrics": set(),
    "tasks": {"data", "metrics"},
    "models": {"engine", "reduction", "data", "testing"},  # testing: the offline `tiny:` model source
    "analysis": {"reduction", "metrics"},  # metrics: per-sample statistics for intervals (issue 18)
    "testing": {"models", "data", "engine", "reduction"},
    "run": {"reduction", "engine", "models", "data", "tasks", "metrics", "analysis", "testing"},
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(("fastadasp", *(rel[:-1] if rel[-1] == "__init__" else rel)))
        out.append((name, path))
    return out


def _is_alias(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.module == "fastadasp._moved" for n in tree.body)


def _imports(name: str, path: Path, tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every import in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [a.name for a in node.names]))
    return found


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "fastadasp" else None


@pytest.mark.parametrize("name,path", _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_down_and_use_no_private_names(name, path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _subpackage(name)
    if _is_alias(tree) or own not in ALLOWED:
        return
    for module, names in _imports(name, path, tree):
        target = _subpackage(module)
        if target is None or target in (own, "errors", "_moved") or module == "fastadasp":
            continue
        assert target in ALLOWED[own], f"{name} imports {module}: {own} may not import {target}"
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{name} imports private {private} from another package ({module})"
