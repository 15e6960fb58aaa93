"""Imports only go downward (shared/ARCHITECTURE.md); report/ never imports torch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "nnopt"
LAYERS = {
    "errors": 0, "registry": 0, "config": 0, "fileio": 0,
    "data": 1, "models": 1, "optim": 1,
    "train": 2,
    "search": 3, "compress": 3, "distributed": 3, "comparison": 3,
    "report": 4, "inference": 4,
    "cli": 5, "pipeline": 4, "api": 5, "__main__": 5, "__init__": 5,
}


def _unit(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


MODULES = sorted(SRC.rglob("*.py"))


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in MODULES}
    assert units <= set(LAYERS), f"add {sorted(units - set(LAYERS))} to LAYERS (and to docs/architecture.md)"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_downward(path):
    unit = _unit(path)
    layer = LAYERS[unit]
    for line, name in _imports(path):
        if name.split(".")[0] != "nnopt" or name == "nnopt":
            if unit == "report":
                assert name.split(".")[0] != "torch", f"{path}:{line}: report/ must not import torch"
            continue
        target = name.split(".")[1]
        if target == unit:
            continue
        assert target in LAYERS, f"{path}:{line}: unknown unit {target}"
        assert LAYERS[target] < layer or LAYERS[target] == layer == 0 or unit in ("cli", "api", "__main__", "__init__"), (
            f"{path}:{line}: {unit} (layer {layer}) imports {name} (layer {LAYERS[target]}); imports only go downward"
        )


def test_a_violation_is_caught(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from nnopt.train import fit\n")
    assert _imports(bad) == [(1, "nnopt.train")]
