"""``cove vm``: the Linux VM that runs the engine on macOS/Windows (works on Linux too).

Verbs: ``image build|pack|fetch``, ``start``, ``stop``, ``status``, ``rm``, ``ssh``, ``logs``,
``env``.
vmhost (paramiko, libvirt) is imported inside the handlers only, so this module imports
anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from runtime.api.errors import Conflict, CoveError, InvalidArgument


def _fail(e: CoveError) -> int:
    print(f"cove vm: {e}", file=sys.stderr)
    return e.exit_code


def _image_build(args: argparse.Namespace) -> int:
    from vmhost import guestimage

    try:
        image = guestimage.build(force=args.force, mirror=args.mirror, arch=args.arch)
        info: dict[str, Any] = guestimage.summary(image)
        if not args.no_compress:
            info["compressed_zstd_bytes"] = guestimage.compressed_size(image)
    except CoveError as e:
        return _fail(e)
    if args.json:
        print(json.dumps(info, indent=1, sort_keys=True))
        return 0
    files = info["files"]
    print(f"guest image {image.key} in {info['dir']}")
    for name, f in sorted(files.items()):
        mib, alloc = f["size"] / 2**20, f["allocated"] / 2**20
        print(f"  {name:12} {mib:8.1f} MiB  ({alloc:.1f} MiB allocated)")
    if "compressed_zstd_bytes" in info:
        print(
            f"  compressed (zstd -10, all files): {info['compressed_zstd_bytes'] / 2**20:.1f} MiB"
        )
    return 0


def _image_pack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vmhost import guestimage, release

    def step(what: str) -> None:
        if not args.quiet:
            print(f"cove vm image pack: {what}", file=sys.stderr)

    try:
        image = (guestimage.image_at(Path(args.image)) if args.image
                 else guestimage.build(arch=args.arch))
        path = release.pack(
            image,
            Path(args.output),
            version=args.release_version or _default_version(),
            arch=args.arch,
            step=step,
        )
    except FileNotFoundError as e:
        print(f"cove vm image pack: {e.filename}: no built guest image there", file=sys.stderr)
        return 1
    except CoveError as e:
        return _fail(e)
    manifest = json.loads(path.read_text())
    if args.json:
        print(json.dumps(manifest, indent=1, sort_keys=True))
        return 0
    print(f"release {manifest['version']} ({manifest['arch']}) in {path.parent}")
    for name, f in sorted(manifest["files"].items()):
        print(f"  {name:12} {f['size']:>12,} bytes  sha256 {f['sha256']}")
    return 0


def _image_fetch(args: argparse.Namespace) -> int:
    from vmhost import release

    def show(done: int, total: int) -> None:
        if not args.quiet:
            of = f" of {total / 2**20:.1f}" if total else ""
            print(f"\r{done / 2**20:.1f}{of} MiB", end="", file=sys.stderr, flush=True)

    try:
        image = release.fetch_release(args.url, progress=show, arch=args.arch)
    except CoveError as e:
        return _fail(e)
    finally:
        if not args.quiet:
            print(file=sys.stderr)
    print(image.root.parent)
    return 0


def _config(args: argparse.Namespace) -> Any:
    """The instance's settings with the flags given on this command line applied: a new
    instance takes the defaults for the rest, an existing one keeps its ``vm.json``."""
    from dataclasses import replace

    from vmhost import instance

    given = {
        "cpus": args.cpus,
        "memory_mib": args.memory,
        "disk_gib": args.disk,
        "accel": args.accel,
        "shares": tuple(os.path.abspath(s) for s in args.share) if args.share else None,
    }
    if args.no_share:
        given["shares"] = ()
    flags = {k: v for k, v in given.items() if v is not None}
    try:
        current = instance.load(args.name)
    except CoveError:
        flags.setdefault("shares", _default_shares())
        return instance.InstanceConfig(name=args.name, **flags)
    return replace(current, **flags)


def _default_shares() -> tuple[str, ...]:
    """A new VM shares the user's home at the same path, so ``docker run -v ~/src:/src``
    works as on Docker Desktop — where the backend can share at all."""
    from vmhost.backends import get as get_backend

    home = os.path.expanduser("~")
    if not os.path.isdir(home) or get_backend().sharing() is not None:
        return ()
    return (home,)


def _apply_config(config: Any) -> None:
    """An existing instance takes *config* before it boots: CPUs and memory at the next
    boot (the backend redefines the stopped VM from vm.json), the data disk grown now and
    never shrunk. A running VM cannot change: it says so instead of ignoring the flags."""
    from vmhost import control, instance, layout
    from vmhost.backends import get as get_backend
    from vmhost.hypervisor import VMState

    if not layout.InstanceLayout.named(config.name).vm_json.exists():
        return  # control.start creates it from *config*
    current = instance.load(config.name)
    if config == current:
        return
    # A VM without its supervisor (one that crashed) may still run: never resize under it.
    if control.supervisor_pid(config.name) or (
        get_backend().status(config.name).state is VMState.RUNNING
    ):
        raise Conflict(
            f"vm {config.name} is running with other settings "
            f"({instance.differences(current, config)}): stop it first to apply them"
        )
    instance.reconfigure(config)


def _fetch_guest_image(args: argparse.Namespace) -> None:
    """A released image is downloaded here, with progress on this terminal, rather than
    silently in the supervisor (which then finds it cached)."""
    from vmhost import guestimage, release

    shown = release.TextProgress(prefix=f"vm {args.name}: ")
    try:
        if args.quiet:
            guestimage.prefetch()
        else:
            guestimage.prefetch(step=shown.step, progress=shown.progress)
    finally:
        shown.close()


def _start(args: argparse.Namespace) -> int:
    from vmhost import control

    def show(ev: Any) -> None:
        if not args.quiet:
            t = ev.data.get("t")
            print(
                f"vm {args.name}: {ev.kind}" + (f" ({t:.1f}s)" if t is not None else ""),
                file=sys.stderr,
            )

    try:
        config = _config(args)
        _apply_config(config)
        _fetch_guest_image(args)
        url = control.start(config, timeout=args.timeout, on_event=show)
    except CoveError as e:
        return _fail(e)
    print(url)
    return 0


def _stop(args: argparse.Namespace) -> int:
    from vmhost import control

    try:
        control.stop(args.name)
    except CoveError as e:
        return _fail(e)
    return 0


def _status(args: argparse.Namespace) -> int:
    from vmhost import control, instance

    try:
        names = [args.name] if args.name else instance.names()
        infos = [control.status(n) for n in names]
    except CoveError as e:
        return _fail(e)
    if args.json:
        print(json.dumps([asdict(i) for i in infos], indent=1))
        return 0
    print(f"{'NAME':12} {'STATE':9} {'ACCEL':5} {'CPUS':4} {'MEMORY':7} {'QEMU RSS':9} HOST")
    for i in infos:
        rss = f"{i.host_rss_bytes / 2**20:.0f}MiB" if i.host_rss_bytes else "-"
        print(
            f"{i.name:12} {i.state:9} {i.accel or '-':5} {i.cpus:<4} {i.memory_mib:<7} "
            f"{rss:9} {i.host or '-'}"
        )
    return 0


def _rm(args: argparse.Namespace) -> int:
    from vmhost import control

    try:
        control.remove(args.name, force=args.force)
    except CoveError as e:
        return _fail(e)
    return 0


def _ssh(args: argparse.Namespace) -> int:
    from vmhost import control

    try:
        argv = control.ssh_argv(
            args.name, args.command, tty=sys.stdin.isatty() and not args.command
        )
    except CoveError as e:
        return _fail(e)
    if shutil.which("ssh") is None:
        print("cove vm ssh: no OpenSSH client on PATH", file=sys.stderr)
        return 127
    return subprocess.call(argv)


SHELLS = ("sh", "powershell", "cmd")


def default_shell(platform: str = sys.platform) -> str:
    return "powershell" if platform == "win32" else "sh"


def env_vars(name: str) -> dict[str, str]:
    """What points cove and docker at the VM's relay. A TCP relay (Windows) wants its token
    in every connection's first request: cove sends ``COVE_HOST_TOKEN``, the docker CLI
    (28 and later, and compose) ``DOCKER_CUSTOM_HEADERS``; docker-py and older CLIs read it
    from ``HttpHeaders`` in the docker config.json (see ``cove vm env --help``)."""
    from vmhost import control
    from vmhost.relay import TOKEN_HEADER

    url, token = control.relay_endpoint(name)
    out = {"COVE_HOST": url, "DOCKER_HOST": url}
    if token is not None:
        out["COVE_HOST_TOKEN"] = token
        out["DOCKER_CUSTOM_HEADERS"] = f"{TOKEN_HEADER.decode().title()}={token}"
    return out


def env_lines(name: str, shell: str | None = None) -> list[str]:
    """Lines that set :func:`env_vars` in *shell*: ``eval "$(cove vm env)"`` in sh,
    ``cove vm env | Invoke-Expression`` in PowerShell, ``FOR /F`` in cmd."""
    import shlex

    shell = shell or default_shell()
    if shell not in SHELLS:
        raise InvalidArgument(f"unknown shell {shell!r} (use {', '.join(SHELLS)})")
    lines = []
    for key, value in env_vars(name).items():
        if shell == "powershell":
            quoted = value.replace("'", "''")
            lines.append(f"$Env:{key} = '{quoted}'")
        elif shell == "cmd":
            lines.append(f"SET {key}={value}")
        else:
            lines.append(f"export {key}={shlex.quote(value)}")
    return lines


def _env(args: argparse.Namespace) -> int:
    from vmhost import control

    if not control.supervisor_pid(args.name):
        print(f"cove vm env: vm {args.name} is not running (cove vm start)", file=sys.stderr)
        return 1
    try:
        print("\n".join(env_lines(args.name, args.shell)))
    except CoveError as e:
        return _fail(e)
    return 0


def _logs(args: argparse.Namespace) -> int:
    from vmhost import layout

    lay = layout.InstanceLayout.named(args.name)
    path = {"serial": lay.serial_log, "supervisor": lay.supervisor_log, "events": lay.events}[
        args.which
    ]
    try:
        with open(path, "rb") as f:
            sys.stdout.buffer.write(f.read())
    except FileNotFoundError:
        print(f"cove vm logs: {path} does not exist yet", file=sys.stderr)
        return 1
    return 0


def _default_version() -> str:
    try:
        from importlib.metadata import version

        return version("cove")
    except ImportError:
        return "0.0.0"


def _handler(fn: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Accept both ``func(args)`` (the brief) and ``func(cli, args)`` (runtime.cli.main)."""

    def call(*params: Any) -> int:
        return fn(params[-1])

    return call


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vm = subparsers.add_parser("vm", help="Manage the Linux VM that runs the engine")
    sub = vm.add_subparsers(dest="vm_verb", metavar="COMMAND", required=True)

    image = sub.add_parser("image", help="Guest image")
    isub = image.add_subparsers(dest="vm_image_verb", metavar="COMMAND", required=True)
    build = isub.add_parser("build", help="Build the guest image with mmdebstrap (cached)")
    build.add_argument("--force", action="store_true", help="rebuild even when cached")
    build.add_argument("--mirror", default="http://deb.debian.org/debian")
    build.add_argument("--no-compress", action="store_true", help="skip the zstd size report")
    build.add_argument("--json", action="store_true")
    build.add_argument("--arch", help="amd64 or arm64 (default: this machine's; another one "
                       "builds under qemu-user-static)")
    build.set_defaults(func=_handler(_image_build))
    pack = isub.add_parser(
        "pack", help="Write release artefacts (xz root, kernel, initrd, release.json) to a dir"
    )
    pack.add_argument("-o", "--output", required=True, help="directory to upload as is")
    pack.add_argument("--version", dest="release_version", help="release version (default: cove's)")
    pack.add_argument("--image", help="a built image dir (default: build or reuse the cached one)")
    pack.add_argument("--arch", help="guest architecture (default: the image's; without --image, "
                      "the one built)")
    pack.add_argument("-q", "--quiet", action="store_true")
    pack.add_argument("--json", action="store_true", help="print the manifest")
    pack.set_defaults(func=_handler(_image_pack))
    fetch = isub.add_parser(
        "fetch", help="Download a released image (release.json URL); print its dir"
    )
    fetch.add_argument("url", help="URL of a release.json written by `image pack`")
    fetch.add_argument("-q", "--quiet", action="store_true")
    fetch.add_argument("--arch", help="the release's arch (default: this machine's)")
    fetch.set_defaults(func=_handler(_image_fetch))

    def named(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("name", nargs="?", default="default")
        return p

    start = named(sub.add_parser("start", help="Create and boot the VM; print its Docker host"))
    # No defaults here: a flag left out keeps the instance's setting (InstanceConfig's
    # default for a new one); a flag given changes a stopped instance before it boots.
    start.add_argument("--cpus", type=int, help="vCPUs (default 2)")
    start.add_argument("--memory", type=int, help="MiB (default 1024)")
    start.add_argument("--disk", type=int, help="data disk GiB, sparse; grows, never shrinks "
                       "(default 20)")
    start.add_argument("--accel", choices=("auto", "kvm", "hvf", "tcg"))
    start.add_argument("--share", action="append", default=[],
                       help="host dir to share (virtiofs); replaces the instance's list "
                       "(a new VM shares your home by default)")
    start.add_argument("--no-share", action="store_true", help="share no host directory")
    start.add_argument("--timeout", type=float, default=600.0)
    start.add_argument("-q", "--quiet", action="store_true")
    start.set_defaults(func=_handler(_start))
    named(sub.add_parser("stop", help="Power the VM off")).set_defaults(func=_handler(_stop))
    status = sub.add_parser("status", help="Show VMs")
    status.add_argument("name", nargs="?")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_handler(_status))
    rm = named(sub.add_parser("rm", help="Delete the VM and its data disk"))
    rm.add_argument("-f", "--force", action="store_true", help="stop it first if running")
    rm.set_defaults(func=_handler(_rm))
    ssh = named(sub.add_parser("ssh", help="Open a shell (or run a command) in the VM"))
    ssh.add_argument("command", nargs=argparse.REMAINDER)
    ssh.set_defaults(func=_handler(_ssh))
    env = named(sub.add_parser(
        "env", help="Print COVE_HOST/DOCKER_HOST lines for the VM",
        epilog="On Windows the relay is a loopback TCP port guarded by a token: the lines "
        "also set COVE_HOST_TOKEN for cove and DOCKER_CUSTOM_HEADERS for the docker CLI "
        "(28+) and compose. docker-py, testcontainers and older docker CLIs send it when "
        "the docker config.json has \"HttpHeaders\": {\"X-Cove-Token\": \"<token>\"}."))
    env.add_argument("--shell", choices=SHELLS,
                     help="syntax of the lines (default: powershell on Windows, else sh)")
    env.set_defaults(func=_handler(_env))
    logs = named(sub.add_parser("logs", help="Print the VM's console (or supervisor) log"))
    logs.add_argument("--which", choices=("serial", "supervisor", "events"), default="serial")
    logs.set_defaults(func=_handler(_logs))
