"""The layers a worker process puts around itself before it runs an operator's SQL:
resource limits, an empty network namespace, no capabilities and ``no_new_privs``, a
seccomp filter (:func:`isolate`), then Landlock over the files it may read and write
(:func:`confine`). Each returns the layers it set up; a layer the kernel does not offer
is missing from the list (docs/security.md says what each stops)."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import struct
import sys
from pathlib import Path

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CLONE_THREAD = 0x00010000

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
LINUX_CAPABILITY_VERSION_3 = 0x20080522
CAP_LAST_CAP_GUESS = 63

# --- Landlock (linux/landlock.h) -----------------------------------------------
SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

FS_ALL_ABI1 = (1 << 13) - 1
READ_TREE = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
OWN_FOLDER = (
    FS_READ_FILE
    | FS_READ_DIR
    | FS_WRITE_FILE
    | FS_REMOVE_FILE
    | FS_REMOVE_DIR
    | FS_MAKE_REG
    | FS_MAKE_DIR
)

# --- seccomp (linux/seccomp.h, linux/filter.h) -----------------------------------
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_KILL_PROCESS = 0x80000000
AUDIT_ARCH_X86_64 = 0xC000003E
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
SYS_SECCOMP_X86_64 = 317
SYS_CLONE_X86_64 = 56
SYS_CLONE3 = 435
# Syscalls a query never needs: process creation, program execution, mounts and
# namespaces, tracing, kernel objects that outlive the worker.
DENIED_X86_64 = {
    "fork": 57,
    "vfork": 58,
    "execve": 59,
    "execveat": 322,
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "unshare": 272,
    "setns": 308,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "reboot": 169,
    "swapon": 167,
    "swapoff": 168,
}

# Every layer name a worker may report; the runner keeps only these.
KNOWN_LAYERS = frozenset(
    {
        "rlimit_cpu",
        "rlimit_as",
        "rlimit_fsize",
        "rlimit_nofile",
        "no_core_dumps",
        "netns",
        "userns+netns",
        "no_new_privs",
        "caps_dropped",
        "seccomp",
        "landlock_fs",
        "landlock_fs_partial",
        "landlock_net",
        "landlock_scope",
        "duckdb_external_access_off",
        "duckdb_config_locked",
        "scrubbed_env",
        "own_workdir",
    }
)


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _limit(kind: int, value: int) -> None:
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(kind)
        if hard == resource.RLIM_INFINITY or value < hard:
            resource.setrlimit(kind, (value, hard if hard != resource.RLIM_INFINITY else value))


def apply_limits(cpu_s: int, mem_mb: int, fsize_mb: int, nofile: int = 256) -> list[str]:
    _limit(resource.RLIMIT_CPU, cpu_s)
    _limit(resource.RLIMIT_AS, mem_mb << 20)
    _limit(resource.RLIMIT_FSIZE, fsize_mb << 20)
    _limit(resource.RLIMIT_NOFILE, nofile)
    _limit(resource.RLIMIT_CORE, 0)
    return ["rlimit_cpu", "rlimit_as", "rlimit_fsize", "rlimit_nofile", "no_core_dumps"]


def leave_network() -> str | None:
    """Enter a new network namespace (loopback only, down). Returns the layer name or None."""
    libc = _libc()
    if libc is None:
        return None
    if libc.unshare(CLONE_NEWNET) == 0:
        return "netns"
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        return "userns+netns"
    return None


def drop_privileges() -> list[str]:
    """``no_new_privs`` (required by seccomp and Landlock), then no capabilities at all."""
    libc = _libc()
    if libc is None or libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return []
    layers = ["no_new_privs"]
    for cap in range(CAP_LAST_CAP_GUESS + 1):  # the bounding set, so nothing comes back
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break
    header = struct.pack("Ii", LINUX_CAPABILITY_VERSION_3, 0)
    data = bytes(24)  # two {effective, permitted, inheritable} triples, all empty
    if libc.capset(ctypes.c_char_p(header), ctypes.c_char_p(data)) == 0:
        layers.append("caps_dropped")
    return layers


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _seccomp_program() -> list[tuple[int, int, int, int]]:
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    prog = [
        (BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        (BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        (BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        (BPF_JGE_K, 0, 1, 0x40000000),  # the x32 ABI: refused as a whole
        (BPF_RET_K, 0, 0, deny),
    ]
    for nr in sorted(DENIED_X86_64.values()):
        prog += [(BPF_JEQ_K, 0, 1, nr), (BPF_RET_K, 0, 0, deny)]
    # clone3 hides its flags in memory: ENOSYS makes the C library fall back to clone.
    prog += [(BPF_JEQ_K, 0, 1, SYS_CLONE3), (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS)]
    prog += [
        (BPF_JEQ_K, 0, 4, SYS_CLONE_X86_64),
        (BPF_LD_W_ABS, 0, 0, 16),  # low half of args[0]: the clone flags
        (BPF_JSET_K, 0, 1, CLONE_THREAD),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),  # a thread of this process
        (BPF_RET_K, 0, 0, deny),  # a new process
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return prog


def install_seccomp() -> str | None:
    """No new processes, programs, mounts or namespaces (x86-64 only; needs no_new_privs)."""
    if platform.machine() != "x86_64" or sys.maxsize <= 2**32:
        return None
    libc = _libc()
    if libc is None:
        return None
    prog = _seccomp_program()
    filters = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), filters)
    rc = libc.syscall(
        SYS_SECCOMP_X86_64,
        SECCOMP_SET_MODE_FILTER,
        SECCOMP_FILTER_FLAG_TSYNC,
        ctypes.byref(fprog),
    )
    return "seccomp" if rc == 0 else None


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    libc = _libc()
    if libc is None or platform.system() != "Linux":
        return 0
    rc = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, int(rc))


def _python_trees() -> list[Path]:
    """What the interpreter may still load: its installation and this package, no more.

    The repository root itself is not listed (a platform home may sit inside
    it); only the package folders on ``sys.path`` are.
    """
    trees = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    for entry in sys.path:
        if entry and Path(entry).is_dir() and ("site-packages" in entry or "python3" in entry):
            trees.add(Path(entry))
    trees.add(Path(__file__).resolve().parents[1])  # the sandbox package
    for lib in ("/lib", "/lib64", "/usr/lib", "/usr/lib64"):
        trees.add(Path(lib))
    return sorted(t for t in trees if t.exists())


# What DuckDB reads of the kernel when it connects (its cgroup's CPU and memory quota).
ENGINE_READS = (Path("/proc/self/cgroup"), Path("/sys/fs/cgroup"))


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def confine(readable_files: list[Path], workdir: Path) -> list[str]:
    """Landlock: read the Python trees and ``readable_files``; write ``workdir`` only.

    Must run before any thread starts (a Landlock domain binds the calling
    thread and the threads it creates later), so before DuckDB connects.
    """
    abi = landlock_abi()
    if abi < 1:
        return []
    libc = _libc()
    assert libc is not None  # landlock_abi() answered through it
    single = _threads() == 1
    handled_fs = FS_ALL_ABI1
    if abi >= 2:
        handled_fs |= FS_REFER
    if abi >= 3:
        handled_fs |= FS_TRUNCATE
    if abi >= 5:
        handled_fs |= FS_IOCTL_DEV
    handled_net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("QQQ", handled_fs, handled_net, scoped)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(
        SYS_LANDLOCK_CREATE_RULESET, ctypes.c_char_p(attr), ctypes.c_size_t(size), 0
    )
    if ruleset < 0:
        return []
    try:
        rules = [(tree, READ_TREE) for tree in _python_trees()]
        rules += [(Path(f), FS_READ_FILE) for f in readable_files]
        rules += [
            (p, READ_TREE if p.is_dir() else FS_READ_FILE) for p in ENGINE_READS if p.exists()
        ]
        rules.append((Path(workdir), OWN_FOLDER | (FS_TRUNCATE if abi >= 3 else 0)))
        for path, access in rules:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = struct.pack("=Qi", access & handled_fs, fd)
                if (
                    libc.syscall(
                        SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, rule, 0
                    )
                    != 0
                ):
                    return []
            finally:
                os.close(fd)
        if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            return []
    finally:
        os.close(ruleset)
    # A thread started before restrict_self stays outside the domain: the runner's
    # environment keeps the interpreter single-threaded until here.
    layers = ["landlock_fs" if single else "landlock_fs_partial"]
    if handled_net:
        layers.append("landlock_net")
    if scoped:
        layers.append("landlock_scope")
    return layers


def isolate(cpu_s: int, mem_mb: int, fsize_mb: int) -> list[str]:
    """Every layer that does not depend on the task, in order; returns those in force."""
    layers = apply_limits(cpu_s, mem_mb, fsize_mb)
    net = leave_network()
    if net:
        layers.append(net)
    layers += drop_privileges()
    if "no_new_privs" in layers:
        seccomp = install_seccomp()
        if seccomp:
            layers.append(seccomp)
    return layers
