"""``cove run`` and ``cove create``: docker's container flags → the create body, and the
run sequence traced from the real CLI (compat-notes §a.2/§a.3):

create (404 → pull, retry) → attach (unless -d) → wait?condition=next-exit|removed
→ start → resize on SIGWINCH → exit code from the wait body.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runtime.api.errors import CoveError, NotFound
from runtime.api.transport import EngineUnreachable
from runtime.cli import opts
from runtime.cli.base import Cli, CliError, as_cli_error


def _many(p: argparse.ArgumentParser, *flags: str, help: str = "") -> None:
    p.add_argument(*flags, action="append", default=[], help=help)


def add_container_flags(p: argparse.ArgumentParser) -> None:
    """The flags run and create share (docker's containerOptions)."""
    a = p.add_argument
    a("-a", "--attach", action="append", default=[], help="Attach to STDIN, STDOUT or STDERR")
    a("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    a("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    a("--name", help="Assign a name to the container")
    _many(p, "-e", "--env", help="Set environment variables")
    _many(p, "--env-file", help="Read in a file of environment variables")
    a("-w", "--workdir", default="", help="Working directory inside the container")
    a("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])")
    a("-h", "--hostname", default="", help="Container host name")
    a("--domainname", default="", help="Container NIS domain name")
    a("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    a("--init", action="store_true", help="Run an init inside the container")
    a("--restart", default="no", help="Restart policy to apply when a container exits")
    a("--rm", action="store_true", help="Automatically remove the container when it exits")
    a("--privileged", action="store_true", help="Give extended privileges to this container")
    _many(p, "--cap-add", help="Add Linux capabilities")
    _many(p, "--cap-drop", help="Drop Linux capabilities")
    a("--read-only", action="store_true", help="Mount the container's root filesystem as read only")
    a("-m", "--memory", help="Memory limit")
    a("--memory-swap", help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    a("--memory-reservation", help="Memory soft limit")
    a("--shm-size", help="Size of /dev/shm")
    a("--cpus", type=float, help="Number of CPUs")
    a("-c", "--cpu-shares", type=int, default=0, help="CPU shares (relative weight)")
    a("--cpuset-cpus", default="", help="CPUs in which to allow execution (0-3, 0,1)")
    a("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    _many(p, "--ulimit", help="Ulimit options")
    a("--stop-signal", help="Signal to stop the container")
    a("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container")
    _many(p, "-l", "--label", help="Set meta data on a container")
    _many(p, "--security-opt", help="Security Options")
    _many(p, "-p", "--publish", help="Publish a container's port(s) to the host")
    a("-P", "--publish-all", action="store_true", help="Publish all exposed ports to random ports")
    _many(p, "--expose", help="Expose a port or a range of ports")
    _many(p, "-v", "--volume", help="Bind mount a volume")
    _many(p, "--mount", help="Attach a filesystem mount to the container")
    _many(p, "--tmpfs", help="Mount a tmpfs directory")
    _many(p, "--volumes-from", help="Mount volumes from the specified container(s)")
    a("--network", "--net", default="default", help="Connect a container to a network")
    _many(p, "--network-alias", help="Add network-scoped alias for the container")
    a("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)")
    a("--ip6", default="", help="IPv6 address (e.g., 2001:db8::33)")
    a("--mac-address", default="", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)")
    _many(p, "--dns", help="Set custom DNS servers")
    _many(p, "--dns-search", help="Set custom DNS search domains")
    _many(p, "--dns-option", help="Set DNS options")
    _many(p, "--add-host", help="Add a custom host-to-IP mapping (host:ip)")
    a("--log-driver", default="", help="Logging driver for the container")
    _many(p, "--log-opt", help="Log driver options")
    _many(p, "--sysctl", help="Sysctl options")
    _many(p, "--device", help="Add a host device to the container")
    _many(p, "--group-add", help="Add additional groups to join")
    a("--pid", default="", help="PID namespace to use")
    a("--ipc", default="", help="IPC mode to use")
    a("--platform", default="", help="Set platform if server is multi-platform capable")
    a(
        "--pull",
        default="missing",
        choices=["always", "missing", "never"],
        help='Pull image before running ("always", "missing", "never")',
    )
    a("-q", "--quiet", action="store_true", help="Suppress the pull output")
    a("--health-cmd", help="Command to run to check health")
    a("--health-interval", help="Time between running the check (ms|s|m|h)")
    a("--health-timeout", help="Maximum time to allow one check to run (ms|s|m|h)")
    a("--health-start-period", help="Start period for the container to initialize")
    a(
        "--health-retries",
        type=int,
        default=0,
        help="Consecutive failures needed to report unhealthy",
    )
    a("--no-healthcheck", action="store_true", help="Disable any container-specified HEALTHCHECK")
    a("image", help="IMAGE")
    a("command", nargs=argparse.REMAINDER, help="COMMAND [ARG...]")


def configure(verb: str, p: argparse.ArgumentParser) -> None:
    add_container_flags(p)
    if verb == "run":
        p.add_argument(
            "-d",
            "--detach",
            action="store_true",
            help="Run container in background and print container ID",
        )
        p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
        p.add_argument("--sig-proxy", default="true", help="Proxy received signals to the process")
        p.set_defaults(func=cmd_run)
    else:
        p.set_defaults(func=cmd_create, detach=True)


def _duration_ns(value: str | None) -> int:
    if not value:
        return 0
    from runtime.api.units import parse_go_duration

    try:
        return int(parse_go_duration(value) * 1e9)
    except ValueError:
        raise CliError(f"invalid duration: {value}") from None


def _env(args: argparse.Namespace) -> list[str]:
    env: list[str] = []
    for path in args.env_file:
        env += opts.parse_env_file(path)
    return env + opts.parse_env(args.env)


def _healthcheck(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.no_healthcheck:
        return {"Test": ["NONE"]}
    if not (args.health_cmd or args.health_interval or args.health_timeout or args.health_retries):
        return None
    return {
        "Test": ["CMD-SHELL", args.health_cmd] if args.health_cmd else [],
        "Interval": _duration_ns(args.health_interval),
        "Timeout": _duration_ns(args.health_timeout),
        "StartPeriod": _duration_ns(args.health_start_period),
        "Retries": args.health_retries,
    }


def _attach_flags(args: argparse.Namespace) -> tuple[bool, bool, bool]:
    if args.detach:
        return False, False, False
    if args.attach:
        want = {a.lower() for a in args.attach}
        return "stdin" in want, "stdout" in want, "stderr" in want
    return bool(args.interactive), True, True


def build_config(args: argparse.Namespace, console: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """The create body, field for field what docker 28 sends (zero values mean unset)."""
    exposed, bindings = opts.parse_publish(args.publish)
    exposed.update(opts.parse_expose(args.expose))
    binds, anonymous = opts.split_volumes(args.volume)
    config = _container_config(args, exposed, anonymous)
    host = _host_config(args, binds, bindings, console)
    return {**config, "HostConfig": host, "NetworkingConfig": _networking_config(args)}


def _container_config(args: argparse.Namespace, exposed: dict[str, Any],
                      anonymous: dict[str, Any]) -> dict[str, Any]:
    stdin, stdout, stderr = _attach_flags(args)
    config: dict[str, Any] = {
        "Hostname": args.hostname,
        "Domainname": args.domainname,
        "User": args.user,
        "AttachStdin": stdin,
        "AttachStdout": stdout,
        "AttachStderr": stderr,
        "ExposedPorts": exposed,
        "Tty": args.tty,
        "OpenStdin": args.interactive,
        "StdinOnce": args.interactive and stdin,
        "Env": _env(args),
        "Cmd": list(args.command) or None,
        "Image": args.image,
        "Volumes": anonymous,
        "WorkingDir": args.workdir,
        "Entrypoint": [args.entrypoint] if args.entrypoint is not None else None,
        "Labels": opts.parse_kv(args.label),
        "StopSignal": args.stop_signal or None,
    }
    if args.stop_timeout is not None:
        config["StopTimeout"] = args.stop_timeout
    health = _healthcheck(args)
    if health:
        config["Healthcheck"] = health
    return config


def _host_config(args: argparse.Namespace, binds: list[str], bindings: dict[str, Any],
                 console: tuple[int, int]) -> dict[str, Any]:
    return {
        "Binds": binds,
        "ContainerIDFile": "",
        "LogConfig": {"Type": args.log_driver, "Config": opts.parse_kv(args.log_opt, "log-opt")},
        "NetworkMode": args.network,
        "PortBindings": bindings,
        "RestartPolicy": opts.parse_restart(args.restart),
        "AutoRemove": args.rm,
        "VolumesFrom": args.volumes_from or None,
        "ConsoleSize": list(console),
        "CapAdd": args.cap_add or None,
        "CapDrop": args.cap_drop or None,
        "Dns": args.dns,
        "DnsOptions": args.dns_option,
        "DnsSearch": args.dns_search,
        "ExtraHosts": opts.parse_add_host(args.add_host) or None,
        "GroupAdd": args.group_add or None,
        "IpcMode": args.ipc,
        "PidMode": args.pid,
        "Privileged": args.privileged,
        "PublishAllPorts": args.publish_all,
        "ReadonlyRootfs": args.read_only,
        "SecurityOpt": args.security_opt or None,
        "Tmpfs": opts.parse_tmpfs(args.tmpfs) or None,
        "ShmSize": _size(args.shm_size),
        "Memory": _size(args.memory),
        "MemorySwap": _size(args.memory_swap),
        "MemoryReservation": _size(args.memory_reservation),
        "NanoCpus": int(args.cpus * 1e9) if args.cpus else 0,
        "CpuShares": args.cpu_shares,
        "CpusetCpus": args.cpuset_cpus,
        "PidsLimit": args.pids_limit,
        "Ulimits": [opts.parse_ulimit(u) for u in args.ulimit] or None,
        "Mounts": [opts.parse_mount(m) for m in args.mount] or None,
        "Devices": [_device(d) for d in args.device],
        "Sysctls": opts.parse_kv(args.sysctl, "sysctl") or None,
        "MemorySwappiness": -1,
        "Init": True if args.init else None,
    }


def _networking_config(args: argparse.Namespace) -> dict[str, Any]:
    """The --network's endpoint: its aliases, fixed address and MAC."""
    endpoint: dict[str, Any] = {}
    if args.network_alias:
        endpoint["Aliases"] = args.network_alias
    if ipam := opts.ipam_config(args.ip, args.ip6):
        endpoint["IPAMConfig"] = ipam
    if args.mac_address:
        endpoint["MacAddress"] = args.mac_address
    return {"EndpointsConfig": {args.network: endpoint}}


def _size(v: str | None) -> int:
    """A memory size flag in bytes: unset is 0, "-1" unlimited."""
    from runtime.api.units import ram_in_bytes

    if not v:
        return 0
    if v == "-1":
        return -1
    try:
        return ram_in_bytes(v)
    except ValueError:
        raise CliError(f"invalid size: '{v}'") from None


def _device(spec: str) -> dict[str, str]:
    parts = spec.split(":")
    host = parts[0]
    inner = parts[1] if len(parts) > 1 and parts[1].startswith("/") else host
    perms = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
    return {"PathOnHost": host, "PathInContainer": inner, "CgroupPermissions": perms}


def create(cli: Cli, args: argparse.Namespace, console: tuple[int, int] = (0, 0)) -> str:
    """POST /containers/create; on "No such image" pull (per --pull) and retry once."""
    try:
        config = build_config(args, console)
    except CliError as e:
        # A bad flag value: docker run/create exit 125 for these (cobra's flag errors).
        raise CliError(e.message, 125) from e
    if args.pull == "always":
        from runtime.cli.images import pull_image

        pull_image(cli, args.image, args.platform, quiet=args.quiet, out=cli.err)
    try:
        created = cli.client.create_container(config, args.name, args.platform)
    except NotFound as e:
        if args.pull == "never" or "No such image" not in str(e):
            raise
        cli.warn(f"Unable to find image '{_with_tag(args.image)}' locally")
        from runtime.cli.images import pull_image

        pull_image(cli, args.image, args.platform, quiet=args.quiet, out=cli.err)
        created = cli.client.create_container(config, args.name, args.platform)
    for warning in created.get("Warnings") or []:
        cli.warn(f"WARNING: {warning}")
    return str(created["Id"])


def _with_tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in last else image + ":latest"


def cmd_create(cli: Cli, args: argparse.Namespace) -> int:
    try:
        cli.print(create(cli, args))
    except (CoveError, EngineUnreachable) as e:
        raise as_cli_error(e, run_like=True) from e
    return 0


def cmd_run(cli: Cli, args: argparse.Namespace) -> int:
    try:
        return _run(cli, args)
    except Exception as e:
        failure = run_failure(e)
        if failure is e:
            raise
        raise failure from e


def run_failure(e: Exception) -> Exception:
    """How ``run`` words a failure (shared with runtime.cli.fast): engine errors get the run
    exit codes, and every CliError a "cove: " prefix; anything else goes up as it is."""
    if isinstance(e, CoveError | EngineUnreachable):
        err = as_cli_error(e, run_like=True)
        return CliError("cove: " + err.message, err.exit_code)
    if isinstance(e, CliError) and not e.message.startswith("cove: "):
        e.message = "cove: " + e.message
    return e


def _run(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.cli import stdio

    stdin_tty = stdio.is_tty(sys.stdin)
    if args.tty and args.interactive and not stdin_tty:
        raise CliError("cove: the input device is not a TTY", 1)
    console = stdio.terminal_size() if args.tty else (0, 0)
    cid = create(cli, args, console)
    if args.detach:
        start_container(cli, cid)
        cli.print(cid)
        return 0
    attach_stdin, attach_stdout, attach_stderr = _attach_flags(args)
    client = cli.client
    conn = client.attach(
        cid,
        stdin=attach_stdin,
        stdout=attach_stdout,
        stderr=attach_stderr,
        detach_keys=args.detach_keys,
    )
    waiter = client.wait_begin(cid, "removed" if args.rm else "next-exit")
    from runtime.cli.execs import follow_attached, start_while_attached

    start_while_attached(cli, cid, conn, waiter)
    return follow_attached(
        cli,
        cid,
        conn,
        waiter,
        stdin=attach_stdin,
        tty=args.tty,
        detach_keys=args.detach_keys,
        sig_proxy=args.sig_proxy,
    )


def start_container(cli: Cli, cid: str, detach_keys: str | None = None) -> None:
    """Start, mapping failures to docker's exit codes: 127 not found, 126 not executable."""
    try:
        cli.client.start(cid, detach_keys)
    except CoveError as e:
        raise start_failure(e) from e


def start_failure(e: CoveError) -> CliError:
    """A failed start's message and exit code (shared with runtime.cli.fast)."""
    text = str(e)
    code = e.exit_code
    # docker's CLI matches these texts itself (runContainer), whatever the status code.
    if "executable file not found" in text or "no such file or directory" in text:
        code = 127
    elif "permission denied" in text or "cannot execute" in text:
        code = 126
    err = as_cli_error(e, run_like=True)
    return CliError(err.message, code)


def exit_status(body: dict[str, Any]) -> int:
    err = body.get("Error") or {}
    if isinstance(err, dict) and err.get("Message"):
        raise CliError(f"cove: {err['Message']}", 125)
    return int(body.get("StatusCode", 0))
