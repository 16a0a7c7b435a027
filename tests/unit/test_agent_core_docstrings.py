"""Every public class and function of agent_core says in its docstring what it is."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "agent_core"


def _undocumented(tree: ast.AST, prefix: str = "") -> list[str]:
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        ) and not node.name.startswith("_"):
            if ast.get_docstring(node) is None:
                found.append(f"{prefix}{node.name}")
            if isinstance(node, ast.ClassDef):
                found += _undocumented(node, f"{prefix}{node.name}.")
    return found


def test_public_names_have_a_docstring() -> None:
    missing = {
        str(path.relative_to(PACKAGE.parent)): names
        for path in sorted(PACKAGE.rglob("*.py"))
        if (names := _undocumented(ast.parse(path.read_text())))
    }
    assert missing == {}


def test_the_check_sees_a_missing_docstring() -> None:
    tree = ast.parse(
        'class A:\n    """Documented."""\n    def b(self): ...\n    def _c(self): ...\ndef d(): ...\n'
    )
    assert _undocumented(tree) == ["A.b", "d"]
