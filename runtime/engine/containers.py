"""The container service: Docker's container verbs over the runtime, images, network, volumes.

Each verb takes the container's lock, checks the state machine
(:mod:`runtime.engine.state`), acts, persists and publishes an event. A
waiter thread per running container turns the runtime's exit into the
``die`` transition, restart policies and ``--rm``. Containers outlive the
engine: :meth:`ContainerService.restore` adopts the ones still running.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import signal as signal_mod
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runtime import layout
from runtime.api.errors import Conflict, CoveError, InvalidArgument, NotFound
from runtime.engine import specconv
from runtime.engine.events import EventBus
from runtime.engine.links import link_env, parse_link
from runtime.engine.ports import Images, Networks, Runtime, Volumes
from runtime.engine.records import NAME_RE, Container, now_ns, random_name
from runtime.engine.state import Op, Status, check
from runtime.engine.validation import config_part, validate_host_config
from runtime.spec import Mount

log = logging.getLogger(__name__)


class ContainerService:
    def __init__(
        self,
        *,
        containers_dir: Path,
        runtime: Runtime,
        images: Images,
        networks: Networks,
        volumes: Volumes,
        events: EventBus,
        cgroup_parent: str = "cove",
        userns: specconv.Userns | None = None,
    ) -> None:
        self.userns = userns  # --userns-remap
        self.dir = containers_dir
        self.runtime = runtime
        self.images = images
        self.networks = networks
        self.volumes = volumes
        self.events = events
        self.cgroup_parent = cgroup_parent
        self._lock = threading.RLock()
        self._by_id: dict[str, Container] = {}
        self._names: dict[str, str] = {}
        self.dir.mkdir(parents=True, exist_ok=True)
        images.in_use = self.users_of_image
        images.is_running = self._is_running

    # ---- lookup ----
    def get(self, ref: str) -> Container:
        """By full ID, name (with or without '/'), or unique ID prefix: moby's order."""
        with self._lock:
            if ref in self._by_id:
                return self._by_id[ref]
            cid = self._names.get(ref.lstrip("/"))
            if cid:
                return self._by_id[cid]
            if ref:
                matches = [c for i, c in self._by_id.items() if i.startswith(ref)]
                if len(matches) == 1:
                    return matches[0]
                if len(matches) > 1:
                    raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        with self._lock:
            return sorted(self._by_id.values(), key=lambda c: c.created_ns, reverse=True)

    def _is_running(self, container_id: str) -> bool:
        c = self._by_id.get(container_id)
        return c is not None and c.running

    def users_of_image(self, image_id: str) -> list[str]:
        with self._lock:
            return [c.id for c in self._by_id.values() if c.image_id == image_id]

    # ---- create ----
    def create(self, name: str, body: dict[str, Any]) -> Container:
        config = config_part(body)
        host_config = body.get("HostConfig") or {}
        networking = body.get("NetworkingConfig") or {}
        validate_host_config(host_config)
        self.networks.check_endpoints(networking)
        image_ref = config.get("Image") or ""
        if not image_ref:
            raise InvalidArgument("config cannot be empty in order to create a container")
        image = self.images.get(image_ref)
        image_config = image.config.get("config") or {}
        specconv.command(config, image_config)  # fail now, not at start, if nothing to run
        specconv.security(host_config)
        specconv.log_config(host_config, "")
        with self._lock:
            name = self._reserve_name(name)
            cid = self._new_id()
            directory = self.dir / cid
            c = Container(
                id=cid, name=name, created_ns=now_ns(), image_ref=image_ref,
                image_id=image.id, config=config, host_config=host_config,
                networking_config=networking, directory=directory,
            )
            try:
                directory.mkdir(parents=True)
                self.images.prepare_rootfs(cid, image)
                self._plan_mounts(c, image_config)
                c.save_config()
                c.save_state()
            except BaseException:
                self._names.pop(name, None)
                with contextlib.suppress(Exception):
                    self.volumes.release(cid, remove_anonymous=True)
                self.images.remove_rootfs(cid)
                shutil.rmtree(directory, ignore_errors=True)
                raise
            self._by_id[cid] = c
            self._register_name(c)
        self._event(c, "create")
        return c

    def _plan_mounts(self, c: Container, image_config: dict[str, Any]) -> None:
        """Volumes exist from create on, as in moby: inspect shows them and cp reaches them."""
        c.spec_mounts, c.mounts_info = self.volumes.mounts_for(
            c.id, config=c.config, host_config=c.host_config, image_config=image_config,
            volumes_from=self._volumes_from,
        )

    def _reserve_name(self, name: str) -> str:
        if not name:
            name = random_name()
            while name in self._names:
                name = random_name() + str(secrets.randbelow(100))
        if not NAME_RE.match(name):
            raise InvalidArgument(
                f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )
        name = name.lstrip("/")
        if name in self._names:
            raise Conflict(
                f'Conflict. The container name "/{name}" is already in use by container '
                f'"{self._names[name]}". You have to remove (or rename) that container to '
                "be able to reuse that name."
            )
        self._names[name] = ""
        return name

    def _new_id(self) -> str:
        while True:
            cid = secrets.token_hex(32)
            if cid not in self._by_id and not cid[:12].isdigit():
                return cid

    def _register_name(self, c: Container) -> None:
        self._names[c.name] = c.id

    # ---- start ----
    def start(self, ref: str) -> None:
        c = self.get(ref)
        with c.lock:
            check(Op.START, c.status, ref)
            c.manually_stopped = False
            try:
                self._start_locked(c)
            except CoveError:
                if c.host_config.get("AutoRemove"):
                    # moby removes an auto-remove container whose start failed
                    threading.Thread(target=self._auto_remove, args=(c,), daemon=True).start()
                raise
        self._event(c, "start")

    def _start_locked(self, c: Container) -> None:
        image = self.images.get(c.image_id)
        image_config = image.config.get("config") or {}
        net = None
        try:
            rootfs_mounts = self.images.prepare_rootfs(c.id, image)
            vol_mounts, c.mounts_info = self.volumes.mounts_for(
                c.id, config=c.config, host_config=c.host_config,
                image_config=image_config, volumes_from=self._volumes_from,
            )
            exposed = {**(image_config.get("ExposedPorts") or {}),
                       **(c.config.get("ExposedPorts") or {})}
            net = self.networks.setup(
                c.id, name=c.name, hostname=c.config.get("Hostname") or c.id[:12],
                domainname=c.config.get("Domainname") or "",
                config={**c.config, "ExposedPorts": exposed},
                host_config=c.host_config, networking_config=c.networking_config,
                resolve_container=self._resolve_for_network,
            )
            spec = specconv.build(
                container_id=c.id, config=self._with_link_env(c), host_config=c.host_config,
                image_config=image_config,
                rootfs=str(c.directory / layout.CONTAINER_ROOTFS),
                rootfs_mounts=rootfs_mounts, mounts=(*net.mounts, *vol_mounts),
                netns_path=net.netns_path, create_netns=net.create_netns,
                log_path=str(c.log_path), cgroup_parent=self.cgroup_parent,
                userns=self.userns, engine_owned=(*net.mounts, *_volumes(vol_mounts, c)),
            )
            (c.directory / layout.CONTAINER_ROOTFS).mkdir(exist_ok=True)
            c.pid = self.runtime.start(spec)
        except CoveError as e:
            self._start_failed(c, e, torn_down=net is None)
            raise
        except Exception as e:
            log.exception("start %s", c.id)
            err = CoveError(f"failed to start container {c.short_id}: {e}")
            self._start_failed(c, err, torn_down=net is None)
            raise err from e
        c.spec_mounts = tuple(vol_mounts)
        c.network_settings = net.settings
        c.started_at_ns = now_ns()
        c.error = ""
        c.exit_code = 0
        c.oom_killed = False
        c.set_status(Status.RUNNING)
        self._watch(c)

    def _with_link_env(self, c: Container) -> dict[str, Any]:
        if not c.host_config.get("Links"):
            return c.config
        extra = link_env(c, self.get)
        return {**c.config, "Env": [*extra, *(c.config.get("Env") or [])]}

    def remove_link(self, ref: str) -> None:
        """``DELETE /containers/<name>/<alias>?link=1``: forget a legacy link."""
        parent, _, alias = ref.strip("/").rpartition("/")
        c = self.get(parent)
        with c.lock:
            links = [x for x in c.host_config.get("Links") or []
                     if parse_link(str(x))[1] != alias]
            if len(links) == len(c.host_config.get("Links") or []):
                raise NotFound(f"Could not find container for entity id {ref}")
            c.host_config = {**c.host_config, "Links": links or None}
            c.save_config()

    def _start_failed(self, c: Container, err: CoveError, torn_down: bool) -> None:
        """Leave nothing behind from a failed start: network, volumes' holds, runtime state."""
        with contextlib.suppress(Exception):
            self.runtime.delete(c.id)
        if not torn_down:
            with contextlib.suppress(Exception):
                self.networks.teardown(c.id)
        c.error = err.message
        c.exit_code = err.exit_code if err.exit_code in (126, 127) else 128
        c.pid = 0
        c.save_state()

    def _volumes_from(self, ref: str) -> list[dict[str, Any]]:
        return list(self.get(ref).mounts_info)

    def _resolve_for_network(self, ref: str) -> tuple[str, int]:
        other = self.get(ref)
        if not other.running:
            raise Conflict(f"cannot join network of a non running container: {other.id}")
        return other.id, other.pid

    # ---- exits, restarts ----
    def _watch(self, c: Container) -> None:
        threading.Thread(target=self._wait_exit, args=(c,), daemon=True,
                         name=f"wait-{c.short_id}").start()

    def _wait_exit(self, c: Container) -> None:
        exit_info = self.runtime.wait(c.id)
        with c.lock:
            if c.removed:
                return
            c.exit_code = exit_info.code if exit_info else 255
            c.oom_killed = bool(exit_info and exit_info.oom_killed)
            c.finished_at_ns = exit_info.finished_at_ns if exit_info else now_ns()
            c.pid = 0
            self._after_exit(c)

    def _after_exit(self, c: Container) -> None:
        with contextlib.suppress(Exception):
            self.runtime.delete(c.id)
        with contextlib.suppress(Exception):
            self.networks.teardown(c.id)
        c.network_settings = _stopped_settings(c.network_settings)
        c.exits += 1
        restart = self._should_restart(c)
        if c.oom_killed:
            self._event(c, "oom")
        self._event(c, "die", exitCode=str(c.exit_code))
        c.set_status(Status.RESTARTING if restart else Status.EXITED)
        if restart:
            threading.Thread(target=self._restart_later, args=(c,), daemon=True).start()
        elif c.host_config.get("AutoRemove"):
            threading.Thread(target=self._auto_remove, args=(c,), daemon=True).start()

    def _should_restart(self, c: Container) -> bool:
        policy = c.host_config.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if c.manually_stopped or name == "no":
            return False
        if name == "on-failure":
            limit = int(policy.get("MaximumRetryCount") or 0)
            return c.exit_code != 0 and (limit == 0 or c.restart_count < limit)
        return name in ("always", "unless-stopped")

    def _restart_later(self, c: Container) -> None:
        time.sleep(min(0.1 * (2 ** min(c.restart_count, 10)), 60.0))
        with c.lock:
            if c.status is not Status.RESTARTING or c.removed:
                return
            c.restart_count += 1
            try:
                self._start_locked(c)
            except CoveError as e:
                log.warning("restart %s: %s", c.short_id, e)
                c.set_status(Status.EXITED)
                return
        self._event(c, "start")

    def _auto_remove(self, c: Container) -> None:
        try:
            self.remove(c.id, force=False, volumes=True)
        except CoveError as e:
            log.warning("auto-remove %s: %s", c.short_id, e)

    # ---- stop, kill, restart ----
    def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        c = self.get(ref)
        with c.lock:
            if c.status is Status.RESTARTING:
                c.manually_stopped = True
                c.set_status(Status.EXITED)
                return
            check(Op.STOP, c.status, ref)
            c.manually_stopped = True
            c.save_state()
            self._terminate(c, timeout, sig)
        self._event(c, "stop")

    def _terminate(self, c: Container, timeout: int | None, sig: str | None) -> None:
        """Stop signal, wait up to *timeout* seconds, then SIGKILL (caller holds the lock)."""
        if timeout is None:
            timeout = c.config.get("StopTimeout")
            timeout = 10 if timeout is None else int(timeout)
        stop_signal = specconv.signal_number(
            sig or c.config.get("StopSignal") or self._image_stop_signal(c) or "SIGTERM"
        )
        if c.status is Status.PAUSED:
            with contextlib.suppress(CoveError):
                self.runtime.resume(c.id)
        first = c.exits
        if timeout != 0:
            with contextlib.suppress(CoveError):
                self.runtime.kill(c.id, stop_signal)
            wait = None if timeout < 0 else float(timeout)
            if c.changed.wait_for(lambda: c.exits != first, wait):
                return
        with contextlib.suppress(CoveError):
            self.runtime.kill(c.id, int(signal_mod.SIGKILL))
        c.changed.wait_for(lambda: c.exits != first, 30.0)

    def _image_stop_signal(self, c: Container) -> str | None:
        try:
            cfg = self.images.get(c.image_id).config.get("config") or {}
        except CoveError:
            return None
        value = cfg.get("StopSignal")
        return str(value) if value else None

    def kill(self, ref: str, sig: str = "SIGKILL") -> None:
        number = specconv.signal_number(sig or "SIGKILL")
        c = self.get(ref)
        with c.lock:
            check(Op.KILL, c.status, ref)
            if number == signal_mod.SIGKILL:
                c.manually_stopped = True
            if c.status is Status.PAUSED and number == signal_mod.SIGKILL:
                self.runtime.kill(c.id, number)
                self.runtime.resume(c.id)
            else:
                self.runtime.kill(c.id, number)
            if number == signal_mod.SIGKILL:
                # moby's ContainerKill waits for a SIGKILLed container to be gone.
                first = c.exits
                c.changed.wait_for(lambda: c.exits != first or not c.running, 10.0)
        self._event(c, "kill", signal=str(number))

    def restart(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        c = self.get(ref)
        with c.lock:
            if c.running:
                c.manually_stopped = True
                self._terminate(c, timeout, sig)
            if c.status is Status.RESTARTING:
                c.status = Status.EXITED
            c.manually_stopped = False
            self._start_locked(c)
        self._event(c, "restart")

    # ---- pause ----
    def pause(self, ref: str) -> None:
        c = self.get(ref)
        with c.lock:
            check(Op.PAUSE, c.status, ref)
            self.runtime.pause(c.id)
            c.set_status(Status.PAUSED)
        self._event(c, "pause")

    def unpause(self, ref: str) -> None:
        c = self.get(ref)
        with c.lock:
            check(Op.UNPAUSE, c.status, ref)
            self.runtime.resume(c.id)
            c.set_status(Status.RUNNING)
        self._event(c, "unpause")

    # ---- wait ----
    def wait(self, c: Container, condition: str) -> int:
        """Block until *condition* ("not-running", "next-exit", "removed"); the exit code."""
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: \"{condition}\"")
        with c.lock:
            first = c.exits
            if condition == "removed":
                c.changed.wait_for(lambda: c.removed)
            elif condition == "next-exit":
                c.changed.wait_for(lambda: c.exits != first or c.removed)
            else:
                # moby wakes not-running waiters on every exit, even one a restart
                # policy turns into "restarting" (State.SetRestarting notifies waitStop).
                c.changed.wait_for(
                    lambda: c.status in (Status.CREATED, Status.EXITED, Status.DEAD)
                    or c.removed or c.exits != first
                )
            return c.exit_code

    # ---- remove, rename ----
    def remove(self, ref: str, *, force: bool, volumes: bool) -> None:
        c = self.get(ref)
        with c.lock:
            if c.removed:
                return
            if c.running:
                if not force:
                    check(Op.REMOVE, c.status, c.name)
                c.manually_stopped = True
                self._terminate(c, 0, "SIGKILL")
            if c.status is Status.RESTARTING:
                c.manually_stopped = True
            previous = c.status
            c.status = Status.REMOVING
            try:
                self._release(c, volumes)
            except Exception:
                c.status = previous
                raise
            c.removed = True
            c.changed.notify_all()
        with self._lock:
            self._by_id.pop(c.id, None)
            if self._names.get(c.name) == c.id:
                del self._names[c.name]
        self._event(c, "destroy")

    def _release(self, c: Container, volumes: bool) -> None:
        self.runtime.delete(c.id)
        with contextlib.suppress(CoveError):
            self.networks.teardown(c.id)
        self.networks.forget(c.id)
        self.volumes.release(c.id, remove_anonymous=volumes)
        self.images.remove_rootfs(c.id)
        shutil.rmtree(c.directory, ignore_errors=True)

    def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        new_name = new_name.lstrip("/")
        if not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        with self._lock, c.lock:
            if new_name == c.name:
                raise InvalidArgument("Renaming a container with the same name as its "
                                      "current name")
            self._reserve_name(new_name)
            old = c.name
            c.name = new_name
            c.save_config()
            del self._names[old]
            self._register_name(c)
        self._event(c, "rename", oldName="/" + old)

    def update(self, ref: str, body: dict[str, Any]) -> list[str]:
        c = self.get(ref)
        allowed = {
            "Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuQuota",
            "CpuPeriod", "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight",
            "RestartPolicy",
        }
        changes = {k: v for k, v in body.items() if k in allowed and v not in (None, 0, "")}
        with c.lock:
            merged = {**c.host_config, **changes}
            resources = specconv.resources(merged)
            if c.running:
                self.runtime.update(c.id, resources)
            c.host_config = merged
            c.save_config()
        self._event(c, "update")
        return []

    # ---- events ----
    def _event(self, c: Container, action: str, **extra: str) -> None:
        labels = {str(k): str(v) for k, v in (c.config.get("Labels") or {}).items()}
        self.events.publish("container", action, c.id, **labels, image=c.image_ref,
                            name=c.name, **extra)

    # ---- engine start / stop ----
    def restore(self) -> set[str]:
        """Load every record; adopt running containers; settle the ones that died meanwhile."""
        for directory in sorted(self.dir.iterdir()):
            try:
                c = Container.load(directory)
            except (OSError, ValueError, KeyError) as e:
                log.warning("skipping unreadable container record %s: %s", directory.name, e)
                continue
            self._by_id[c.id] = c
            self._register_name(c)
        live = set()
        for c in list(self._by_id.values()):
            if c.running and self._adopt(c):
                live.add(c.id)
        return live

    def _adopt(self, c: Container) -> bool:
        try:
            st = self.runtime.status(c.id)
        except CoveError:
            st = None
        with c.lock:
            if st is not None and st.running:
                c.pid = st.pid
                c.status = Status.PAUSED if st.paused else Status.RUNNING
                c.save_state()
                self._watch(c)
                return True
            exit_info = st.exit if st is not None else None
            c.exit_code = exit_info.code if exit_info else 255
            c.oom_killed = bool(exit_info and exit_info.oom_killed)
            c.finished_at_ns = exit_info.finished_at_ns if exit_info else now_ns()
            c.pid = 0
            self._after_exit(c)
            return False

    def start_restart_policies(self) -> None:
        """At engine start, containers with ``always``/``unless-stopped`` come back."""
        for c in self.all():
            policy = (c.host_config.get("RestartPolicy") or {}).get("Name") or "no"
            if c.status is Status.EXITED and not c.manually_stopped and policy in (
                "always", "unless-stopped"
            ):
                with contextlib.suppress(CoveError), c.lock:
                    self._start_locked(c)

    def running_ids(self) -> Iterator[str]:
        return (c.id for c in self.all() if c.running)


def _stopped_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Docker keeps the networks of a stopped container but clears addresses and ports."""
    if not settings:
        return settings
    out = dict(settings)
    out["Ports"] = {}
    out["SandboxKey"] = ""
    for key in ("IPAddress", "Gateway", "MacAddress"):
        if key in out:
            out[key] = ""
    nets = {}
    for name, ep in (settings.get("Networks") or {}).items():
        ep = dict(ep)
        for key in ("IPAddress", "Gateway", "MacAddress", "EndpointID"):
            ep[key] = ""
        ep["IPPrefixLen"] = 0
        nets[name] = ep
    out["Networks"] = nets
    return out


def _volumes(mounts: tuple[Mount, ...], c: Container) -> tuple[Mount, ...]:
    """The named and anonymous volumes among *mounts* (1:1 with c.mounts_info)."""
    return tuple(m for m, info in zip(mounts, c.mounts_info, strict=True)
                 if info.get("Type") == "volume")
