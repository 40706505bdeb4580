"""Variable substitution and word splitting with buildkit's rules."""

from __future__ import annotations

import pytest

from runtime.api.errors import InvalidArgument
from runtime.build.shell import expand, expand_words, split_words, substitute

ENV = {"A": "hello world", "E": "", "P": "/usr/local/bin"}


@pytest.mark.parametrize(("word", "expected"), [
    ("$A", "hello world"), ("${A}", "hello world"), ("x${A}y", "xhello worldy"),
    ("${B:-def}", "def"), ("${E:-def}", "def"), ("${E-def}", ""), ("${B-def}", "def"),
    ("${A:+alt}", "alt"), ("${E:+alt}", ""), ("${E+alt}", "alt"), ("${B+alt}", ""),
    ("'$A'", "$A"), ('"$A!"', "hello world!"), ("\\$A", "$A"), ('"\\$A"', "$A"),
    ('"a\\b"', "a\\b"), ("a\\ b", "a b"), ("$", "$"), ("$1x", "$1x"),
    ("${P#*/}", "usr/local/bin"), ("${P##*/}", "bin"), ("${P%/*}", "/usr/local"),
    ("${P%%/*}", ""), ('${B:-"x y"}', "x y"), ("${B:-$A}", "hello world"),
    # buildkit's ${V/p/r} and ${V//p/r} (moby 28's classic builder has them)
    ("${P/local/L}", "/usr/L/bin"), ("${P//\\//:}", ":usr:local:bin"), ("${P/o*/X}", "/usr/lX"),
    ("${P//?/.}", ".............."), ("${P/nomatch/X}", "/usr/local/bin"), ("${B/a/b}", ""),
    ("${A/ /_$E}", "hello_world"), ("${P/\\*/X}", "/usr/local/bin"),
])
def test_expand(word: str, expected: str) -> None:
    assert expand(word, ENV) == expected


def test_errors() -> None:
    with pytest.raises(InvalidArgument, match="B: must be set"):
        expand("${B:?must be set}", ENV)
    with pytest.raises(InvalidArgument, match="missing '}'"):
        expand("${A", ENV)
    with pytest.raises(InvalidArgument, match="matching '"):
        expand("'abc", ENV)
    with pytest.raises(InvalidArgument, match="missing '/' in"):
        expand("${P/usr}", ENV)
    with pytest.raises(InvalidArgument, match="invalid escape"):
        expand("${P/\\a/b}", ENV)


def test_backtick_escape() -> None:
    assert expand("a` b`$A", ENV, "`") == "a b$A"


def test_words() -> None:
    assert split_words("a \"b c\"  d\\ e 'f g'") == ["a", '"b c"', "d\\ e", "'f g'"]
    assert expand_words('$A "x y" z', ENV) == ["hello", "world", "x y", "z"]
    assert expand_words('""', ENV) == [""]


def test_substitute_keeps_quotes() -> None:
    assert substitute("say \"$A\" '${E:-e}' \\$A\n", ENV) == "say \"hello world\" 'e' $A\n"
