""".dockerignore patterns with moby's semantics (github.com/moby/patternmatcher), stdlib only.

Used on both sides of ``build``: the CLI to leave files out of the context
tar, the engine to honour the file for clients that send everything.

Rules (as docker's):

- one pattern per line; lines starting with ``#`` are comments; blank lines skip;
- a leading ``!`` makes an exception (re-includes what earlier lines excluded);
- patterns are cleaned like Go's ``filepath.Clean`` and a leading ``/`` dropped;
- ``*`` and ``?`` never match ``/``; ``**`` matches any number of directories;
  ``[...]`` classes and ``\\`` escapes are Go's ``filepath.Match`` syntax;
- a pattern that matches a directory excludes everything below it;
- the last matching line wins.

:func:`go_match` is Go's ``filepath.Match`` itself, which COPY/ADD source
globs use.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Matcher", "Pattern", "clean", "go_match", "parse", "read_file"]


def clean(path: str) -> str:
    """Go's ``path.Clean`` (``posixpath.normpath`` keeps a leading ``//``; Go does not)."""
    out = posixpath.normpath(path) if path else "."
    if out.startswith("//"):
        out = "/" + out.lstrip("/")
    return out


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str  # cleaned, without the leading "!"
    exclusion: bool  # a "!" line: re-includes
    regex: re.Pattern[str]

    def matches(self, path: str) -> bool:
        return self.regex.match(path) is not None


def _compile(pattern: str) -> re.Pattern[str]:
    """moby patternmatcher's translation of a pattern into an anchored regex."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1  # "**/" behaves like "**"
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append(r"\\")
        elif ch == "[":
            end = _class_end(pattern, i)
            if end < 0:
                out.append(r"\[")
            else:
                out.append(_class(pattern[i:end]))
                i = end + 1
        else:
            out.append(re.escape(ch))
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


def _class_end(pattern: str, start: int) -> int:
    """Index of the ``]`` closing a class opened just before *start*, or -1."""
    i = start
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1  # a leading "]" is literal
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "]":
            return i
        i += 1
    return -1


def _class(body: str) -> str:
    negate = body.startswith("^")
    if negate:
        body = body[1:]
    parts, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            parts.append(re.escape(body[i + 1]))
            i += 2
            continue
        parts.append("-" if ch == "-" else re.escape(ch))
        i += 1
    inner = "".join(parts)
    # A class never matches the separator (Go's filepath.Match).
    return f"[^/{inner}]" if negate else f"(?!/)[{inner}]"


def parse(lines: Iterable[str]) -> list[Pattern]:
    """The patterns of a .dockerignore file's lines (moby's ``ignorefile.ReadAll``)."""
    out: list[Pattern] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
            if not line:
                continue
        text = clean(line)
        if len(text) > 1 and text.startswith("/"):
            text = text[1:]
        out.append(Pattern(text, exclusion, _compile(text)))
    return out


def read_file(path: Path) -> list[Pattern]:
    """Patterns from the file at *path*; none when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return parse(f)
    except FileNotFoundError:
        return []


class Matcher:
    """Decides which context paths a list of patterns excludes."""

    def __init__(self, patterns: Iterable[Pattern] | Iterable[str]) -> None:
        items = list(patterns)
        self.patterns: list[Pattern] = (
            parse(str(p) for p in items) if items and isinstance(items[0], str)
            else [p for p in items if isinstance(p, Pattern)]
        )
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether the slash-separated relative *path* is left out (it or a parent matches)."""
        path = clean(path).lstrip("/")
        if path in (".", ""):
            return False
        parts = path.split("/")
        matched = False
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        for p in self.patterns:
            if p.exclusion != matched:
                continue  # cannot change the outcome
            # "foo" excludes "foo/bar": a pattern matching a parent covers its contents.
            if p.matches(path) or any(p.matches(parent) for parent in parents):
                matched = not p.exclusion
        return matched

    def may_reinclude_below(self, directory: str) -> bool:
        """Whether some exception could re-include a path under the excluded *directory*."""
        if not self.has_exclusions:
            return False
        prefix = clean(directory).lstrip("/") + "/"
        for p in self.patterns:
            if not p.exclusion:
                continue
            literal = re.split(r"[*?\[\\]", p.text, maxsplit=1)[0]
            if literal.startswith(prefix) or prefix.startswith(literal):
                return True
        return False

    def walk(self, root: Path) -> Iterator[str]:
        """Relative paths (files, links and directories, parents first) not excluded."""
        yield from self._walk(root, "")

    def _walk(self, root: Path, rel: str) -> Iterator[str]:
        directory = root / rel if rel else root
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except (NotADirectoryError, FileNotFoundError):
            return
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if self.excluded(path):
                if is_dir and self.may_reinclude_below(path):
                    yield from self._walk(root, path)
                continue
            yield path
            if is_dir:
                yield from self._walk(root, path)


def go_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match``: ``*``/``?`` stop at ``/``; ``**`` is just ``*`` here."""
    try:
        return _go_regex(pattern).match(name) is not None
    except re.error:
        return False


_GO_CACHE: dict[str, re.Pattern[str]] = {}


def _go_regex(pattern: str) -> re.Pattern[str]:
    rx = _GO_CACHE.get(pattern)
    if rx is None:
        out, i, n = ["^"], 0, len(pattern)
        while i < n:
            ch = pattern[i]
            i += 1
            if ch == "*":
                out.append("[^/]*")
            elif ch == "?":
                out.append("[^/]")
            elif ch == "\\" and i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            elif ch == "[":
                end = _class_end(pattern, i)
                if end < 0:
                    raise re.error("syntax error in pattern")
                out.append(_class(pattern[i:end]))
                i = end + 1
            else:
                out.append(re.escape(ch))
        out.append("$")
        rx = _GO_CACHE[pattern] = re.compile("".join(out), re.DOTALL)
    return rx


def has_magic(pattern: str) -> bool:
    """Whether *pattern* has glob metacharacters (moby's ``containsWildcards``)."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] in "*?[":
            return True
        i += 1
    return False
