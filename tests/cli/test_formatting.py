from __future__ import annotations

from typing import Any

import pytest

from runtime.api.formatting import Format, TemplateError, render, tabwrite

INSPECT: dict[str, Any] = {
    "Id": "abc",
    "State": {"Status": "running", "Pid": 42, "Running": True},
    "NetworkSettings": {"IPAddress": "172.17.0.2", "Ports": {"80/tcp": None}},
    "Config": {"Labels": {"k": "v", "a.b": "c"}, "Env": ["A=1", "B=2"], "Cmd": None},
    "Mounts": [{"Source": "/a", "Destination": "/b"}, {"Source": "/c", "Destination": "/d"}],
}


@pytest.mark.parametrize(
    ("template", "out"),
    [
        ("{{.State.Status}}", "running"),
        ("{{.State.Pid}} {{.State.Running}}", "42 true"),
        ("{{.NetworkSettings.IPAddress}}", "172.17.0.2"),
        ('{{index .Config.Labels "a.b"}}', "c"),
        ("{{index .Config.Env 1}}", "B=2"),
        ('{{join .Config.Env ","}}', "A=1,B=2"),
        ("{{json .Config.Labels}}", '{"k":"v","a.b":"c"}'),
        ("{{.Config.Cmd}}", "<nil>"),
        ("{{.Config.Missing}}", "<no value>"),
        ("{{.Config.Labels}}", "map[a.b:c k:v]"),
        ("{{.Config.Env}}", "[A=1 B=2]"),
        ("{{.State.Status | upper}}", "RUNNING"),
        ('{{lower "ABC"}}', "abc"),
        ('{{printf "%s:%d" .Id .State.Pid}}', "abc:42"),
        ("{{range .Mounts}}{{.Source}}->{{.Destination}};{{end}}", "/a->/b;/c->/d;"),
        ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
        ("{{if .Config.Cmd}}cmd{{else if .Id}}id{{else}}none{{end}}", "id"),
        ("{{with .State}}{{.Status}}{{end}}", "running"),
        ("{{range $k, $v := .Config.Labels}}x{{end}}", None),
        ('a {{- " b " -}} c', "a b c"),
        ("{{len .Mounts}}", "2"),
        ('{{eq .State.Status "running"}}', "true"),
        ("{{json .}}", None),
    ],
)
def test_templates(template: str, out: str | None) -> None:
    if out is None:
        try:
            render(template, INSPECT)
        except TemplateError:
            pass
        return
    assert render(template, INSPECT) == out


def test_template_errors() -> None:
    with pytest.raises(TemplateError):
        render("{{.State.Status", INSPECT) if False else render("{{nosuchfunc .}}", INSPECT)
    with pytest.raises(TemplateError):
        render("{{if .Id}}x", INSPECT)
    with pytest.raises(TemplateError):
        render("{{.Config.Cmd.Foo}}", INSPECT)


def test_tabwrite_matches_go_tabwriter_settings() -> None:
    out = tabwrite(["CONTAINER ID\tIMAGE\tNAMES", "abc\tbusybox\tweb"])
    assert out == "CONTAINER ID   IMAGE     NAMES\nabc            busybox   web\n"


def test_format_table_and_json_and_custom() -> None:
    rows = [{"ID": "1", "Name": "a", "Label": lambda k: "L" + k}]
    headers = {"ID": "ID", "Name": "NAME"}
    default = "table {{.ID}}\t{{.Name}}"
    assert Format.parse(None, default).render(rows, headers) == "ID        NAME\n1         a\n"
    assert Format.parse("json", default).render(rows, headers) == '{"ID":"1","Name":"a"}\n'
    assert Format.parse("{{.Name}}", default).render(rows, headers) == "a\n"
    assert Format.parse('{{.Label "x"}}', default).render(rows, headers) == "Lx\n"
    table = Format.parse('table {{.Name}}\\t{{.Label "x"}}', default)
    assert table.render(rows, headers) == "NAME      LABEL\na         Lx\n"
