"""The house rules of docs/CONTRACTS.md, checked on the source: sizes, private names, facades.

The layers themselves are import-linter's (``make lint``). Known exceptions are listed here
with the reason; the lists may only shrink (a test fails when an exception is no longer
needed, so the list stays true).
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "perceptual_audio"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

#: Modules still over the limit, and why they are not split yet.
LONG_MODULES: dict[str, str] = {}
#: Functions still over the limit.
LONG_FUNCTIONS: dict[str, str] = {}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(p: Path) -> str:
    return p.relative_to(PACKAGE).as_posix()


def _long_functions() -> dict[str, int]:
    out = {}
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out[f"{_rel(p)}:{node.name}"] = n
    return out


def test_no_module_over_600_lines():
    long = {_rel(p): len(p.read_text().splitlines()) for p in _modules()}
    long = {k: n for k, n in long.items() if n > MAX_MODULE_LINES}
    assert set(long) - set(LONG_MODULES) == set(), f"modules over {MAX_MODULE_LINES} lines: {long}"
    assert set(LONG_MODULES) - set(long) == set(), "split: remove from LONG_MODULES"


def test_no_function_over_80_lines():
    long = _long_functions()
    assert set(long) - set(LONG_FUNCTIONS) == set(), (
        f"functions over {MAX_FUNCTION_LINES} lines: "
        f"{ {k: v for k, v in long.items() if k not in LONG_FUNCTIONS} }"
    )
    assert set(LONG_FUNCTIONS) - set(long) == set(), "split: remove from LONG_FUNCTIONS"


def test_no_module_imports_another_modules_private_name():
    crossing = []
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "perceptual_audio"
            ):
                crossing += [
                    f"{_rel(p)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert crossing == []


def test_facades_export_public_names_only():
    private = []
    for p in PACKAGE.rglob("__init__.py"):
        for node in ast.parse(p.read_text()).body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                private += [
                    f"{_rel(p)}: {e.value}"
                    for e in node.value.elts  # type: ignore[attr-defined]
                    if isinstance(e, ast.Constant) and str(e.value).startswith("_")
                ]
    assert private == []


def test_every_function_level_import_says_why_it_is_deferred():
    """A function-level import only defers a heavy or optional package, with the reason in a
    comment on the statement or the line above; anything else belongs at the top."""
    silent = []
    for p in _modules():
        src = p.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(src))):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    text = "\n".join(src[node.lineno - 2 : node.end_lineno])
                    if "#" not in text:
                        silent.append(f"{_rel(p)}:{node.lineno}: {src[node.lineno - 1].strip()}")
    assert silent == [], "function-level imports without a reason:\n" + "\n".join(silent)
