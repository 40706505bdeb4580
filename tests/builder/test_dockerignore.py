""".dockerignore with moby's patternmatcher semantics, and Go's filepath.Match."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.api.dockerignore import Matcher, go_match, has_magic, parse

PATTERNS = """
# comment
*.log
!important.log
/build
**/*.tmp
docs/**
!docs/keep.md
  spaced.txt
sub/*/deep
[ab].c
"""


@pytest.mark.parametrize(("path", "excluded"), [
    ("a.log", True), ("important.log", False), ("x/a.log", False),
    ("build", True), ("build/x/y", True), ("a/build", False),
    ("c.tmp", True), ("a/b/c.tmp", True),
    ("docs/a", True), ("docs/x/y", True), ("docs/keep.md", False), ("docs", False),
    ("spaced.txt", True), ("sub/x/deep", True), ("sub/x/y/deep", False),
    ("sub/x/deep/file", True), ("a.c", True), ("c.c", False), ("src/x.py", False),
])
def test_matching(path: str, excluded: bool) -> None:
    assert Matcher(parse(PATTERNS.splitlines())).excluded(path) is excluded


def test_last_match_wins_and_reinclude_under_excluded_dir(tmp_path: Path) -> None:
    for rel in ("keep/a.txt", "keep/b.txt", "drop/x", "drop/sub/y", "top.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    m = Matcher(["drop", "!drop/sub/y", "keep/b.txt", "*.txt", "!top.txt"])
    assert sorted(m.walk(tmp_path)) == ["drop/sub/y", "keep", "keep/a.txt", "top.txt"]


def test_string_patterns_and_no_patterns() -> None:
    assert not Matcher([]).excluded("anything")
    assert Matcher(["/abs/path"]).excluded("abs/path/x")
    assert Matcher(["./a/../b"]).excluded("b")


@pytest.mark.parametrize(("pattern", "name", "ok"), [
    ("*.txt", "a.txt", True), ("*.txt", "d/a.txt", False), ("d/*.txt", "d/a.txt", True),
    ("?.c", "a.c", True), ("?.c", "/.c", False), ("[a-c]x", "bx", True), ("[^a-c]x", "dx", True),
    ("[^a-c]x", "ax", False), ("\\*", "*", True), ("a*b", "a/b", False),
])
def test_go_match(pattern: str, name: str, ok: bool) -> None:
    assert go_match(pattern, name) is ok


def test_has_magic() -> None:
    assert has_magic("a*") and has_magic("[x]") and not has_magic("a\\*") and not has_magic("ab")
