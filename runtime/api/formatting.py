"""A small Go text/template evaluator for ``--format``, plus docker's tab-aligned tables.

Covers what people type after ``--format``: field paths (``{{.State.Status}}``),
pipelines (``{{.Names | upper}}``), function calls (``{{index .Config.Labels "k"}}``,
``{{join .Args ","}}``, ``{{json .}}``, ``printf``), ``if``/``else``/``range``/``with``
blocks and ``{{-``/``-}}`` trimming. Values print like Go's ``%v`` does on
decoded JSON (``map[a:1]``, ``[x y]``, ``<nil>``, ``<no value>``), since docker
runs templates on raw JSON.

Objects may expose callables (e.g. a ps row's ``Label``): ``{{.Label "k"}}`` calls them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class TemplateError(ValueError):
    pass


class _Missing:
    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()


# --- printing and truthiness (Go semantics) ----------------------------------


def go_str(v: Any) -> str:
    """``fmt.Sprint`` of a decoded-JSON value."""
    if v is MISSING:
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else repr(v)
    if isinstance(v, str):
        return v
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{go_str(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    return str(v)


def truthy(v: Any) -> bool:
    if v is MISSING or v is None:
        return False
    if isinstance(v, bool | int | float | str | list | tuple | Mapping):
        return bool(v)
    return True


def to_json(v: Any) -> str:
    """docker's ``json`` function: compact, no HTML escaping, no trailing newline."""
    if isinstance(v, Mapping):  # row objects carry methods (Label); JSON shows data only
        v = {k: x for k, x in v.items() if not callable(x)}
    return json.dumps(
        None if v is MISSING else v, separators=(",", ":"), ensure_ascii=False, default=str
    )


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(v, Mapping):
            v = v.get(k, MISSING)
        elif isinstance(v, list | tuple | str):
            try:
                v = v[int(k)]
            except (IndexError, ValueError) as e:
                raise TemplateError(f"error calling index: index out of range: {k}") from e
        elif v is None or v is MISSING:
            return MISSING
        else:
            raise TemplateError(f"can't index item of type {type(v).__name__}")
    return v


def _printf(fmt: str, *args: Any) -> str:
    """Go's printf for the common verbs: %s %v %d %q %f %x and friends."""
    it = iter(args)

    def repl(m: re.Match[str]) -> str:
        spec, verb = m.group(1), m.group(2)
        if verb == "%":
            return "%"
        arg = next(it, MISSING)
        if verb in "sv":
            return ("%" + spec + "s") % go_str(arg)
        if verb == "q":
            return json.dumps(go_str(arg), ensure_ascii=False)
        if verb == "t":
            return go_str(bool(arg))
        return str(("%" + spec + verb) % arg)

    return re.sub(r"%([-+# 0]*\d*(?:\.\d+)?)([svdqftxXeEgGbo%])", repl, fmt)


def _truncate(s: Any, n: int) -> str:
    text = go_str(s)
    return text[:n]


def _pad(s: Any, before: int, after: int) -> str:
    return " " * before + go_str(s) + " " * after


FUNCS: dict[str, Callable[..., Any]] = {
    "json": to_json,
    "join": lambda items, sep: sep.join(go_str(x) for x in (items or [])),
    "split": lambda s, sep: go_str(s).split(sep),
    "index": _index,
    "len": lambda v: 0 if v is None or v is MISSING else len(v),
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: go_str(s).title(),
    "truncate": _truncate,
    "pad": _pad,
    "printf": _printf,
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "not": lambda a: not truthy(a),
    "and": lambda *a: next((x for x in a if not truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if truthy(x)), a[-1]),
}


