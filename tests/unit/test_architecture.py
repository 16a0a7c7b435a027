"""The shape of the code: imports point down, no import cycles, modules stay small."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("foundation", "sandbox", "registry", "agent_core", "toolserver")
MAX_MODULE_LINES = 420  # "about 400": a module past this is two responsibilities
# Cycles that exist today (none left); a new one fails the test, and so does one that is gone but still
# listed (so this list only shrinks).
KNOWN_CYCLES: list[list[str]] = []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_packages_import_only_the_packages_below_them() -> None:
    # The contracts are in pyproject.toml: toolserver > agent_core > registry | sandbox > foundation (with the
    # known exceptions listed there by name: any other upward import fails).
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_the_layer_check_fails_on_an_upward_import(tmp_path: Path) -> None:
    # A contract the tree does break (the server imports foundation): the check must report it.
    config = tmp_path / "contracts.toml"
    config.write_text(
        "[tool.importlinter]\n"
        'root_packages = ["toolserver", "foundation"]\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "down"\ntype = "forbidden"\n'
        'source_modules = ["toolserver"]\nforbidden_modules = ["foundation"]\n'
    )
    assert lint_imports(config_filename=str(config), no_cache=True, no_logo=True) != 0


def test_no_import_cycles_even_through_function_level_imports() -> None:
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)
    edges = {module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    assert sorted(_cycles(edges)) == sorted(KNOWN_CYCLES)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_stay_small(package: str) -> None:
    too_big = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_big == {}
