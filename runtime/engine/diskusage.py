"""``GET /system/df``: what images, containers, volumes and the build cache take on disk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.api.errors import CoveError
from runtime.engine.views import summary as container_summary
from runtime.fsutil import apparent_size
from runtime.images import views as image_views

if TYPE_CHECKING:
    from runtime.engine.engine import Engine


KINDS = ("container", "image", "volume", "build-cache")


def system_df(engine: Engine, api_version: str,
              kinds: frozenset[str] = frozenset(KINDS)) -> dict[str, Any]:
    """The usage of *kinds* only; the others stay null, as moby leaves them (API 1.42 ``type``)."""
    out: dict[str, Any] = {"LayersSize": 0, "Images": None, "Containers": None,
                           "Volumes": None, "BuildCache": None}
    users: dict[str, int] = {}
    containers = []
    for c in engine.containers.all():
        users[c.image_id] = users.get(c.image_id, 0) + 1
        if "container" in kinds:
            containers.append(_container(engine, c))
    if "image" in kinds:
        # Shared layers count once in LayersSize and in each sharer's SharedSize.
        out["LayersSize"], out["Images"] = image_views.disk_usage(
            engine.images, engine.images.list(), api_version, users)
    if "container" in kinds:
        out["Containers"] = containers
    if "volume" in kinds:
        out["Volumes"] = [_volume(engine, v) for v in engine.volumes.list_volumes()]
    if "build-cache" in kinds:
        out["BuildCache"] = []
    return out


def _container(engine: Engine, c: Any) -> dict[str, Any]:
    try:
        image = engine.images.get(c.image_id)
        image_config: dict[str, Any] = image.config.get("config") or {}
        image_size = image.size
    except CoveError:
        image_config, image_size = {}, 0
    entry = container_summary(c, image_config)
    try:
        size_rw = apparent_size(engine.images.rootfs_upper(c.id))
    except CoveError:
        size_rw = 0
    entry["SizeRw"] = size_rw
    entry["SizeRootFs"] = size_rw + image_size
    return entry


def _volume(engine: Engine, v: dict[str, Any]) -> dict[str, Any]:
    name = str(v["Name"])
    mountpoint = Path(str(v.get("Mountpoint") or ""))
    size = apparent_size(mountpoint) if mountpoint.is_dir() else -1
    return {**v, "UsageData": {"Size": size, "RefCount": len(engine.volumes.users(name))}}
