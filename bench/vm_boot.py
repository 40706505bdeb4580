"""VM boot benchmark: image build, first start, restart of a stopped VM, memory.

    python bench/vm_boot.py [--restarts 3] [--keep]

Reports (JSON on stdout, also bench/results/vm_boot.json): guest image build seconds
(cold stage times from the manifest, and this call's time, ~0 when cached), first start to
engine-ready (includes libvirt define), restart to engine-ready (target <= 15 s under TCG),
the CPU seconds QEMU burnt until then (steadier than wall time on a busy host), QEMU's host
RSS and the guest's used memory after the restart. The VM shares the user's home (virtiofs),
as ``cove vm start`` is meant to.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "bootbench"


def _ready_times(lay_events: Path, offset: int) -> dict[str, float]:
    from vmhost.events import VMEvent

    out: dict[str, float] = {}
    for line in lay_events.read_bytes()[offset:].decode().splitlines():
        ev = VMEvent.from_line(line)
        if "t" in ev.data:
            out[ev.kind] = float(ev.data["t"])
    return out


def _guest_used_mib() -> float:
    from vmhost import control

    out = subprocess.run(
        control.ssh_argv(NAME, ["cat", "/proc/meminfo"], tty=False),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    mem = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in out.splitlines())}
    return (mem["MemTotal"] - mem["MemAvailable"]) / 1024


def _qemu_pid(lay_events: Path, offset: int) -> int:
    from vmhost.events import VMEvent

    for line in lay_events.read_bytes()[offset:].decode().splitlines():
        ev = VMEvent.from_line(line)
        if ev.kind == "vm-started":
            return int(ev.data["pid"])
    raise RuntimeError("no vm-started event")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("COVE_VM_HOME", tempfile.mkdtemp(prefix="cove-bench-"))
    from vmhost import control, guestimage, instance, layout

    t0 = time.monotonic()
    image = guestimage.build()
    build_now = time.monotonic() - t0
    os.environ["COVE_GUEST_IMAGE"] = str(image.root.parent)
    manifest = guestimage.summary(image)
    lay = layout.InstanceLayout.named(NAME)
    result: dict[str, object] = {
        "image": image.key,
        "image_build_seconds_cold": manifest.get("build_seconds"),
        "image_build_seconds_this_run": round(build_now, 1),
        "image_files": manifest["files"],
    }
    try:
        config = instance.InstanceConfig(
            name=NAME, cpus=2, memory_mib=1024, disk_gib=8, shares=(str(Path.home()),)
        )
        t0 = time.monotonic()
        control.start(config)
        result["first_start_seconds"] = round(time.monotonic() - t0, 1)
        result["first_start_phases"] = _ready_times(lay.events, 0)
        restarts, cpu = [], []
        for _ in range(args.restarts):
            control.stop(NAME)
            offset = lay.events.stat().st_size
            t0 = time.monotonic()
            control.start(config)
            restarts.append(round(time.monotonic() - t0, 1))
            cpu.append(round(_cpu_seconds(_qemu_pid(lay.events, offset)), 1))
            result["restart_phases"] = _ready_times(lay.events, offset)
        result["restart_to_engine_ready_seconds"] = restarts
        result["restart_median_seconds"] = statistics.median(restarts)
        result["restart_qemu_cpu_seconds"] = cpu
        result["load_average"] = [round(x, 1) for x in os.getloadavg()]
        time.sleep(10)
        st = control.status(NAME)
        result["qemu_rss_mib"] = round(st.host_rss_bytes / 2**20)
        result["guest_used_mib"] = round(_guest_used_mib())
    finally:
        if not args.keep:
            control.remove(NAME, force=True)
    out = json.dumps(result, indent=1)
    print(out)
    (ROOT / "bench/results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench/results/vm_boot.json").write_text(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
