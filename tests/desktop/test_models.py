"""Models against Docker's JSON shapes (swagger examples), checked by QAbstractItemModelTester."""

from __future__ import annotations

import pytest

from desktop import formatting as fmt
from desktop.models.containers import COL_CPU, COL_NAME, COL_STATE, ContainersModel
from desktop.models.resources import ImagesModel, users_by_image, users_by_volume
from desktop.qt import QAbstractItemModelTester, QApplication, Qt
from tests.desktop import swagger

pytestmark = pytest.mark.gui


def checked(model: ContainersModel) -> QAbstractItemModelTester:
    return QAbstractItemModelTester(
        model, QAbstractItemModelTester.FailureReportingMode.Fatal)


def test_replace_all_diffs_rows(qapp: QApplication) -> None:
    m = ContainersModel()
    _t = checked(m)
    m.replace_all([swagger.container("a", "web"), swagger.container("b", "db")])
    assert m.rowCount() == 2
    inserted: list[tuple[int, int]] = []
    changed: list[int] = []
    m.rowsInserted.connect(lambda _p, first, last: inserted.append((first, last)))
    m.dataChanged.connect(lambda tl, br, roles: changed.append(tl.row()))
    m.replace_all([swagger.container("b", "db", state="exited"), swagger.container("c", "x")])
    assert m.keys() == ["b", "c"]
    assert inserted == [(1, 1)]
    assert changed == [0]
    assert m.data(m.index(0, COL_STATE)) == "exited"


def test_events_update_rows_incrementally(qapp: QApplication) -> None:
    m = ContainersModel()
    _t = checked(m)
    assert m.apply(swagger.event("create", "c1", name="web", image="nginx",
                                 **{"com.docker.compose.project": "shop"}))
    assert m.data(m.index(0, COL_NAME)) == "web"
    assert fmt.project_of(m.rows()[0]) == "shop"
    m.apply(swagger.event("start", "c1", name="web"))
    assert m.rows()[0]["State"] == "running"
    m.apply(swagger.event("pause", "c1"))
    assert m.rows()[0]["State"] == "paused"
    m.apply(swagger.event("die", "c1", exitCode="137"))
    assert m.rows()[0]["Status"].startswith("Exited (137)")
    assert not m.apply(swagger.event("exec_create: sh", "c1"))
    m.apply(swagger.event("destroy", "c1"))
    assert m.rowCount() == 0


def test_unknown_container_event_inserts_row(qapp: QApplication) -> None:
    m = ContainersModel()
    assert m.apply(swagger.event("start", "zz", name="late", image="busybox"))
    assert m.rows()[0]["State"] == "running"


def test_state_colour_and_stats(qapp: QApplication) -> None:
    m = ContainersModel()
    _t = checked(m)
    m.replace_all([swagger.container("a", "web")])
    colour = m.data(m.index(0, COL_STATE), Qt.ItemDataRole.DecorationRole)
    assert colour.name() == "#2ea043"
    cpu = fmt.cpu_percent(swagger.STATS)
    m.set_stats("a", cpu, fmt.memory_usage(swagger.STATS)[0])  # type: ignore[index]
    assert m.data(m.index(0, COL_CPU)).endswith("%")
    # a fresh listing keeps the last sample instead of blanking it
    m.replace_all([swagger.container("a", "web")])
    assert m.data(m.index(0, COL_CPU)).endswith("%")


def test_images_model_and_usage(qapp: QApplication) -> None:
    m = ImagesModel()
    _t = QAbstractItemModelTester(m, QAbstractItemModelTester.FailureReportingMode.Fatal)
    m.replace_all([swagger.IMAGE_SUMMARY])
    assert m.data(m.index(0, 0)) == "example"
    assert m.data(m.index(0, 1)) == "1.0"
    users = users_by_image([swagger.CONTAINER_SUMMARY])
    m.set_users(users)
    assert m.data(m.index(0, 5)) == ""  # ubuntu's id is not this image
    image_id = swagger.CONTAINER_SUMMARY["ImageID"]
    m.replace_all([{**swagger.IMAGE_SUMMARY, "Id": image_id}])
    assert m.data(m.index(0, 5)) == "boring_feynman"
    assert users_by_volume([swagger.CONTAINER_SUMMARY]) == {"fac362...80535": ["boring_feynman"]}


def test_formatting() -> None:
    assert fmt.ports_text(swagger.CONTAINER_SUMMARY) == "3333:2222/tcp"
    assert fmt.published_ports(swagger.CONTAINER_SUMMARY) == [3333]
    assert fmt.network_bytes(swagger.STATS) == (9979, 1648)
    assert fmt.block_bytes(swagger.STATS) == (1000, 0)
    assert fmt.image_repo_tag({"RepoTags": ["localhost:5000/x"]}) == ("localhost:5000/x", "<none>")
