"""Docker's local volume driver and the container mounts built from Binds/Mounts/Tmpfs/VOLUME.

Layout under data_root/volumes/: ``<name>/_data`` (the Mountpoint) and
``<name>/volume.json`` (Docker's Volume record); ``_containers/<id>.json`` keeps
which volumes a container uses (so "in use" survives an engine restart, and a
restarted container gets the same anonymous volumes back). Volumes with driver
options (``type``/``device``/``o``: tmpfs, bind-like, nfs ...) are mounted on
their Mountpoint while at least one container uses them, as dockerd does.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.api.errors import Conflict, InvalidArgument, NotFound
from runtime.engine.events import EventBus
from runtime.fsutil import apparent_size, read_json, write_json_atomic
from runtime.layout import EngineLayout
from runtime.net import _sys
from runtime.net.model import rfc3339_now
from runtime.spec import Mount
from runtime.volumes.specs import (
    NAME_RE,
    MountReq,
    parse_bind,
    parse_mount,
    parse_tmpfs,
    parse_volumes_from,
)

ANON_LABEL = "com.docker.volume.anonymous"
REFS_DIR = "_containers"
_FLAGS = {"ro": _sys.MS_RDONLY, "nosuid": _sys.MS_NOSUID, "nodev": _sys.MS_NODEV,
          "noexec": _sys.MS_NOEXEC, "bind": _sys.MS_BIND, "rbind": _sys.MS_BIND | _sys.MS_REC}


class VolumeManager:
    def __init__(self, layout: EngineLayout, events: EventBus) -> None:
        self.root = layout.volumes
        self.events = events
        self._lock = threading.RLock()
        (self.root / REFS_DIR).mkdir(parents=True, exist_ok=True)
        self.vols: dict[str, dict[str, Any]] = {}
        self.refs: dict[str, dict[str, Any]] = {}  # container id -> {"volumes", "anonymous"}
        for d in self.root.iterdir():
            if d.name != REFS_DIR and (d / "volume.json").exists():
                try:
                    self.vols[d.name] = read_json(d / "volume.json")
                except (OSError, ValueError):
                    continue
        for p in (self.root / REFS_DIR).glob("*.json"):
            try:
                self.refs[p.stem] = read_json(p)
            except (OSError, ValueError):
                continue

    # ------------------------------------------------------------------ CRUD
    def create(self, name: str = "", driver: str = "local", driver_opts: dict[str, str] | None
               = None, labels: dict[str, str] | None = None, *, anonymous: bool = False
               ) -> dict[str, Any]:
        """POST /volumes/create; an existing name returns the existing volume (Docker)."""
        driver = driver or "local"
        if driver != "local":
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not '
                           "found")
        with self._lock:
            if not name:
                name, anonymous = secrets.token_hex(32), True
            elif not NAME_RE.match(name):
                raise InvalidArgument(
                    f'create {name}: "{name}" includes invalid characters for a local volume '
                    'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass '
                    "a host directory, use absolute path")
            if name in self.vols:
                return self._public(self.vols[name])
            opts = {str(k): str(v) for k, v in (driver_opts or {}).items()}
            _validate_opts(name, opts)
            labels = dict(labels or {})
            if anonymous:
                labels.setdefault(ANON_LABEL, "")
            d = self.root / name
            (d / "_data").mkdir(parents=True, exist_ok=True)
            rec = {"CreatedAt": rfc3339_now().split(".")[0] + "Z", "Driver": "local",
                   "Labels": labels, "Mountpoint": str(d / "_data"), "Name": name,
                   "Options": opts or (None if driver_opts is None else {}), "Scope": "local"}
            write_json_atomic(d / "volume.json", rec)
            self.vols[name] = rec
        self.events.publish("volume", "create", name, driver="local")
        return self._public(rec)

    @staticmethod
    def _public(rec: dict[str, Any]) -> dict[str, Any]:
        return dict(rec)

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            rec = self.vols.get(name)
            if rec is None:
                raise NotFound(f"get {name}: no such volume")
            return self._public(rec)

    def users(self, name: str) -> list[str]:
        with self._lock:
            return [cid for cid, r in self.refs.items() if name in r.get("volumes", [])]

    def list_volumes(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        filters = filters or {}
        with self._lock:
            return [self._public(v) for v in self.vols.values() if self._match(v, filters)]

    def _match(self, v: dict[str, Any], filters: dict[str, list[str]]) -> bool:
        for key, values in filters.items():
            if key == "name" and not any(x in v["Name"] for x in values):
                return False
            if key == "driver" and v["Driver"] not in values:
                return False
            if key == "dangling":
                want = values[-1].lower() in ("1", "true")
                if want == bool(self.users(v["Name"])):
                    return False
            if key in ("label", "label!"):
                hit = all(_label_match(v.get("Labels") or {}, x) for x in values)
                if hit != (key == "label"):
                    return False
            if key not in ("name", "driver", "dangling", "label", "label!", "all"):
                raise InvalidArgument(f"invalid filter '{key}'")
        return True

    def remove(self, name: str, *, force: bool = False) -> None:
        with self._lock:
            if name not in self.vols:
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            users = self.users(name)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            self._destroy(name)

    def _destroy(self, name: str) -> None:
        d = self.root / name
        data = d / "_data"
        if _sys.is_mountpoint(str(data)):
            _sys.umount(str(data))
        shutil.rmtree(d, ignore_errors=True)
        self.vols.pop(name, None)
        self.events.publish("volume", "destroy", name, driver="local")

    def prune(self, filters: dict[str, list[str]] | None = None) -> tuple[list[str], int]:
        """Unused volumes; only anonymous ones unless ``all=true`` (API ≥ 1.42)."""
        filters = dict(filters or {})
        everything = (filters.pop("all", ["false"])[-1].lower() in ("1", "true"))
        deleted, space = [], 0
        with self._lock:
            for name, v in list(self.vols.items()):
                if self.users(name) or not self._match(v, filters):
                    continue
                if not everything and ANON_LABEL not in (v.get("Labels") or {}):
                    continue
                space += apparent_size(Path(v["Mountpoint"]))
                self._destroy(name)
                deleted.append(name)
        return deleted, space

    # ------------------------------------------------------------------ containers
    def mounts_for(self, container_id: str, *, config: dict[str, Any],
                   host_config: dict[str, Any], image_config: dict[str, Any],
                   volumes_from: Callable[[str], list[dict[str, Any]]]
                   ) -> tuple[tuple[Mount, ...], list[dict[str, Any]]]:
        """Runtime mounts and Docker's inspect ``Mounts`` for a container about to start."""
        reqs = self._requests(config, host_config, image_config, volumes_from)
        with self._lock:
            prev = self.refs.get(container_id, {})
            anon_by_dest: dict[str, str] = dict(prev.get("anon_by_dest", {}))
            mounts, info, names = [], [], []
            for r in reqs:
                if r.type == "volume":
                    if not r.source:
                        r.source = anon_by_dest.get(r.destination) or ""
                        if not r.source or r.source not in self.vols:
                            r.source = self.create(anonymous=True)["Name"]
                        anon_by_dest[r.destination] = r.source
                    elif r.source not in self.vols:
                        self.create(r.source, r.driver, r.driver_opts or None, r.labels)
                    names.append(r.source)
                mounts.append(self._runtime_mount(r))
                info.append(self._inspect(r))
            ref = {"volumes": names, "anon_by_dest": anon_by_dest}
            self.refs[container_id] = ref
            write_json_atomic(self.root / REFS_DIR / f"{container_id}.json", ref)
            for name in dict.fromkeys(names):
                self._activate(name)
        for r in reqs:
            if r.type == "volume":
                self.events.publish("volume", "mount", r.source, container=container_id,
                                    destination=r.destination, driver="local",
                                    propagation=r.propagation,
                                    **{"read/write": "true" if r.rw else "false"})
        return tuple(mounts), info

    def _requests(self, config: dict[str, Any], host_config: dict[str, Any],
                  image_config: dict[str, Any],
                  volumes_from: Callable[[str], list[dict[str, Any]]]) -> list[MountReq]:
        out: dict[str, MountReq] = {}
        for spec in host_config.get("VolumesFrom") or []:
            name, mode = parse_volumes_from(spec)
            for m in volumes_from(name):
                if m.get("Type") in ("bind", "volume"):
                    r = _from_inspect(m, mode)
                    out[r.destination] = r
        explicit = [parse_bind(b) for b in host_config.get("Binds") or []]
        explicit += [parse_mount(m) for m in host_config.get("Mounts") or []]
        explicit += [parse_tmpfs(d, o or "") for d, o in (host_config.get("Tmpfs") or {}).items()]
        seen: set[str] = set()
        for r in explicit:  # explicit mounts override --volumes-from ones at the same path
            if r.destination in seen:
                raise InvalidArgument(f"Duplicate mount point: {r.destination}")
            seen.add(r.destination)
            out[r.destination] = r
        for dest in {**(image_config.get("Volumes") or {}), **(config.get("Volumes") or {})}:
            d = "/" + dest.strip("/")
            out.setdefault(d, MountReq("volume", d))  # VOLUME only where nothing else is
        for r in out.values():
            if r.type == "bind":
                self._check_bind_source(r)
        return sorted(out.values(), key=lambda r: r.destination.count("/"))

    @staticmethod
    def _check_bind_source(r: MountReq) -> None:
        if os.path.exists(r.source):
            return
        if not r.create_source:
            raise InvalidArgument(f'invalid mount config for type "bind": bind source path does '
                                  f"not exist: {r.source}")
        os.makedirs(r.source, exist_ok=True)

    def _runtime_mount(self, r: MountReq) -> Mount:
        rw = "rw" if r.rw else "ro"
        if r.type == "tmpfs":
            extra = tuple(o for o in r.tmpfs_options if o not in ("rw", "ro"))
            return Mount(destination=r.destination, type="tmpfs", source="tmpfs",
                         options=(rw, *extra))
        if r.type == "bind":
            return Mount(destination=r.destination, type="bind", source=r.source,
                         options=("rbind" if r.recursive else "bind", rw, r.propagation))
        mountpoint = Path(self.vols[r.source]["Mountpoint"])
        src = mountpoint / r.subpath.lstrip("/") if r.subpath else mountpoint
        opts: tuple[str, ...] = ("rbind", rw, "rprivate")
        if not r.nocopy and not r.subpath and _is_empty(mountpoint):
            opts += ("copyup",)  # the runtime fills it from the image's content at dest
        return Mount(destination=r.destination, type="bind", source=str(src), options=opts)

    def _inspect(self, r: MountReq) -> dict[str, Any]:
        if r.type == "volume":
            return {"Type": "volume", "Name": r.source,
                    "Source": self.vols[r.source]["Mountpoint"], "Destination": r.destination,
                    "Driver": "local", "Mode": r.mode or ("z" if r.create_source else ""),
                    "RW": r.rw, "Propagation": ""}
        if r.type == "bind":
            return {"Type": "bind", "Source": r.source, "Destination": r.destination,
                    "Mode": r.mode, "RW": r.rw, "Propagation": r.propagation}
        return {"Type": "tmpfs", "Source": "", "Destination": r.destination, "Mode": r.mode,
                "RW": r.rw, "Propagation": ""}

    def _activate(self, name: str) -> None:
        """Mount a volume with driver options on its Mountpoint if not mounted yet."""
        opts = self.vols[name].get("Options") or {}
        if not opts.get("type") and not opts.get("device"):
            return
        target = self.vols[name]["Mountpoint"]
        if _sys.is_mountpoint(target):
            return
        flags, data = 0, []
        for o in (opts.get("o") or "").split(","):
            if o in _FLAGS:
                flags |= _FLAGS[o]
            elif o:
                data.append(o)
        fstype = opts.get("type") or "none"
        device = opts.get("device") or fstype
        try:
            _sys.mount(device, target, None if flags & _sys.MS_BIND else fstype, flags,
                       ",".join(data) or None)
        except OSError as e:
            raise InvalidArgument(f"error while mounting volume '{target}': failed to mount "
                                  f"local volume: {e.strerror}") from None

    def _deactivate(self, name: str) -> None:
        rec = self.vols.get(name)
        if rec is None or self.users(name):
            return
        if _sys.is_mountpoint(rec["Mountpoint"]):
            _sys.umount(rec["Mountpoint"])

    def release(self, container_id: str, *, remove_anonymous: bool) -> None:
        """The container is removed: its holds go; ``-v`` removes its anonymous volumes."""
        with self._lock:
            ref = self.refs.pop(container_id, None)
            try:
                (self.root / REFS_DIR / f"{container_id}.json").unlink()
            except FileNotFoundError:
                pass
            if ref is None:
                return
            anon = set(ref.get("anon_by_dest", {}).values())
            for name in dict.fromkeys(ref.get("volumes", [])):
                self.events.publish("volume", "unmount", name, container=container_id,
                                    driver="local")
                self._deactivate(name)
                if remove_anonymous and name in anon and name in self.vols and not \
                        self.users(name):
                    self._destroy(name)


def _from_inspect(m: dict[str, Any], mode: str) -> MountReq:
    rw = bool(m.get("RW", True)) if not mode else mode == "rw"
    if m.get("Type") == "volume":
        return MountReq("volume", m["Destination"], m["Name"], rw=rw, mode=m.get("Mode", ""),
                        nocopy=True)
    return MountReq("bind", m["Destination"], m["Source"], rw=rw, mode=m.get("Mode", ""),
                    propagation=m.get("Propagation") or "rprivate")


def _validate_opts(name: str, opts: dict[str, str]) -> None:
    allowed = {"type", "device", "o", "size"}
    bad = sorted(set(opts) - allowed)
    if bad:
        raise InvalidArgument(f"create {name}: invalid option key: {bad[0]!r}")
    if opts.get("device") and not opts.get("type"):
        raise InvalidArgument(f"create {name}: missing required option \"type\"")


def _label_match(labels: dict[str, str], want: str) -> bool:
    key, eq, value = want.partition("=")
    if key not in labels:
        return False
    return not eq or labels[key] == value


def _is_empty(path: Path) -> bool:
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except OSError:
        return False


