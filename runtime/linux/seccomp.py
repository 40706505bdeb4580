"""seccomp: Docker's default policy and Docker/OCI profile JSON, compiled with libseccomp.

The filter is compiled in the engine (or monitor) with libseccomp through
ctypes and exported as classic BPF; the container process only installs the
bytes with prctl, so it never needs libseccomp after fork. Syscall names are
resolved by libseccomp for the native architecture, so the same profile works
on x86_64 and aarch64.

Docker's semantics kept here: a rule applies only if the process has all of
its ``includes.caps`` and none of its ``excludes.caps`` (and the arch/kernel
conditions hold); several conditions on one rule are ANDed, except that
conditions repeating an argument index become separate rules (ORed), as runc does.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import platform
from dataclasses import dataclass
from typing import Any

from runtime.api.errors import InvalidArgument, Unavailable

try:
    _lib: ctypes.CDLL | None = ctypes.CDLL("libseccomp.so.2", use_errno=True)
except OSError:
    _lib = None

if _lib is not None:
    _lib.seccomp_init.restype = ctypes.c_void_p
    _lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    _lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    _lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    _lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
    _lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    _lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    _lib.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
    _lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)

EPERM = 1
ENOSYS = 38
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
        "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
# Go's GOARCH names (used in profiles' includes/excludes) of the machine we run on.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine(), platform.machine())
# Secondary ABIs the kernel also accepts on this machine (Docker's archMap).
_SUB_ARCHES = {"amd64": ("x86", "x32"), "arm64": ("arm",)}


class _ArgCmp(ctypes.Structure):
    _fields_ = (("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64))


@dataclass(frozen=True, slots=True)
class Arg:
    index: int
    value: int
    value_two: int
    op: str


@dataclass(frozen=True, slots=True)
class Rule:
    names: tuple[str, ...]
    action: str = "SCMP_ACT_ALLOW"
    errno: int | None = None
    args: tuple[Arg, ...] = ()
    caps: tuple[str, ...] = ()  # all required
    not_caps: tuple[str, ...] = ()  # none allowed
    arches: tuple[str, ...] = ()  # GOARCH names; empty: any
    not_arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] = (0, 0)


@dataclass(frozen=True, slots=True)
class Profile:
    default_action: str
    default_errno: int | None
    arches: tuple[str, ...]  # libseccomp names besides the native one
    rules: tuple[Rule, ...]


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Docker's default profile: deny (EPERM) everything except these.
_DEFAULT_ALLOWED = _names("""
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl
fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futex_waitv
futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid
getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid
getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list
getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32
getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl
io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup
io_submit io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen
listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise membarrier
memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2
mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall
munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open
pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl
pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev
pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64
recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid
setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid
setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr
shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn
socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync
sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit
umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid
waitpid write writev
""")
# clone() without any CLONE_NEW* flag (mask of all namespace flags).
_CLONE_NS_MASK = 0x7E020000
_SYS_ADMIN_ONLY = _names("""
bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount
mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname
sethostname setns syslog umount umount2 unshare
""")
_CAP_GATED: tuple[tuple[str, str], ...] = (
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    ("CAP_SYS_BOOT", "reboot"),
    ("CAP_SYS_CHROOT", "chroot"),
    ("CAP_SYS_MODULE", "delete_module init_module finit_module"),
    ("CAP_SYS_PACCT", "acct"),
    ("CAP_SYS_PTRACE",
     "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace"),
    ("CAP_SYS_RAWIO", "iopl ioperm"),
    ("CAP_SYS_TIME", "settimeofday stime clock_settime clock_settime64"),
    ("CAP_SYS_TTY_CONFIG", "vhangup"),
    ("CAP_SYS_NICE", "get_mempolicy mbind set_mempolicy set_mempolicy_home_node"),
    ("CAP_SYSLOG", "syslog"),
    ("CAP_BPF", "bpf"),
    ("CAP_PERFMON", "perf_event_open"),
)


def _default_rules() -> tuple[Rule, ...]:
    rules = [
        Rule(_DEFAULT_ALLOWED),
        Rule(_names("process_vm_readv process_vm_writev ptrace"), min_kernel=(4, 8)),
        Rule(("socket",), args=(Arg(0, 40, 0, "SCMP_CMP_NE"),)),  # no AF_VSOCK
        *(Rule(("personality",), args=(Arg(0, v, 0, "SCMP_CMP_EQ"),))
          for v in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)),
        Rule(_names("arch_prctl"), arches=("amd64", "x32")),
        Rule(_names("modify_ldt"), arches=("amd64", "x32", "x86")),
        Rule(_names("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint "
                    "cacheflush set_tls"), arches=("arm", "arm64")),
        Rule(_SYS_ADMIN_ONLY, caps=("CAP_SYS_ADMIN",)),
        Rule(("clone",), args=(Arg(0, _CLONE_NS_MASK, 0, "SCMP_CMP_MASKED_EQ"),),
             not_caps=("CAP_SYS_ADMIN",), not_arches=("s390", "s390x")),
        # glibc falls back to clone() when clone3 says ENOSYS (its flags can't be checked).
        Rule(("clone3",), action="SCMP_ACT_ERRNO", errno=ENOSYS, not_caps=("CAP_SYS_ADMIN",)),
    ]
    rules += [Rule(_names(names), caps=(cap,)) for cap, names in _CAP_GATED]
    return tuple(rules)


DEFAULT_PROFILE = Profile("SCMP_ACT_ERRNO", EPERM, _SUB_ARCHES.get(_GOARCH, ()),
                          _default_rules())


def _arch_name(docker: str) -> str:
    """SCMP_ARCH_X86_64 -> x86_64 (libseccomp's own spelling)."""
    return docker.removeprefix("SCMP_ARCH_").lower()


def parse_profile(text: str) -> Profile:
    """A Docker/OCI seccomp profile (JSON) as a :class:`Profile`."""
    try:
        data: dict[str, Any] = json.loads(text)
        return _profile_from(data)
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidArgument(f"decoding seccomp profile failed: {e}") from None


def _profile_from(data: dict[str, Any]) -> Profile:
    arches: list[str] = []
    for entry in data.get("archMap") or []:
        if _arch_name(entry["architecture"]) in (platform.machine(), _GOARCH):
            arches += [_arch_name(a) for a in entry.get("subArchitectures") or []]
    arches += [_arch_name(a) for a in data.get("architectures") or []]
    rules = []
    for sc in data.get("syscalls") or []:
        names = tuple(sc.get("names") or ([sc["name"]] if sc.get("name") else []))
        inc, exc = sc.get("includes") or {}, sc.get("excludes") or {}
        kernel = str(inc.get("minKernel") or "0.0").split(".")
        rules.append(Rule(
            names=names,
            action=sc["action"],
            errno=sc.get("errnoRet"),
            args=tuple(Arg(int(a["index"]), int(a.get("value", 0)), int(a.get("valueTwo", 0)),
                           a["op"]) for a in sc.get("args") or []),
            caps=tuple(inc.get("caps") or ()),
            not_caps=tuple(exc.get("caps") or ()),
            arches=tuple(inc.get("arches") or ()),
            not_arches=tuple(exc.get("arches") or ()),
            min_kernel=(int(kernel[0]), int(kernel[1]) if len(kernel) > 1 else 0),
        ))
    return Profile(data.get("defaultAction", "SCMP_ACT_ALLOW"), data.get("defaultErrnoRet"),
                   tuple(dict.fromkeys(arches)), tuple(rules))


def _kernel() -> tuple[int, int]:
    parts = platform.release().split("-")[0].split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


def _applies(rule: Rule, caps: set[str]) -> bool:
    if rule.caps and not all(c in caps for c in rule.caps):
        return False
    if any(c in caps for c in rule.not_caps):
        return False
    if rule.arches and _GOARCH not in rule.arches:
        return False
    if _GOARCH in rule.not_arches:
        return False
    return _kernel() >= rule.min_kernel


def _action(name: str, errno: int | None, default_errno: int | None) -> int:
    if name == "SCMP_ACT_ALLOW":
        return 0x7FFF0000
    if name == "SCMP_ACT_ERRNO":
        return 0x00050000 | ((errno if errno is not None else default_errno or EPERM) & 0xFFFF)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return 0x00000000
    if name == "SCMP_ACT_KILL_PROCESS":
        return 0x80000000
    if name == "SCMP_ACT_TRAP":
        return 0x00030000
    if name == "SCMP_ACT_TRACE":
        return 0x7FF00000 | ((errno or EPERM) & 0xFFFF)
    if name == "SCMP_ACT_LOG":
        return 0x7FFC0000
    raise InvalidArgument(f"seccomp: unsupported action {name!r}")


def compile_profile(profile: str | None, capabilities: tuple[str, ...]) -> bytes | None:
    """BPF for *profile* (None: Docker's default; "unconfined": no filter) and these caps."""
    if profile == "unconfined":
        return None
    return _compile_cached(profile, tuple(sorted(set(capabilities))))


@functools.lru_cache(maxsize=32)
def _compile_cached(profile: str | None, capabilities: tuple[str, ...]) -> bytes:
    # Compiling Docker's default profile takes ~20 ms of libseccomp per start, and almost
    # every container uses the same (profile text, capability set): keep the bytes.
    parsed = DEFAULT_PROFILE if profile is None else parse_profile(profile)
    return compile_bpf(parsed, set(capabilities))


def compile_bpf(profile: Profile, caps: set[str]) -> bytes:
    if _lib is None:
        raise Unavailable("seccomp: libseccomp.so.2 is not installed")
    default = _action(profile.default_action, profile.default_errno, profile.default_errno)
    ctx = _lib.seccomp_init(default)
    if not ctx:
        raise InvalidArgument("seccomp: seccomp_init failed")
    try:
        for arch in profile.arches:
            token = _lib.seccomp_arch_resolve_name(arch.encode())
            if token:
                _lib.seccomp_arch_add(ctx, token)  # -EEXIST for the native arch is fine
        for rule in profile.rules:
            if _applies(rule, caps):
                _add_rule(ctx, rule, default, profile.default_errno)
        return _export(ctx)
    finally:
        _lib.seccomp_release(ctx)


def _add_rule(ctx: int, rule: Rule, default: int, default_errno: int | None) -> None:
    assert _lib is not None
    action = _action(rule.action, rule.errno, default_errno)
    if action == default:
        return  # libseccomp refuses rules that repeat the default action
    indexes = [a.index for a in rule.args]
    # A repeated argument index cannot be ANDed: each condition becomes its own rule.
    groups = [(a,) for a in rule.args] if len(set(indexes)) < len(indexes) else [rule.args]
    for name in rule.names:
        nr = _lib.seccomp_syscall_resolve_name(name.encode())
        if nr == -1:
            continue  # unknown to libseccomp on this architecture
        for group in groups:
            cmps = (_ArgCmp * max(len(group), 1))()
            for i, a in enumerate(group):
                if a.op not in _OPS:
                    raise InvalidArgument(f"seccomp: unknown operator {a.op!r}")
                cmps[i] = _ArgCmp(a.index, _OPS[a.op], a.value, a.value_two)
            rc = _lib.seccomp_rule_add_array(ctx, action, nr, len(group),
                                             ctypes.cast(cmps, ctypes.c_void_p))
            if rc < 0:
                raise InvalidArgument(
                    f"seccomp: adding rule for {name}: {os.strerror(-rc)}")


def _export(ctx: int) -> bytes:
    assert _lib is not None
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        rc = _lib.seccomp_export_bpf(ctx, fd)
        if rc < 0:
            raise InvalidArgument(f"seccomp: exporting filter: {os.strerror(-rc)}")
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
