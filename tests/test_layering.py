"""The import fence: client-side code never imports Linux-only code.

The CLI, the API client, the desktop and vmhost must import on macOS and
Windows, so at module level they may not import the engine side
(runtime.linux, runtime.engine, runtime.net, runtime.images) nor Linux-only
stdlib modules. Engine verbs of the CLI import the engine lazily, inside the
function that needs it. runtime.linux imports nothing outside runtime.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE_SIDE = ("runtime.linux", "runtime.engine", "runtime.net", "runtime.images")
LINUX_ONLY_STDLIB = ("fcntl", "termios", "pty", "resource", "grp", "pwd")
CLIENT_SIDE = ("runtime/api", "runtime/cli", "desktop", "vmhost")
# Modules a client-side module may import lazily only, from inside a function.
PLATFORM_GUARDED_OK = {"fcntl", "termios", "tty", "pty"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in tree.body:
        stmts: list[ast.stmt] = [node]
        if isinstance(node, ast.If | ast.Try):
            # "if sys.platform == ..." / "try: import fcntl" blocks are guarded on purpose.
            continue
        for stmt in stmts:
            if isinstance(stmt, ast.Import):
                found.extend((stmt.lineno, a.name) for a in stmt.names)
            elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
                found.append((stmt.lineno, stmt.module))
    return found


def _all_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_client_side_imports_no_engine_code_at_module_level() -> None:
    bad = []
    for folder in CLIENT_SIDE:
        for path in _files(folder):
            for line, name in _top_level_imports(path):
                if _under(name, ENGINE_SIDE) or name.split(".")[0] in LINUX_ONLY_STDLIB:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "client-side modules import Linux-only code:\n" + "\n".join(bad)


def test_runtime_api_is_stdlib_only() -> None:
    third_party = ("paramiko", "libvirt", "PySide6", "platformdirs")
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in _files("runtime/api")
        for line, name in _all_imports(p)
        if (_under(name, ("runtime",)) and not _under(name, ("runtime.api",)))
        or name.split(".")[0] in third_party
    ]
    assert not bad, "\n".join(bad)


def test_linux_package_imports_nothing_outside_runtime() -> None:
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in _files("runtime/linux")
        for line, name in _all_imports(p)
        if _under(name, ("vmhost", "guestagent", "desktop", "runtime.cli", "runtime.engine"))
    ]
    assert not bad, "\n".join(bad)


def test_pyside_only_through_desktop_qt() -> None:
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for folder in ("runtime", "vmhost", "guestagent", "desktop")
        for p in _files(folder)
        for line, name in _all_imports(p)
        if name.startswith("PySide6") and _module_name(p) != "desktop.qt"
    ]
    assert not bad, "\n".join(bad)


BLOCKER = """
import sys, importlib.abc
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError("Linux-only module imported on a non-Linux path: " + name)
        return None
sys.meta_path.insert(0, Block())
import importlib
for mod in {modules!r}:
    importlib.import_module(mod)
print("ok")
"""


def test_client_modules_import_with_linux_only_modules_blocked() -> None:
    modules = [
        _module_name(p)
        for folder in ("runtime/api", "runtime/cli")
        for p in _files(folder)
    ]
    blocked = [*ENGINE_SIDE, *LINUX_ONLY_STDLIB]
    code = BLOCKER.format(blocked=blocked, modules=modules)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