# --- parsing ------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<field>(?:\$\w*)?(?:\.\w+)+|\.|\$\w*)
    | (?P<ident>[A-Za-z_]\w*)
    | (?P<punct>[|()])
    )""",
    re.VERBOSE,
)


class _Lit:
    def __init__(self, value: Any) -> None:
        self.value = value


class _Field:
    def __init__(self, var: str, path: list[str]) -> None:
        self.var = var  # "" for dot, else "$" / "$name"
        self.path = path


class _Cmd:
    def __init__(self, args: list[Any]) -> None:
        self.args = args  # _Lit | _Field | _Ident | _Pipe


class _Ident:
    def __init__(self, name: str) -> None:
        self.name = name


class _Pipe:
    def __init__(self, cmds: list[_Cmd]) -> None:
        self.cmds = cmds


class _Block:
    def __init__(self, kind: str, pipe: _Pipe | None = None) -> None:
        self.kind = kind  # "root" | "if" | "elif" | "range" | "with"
        self.pipe = pipe
        self.body: list[Any] = []
        self.orelse: list[Any] = []


def _tokens(src: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(src):
        if src[pos:].strip() == "":
            break
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"unexpected {src[pos:].strip()[:10]!r} in {{{{{src}}}}}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _parse_pipe(toks: list[tuple[str, str]], i: int = 0) -> tuple[_Pipe, int]:
    cmds: list[_Cmd] = [_Cmd([])]
    while i < len(toks):
        kind, text = toks[i]
        i += 1
        if kind == "punct" and text == "|":
            cmds.append(_Cmd([]))
            continue
        if kind == "punct" and text == ")":
            return _Pipe(cmds), i - 1
        if kind == "punct" and text == "(":
            sub, i = _parse_pipe(toks, i)
            if i >= len(toks) or toks[i][1] != ")":
                raise TemplateError("unclosed left paren")
            i += 1
            cmds[-1].args.append(sub)
        elif kind == "str":
            cmds[-1].args.append(_Lit(json.loads(text)))
        elif kind == "raw":
            cmds[-1].args.append(_Lit(text[1:-1]))
        elif kind == "num":
            cmds[-1].args.append(_Lit(float(text) if "." in text else int(text)))
        elif kind == "field":
            var, _, rest = text.partition(".") if text.startswith("$") else ("", "", text[1:])
            cmds[-1].args.append(_Field(var, [p for p in rest.split(".") if p]))
        elif text in ("true", "false", "nil"):
            cmds[-1].args.append(_Lit({"true": True, "false": False, "nil": None}[text]))
        else:
            if text not in FUNCS:
                raise TemplateError(f'function "{text}" not defined')
            cmds[-1].args.append(_Ident(text))
    if any(not c.args for c in cmds):
        raise TemplateError("missing value for command")
    return _Pipe(cmds), i


def _parse_action(src: str) -> _Pipe:
    pipe, _i = _parse_pipe(_tokens(src))
    return pipe


def parse(template: str) -> _Block:
    """Parse a template once; :func:`execute` it per object."""
    root = _Block("root")
    stack = [root]
    in_else = [False]
    parts = re.split(r"(\{\{-?\s*.*?\s*-?\}\})", template, flags=re.DOTALL)
    for n, part in enumerate(parts):
        if n % 2 == 0:
            if n > 0 and parts[n - 1].endswith("-}}"):
                part = part.lstrip()
            if n + 1 < len(parts) and parts[n + 1].startswith("{{-"):
                part = part.rstrip()
            if part:
                target = stack[-1].orelse if in_else[-1] else stack[-1].body
                target.append(part)
            continue
        inner = part[2:-2]
        inner = inner[1:] if inner.startswith("-") else inner
        inner = inner[:-1] if inner.endswith("-") else inner
        inner = inner.strip()
        word, _, rest = inner.partition(" ")
        target = stack[-1].orelse if in_else[-1] else stack[-1].body
        if word in ("if", "range", "with"):
            block = _Block(word, _parse_action(rest))
            target.append(block)
            stack.append(block)
            in_else.append(False)
        elif word == "else":
            if len(stack) == 1:
                raise TemplateError("unexpected {{else}}")
            if rest.startswith("if "):  # else if: nest a new if in the else branch
                block = _Block("if", _parse_action(rest[3:]))
                stack[-1].orelse.append(block)
                in_else[-1] = True
                stack.append(block)
                in_else.append(False)
                block.kind = "elif"
            else:
                in_else[-1] = True
        elif word == "end":
            while True:
                if len(stack) == 1:
                    raise TemplateError("unexpected {{end}}")
                closed = stack.pop()
                in_else.pop()
                if closed.kind != "elif":
                    break
        elif inner.startswith("/*"):
            continue
        else:
            target.append(_parse_action(inner))
    if len(stack) != 1:
        raise TemplateError("unexpected EOF: missing {{end}}")
    return root


# --- evaluation ---------------------------------------------------------------


def _lookup(obj: Any, path: list[str]) -> Any:
    for name in path:
        if isinstance(obj, Mapping):
            obj = obj.get(name, MISSING)
        elif obj is None or obj is MISSING:
            raise TemplateError(f"nil pointer evaluating .{name}")
        else:
            obj = getattr(obj, name, MISSING)
            if obj is MISSING:
                raise TemplateError(f"can't evaluate field {name}")
    return obj


class _Scope:
    def __init__(self, dot: Any, root: Any) -> None:
        self.dot, self.root = dot, root


def _eval_arg(arg: Any, scope: _Scope) -> Any:
    if isinstance(arg, _Lit):
        return arg.value
    if isinstance(arg, _Field):
        base = scope.root if arg.var == "$" else scope.dot
        return _lookup(base, arg.path)
    if isinstance(arg, _Pipe):
        return _eval_pipe(arg, scope)
    if isinstance(arg, _Ident):
        return FUNCS[arg.name]()
    raise TemplateError("bad argument")


def _eval_cmd(cmd: _Cmd, scope: _Scope, prev: Any) -> Any:
    first, rest = cmd.args[0], cmd.args[1:]
    extra = [] if prev is MISSING_ARG else [prev]
    if isinstance(first, _Ident):
        args = [_eval_arg(a, scope) for a in rest] + extra
        try:
            return FUNCS[first.name](*args)
        except TemplateError:
            raise
        except Exception as e:
            raise TemplateError(f"error calling {first.name}: {e}") from e
    value = _eval_arg(first, scope)
    if callable(value):
        return value(*[_eval_arg(a, scope) for a in rest], *extra)
    if rest or extra:
        raise TemplateError("can't give argument to non-function")
    return value


MISSING_ARG = object()


def _eval_pipe(pipe: _Pipe, scope: _Scope) -> Any:
    value: Any = MISSING_ARG
    for cmd in pipe.cmds:
        value = _eval_cmd(cmd, scope, value)
    return value


def _run(nodes: Sequence[Any], scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Pipe):
            out.append(go_str(_eval_pipe(node, scope)))
        elif isinstance(node, _Block):
            _run_block(node, scope, out)


def _run_block(block: _Block, scope: _Scope, out: list[str]) -> None:
    assert block.pipe is not None
    value = _eval_pipe(block.pipe, scope)
    if block.kind == "range":
        items = list(value.values()) if isinstance(value, Mapping) else value
        if not truthy(items):
            _run(block.orelse, scope, out)
        for item in items or []:
            _run(block.body, _Scope(item, scope.root), out)
    elif block.kind == "with":
        if truthy(value):
            _run(block.body, _Scope(value, scope.root), out)
        else:
            _run(block.orelse, scope, out)
    else:
        _run(block.body if truthy(value) else block.orelse, scope, out)


def execute(template: _Block, obj: Any) -> str:
    out: list[str] = []
    _run(template.body, _Scope(obj, obj), out)
    return "".join(out)


def render(template: str, obj: Any) -> str:
    return execute(parse(template), obj)


# --- docker's tables ------------------------------------------------------------


def tabwrite(lines: Sequence[str], minwidth: int = 10, padding: int = 3) -> str:
    """Go's tabwriter as docker configures it (minwidth 10, padding 3, spaces).

    Tab-terminated cells of a column are padded to a common width; the last cell
    of each line is left alone.
    """
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.append("".join(cells) + row[-1])
    return "\n".join(out) + ("\n" if out else "")


class Format:
    """A parsed ``--format`` value: a table (with header row) or a plain template."""

    def __init__(self, template: str, table: bool) -> None:
        self.template, self.table = template, table

    @classmethod
    def parse(cls, value: str | None, default_table: str) -> Format:
        """docker's rules: None/"table" → default table, "json" → {{json .}}, "table X"."""
        if not value or value.strip() == "table":
            value = default_table
        if value.strip() == "json":
            return cls("{{json .}}", False)
        if value.startswith("table"):
            return cls(value[len("table") :].lstrip(" "), True)
        return cls(value, False)

    def render(self, rows: Sequence[Any], headers: Mapping[str, str]) -> str:
        tmpl = parse(_unescape(self.template))
        lines = [execute(tmpl, row) for row in rows]
        if not self.table:
            return "".join(line + "\n" for line in lines)
        head = execute(tmpl, _HeaderRow(headers))
        return tabwrite([head, *lines])


class _HeaderRow(dict[str, Any]):
    """Headers for a table: every field renders as its column title, ``Label``-style calls too."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__(headers)

    def get(self, key: str, default: Any = None) -> Any:
        return _HeaderCell(self[key] if key in self else key.upper())


class _HeaderCell(str):
    """A header title that also works where the row has a method (``{{.Label "k"}}``)."""

    __slots__ = ()

    def __call__(self, *args: Any) -> str:
        return str(self)


def _unescape(template: str) -> str:
    r"""Shells pass ``\t`` and ``\n`` literally; docker turns them into tabs/newlines."""
    return template.replace("\\t", "\t").replace("\\n", "\n")
