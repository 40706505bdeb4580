"""Docker API shapes of images: ImageSummary, ImageInspect, history entries."""

from __future__ import annotations

import collections
import fnmatch
from typing import TYPE_CHECKING, Any

from runtime.api import reference
from runtime.api.errors import InvalidArgument
from runtime.images.remove import created_unix, labels_match

if TYPE_CHECKING:
    from runtime.images.store import Image, ImageStore

ZERO_TIME = "0001-01-01T00:00:00Z"
_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": None,
}


def _version(v: str) -> tuple[int, int]:
    major, minor = v.split(".")
    return int(major), int(minor)


def summary(image: Image, api_version: str) -> dict[str, Any]:
    old = _version(api_version) < (1, 43)
    tags, digests = list(image.repo_tags), list(image.repo_digests)
    if old and not tags and not digests:
        tags, digests = ["<none>:<none>"], ["<none>@<none>"]
    out: dict[str, Any] = {
        "Id": image.id,
        "ParentId": image.record.parent if image.record else "",
        "RepoTags": tags,
        "RepoDigests": digests,
        "Created": int(created_unix(image.created)),
        "Size": image.size,
        "SharedSize": -1,
        "Labels": image.labels or {},
        "Containers": -1,
    }
    if _version(api_version) < (1, 44):
        out["VirtualSize"] = image.size
    return out


def inspect(store: ImageStore, image: Image, api_version: str) -> dict[str, Any]:
    cfg = image.config
    record = image.record
    out: dict[str, Any] = {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": list(image.repo_digests),
        "Parent": record.parent if record else "",
        "Comment": cfg.get("comment", ""),
        "Created": image.created or ZERO_TIME,
        "Container": cfg.get("container", ""),
        "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Config": {**_CONFIG_DEFAULTS, **(cfg.get("config") or {})},
        "Architecture": cfg.get("architecture", ""),
        "Os": cfg.get("os", ""),
        "Size": image.size,
        "GraphDriver": graph_driver(store, image),
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
        "Metadata": {"LastTagTime": (record.last_tag_time if record else "") or ZERO_TIME},
    }
    if cfg.get("variant"):
        out["Variant"] = cfg["variant"]
    if _version(api_version) < (1, 44):
        out["VirtualSize"] = image.size
    return out


def graph_driver(store: ImageStore, image: Image) -> dict[str, Any]:
    dirs = [str(store.snapshots.layer_fs(c)) for c in reversed(image.chain_ids)]
    data: dict[str, str] = {}
    if dirs:
        data = {"UpperDir": dirs[0], "MergedDir": "", "WorkDir": ""}
        if len(dirs) > 1:
            data["LowerDir"] = ":".join(dirs[1:])
    return {"Name": "overlay2", "Data": data}


def history(store: ImageStore, image: Image) -> list[dict[str, Any]]:
    entries = list(image.config.get("history") or [])
    sizes = [store.snapshots.layer(c).size if store.snapshots.has_layer(c) else 0
             for c in image.chain_ids]
    if not entries:
        entries = [{"created": image.created} for _ in image.diff_ids] or [{}]
    out: list[dict[str, Any]] = []
    layer = 0
    for h in entries:
        size = 0
        if not h.get("empty_layer") and layer < len(sizes):
            size, layer = sizes[layer], layer + 1
        out.append({"Id": "<missing>", "Created": int(created_unix(h.get("created", ""))),
                    "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                    "Comment": h.get("comment", "")})
    out.reverse()
    out[0]["Id"] = image.id
    out[0]["Tags"] = list(image.repo_tags) or None
    return out


def parents(images: list[Image]) -> set[str]:
    """IDs of the images some other image was built or committed on."""
    return {i.record.parent for i in images if i.record and i.record.parent}


def listed(images: list[Image], *, all_: bool) -> list[Image]:
    """``docker images`` hides untagged images with children (intermediate build
    steps), as moby does; ``-a`` shows them."""
    if all_:
        return images
    has_children = parents(images)
    return [i for i in images if i.repo_tags or i.repo_digests or i.id not in has_children]


def filter_images(store: ImageStore, images: list[Image], filters: dict[str, list[str]]
                  ) -> list[Image]:
    has_children = parents(store.list()) if filters.get("dangling") else set()
    for key in filters:
        if key not in ("dangling", "label", "label!", "reference", "before", "since", "until"):
            raise InvalidArgument(f"invalid filter '{key}'")
    out = []
    before = _bound(store, filters.get("before"))
    since = _bound(store, filters.get("since"))
    for image in images:
        dangling = filters.get("dangling")
        if dangling:
            want = dangling[-1].lower() in ("true", "1")
            # Dangling: untagged and no image above it (intermediates are not).
            if want != (not image.repo_tags and image.id not in has_children):
                continue
        if not labels_match(image, filters):
            continue
        created = created_unix(image.created)
        if before is not None and created >= before:
            continue
        if since is not None and created <= since:
            continue
        if "reference" in filters and not _reference_match(image, filters["reference"]):
            continue
        out.append(image)
    return out


def _bound(store: ImageStore, values: list[str] | None) -> float | None:
    if not values:
        return None
    return created_unix(store.get(values[-1]).created)


def _reference_match(image: Image, patterns: list[str]) -> bool:
    for tag in image.repo_tags:
        ref = reference.parse(tag)
        candidates = {tag, ref.familiar_name, str(ref), ref.name}
        for pattern in patterns:
            if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
                return True
    return False


def disk_usage(store: ImageStore, images: list[Image], api_version: str,
               containers: dict[str, int]) -> tuple[int, list[dict[str, Any]]]:
    """``/system/df``'s image part: (LayersSize, summaries with SharedSize and Containers).

    Sizes are the unpacked layer dirs; a layer counts once in LayersSize and in
    SharedSize of every image whose chain holds it when more than one image does.
    *containers* counts containers per image ID.
    """
    sizes = {info.chain_id: info.size for info in store.snapshots.layers()}
    sharing = collections.Counter(chain for i in images for chain in set(i.chain_ids))
    out = []
    for image in images:
        entry = summary(image, api_version)
        entry["SharedSize"] = sum(sizes.get(c, 0) for c in set(image.chain_ids)
                                  if sharing[c] > 1)
        entry["Containers"] = containers.get(image.id, 0)
        out.append(entry)
    return sum(sizes.values()), out
