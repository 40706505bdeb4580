"""The Dockerfile's syntax: directives, continuations, forms, heredocs, errors with lines."""

from __future__ import annotations

import pytest

from runtime.api.errors import InvalidArgument
from runtime.build import instructions as ins
from runtime.build.dockerfile import parse
from runtime.build.instructions import parse_dockerfile


def test_comments_continuations_and_original_text() -> None:
    df = parse("# a comment\nFROM busybox\nRUN echo a \\\n  # inner comment\n\n  && echo b\n")
    assert [n.keyword for n in df.nodes] == ["FROM", "RUN"]
    assert df.nodes[1].rest == "echo a   && echo b"
    assert df.nodes[1].original == "RUN echo a   && echo b"
    assert df.nodes[1].line == 3


def test_escape_directive_and_ignored_syntax() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\nRUN dir c:\\ `\n  /w\n")
    assert df.escape == "`"
    assert df.nodes[1].rest == "dir c:\\   /w"


def test_directive_after_instruction_is_a_comment() -> None:
    df = parse("FROM busybox\n# escape=`\nRUN a \\\n b\n")
    assert df.escape == "\\"
    assert df.nodes[1].rest == "a  b"


def test_json_and_shell_forms() -> None:
    p = parse_dockerfile('FROM busybox\nCMD ["echo", "hi"]\nENTRYPOINT echo hi\n'
                         'RUN ["sh", "-c", "true"]\nCMD [not json\n')
    cmd, entry, run, broken = p.stages[0].instructions
    assert isinstance(cmd, ins.CommandInstr) and cmd.command == ins.Command(("echo", "hi"), False)
    assert isinstance(entry, ins.CommandInstr) and entry.command.shell
    assert isinstance(run, ins.Run) and run.command.args == ("sh", "-c", "true")
    assert isinstance(broken, ins.CommandInstr) and broken.command.args == ("[not json",)


def test_heredocs() -> None:
    text = ("FROM busybox\nRUN <<EOF\necho one\necho two\nEOF\n"
            "COPY <<-'END' /x\n\tliteral $A\n\tEND\nRUN cat <<A <<B\na\nA\nb\nB\nCMD x\n")
    p = parse_dockerfile(text)
    run, copy, run2, cmd = p.stages[0].instructions
    assert isinstance(run, ins.Run) and run.heredocs[0].content == "echo one\necho two\n"
    assert isinstance(copy, ins.Copy) and copy.heredocs[0].content == "literal $A\n"
    assert not copy.heredocs[0].expand and copy.dest == "/x"
    assert isinstance(run2, ins.Run) and [h.name for h in run2.heredocs] == ["A", "B"]
    assert isinstance(cmd, ins.CommandInstr) and cmd.node.line == 14


def test_unterminated_heredoc() -> None:
    with pytest.raises(InvalidArgument, match="line 2: unterminated heredoc EOF"):
        parse("FROM busybox\nRUN <<EOF\necho\n")


@pytest.mark.parametrize(("text", "message"), [
    ("FROM busybox\nRUN true\nFOO bar\n", "dockerfile parse error on line 3: unknown "
                                          "instruction: FOO"),
    ("FROM busybox\nCOPY onlyone\n", "line 2: COPY requires at least two arguments"),
    ("FROM busybox\nCOPY --frm=x a b\n", "line 2: unknown flag: frm"),
    ("ENV A=1\nFROM busybox\n", "line 1: no build stage in current context"),
    ("FROM a b\n", "line 1: FROM requires either one or three arguments"),
    ("FROM busybox\nSHELL sh -c\n", "SHELL requires the arguments to be in JSON form"),
    ("FROM busybox\nENV\n", "line 2: ENV requires at least one argument"),
    ("FROM busybox\nENV A=1 B\n", "can't find = in \"B\""),
    ("FROM busybox\nRUN --mount=type=cache,target=/x true\n", "requires BuildKit"),
    ("FROM busybox\nONBUILD FROM x\n", "isn't allowed as an ONBUILD trigger"),
    ("", "file with no instructions"),
])
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_dockerfile(text)


def test_stages_args_and_flags() -> None:
    p = parse_dockerfile("ARG V=1\nARG W\nFROM --platform=linux/amd64 busybox:$V AS Build\n"
                         "ARG V\nFROM build\nCOPY --from=build --chown=1:2 --chmod=640 /a /b\n"
                         "ENV legacy value with  spaces\n")
    assert [a.pairs for a in p.global_args] == [(("V", "1"),), (("W", None),)]
    first, second = p.stages
    assert first.name == "build" and first.source.platform == "linux/amd64"
    assert p.stage_index("BUILD") == 0 and p.stage_index("1") == 1
    copy = second.instructions[0]
    assert isinstance(copy, ins.Copy)
    assert (copy.source_stage, copy.chown, copy.chmod) == ("build", "1:2", "640")
    env = second.instructions[1]
    assert isinstance(env, ins.KeyValues) and env.pairs == (("legacy", "value with  spaces"),)


def test_healthcheck_and_onbuild() -> None:
    p = parse_dockerfile("FROM busybox\nHEALTHCHECK --interval=5s --retries=3 CMD [\"true\"]\n"
                         "HEALTHCHECK NONE\nONBUILD run echo hi\n")
    h1, h2, onb = p.stages[0].instructions
    assert isinstance(h1, ins.Healthcheck) and h1.test == ("CMD", "true")
    assert dict(h1.options) == {"interval": "5s", "retries": "3"}
    assert isinstance(h2, ins.Healthcheck) and h2.test == ("NONE",)
    assert isinstance(onb, ins.OnBuild) and onb.expression == "run echo hi"
