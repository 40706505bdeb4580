"""Dockerfile word processing: quotes, escapes and ``$VAR`` substitution (buildkit's shell.Lex).

- ``split_words`` cuts an argument string into words at unquoted blanks and keeps
  the quotes (the parser's ``parseWords``); ``expand`` then removes them.
- Outside quotes the escape character takes the next character literally; inside
  double quotes it only escapes ``"``, ``$`` and itself; single quotes are literal.
- Substitution: ``$V``, ``${V}``, ``${V:-w}``, ``${V-w}``, ``${V:+w}``, ``${V+w}``,
  ``${V:?msg}``, ``${V?msg}``, ``${V#p}``, ``${V##p}``, ``${V%p}``, ``${V%%p}``,
  ``${V/p/r}`` and ``${V//p/r}`` (moby 28's classic builder vendors buildkit's lexer,
  which has them; dockerd 20.10's older lexer said "missing ':' in substitution").
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

from runtime.api.errors import InvalidArgument

_NAME_START = re.compile(r"[A-Za-z_]")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_]")


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Blank-separated words; quotes and escapes are kept for :func:`expand`."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if not quote and ch.isspace():
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
            continue
        in_word = True
        if ch == escape and i + 1 < len(text) and quote != "'":
            word.append(ch + text[i + 1])
            i += 2
            continue
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
        word.append(ch)
        i += 1
    if in_word:
        words.append("".join(word))
    return words


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    # Each piece is (text, splittable): only unquoted substitutions are field-split.
    # With *raw_escapes* an escaped character keeps its escape (buildkit's rawEscapes,
    # for patterns whose converter reads the escapes itself).
    def pieces(self, stop: str = "", raw_escapes: bool = False) -> list[tuple[str, bool]]:
        out: list[tuple[str, bool]] = []
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch in stop:
                break
            self.pos += 1
            if ch == self.escape:
                nxt = self.next()
                out.append(((ch + nxt) if raw_escapes and nxt else (nxt or ch), False))
            elif ch == "'":
                out.append((self._single_quoted(), False))
            elif ch == '"':
                out.append((self._double_quoted(), False))
            elif ch == "$":
                out.append((self._dollar(), True))
            else:
                out.append((ch, ch.isspace()))
        return out

    def _single_quoted(self) -> str:
        end = self.text.find("'", self.pos)
        if end < 0:
            raise InvalidArgument("unexpected end of statement while looking for matching '")
        value = self.text[self.pos : end]
        self.pos = end + 1
        return value

    def _double_quoted(self) -> str:
        out: list[str] = []
        while True:
            ch = self.next()
            if ch == "":
                raise InvalidArgument('unexpected end of statement while looking for matching "')
            if ch == '"':
                return "".join(out)
            if ch == self.escape and self.peek() in ('"', "$", self.escape):
                out.append(self.next())
            elif ch == "$":
                out.append(self._dollar())
            else:
                out.append(ch)

    def _dollar(self) -> str:
        ch = self.peek()
        if ch == "{":
            self.pos += 1
            return self._braced()
        if not ch or not _NAME_START.match(ch):
            return "$"
        start = self.pos
        while self.peek() and _NAME_CHAR.match(self.peek()):
            self.pos += 1
        return self.env.get(self.text[start : self.pos], "")

    def _braced(self) -> str:
        start = self.pos
        while self.peek() and _NAME_CHAR.match(self.peek()):
            self.pos += 1
        name = self.text[start : self.pos]
        if not name:
            raise InvalidArgument(f"failed to process {self.text!r}: missing ':' in substitution")
        op = self.next()
        if not op:
            raise InvalidArgument(f"failed to process {self.text!r}: syntax error: "
                                  "missing '}'")
        if op == "}":
            return self.env.get(name, "")
        if op == "/":
            return self._replace(name)
        if op == ":" or (op in "#%" and self.peek() == op):
            op += self.next()
        if op not in (":-", ":+", ":?", "-", "+", "?", "#", "##", "%", "%%"):
            raise InvalidArgument(f"failed to process {self.text!r}: unsupported modifier "
                                  f"({op}) in substitution")
        word = "".join(t for t, _ in self.pieces(stop="}"))
        if self.next() != "}":
            raise InvalidArgument(f"failed to process {self.text!r}: syntax error: "
                                  "missing '}'")
        return _modify(name, op, word, self.env)


    def _replace(self, name: str) -> str:
        """``${V/pattern/replacement}`` (first match) and ``${V//pattern/replacement}`` (all)."""
        replace_all = self.peek() == "/"
        if replace_all:
            self.pos += 1
        pattern = "".join(t for t, _ in self.pieces(stop="/", raw_escapes=True))
        if self.next() != "/":
            raise InvalidArgument(f"failed to process {self.text!r}: syntax error: missing '/' "
                                  "in ${}")
        replacement = "".join(t for t, _ in self.pieces(stop="}", raw_escapes=True))
        if self.next() != "}":
            raise InvalidArgument(f"failed to process {self.text!r}: syntax error: "
                                  "missing '}'")
        rx = _shell_pattern(pattern, self.text)
        value = self.env.get(name, "")
        if replace_all:
            return rx.sub(lambda m: _go_template(replacement), value)
        m = rx.search(value)
        return value if m is None else value[: m.start()] + replacement + value[m.end():]


def _shell_pattern(pattern: str, text: str) -> re.Pattern[str]:
    """buildkit's convertShellPatternToRegex (greedy, unanchored): ``*``, ``?`` and the
    escapes ``\\*``, ``\\?``, ``\\\\`` (``\\}`` and ``\\/`` are plain ``}`` and ``/``); no
    bracket expressions."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = pattern[i] if i < len(pattern) else ""
            if nxt in ("}", "/"):
                continue  # the next character is taken literally on the next turn
            if nxt not in ("*", "?", "\\"):
                raise InvalidArgument(f"failed to process {text!r}: invalid pattern ({pattern}) "
                                      f"in substitution: invalid escape '\\{nxt}'")
            out.append(re.escape(nxt))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


_GO_TEMPLATE = re.compile(r"\$(\$|\{[^}]*\}|[A-Za-z0-9_]+)")


def _go_template(replacement: str) -> str:
    """Go's ``Regexp.ReplaceAllString`` template: ``$$`` is ``$``; ``$1``/``${name}`` name
    groups, and buildkit's patterns have none, so they are empty."""
    return _GO_TEMPLATE.sub(lambda m: "$" if m.group(1) == "$" else "", replacement)


def _modify(name: str, op: str, word: str, env: Mapping[str, str]) -> str:
    value = env.get(name)
    if op == ":-":
        return value if value else word
    if op == "-":
        return value if value is not None else word
    if op == ":+":
        return word if value else ""
    if op == "+":
        return word if value is not None else ""
    if op in (":?", "?"):
        if value is None or (op == ":?" and not value):
            raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
        return value
    return _trim(value or "", op, word)


def _trim(value: str, op: str, pattern: str) -> str:
    rx = re.compile(fnmatch.translate(pattern))  # anchored at the end with \Z
    spans = range(len(value) + 1)
    if op in ("#", "##"):
        cuts = spans if op == "#" else reversed(spans)
        for n in cuts:
            if rx.match(value[:n]):
                return value[n:]
    else:
        cuts = reversed(spans) if op == "%" else spans
        for n in cuts:
            if rx.match(value[n:]):
                return value[:n]
    return value


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word: quotes removed, escapes applied, variables substituted (no splitting)."""
    return "".join(t for t, _ in _Lexer(word, env, escape).pieces())


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Words after substitution; unquoted substituted values are split at blanks."""
    words: list[str] = []
    current: list[str] = []
    started = False
    for piece, splittable in _Lexer(text, env, escape).pieces():
        if not splittable:
            current.append(piece)
            started = True
            continue
        for ch in piece:
            if ch.isspace():
                if started:
                    words.append("".join(current))
                    current, started = [], False
            else:
                current.append(ch)
                started = True
    if started:
        words.append("".join(current))
    return words


def substitute(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Variables only (heredoc bodies): quotes stay as written; ``\\$`` is a literal ``$``."""
    out: list[str] = []
    lexer = _Lexer(text, env, escape)
    while lexer.pos < len(text):
        ch = lexer.next()
        if ch == escape and lexer.peek() == "$":
            out.append(lexer.next())
        elif ch == "$":
            out.append(lexer._dollar())
        else:
            out.append(ch)
    return "".join(out)
