"""The package's imports go one way: each layer imports only the layers below it, and no module
imports itself back through others. Read from the source, so a new import is checked at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seedzoo"

# Lowest first. A module may import its own layer and the layers before it.
LAYERS = [
    ("core", ["seedzoo.errors", "seedzoo.files", "seedzoo.provenance", "seedzoo.results",
              "seedzoo.devices"]),
    # The study report reads JSON and draws with matplotlib: core alone below it, no torch.
    ("report", ["seedzoo.report"]),
    ("data", ["seedzoo.data"]),
    ("zoo", ["seedzoo.zoo"]),
    ("deploy", ["seedzoo.deploy"]),
    ("evaluation", ["seedzoo.evaluation"]),
    ("training", ["seedzoo.training"]),
    ("cli", ["seedzoo.cli", "seedzoo.__main__"]),
    ("facade", ["seedzoo"]),
]
# Where seedzoo imports may sit inside functions: the CLI defers them so `seedzoo --help` does
# not import torch; the facade resolves its one-liners on first use.
DEFERRED_IMPORTS_ALLOWED = ("seedzoo.cli", "seedzoo")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """Index of the layer of ``module``: the longest matching prefix wins."""
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS"
    return best


def resolve(name: str) -> str:
    """The seedzoo module an import names (``from seedzoo.training import distributed`` names
    the module ``seedzoo.training.distributed``; ``from seedzoo.zoo import load`` the package)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def seedzoo_imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at module level)`` for every seedzoo import in ``path``."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == "seedzoo" or name.startswith("seedzoo."):
                found.append((resolve(name), node.lineno, id(node) in top_level))
    return found


GRAPH = {module: seedzoo_imports(path) for module, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_no_higher_layer(module):
    own = layer_of(module)
    upward = [f"{target} (line {line}, layer {LAYERS[layer_of(target)][0]})"
              for target, line, _ in GRAPH[module] if layer_of(target) > own]
    assert not upward, f"{module} (layer {LAYERS[own][0]}) imports upward: {upward}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_seedzoo_imports_sit_at_the_top_of_the_module(module):
    if module.startswith(DEFERRED_IMPORTS_ALLOWED[0]) or module == DEFERRED_IMPORTS_ALLOWED[1]:
        return
    deferred = [f"{target} (line {line})" for target, line, top in GRAPH[module] if not top]
    assert not deferred, f"{module} imports seedzoo modules inside functions: {deferred}"


def test_the_import_graph_has_no_cycle():
    state: dict[str, str] = {}  # module -> "open" while on the path, "done" after

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target, _, _ in GRAPH[module]:
            if target == module:
                continue
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])


def test_the_layer_test_notices_an_upward_import_and_a_cycle(tmp_path):
    """The checks above would fail on a bad import (so they are not vacuous)."""
    assert layer_of("seedzoo.zoo.card") < layer_of("seedzoo.evaluation.features")
    assert layer_of("seedzoo.results") == 0 and layer_of("seedzoo.cli.train") == 7
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef f():\n    from seedzoo.training import trainer\n")
    assert seedzoo_imports(bad) == [("seedzoo.training.trainer", 4, False)]
