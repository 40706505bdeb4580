"""Typed Dockerfile instructions and stages, from the parser's :class:`Node` s.

Arguments are kept as written (quotes included): substitution depends on ARG
and ENV values known only while building, so :mod:`.builder` expands them.
Structural errors (unknown instruction or flag, missing arguments, instructions
before FROM) are found here, before anything runs, as docker does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from runtime.build.dockerfile import Dockerfile, Heredoc, Node, ParseError, flag_map, parse
from runtime.build.shell import split_words


@dataclass(frozen=True, slots=True)
class Command:
    """RUN / CMD / ENTRYPOINT / HEALTHCHECK CMD argument: exec (JSON) or shell form."""

    args: tuple[str, ...]  # JSON form: the argv; shell form: one string
    shell: bool


@dataclass(frozen=True, slots=True)
class From:
    node: Node
    image: str
    name: str
    platform: str


@dataclass(frozen=True, slots=True)
class Run:
    node: Node
    command: Command
    network: str
    heredocs: tuple[Heredoc, ...]


@dataclass(frozen=True, slots=True)
class Copy:
    node: Node
    sources: tuple[str, ...]
    dest: str
    source_stage: str  # --from
    chown: str
    chmod: str
    heredocs: tuple[Heredoc, ...]
    is_add: bool
    checksum: str = ""
    buildkit_only: str = ""  # the first flag the classic builder refuses (exclude, parents)


@dataclass(frozen=True, slots=True)
class KeyValues:
    """ENV and LABEL: ``k=v`` pairs (or docker's legacy ``ENV k v``), still quoted."""

    node: Node
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Arg:
    node: Node
    pairs: tuple[tuple[str, str | None], ...]  # name, default (None: no default)


@dataclass(frozen=True, slots=True)
class Words:
    """EXPOSE, VOLUME: a list of words (VOLUME may be JSON)."""

    node: Node
    words: tuple[str, ...]
    json_form: bool = False


@dataclass(frozen=True, slots=True)
class Value:
    """WORKDIR, USER, STOPSIGNAL, MAINTAINER: one string."""

    node: Node
    value: str


@dataclass(frozen=True, slots=True)
class CommandInstr:
    """CMD, ENTRYPOINT, SHELL."""

    node: Node
    command: Command


@dataclass(frozen=True, slots=True)
class Healthcheck:
    node: Node
    test: tuple[str, ...]  # ("NONE",), ("CMD", ...) or ("CMD-SHELL", cmd)
    options: tuple[tuple[str, str], ...]  # interval, timeout, start-period, ... as written


@dataclass(frozen=True, slots=True)
class OnBuild:
    node: Node
    expression: str  # the trigger instruction's text


Instruction = Run | Copy | KeyValues | Arg | Words | Value | CommandInstr | Healthcheck | OnBuild


@dataclass(frozen=True, slots=True)
class Stage:
    index: int
    source: From
    instructions: tuple[Instruction, ...]

    @property
    def name(self) -> str:
        return self.source.name


@dataclass(frozen=True, slots=True)
class Parsed:
    global_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    escape: str

    def stage_index(self, name: str) -> int | None:
        """The stage named (case-insensitively) or numbered *name*, or None."""
        lowered = name.lower()
        for stage in self.stages:
            if stage.name and stage.name == lowered:
                return stage.index
        if name.isdigit() and int(name) < len(self.stages):
            return int(name)
        return None


def parse_dockerfile(text: str) -> Parsed:
    df: Dockerfile = parse(text)
    if not df.nodes:
        raise ParseError(1, "file with no instructions")
    global_args: list[Arg] = []
    stages: list[Stage] = []
    current: tuple[From, list[Instruction]] | None = None
    for node in df.nodes:
        if node.keyword == "FROM":
            if current is not None:
                stages.append(Stage(len(stages), current[0], tuple(current[1])))
            current = (_from(node), [])
            continue
        instr = instruction(node, df.escape)
        if current is None:
            if not isinstance(instr, Arg):
                raise ParseError(node.line, "no build stage in current context")
            global_args.append(instr)
        else:
            current[1].append(instr)
    if current is None:
        raise ParseError(df.nodes[-1].line, "no build stage in current context")
    stages.append(Stage(len(stages), current[0], tuple(current[1])))
    _check_names(stages)
    return Parsed(tuple(global_args), tuple(stages), df.escape)


def _check_names(stages: list[Stage]) -> None:
    seen: set[str] = set()
    for stage in stages:
        if stage.name in seen:
            raise ParseError(stage.source.node.line, f"duplicate stage name {stage.name!r}")
        if stage.name:
            seen.add(stage.name)


def _from(node: Node) -> From:
    flags = flag_map(node, {"platform": True})
    words = split_words(node.rest)
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
    elif len(words) == 1:
        name = ""
    else:
        raise ParseError(node.line, "FROM requires either one or three arguments")
    return From(node, words[0], name, (flags.get("platform") or [""])[-1])


def instruction(node: Node, escape: str) -> Instruction:
    """The typed instruction for one node (never FROM)."""
    parser = _PARSERS.get(node.keyword)
    if parser is None:
        raise ParseError(node.line, f"unknown instruction: {node.keyword}")
    if node.keyword not in ("RUN", "COPY", "ADD", "HEALTHCHECK") and node.flags:
        raise ParseError(node.line, f"unknown flag: {node.flags[0][2:].partition('=')[0]}")
    if not node.rest and node.keyword not in ("CMD", "ENTRYPOINT", "RUN"):
        raise ParseError(node.line, f"{node.keyword} requires at least one argument")
    return parser(node, escape)


def _json_args(rest: str) -> tuple[str, ...] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _command(rest: str) -> Command:
    argv = _json_args(rest)
    return Command(argv, False) if argv is not None else Command((rest,), True)


def _run(node: Node, escape: str) -> Run:
    flags = flag_map(node, {"network": True, "mount": True, "security": True})
    for name in ("mount", "security"):
        if name in flags:
            raise ParseError(node.line, f"the --{name} option requires BuildKit. Refer to "
                             "https://docs.docker.com/go/buildkit/ to learn how to build images "
                             "with BuildKit enabled")
    if not node.rest:
        raise ParseError(node.line, "RUN requires at least one argument")
    return Run(node, _command(node.rest), (flags.get("network") or [""])[-1], node.heredocs)


_COPY_FLAGS = {"from": True, "chown": True, "chmod": True, "link": False, "parents": False,
               "exclude": True}
_BUILDKIT_ONLY = ("exclude", "parents")
_ADD_FLAGS = {"chown": True, "chmod": True, "link": False, "checksum": True,
              "keep-git-dir": False, "exclude": True}


def _copy(node: Node, escape: str) -> Copy:
    is_add = node.keyword == "ADD"
    flags = flag_map(node, _ADD_FLAGS if is_add else _COPY_FLAGS)
    words = _json_args(node.rest)
    args = list(words) if words is not None else split_words(node.rest, escape)
    if len(args) < 2:
        raise ParseError(node.line, f"{node.keyword} requires at least two arguments, but only "
                         "one was provided. Destination could not be determined.")

    def last(name: str) -> str:
        return (flags.get(name) or [""])[-1]

    # Parsed (so the error names the flag, after the steps before it ran, as moby's dispatcher
    # reports it) but refused when dispatched; --link only changes BuildKit's caching, so the
    # classic builder accepts and ignores it, as moby's does.
    refused = next((name for name in _BUILDKIT_ONLY if name in flags), "")
    return Copy(node, tuple(args[:-1]), args[-1], last("from"), last("chown"), last("chmod"),
                node.heredocs, is_add, last("checksum"), refused)


def _key_values(node: Node, escape: str) -> KeyValues:
    words = split_words(node.rest, escape)
    if "=" not in words[0]:
        # Legacy "ENV key value with spaces": the rest of the line is the value.
        if len(words) < 2:
            raise ParseError(node.line, f"{node.keyword} must have two arguments")
        return KeyValues(node, ((words[0], node.rest[len(words[0]):].strip()),))
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise ParseError(node.line, f"Syntax error - can't find = in \"{word}\". Must be "
                             "of the form: name=value")
        if not key:
            raise ParseError(node.line, f"{node.keyword} names can not be blank")
        pairs.append((key, value))
    return KeyValues(node, tuple(pairs))


def _arg(node: Node, escape: str) -> Arg:
    pairs: list[tuple[str, str | None]] = []
    for word in split_words(node.rest, escape):
        key, eq, value = word.partition("=")
        if not key:
            raise ParseError(node.line, "ARG names can not be blank")
        pairs.append((key, value if eq else None))
    return Arg(node, tuple(pairs))


def _words(node: Node, escape: str) -> Words:
    if node.keyword == "VOLUME":
        argv = _json_args(node.rest)
        if argv is not None:
            return Words(node, argv, json_form=True)
    return Words(node, tuple(split_words(node.rest, escape)))


def _value(node: Node, escape: str) -> Value:
    return Value(node, node.rest.strip())


def _command_instr(node: Node, escape: str) -> CommandInstr:
    if node.keyword == "SHELL":
        argv = _json_args(node.rest)
        if argv is None:
            raise ParseError(node.line, "SHELL requires the arguments to be in JSON form")
        if not argv:
            raise ParseError(node.line, "SHELL requires at least one argument")
        return CommandInstr(node, Command(argv, False))
    return CommandInstr(node, _command(node.rest))


_HEALTH_FLAGS = {"interval": True, "timeout": True, "start-period": True,
                 "start-interval": True, "retries": True}


def _healthcheck(node: Node, escape: str) -> Healthcheck:
    flags = flag_map(node, _HEALTH_FLAGS)
    options = tuple((k, v[-1]) for k, v in flags.items())
    word, _, rest = node.rest.partition(" ")
    kind = word.upper()
    if kind == "NONE":
        if rest.strip() or options:
            raise ParseError(node.line, "HEALTHCHECK NONE takes no arguments")
        return Healthcheck(node, ("NONE",), ())
    if kind != "CMD":
        raise ParseError(node.line, f"Unknown type \"{word}\" in HEALTHCHECK (try CMD)")
    rest = rest.strip()
    if not rest:
        raise ParseError(node.line, "Missing command after HEALTHCHECK CMD")
    argv = _json_args(rest)
    test = ("CMD", *argv) if argv is not None else ("CMD-SHELL", rest)
    return Healthcheck(node, test, options)


def _onbuild(node: Node, escape: str) -> OnBuild:
    inner = parse(node.rest).nodes
    if len(inner) != 1:
        raise ParseError(node.line, "ONBUILD requires exactly one instruction")
    keyword = inner[0].keyword
    if keyword in ("ONBUILD", "FROM", "MAINTAINER"):
        raise ParseError(node.line, f"{keyword} isn't allowed as an ONBUILD trigger")
    instruction(Node(keyword, inner[0].flags, inner[0].rest, inner[0].original, node.line),
                escape)
    return OnBuild(node, node.rest.strip())


_PARSERS: dict[str, Callable[[Node, str], Instruction]] = {
    "RUN": _run, "COPY": _copy, "ADD": _copy, "ENV": _key_values, "LABEL": _key_values,
    "ARG": _arg, "EXPOSE": _words, "VOLUME": _words, "WORKDIR": _value, "USER": _value,
    "STOPSIGNAL": _value, "MAINTAINER": _value, "CMD": _command_instr,
    "ENTRYPOINT": _command_instr, "SHELL": _command_instr, "HEALTHCHECK": _healthcheck,
    "ONBUILD": _onbuild,
}
