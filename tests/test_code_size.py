"""Modules and functions stay small enough to read: no module in ``tuner/`` over 400 lines, no
function over 60 lines unless the line before its ``def`` (or its first decorator) says why
(``# long: <reason>``)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tuner"
MAX_MODULE = 400
MAX_FUNCTION = 60

#: Modules allowed past MAX_MODULE, each with why it is not split yet.
LONG_MODULES: dict[str, str] = {}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_no_module_is_too_long():
    long = {_name(p): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE}
    assert set(long) <= set(LONG_MODULES), f"modules over {MAX_MODULE} lines: {long}"


def test_the_allowed_long_modules_still_need_it():
    short = [name for name in LONG_MODULES if len((PACKAGE / name).read_text().splitlines()) <= MAX_MODULE]
    assert not short, f"no longer over {MAX_MODULE} lines, drop from LONG_MODULES: {short}"


def test_no_function_is_too_long_without_a_reason():
    long = []
    for path in _modules():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
            length = (node.end_lineno or node.lineno) - first + 1
            reason = lines[first - 2].strip() if first >= 2 else ""
            if length > MAX_FUNCTION and not reason.startswith("# long:"):
                long.append(f"{_name(path)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, f"functions over {MAX_FUNCTION} lines with no '# long: <reason>' above them: {long}"
