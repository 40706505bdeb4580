"""``docker rmi`` and ``docker image prune`` with moby's conflict rules and wording."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from runtime.api import reference
from runtime.api.errors import Conflict, InvalidArgument
from runtime.images import digest as dg

if TYPE_CHECKING:
    from runtime.images.store import Image, ImageStore


def _name(ref: str) -> str:
    return reference.parse(ref).name


def _single_reference(refs: list[str]) -> bool:
    """moby's isSingleReference: at most one tag, and every reference in one repository."""
    tags = [r for r in refs if "@" not in r]
    if len(tags) > 1:
        return False
    return len({_name(r) for r in refs}) == 1 if refs else False


def delete(store: ImageStore, ref_or_id: str, *, force: bool = False) -> list[dict[str, str]]:
    """Untag and/or delete; returns moby's ``[{"Untagged":..},{"Deleted":..}]`` records."""
    with store.lock:
        image_id, matched = store._resolve(ref_or_id)
        refs = store.refs_of(image_id)
        users = store.in_use(image_id)
        records: list[dict[str, str]] = []
        if matched is not None:
            if not force and _single_reference(refs) and users:
                raise Conflict(
                    f'conflict: unable to remove repository reference "{ref_or_id}" (must force)'
                    f" - container {dg.short(users[0])} is using its referenced image"
                    f" {dg.short(image_id)}")
            records += _untag(store, matched, refs)
            if store.refs_of(image_id):
                return records
            if users:
                return records  # moby leaves it dangling, quietly, while a container uses it
        elif _single_reference(refs):
            _check_conflicts(store, image_id, users, force)
            for ref in refs:
                store.untag(ref)
                records.append({"Untagged": reference.parse(ref).familiar()})
        _check_conflicts(store, image_id, users, force)
        store.drop_record(image_id)
        records.append({"Deleted": image_id})
        removed, _ = store.gc()
        records += [{"Deleted": c} for c in removed if c != image_id]
        return records


def _untag(store: ImageStore, matched: str, refs: list[str]) -> list[dict[str, str]]:
    store.untag(matched)
    records = [{"Untagged": reference.parse(matched).familiar()}]
    if "@" not in matched:
        # Removing the last tag of a repository also drops its digest references.
        name = _name(matched)
        left = [r for r in refs if r != matched and _name(r) == name]
        if not any("@" not in r for r in left):
            for r in left:
                store.untag(r)
                records.append({"Untagged": reference.parse(r).familiar()})
    return records


def _check_conflicts(store: ImageStore, image_id: str, users: list[str], force: bool) -> None:
    short = dg.short(image_id)
    running = [c for c in users if store.is_running(c)]
    if running:
        raise Conflict(f"conflict: unable to delete {short} (cannot be forced) - image is being"
                       f" used by running container {dg.short(running[0])}")
    if force:
        return
    if users:
        raise Conflict(f"conflict: unable to delete {short} (must be forced) - image is being"
                       f" used by stopped container {dg.short(users[0])}")
    if len(store.refs_of(image_id)) > 1:
        raise Conflict(f"conflict: unable to delete {short} (must be forced) - image is"
                       " referenced in multiple repositories")


def prune(store: ImageStore, filters: dict[str, list[str]]) -> dict[str, Any]:
    """``POST /images/prune``: dangling images (or all unused with dangling=false)."""
    dangling_only = _bool_filter(filters.get("dangling", ["true"]))
    until = _until(filters.get("until", []))
    deleted: list[dict[str, str]] = []
    reclaimed = 0
    for image in store.list():
        # Untagged images with children are a build's intermediate steps, not dangling.
        if dangling_only and (image.repo_tags or store.children(image.id)):
            continue
        if store.in_use(image.id) or not _labels_match(image, filters):
            continue
        if until is not None and _created_unix(image) >= until:
            continue
        for ref in store.refs_of(image.id):
            store.untag(ref)
            deleted.append({"Untagged": reference.parse(ref).familiar()})
        store.drop_record(image.id)
        deleted.append({"Deleted": image.id})
        removed, freed = store.gc()
        reclaimed += freed
        deleted += [{"Deleted": c} for c in removed]
    return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}


def _bool_filter(values: list[str]) -> bool:
    value = values[-1].lower() if values else "true"
    if value not in ("true", "false", "1", "0"):
        raise InvalidArgument(f"invalid filter 'dangling={value}'")
    return value in ("true", "1")


def _until(values: list[str]) -> float | None:
    if not values:
        return None
    return parse_time_filter(values[-1])


def parse_time_filter(value: str) -> float:
    """Docker's since/until: unix seconds (maybe fractional), RFC 3339, or a duration like 10m."""
    try:
        return float(value)
    except ValueError:
        pass
    units = {"s": 1, "m": 60, "h": 3600}
    if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
        now = datetime.datetime.now(datetime.UTC).timestamp()
        return now - float(value[:-1]) * units[value[-1]]
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidArgument(f"invalid time filter {value!r}") from None


def _created_unix(image: Image) -> float:
    return created_unix(image.created)


def created_unix(created: str) -> float:
    if not created:
        return 0.0
    text = created.replace("Z", "+00:00")
    if "." in text:  # fromisoformat in 3.11 takes at most 6 fraction digits
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def _labels_match(image: Image, filters: dict[str, list[str]]) -> bool:
    labels = image.labels
    for want in filters.get("label", []):
        key, eq, value = want.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    for want in filters.get("label!", []):
        key, eq, value = want.partition("=")
        if key in labels and (not eq or labels[key] == value):
            return False
    return True


def labels_match(image: Image, filters: dict[str, list[str]]) -> bool:
    return _labels_match(image, filters)
