"""Instructions that only change the image config: ENV, LABEL, CMD, EXPOSE, HEALTHCHECK, ...

Each function takes the current config section and returns the new one plus
the text docker's classic builder records in the history
(``/bin/sh -c #(nop)  ENV A=1``). Values are substituted by the caller's
expander, so these stay pure and unit-testable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from runtime.api.errors import InvalidArgument
from runtime.build import instructions as ins

Section = dict[str, Any]
Expand = Callable[[str], str]
ExpandWords = Callable[[str], list[str]]
DEFAULT_SHELL = ("/bin/sh", "-c")


def nop(shell: list[str], text: str) -> str:
    """History text of a metadata step: ``/bin/sh -c #(nop)  <text>`` (two blanks, as moby)."""
    return " ".join([*shell, "#(nop) ", text])


def set_env(section: Section, key: str, value: str) -> None:
    env = [e for e in section.get("Env") or [] if e.partition("=")[0] != key]
    section["Env"] = [*env, f"{key}={value}"]


def env_map(section: Section) -> dict[str, str]:
    out = {}
    for item in section.get("Env") or []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def env(section: Section, instr: ins.KeyValues, expand: Expand) -> str:
    parts = []
    for key, raw in instr.pairs:
        value = expand(raw)
        set_env(section, expand(key), value)
        parts.append(f"{expand(key)}={value}")
    return "ENV " + " ".join(parts)


def label(section: Section, instr: ins.KeyValues, expand: Expand) -> str:
    labels = dict(section.get("Labels") or {})
    parts = []
    for key, raw in instr.pairs:
        k, v = expand(key), expand(raw)
        labels[k] = v
        parts.append(f"{k}={v}")
    section["Labels"] = labels
    return "LABEL " + " ".join(parts)


def command_argv(cmd: ins.Command, shell: list[str]) -> list[str]:
    return [*shell, cmd.args[0]] if cmd.shell else list(cmd.args)


def go_quote_list(argv: list[str]) -> str:
    """Go's ``%q`` of a string slice, as moby writes CMD/ENTRYPOINT into the history."""
    return "[" + " ".join(json.dumps(a) for a in argv) + "]"


def go_list(items: list[str]) -> str:
    """Go's ``%v`` of a string slice (SHELL and VOLUME history: ``[/bin/sh -c]``)."""
    return "[" + " ".join(items) + "]"


def cmd(section: Section, instr: ins.CommandInstr, shell: list[str]) -> str:
    argv = command_argv(instr.command, shell)
    section["Cmd"] = argv
    return "CMD " + go_quote_list(argv)


def entrypoint(section: Section, instr: ins.CommandInstr, shell: list[str],
               cmd_set: bool) -> str:
    argv = command_argv(instr.command, shell) if instr.command.args != ("",) else []
    section["Entrypoint"] = argv or None
    if not cmd_set:
        section["Cmd"] = None  # a new ENTRYPOINT drops the base image's CMD (docker)
    return "ENTRYPOINT " + go_quote_list(argv)


def shell_instr(section: Section, instr: ins.CommandInstr) -> str:
    section["Shell"] = list(instr.command.args)
    return "SHELL " + go_list(list(instr.command.args))


_PORT = re.compile(r"^(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?$", re.IGNORECASE)


def expose(section: Section, instr: ins.Words, expand_words: ExpandWords) -> str:
    ports = dict(section.get("ExposedPorts") or {})
    written = [item for word in instr.words for item in expand_words(word)]
    for item in written:
        m = _PORT.match(item)
        if m is None:
            raise InvalidArgument(f"invalid containerPort: {item}")
        low = int(m.group(1))
        high = int(m.group(2) or low)
        proto = (m.group(3) or "tcp").lower()
        for port in range(low, high + 1):
            ports[f"{port}/{proto}"] = {}
    section["ExposedPorts"] = ports
    return "EXPOSE " + " ".join(written)  # the ports as written (moby's history text)


def volume(section: Section, instr: ins.Words, expand: Expand) -> str:
    volumes = dict(section.get("Volumes") or {})
    paths = [expand(w) for w in instr.words]
    for path in paths:
        if not path.strip():
            raise InvalidArgument("VOLUME specified can not be an empty string")
        volumes[path] = {}
    section["Volumes"] = volumes
    return "VOLUME " + go_list(paths)


def simple(section: Section, key: str, keyword: str, value: str) -> str:
    section[key] = value
    return f"{keyword} {value}"


def workdir(section: Section, value: str) -> str:
    import posixpath

    if not value:
        raise InvalidArgument("WORKDIR requires exactly one argument")
    base = section.get("WorkingDir") or "/"
    path = posixpath.normpath(posixpath.join(base, value))
    section["WorkingDir"] = path
    return f"WORKDIR {path}"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` (the subset Dockerfiles use) in nanoseconds."""
    if text == "0":
        return 0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise InvalidArgument(f"time: invalid duration \"{text}\"")
    return int(total)


_HEALTH_KEYS = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
                "start-interval": "StartInterval"}


def healthcheck(section: Section, instr: ins.Healthcheck) -> str:
    if instr.test == ("NONE",):
        section["Healthcheck"] = {"Test": ["NONE"]}
        return "HEALTHCHECK NONE"
    health: dict[str, Any] = {"Test": list(instr.test)}
    for name, value in instr.options:
        if name == "retries":
            try:
                health["Retries"] = int(value)
            except ValueError:
                raise InvalidArgument(f"invalid retries value: {value}") from None
            continue
        ns = parse_duration(value)
        if ns and ns < 1_000_000:
            raise InvalidArgument(f"Interval \"{name}\" cannot be less than 1ms")
        health[_HEALTH_KEYS[name]] = ns
    section["Healthcheck"] = health
    return "HEALTHCHECK " + json.dumps(health, separators=(",", ":"))


def onbuild(section: Section, instr: ins.OnBuild) -> str:
    keyword, _, rest = instr.expression.partition(" ")
    trigger = f"{keyword.upper()} {rest}".strip()
    section["OnBuild"] = [*(section.get("OnBuild") or []), trigger]
    return "ONBUILD " + trigger
