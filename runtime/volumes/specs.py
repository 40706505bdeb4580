"""Parse Docker's mount requests (Binds, HostConfig.Mounts, Tmpfs, VolumesFrom) into one model.

Pure functions: no filesystem access except checking bind sources, so the
error messages (moby's wording) are easy to test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from runtime.api.errors import InvalidArgument

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_IGNORED_MODES = ("consistent", "cached", "delegated")


@dataclass(slots=True)
class MountReq:
    """One wanted mount, whatever syntax it came in."""

    type: str  # bind | volume | tmpfs
    destination: str
    source: str = ""  # host path (bind) or volume name ("" = anonymous)
    rw: bool = True
    mode: str = ""  # Docker's inspect "Mode" (the option string as given)
    propagation: str = ""
    nocopy: bool = False
    recursive: bool = True
    create_source: bool = False  # -v creates a missing host dir; --mount does not
    driver: str = "local"
    driver_opts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    subpath: str = ""
    tmpfs_options: tuple[str, ...] = ()


def _check_dest(dest: str, spec: str) -> str:
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid volume specification: '{spec}': invalid mount config: "
                              "mount path must be absolute")
    if dest.rstrip("/") == "":
        raise InvalidArgument(f"invalid volume specification: '{spec}': invalid mount config "
                              "for type \"bind\": invalid specification: destination can't be '/'")
    return "/" + dest.strip("/")


def parse_bind(spec: str) -> MountReq:
    """``-v`` syntax: ``/host:/ctr[:opts]``, ``name:/ctr[:opts]`` or ``/ctr`` (anonymous)."""
    parts = spec.split(":")
    if len(parts) == 1:
        return MountReq("volume", _check_dest(parts[0], spec))
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    src, dest = parts[0], _check_dest(parts[1], spec)
    mode = parts[2] if len(parts) == 3 else ""
    req = MountReq("bind" if src.startswith("/") else "volume", dest, src, mode=mode,
                   create_source=True)
    if req.type == "volume" and not NAME_RE.match(src):
        raise InvalidArgument(
            f'create {src}: "{src}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
            "use absolute path")
    _apply_mode(req, mode, spec)
    return req


def _apply_mode(req: MountReq, mode: str, spec: str) -> None:
    seen_rw = False
    for opt in [o for o in mode.split(",") if o]:
        if opt in ("ro", "rw"):
            if seen_rw:
                raise InvalidArgument(f"invalid mode: {mode}")
            seen_rw, req.rw = True, opt == "rw"
        elif opt in ("z", "Z") or opt in _IGNORED_MODES:
            continue
        elif opt in PROPAGATIONS:
            if req.type != "bind":
                raise InvalidArgument(f"invalid volume specification: '{spec}': propagation "
                                      "mode is only supported for bind mounts")
            req.propagation = opt
        elif opt == "nocopy":
            if req.type != "volume":
                raise InvalidArgument(f"invalid mode: {mode}")
            req.nocopy = True
        else:
            raise InvalidArgument(f"invalid mode: {mode}")
    if req.type == "bind" and not req.propagation:
        req.propagation = "rprivate"


def parse_mount(m: dict[str, Any]) -> MountReq:
    """One ``HostConfig.Mounts`` entry (``--mount``)."""
    kind = str(m.get("Type") or "")
    target = str(m.get("Target") or m.get("Destination") or "")
    if not target:
        raise InvalidArgument("invalid mount config: Target must not be empty")
    dest = _check_dest(target, target)
    source = str(m.get("Source") or "")
    rw = not m.get("ReadOnly")
    if kind == "bind":
        opts = m.get("BindOptions") or {}
        if not source:
            raise InvalidArgument('invalid mount config for type "bind": field Source must not '
                                  "be empty")
        if not source.startswith("/"):
            raise InvalidArgument(f'invalid mount config for type "bind": invalid mount path: '
                                  f"'{source}' mount path must be absolute")
        prop = str(opts.get("Propagation") or "rprivate")
        if prop not in PROPAGATIONS:
            raise InvalidArgument(f"invalid propagation mode: {prop}")
        return MountReq("bind", dest, source, rw=rw, propagation=prop,
                        recursive=not opts.get("NonRecursive"),
                        create_source=bool(opts.get("CreateMountpoint")))
    if kind == "volume":
        opts = m.get("VolumeOptions") or {}
        drv = opts.get("DriverConfig") or {}
        if source and not NAME_RE.match(source):
            raise InvalidArgument(f'invalid mount config for type "volume": invalid volume name '
                                  f"{source!r}")
        return MountReq("volume", dest, source, rw=rw, nocopy=bool(opts.get("NoCopy")),
                        driver=str(drv.get("Name") or "local"),
                        driver_opts={str(k): str(v) for k, v in (drv.get("Options") or {}).items()},
                        labels={str(k): str(v) for k, v in (opts.get("Labels") or {}).items()},
                        subpath=str(opts.get("Subpath") or ""))
    if kind == "tmpfs":
        if source:
            raise InvalidArgument('invalid mount config for type "tmpfs": field Source must be '
                                  "empty")
        return MountReq("tmpfs", dest, rw=rw, tmpfs_options=_tmpfs_api_opts(
            m.get("TmpfsOptions") or {}))
    raise InvalidArgument(f"mount type unknown: {kind!r}" if kind else
                          "invalid mount config: mount type unknown")


def _tmpfs_api_opts(o: dict[str, Any]) -> tuple[str, ...]:
    out = ["nosuid", "nodev", "noexec"]
    if o.get("SizeBytes"):
        out.append(f"size={int(o['SizeBytes'])}")
    if o.get("Mode"):
        out.append(f"mode={int(o['Mode']):o}")
    for extra in o.get("Options") or []:
        out.append("=".join(str(x) for x in extra) if isinstance(extra, list) else str(extra))
    return tuple(out)


def parse_tmpfs(dest: str, opts: str) -> MountReq:
    """``--tmpfs /run:rw,size=64m`` (HostConfig.Tmpfs) — Docker adds noexec,nosuid,nodev."""
    d = _check_dest(dest, dest)
    given = [o for o in opts.split(",") if o]
    rw = "ro" not in given
    base = ["noexec", "nosuid", "nodev"]
    keys = {o.split("=")[0] for o in given}
    out = [o for o in base if o not in keys and o.removeprefix("no") not in keys]
    out += [o for o in given if o not in ("rw", "ro")]
    return MountReq("tmpfs", d, rw=rw, mode=opts, tmpfs_options=tuple(out))


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """``ctr[:ro|rw]`` → (container, mode override or "")."""
    name, _, mode = spec.partition(":")
    if mode not in ("", "ro", "rw", "z", "Z"):
        raise InvalidArgument(f"invalid mode for volumes-from: {mode}")
    return name, mode if mode in ("ro", "rw") else ""
