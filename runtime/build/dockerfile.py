"""The Dockerfile's line syntax: directives, comments, continuations, heredocs (buildkit's parser).

This layer only cuts the text into :class:`Node` s (one per instruction, with
its flags, argument text and heredoc bodies); :mod:`.instructions` gives each
keyword its meaning. Every error names the line it was found on, in docker's
words: ``dockerfile parse error on line 3: unknown instruction: FOO``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.api.errors import InvalidArgument

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"(?<![<\w])<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
HEREDOC_KEYWORDS = frozenset({"RUN", "COPY", "ADD"})
FLAG_KEYWORDS = frozenset({"FROM", "RUN", "COPY", "ADD", "HEALTHCHECK"})


class ParseError(InvalidArgument):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"dockerfile parse error on line {line}: {message}")
        self.line = line


@dataclass(frozen=True, slots=True)
class Heredoc:
    name: str
    content: str  # every line with its "\n"
    expand: bool  # the delimiter was unquoted: variables are substituted
    chomp: bool  # "<<-": leading tabs removed


@dataclass(frozen=True, slots=True)
class Node:
    keyword: str  # upper case
    flags: tuple[str, ...]  # "--name=value" words in front of the arguments
    rest: str  # the argument text, continuations joined
    original: str  # the instruction as docker prints it in "Step N/M : ..."
    line: int
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, slots=True)
class Dockerfile:
    nodes: tuple[Node, ...]
    escape: str = "\\"


def parse(text: str) -> Dockerfile:
    lines = text.removeprefix("\ufeff").split("\n")
    lines = [line.removesuffix("\r") for line in lines]
    escape, start = _directives(lines)
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")
    nodes: list[Node] = []
    i = start
    while i < len(lines):
        first = i
        line = lines[i].lstrip()
        i += 1
        if not line or line.startswith("#"):
            continue
        logical, ended = _trim_continuation(line, continuation)
        while not ended and i < len(lines):
            nxt = lines[i]
            i += 1
            stripped = nxt.strip()
            if stripped.startswith("#") or not stripped:
                continue  # comments and blank lines inside a continuation vanish
            part, ended = _trim_continuation(nxt, continuation)
            logical += part
        node, i = _node(logical, first + 1, lines, i, escape)
        nodes.append(node)
    return Dockerfile(tuple(nodes), escape)


def _directives(lines: list[str]) -> tuple[str, int]:
    """Parser directives (``# escape=`` and the ignored ``# syntax=``) at the very top."""
    escape = "\\"
    seen: set[str] = set()
    for n, line in enumerate(lines):
        m = _DIRECTIVE.match(line.strip())
        if not m:
            return escape, n
        name, value = m.group(1).lower(), m.group(2)
        if name in seen:
            raise ParseError(n + 1, f"only one {name} parser directive can be used")
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise ParseError(n + 1, f"invalid escape token '{value}' does not match ` or \\")
            escape = value
        # syntax=, check= and unknown directives are accepted and ignored (docker does).
    return escape, len(lines)


def _trim_continuation(line: str, rx: re.Pattern[str]) -> tuple[str, bool]:
    m = rx.search(line)
    if m is None:
        return line, True
    return line[: m.start()], False


def _node(logical: str, lineno: int, lines: list[str], i: int, escape: str) -> tuple[Node, int]:
    keyword, _, rest = logical.strip().partition(" ")
    if "\t" in keyword:
        keyword, _, more = keyword.partition("\t")
        rest = more + " " + rest
    upper = keyword.upper()
    rest = rest.strip()
    flags: tuple[str, ...] = ()
    if upper in FLAG_KEYWORDS:
        flags, rest = _split_flags(rest, escape)
    heredocs: list[Heredoc] = []
    if upper in HEREDOC_KEYWORDS:
        for m in _HEREDOC.finditer(rest):
            doc, i = _read_heredoc(m, lines, i, lineno)
            heredocs.append(doc)
    return Node(upper, flags, rest, logical.strip(), lineno, tuple(heredocs)), i


def _split_flags(rest: str, escape: str) -> tuple[tuple[str, ...], str]:
    """Leading ``--flag[=value]`` words; the rest is the argument text."""
    flags: list[str] = []
    while rest.startswith("--"):
        m = re.match(r"(\S+)(\s+|$)", rest)
        if m is None:  # pragma: no cover - startswith guarantees a match
            break
        word = m.group(1)
        if word == "--":
            rest = rest[m.end():]
            break
        flags.append(word)
        rest = rest[m.end():]
    return tuple(flags), rest


def _read_heredoc(m: re.Match[str], lines: list[str], i: int, lineno: int) -> tuple[Heredoc, int]:
    chomp, quote, name = m.group(1) == "-", m.group(2), m.group(3)
    body: list[str] = []
    while i < len(lines):
        line = lines[i]
        i += 1
        check = line.lstrip("\t") if chomp else line
        if check == name:
            content = "".join(x + "\n" for x in body)
            return Heredoc(name, content, expand=not quote, chomp=chomp), i
        body.append(line.lstrip("\t") if chomp else line)
    raise ParseError(lineno, f"unterminated heredoc {name}")


def flag_map(node: Node, allowed: dict[str, bool]) -> dict[str, list[str]]:
    """A node's flags by name; *allowed* maps names to whether they take a value.

    Unknown flags fail the way docker reports them (``unknown flag: foo``).
    """
    out: dict[str, list[str]] = {}
    for word in node.flags:
        name, eq, value = word[2:].partition("=")
        if name not in allowed:
            raise ParseError(node.line, f"unknown flag: {name}")
        if allowed[name] and not eq:
            raise ParseError(node.line, f"missing a value on flag: {name}")
        if not allowed[name] and not eq:
            value = "true"
        out.setdefault(name, []).append(value)
    return out
