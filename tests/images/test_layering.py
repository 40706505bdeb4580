"""The store's public layering API (what the builder uses): add_layer / add_empty_layer."""

from __future__ import annotations

import io

from runtime.images.difftar import Writer
from runtime.images.store import ImageStore
from tests.images.layers import file, gz, tar_bytes


def _write_b(out: Writer) -> None:
    out.write(tar_bytes([file("etc/b", b"b")]))


def test_add_layer_from_a_writer_and_a_stream(store: ImageStore) -> None:
    base = store.add_layer(None, io.BytesIO(gz(tar_bytes([file("etc/a", b"a")]))),
                           {"Cmd": ["sh"]}, {"created_by": "ADD a /etc/a"})
    child = store.add_layer(base, _write_b,
                            {"Cmd": ["sh"], "Env": ["B=1"]},
                            {"created_by": "COPY b /etc/b", "comment": "two"})
    assert child.record is not None and child.record.parent == base.id
    assert child.diff_ids[:1] == base.diff_ids and len(child.diff_ids) == 2
    assert child.config["config"] == {"Cmd": ["sh"], "Env": ["B=1"]}
    assert [h.get("created_by") for h in child.config["history"]] == [
        "ADD a /etc/a", "COPY b /etc/b"]
    assert child.config["history"][1]["comment"] == "two"
    assert not any(h.get("empty_layer") for h in child.config["history"])
    top = store.layer_dirs(child)[0]
    assert (top / "etc" / "b").read_bytes() == b"b"
    assert store.children(base.id) == [child.id]


def test_add_empty_layer_keeps_the_layers(store: ImageStore) -> None:
    base = store.add_layer(None, io.BytesIO(tar_bytes([file("x", b"x")])), {},
                           {"created_by": "ADD x /"})
    meta = store.add_empty_layer(base, {"Env": ["A=1"]}, {"created_by": "ENV A=1"},
                                 refs=["meta:1"])
    assert meta.diff_ids == base.diff_ids
    assert meta.record is not None and meta.record.layers == base.record.layers  # type: ignore[union-attr]
    assert meta.config["history"][-1]["empty_layer"] is True
    assert meta.repo_tags == ("meta:1",)
    scratch = store.add_empty_layer(None, {"Cmd": ["true"]}, {"created_by": "CMD true"})
    assert scratch.diff_ids == [] and store.layer_dirs(scratch) == []
