"""The filesystem an isolated environment sees, built inside its own mount namespace.

The environment's root is a fresh tmpfs holding read-only binds of the host's system
directories (/usr, /etc, /lib*, /bin, /sbin), the interpreter installations the runtime needs,
the function's code at /var/task, its layers at /opt and Lamina's bootstraps at /var/runtime;
/tmp is a private tmpfs of EphemeralStorage's size; /etc/passwd also names the environment's
user. Nothing else of the host is there: not the platform's data directory, not other
functions' code, not home directories.

`build_root` runs in the forked child between fork and exec: it imports nothing and takes no
Python-level locks (another thread may have held one at the fork); the parent prepares every
path beforehand.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import struct
from dataclasses import dataclass

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_NOSUID = 0x2
# The same on every architecture (added after the system call numbering merge).
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_SYS_MOUNT_SETATTR = 442
_FSOPEN_CLOEXEC = 0x1
_FSCONFIG_CMD_CREATE = 6
_FSMOUNT_CLOEXEC = 0x1
_OPEN_TREE_CLONE = 0x1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_AT_EMPTY_PATH = 0x1000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_NODEV = 0x4
_MOUNT_ATTR_IDMAP = 0x00100000
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41}.get(platform.machine())

# Host directories every runtime needs, read-only; symlinks (merged /usr) are copied as links.
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
TASK_ROOT = "/var/task"
OPT_ROOT = "/opt"
RUNTIME_DIR = "/var/runtime"
# What an environment's hostname reads inside its UTS namespace.
HOSTNAME = "localhost"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.syscall.restype = ctypes.c_long
_libc.clone.argtypes = [
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_int),
]
_CLONE_VM = 0x100
_CLONE_PIDFD = 0x1000
# What the process holding a new user namespace runs (see `idmap_namespace`), on this stack
# (made once, before any fork: a child only ever uses it for that process).
_PAUSE = ctypes.cast(_libc.pause, ctypes.c_void_p)
_CLONE_STACK = ctypes.create_string_buffer(64 * 1024)
_CLONE_STACK_TOP = (ctypes.addressof(_CLONE_STACK) + len(_CLONE_STACK)) & ~15


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def setns(fd: int, kind: int) -> None:
    _check(_libc.setns(fd, kind), "setns")


def sethostname(name: str) -> None:
    encoded = name.encode()
    _check(_libc.sethostname(encoded, len(encoded)), "sethostname")


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, value, 0, 0, 0), "prctl")


def pivot_root(new_root: str, put_old: str) -> None:
    if _SYS_PIVOT_ROOT is None:
        raise OSError(38, "pivot_root: unknown system call number on this architecture")
    _check(
        _libc.syscall(_SYS_PIVOT_ROOT, new_root.encode(), put_old.encode()),
        "pivot_root",
    )


def make_read_only(path: str) -> None:
    """Make `path` and every mount below it read-only and nosuid."""
    attributes = struct.pack("QQQQ", _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, 0, 0, 0)
    buffer = ctypes.create_string_buffer(attributes, len(attributes))
    result = _libc.syscall(
        _SYS_MOUNT_SETATTR,
        ctypes.c_int(_AT_FDCWD),
        path.encode(),
        ctypes.c_uint(_AT_RECURSIVE),
        buffer,
        ctypes.c_size_t(len(attributes)),
    )
    if result == 0:
        return
    if ctypes.get_errno() != 38:  # ENOSYS: a kernel before 5.12; remount one by one
        _check(-1, f"mount_setattr {path}")
    prefix = path.rstrip("/") + "/"
    for point in mount_points():
        if point == path or point.startswith(prefix):
            mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)


@dataclass(frozen=True)
class RootPlan:
    """Everything the child needs to build the environment's root, prepared by the parent."""

    # A host directory to assemble the root on (the mount is private to the namespace).
    staging: str
    task_root: str
    opt_dir: str | None
    runtime_dir: str
    tmp_bytes: int
    hostname: str = HOSTNAME
    # (name, symlink target or "") for the system directories present on the host.
    system: tuple[tuple[str, str], ...] = ()
    # Host paths kept at the same path (interpreter installations, resolv.conf's directory).
    expose: tuple[str, ...] = ()
    # Host paths covered by an empty read-only tmpfs should a bind above have brought them in.
    hide: tuple[str, ...] = ()
    dev_shm_bytes: int = 64 * 1024 * 1024
    # The /etc/passwd the environment sees (the host's plus its own user), or "" for the
    # host's as it is.
    passwd: str = ""
    # Access points mounted (see `share`): (host directory, mount path, uid, gid, mode the
    # directory is created with, the environment's uid, read-only).
    file_systems: tuple[tuple[str, str, int, int, int, int, bool], ...] = ()
    # The /etc/resolv.conf the environment sees (its network's resolvers), or "" for the
    # host's as it is.
    resolv_conf: str = ""
    # A runtime started before its function was known (see `prestarted`): /var/task and
    # /opt keep receiving the host's mounts on `task_root` and `opt_dir`, where the code
    # arrives later; every other mount of the root is private, as always.
    code_follows_host: bool = False


def system_layout(root: str = "/") -> tuple[tuple[str, str], ...]:
    """Which system directories the host has, and which of them are symlinks."""
    layout = []
    for name in SYSTEM_DIRS:
        path = os.path.join(root, name)
        if os.path.islink(path):
            layout.append((name, os.readlink(path)))
        elif os.path.isdir(path):
            layout.append((name, ""))
    return tuple(layout)


def _bind(source: str, target: str, recursive: bool = True, read_only: bool = True) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if read_only:
        make_read_only(target)


def _tmpfs(target: str, size: int, mode: str, flags: int = MS_NOSUID | MS_NODEV) -> None:
    os.makedirs(target, exist_ok=True)
    mount("tmpfs", target, "tmpfs", flags, f"size={size},mode={mode}")


def _hide(target: str) -> None:
    """Cover a directory with an empty, read-only one."""
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4096,mode=0555")


def _cover_file(target: str, content: str) -> None:
    """Show `content` at `target`, read-only, leaving the host's file untouched: a file on
    the root's tmpfs bound over it. The file's name is unlinked once bound; the bind keeps
    it. (Runs after the pivot, with the root still writable.)"""
    if not os.path.isfile(target):
        return
    staged = "/.cover"
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(descriptor, content.encode())
    finally:
        os.close(descriptor)
    mount(staged, target, None, MS_BIND)
    make_read_only(target)
    os.unlink(staged)


def _seal(target: str) -> None:
    """Make one mount (not those below it) read-only."""
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)


def _mount_attributes(set_flags: int, userns_fd: int = 0) -> ctypes.Array[ctypes.c_char]:
    attributes = struct.pack("QQQQ", set_flags, 0, 0, userns_fd)
    return ctypes.create_string_buffer(attributes, len(attributes))


def share(
    host_path: str,
    target: str,
    uid: int,
    gid: int,
    mode: int,
    environment_uid: int,
    read_only: bool = False,
) -> int:
    """Mount an access point's directory at `target` (read-write unless `read_only`: a role
    without ClientWrite), through an idmapped mount:
    files `environment_uid` writes land on disk as `uid`/`gid` (and files of `uid`/`gid`
    are the environment's own), as an EFS access point's POSIX user. (The environment's gid
    is its uid.) The directory is created with `uid`, `gid` and `mode` if it does not exist
    yet (an access point's creation info).
    """
    if os.path.basename(target) in {"", ".", ".."}:
        # Over the root being built (or its /mnt), the host directory would become the root.
        raise OSError(22, f"{target} does not name a directory of its own")
    os.makedirs(target, exist_ok=True)
    directory = open_access_point(host_path, uid, gid, mode)
    userns = tree = -1
    try:
        userns, holder = idmap_namespace(uid, gid, environment_uid)
        tree = _libc.syscall(
            _SYS_OPEN_TREE,
            ctypes.c_int(directory),
            b"",
            ctypes.c_uint(_OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_EMPTY_PATH),
        )
        if tree < 0:
            _check(-1, f"open_tree {host_path}")
        flags = _MOUNT_ATTR_IDMAP | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV
        attributes = _mount_attributes(flags | _MOUNT_ATTR_RDONLY if read_only else flags, userns)
        _attach_tree(tree, attributes, 0, target, f"(idmap) {host_path}")
    finally:
        for descriptor in (directory, userns, tree):
            if descriptor >= 0:
                os.close(descriptor)
    return holder


def idmap_namespace(uid: int, gid: int, environment_uid: int) -> tuple[int, int]:
    """A user namespace whose only mapping is `uid`/`gid` <-> `environment_uid`: an open
    descriptor (which the idmapped mount then holds on to), and the pid of the process that
    made it, killed already, for the caller to reap (its exit takes a few milliseconds,
    which the caller spends building the rest of the root meanwhile).

    A namespace gets its mapping from a process inside it, written by a privileged process
    outside: this (root) process clones one into a new user namespace. It shares this
    process's memory and only runs libc's pause() on a stack of its own, so the clone copies
    no page tables (a fork of a large process would). Its pid under /proc (the host's, not
    this PID namespace's) comes from its pidfd's fdinfo.
    """
    pidfd = ctypes.c_int(-1)
    flags = _CLONE_VM | CLONE_NEWUSER | _CLONE_PIDFD | signal.SIGCHLD
    pid = _libc.clone(_PAUSE, _CLONE_STACK_TOP, flags, None, ctypes.byref(pidfd))
    if pid < 0:
        _check(-1, "clone (user namespace)")
    try:
        host_pid = _fdinfo_pid(pidfd.value)
        for name in ("uid_map", "gid_map"):
            outside = uid if name == "uid_map" else gid
            descriptor = os.open(f"/proc/{host_pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(descriptor, f"{outside} {environment_uid} 1\n".encode())
            finally:
                os.close(descriptor)
        userns = os.open(f"/proc/{host_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(pidfd.value)
    os.kill(pid, signal.SIGKILL)
    return userns, pid


def _fdinfo_pid(pidfd: int) -> str:
    descriptor = os.open(f"/proc/self/fdinfo/{pidfd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = os.read(descriptor, 4096).decode()
    finally:
        os.close(descriptor)
    for line in info.splitlines():
        if line.startswith("Pid:"):
            return line.split()[1]
    raise OSError(3, "no pid in a pidfd's fdinfo")


def open_access_point(host_path: str, uid: int, gid: int, mode: int) -> int:
    """Open (creating what is missing) `host_path` one component at a time, following no
    symbolic link: a function may write links into a file system, and one of them must not
    lead a later mount (made as root) outside it."""
    names = [name for name in host_path.split("/") if name]
    current = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, name in enumerate(names):
            last = index == len(names) - 1
            try:
                os.mkdir(name, 0o700 if last else 0o755, dir_fd=current)
                created = True
            except FileExistsError:
                created = False
            flags = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            opened = os.open(name, flags | (os.O_RDONLY if last else os.O_PATH), dir_fd=current)
            os.close(current)
            current = opened
            if last and created:
                os.fchown(current, uid, gid)
                os.fchmod(current, mode)
    except BaseException:
        os.close(current)
        raise
    return current


def build_root(plan: RootPlan) -> None:
    """Enter new mount, IPC, UTS and cgroup namespaces and switch to the environment's root.

    The caller is process 1 of a new PID namespace already (see `namespace`): /proc shows
    that namespace, and it is in the environment's cgroup.
    """
    prepare_root(plan.staging, plan.system, plan.hostname)
    finish_root(plan, plan.staging)


def prepare_root(staging: str, system: tuple[tuple[str, str], ...], hostname: str) -> None:
    """The part of the root that is the same for every environment: new mount, IPC and UTS
    namespaces, a tmpfs on `staging` with the host's system directories, /dev and /sys.
    A template's ready child does this before it knows its environment."""
    unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)
    sethostname(hostname)
    # Nothing mounted from here on may propagate back to the host; the host's mounts and
    # unmounts still reach this copy (where the host shares them) until `finish_root`, so
    # a ready child waiting here neither pins what the host unmounts nor misses its mounts.
    mount(None, "/", None, MS_REC | MS_SLAVE)
    root = staging
    _tmpfs(root, 1024 * 1024, "0755")
    for name, link in system:
        if link:
            os.symlink(link, f"{root}/{name}")
        else:
            _bind(f"/{name}", f"{root}/{name}")
    _tmpfs(f"{root}/dev", 64 * 1024, "0755", MS_NOSUID)
    for device in DEVICES:
        _bind(f"/dev/{device}", f"{root}/dev/{device}", recursive=False, read_only=False)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{root}/dev/{name}")
    os.mkdir(f"{root}/dev/shm")
    _seal(f"{root}/dev")
    os.mkdir(f"{root}/proc")
    _bind("/sys", f"{root}/sys", recursive=False)


def finish_root(plan: RootPlan, staging: str) -> None:
    """The environment's own part of the root, on `prepare_root`'s staging tmpfs, and the
    switch to it. The cgroup namespace is entered here: its root is the cgroup the caller
    is in now, which must be the environment's."""
    unshare(CLONE_NEWCGROUP)
    if not plan.code_follows_host:
        # From here on, the environment's root is its own: nothing of the host propagates in.
        mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = staging
    holders = [
        share(host_path, root + mount_path, uid, gid, mode, environment_uid, read_only)
        for host_path, mount_path, uid, gid, mode, environment_uid, read_only in plan.file_systems
    ]
    _bind(plan.task_root, root + TASK_ROOT)
    _bind(plan.runtime_dir, root + RUNTIME_DIR)
    if plan.opt_dir:
        _bind(plan.opt_dir, root + OPT_ROOT)
    else:
        os.mkdir(root + OPT_ROOT)
    os.mkdir(f"{root}/run")
    os.mkdir(f"{root}/tmp")
    # Paths under /tmp are bound after the private /tmp is mounted over it.
    in_tmp = [path for path in (*plan.expose, *plan.hide) if path.startswith("/tmp/")]
    for path in plan.expose:
        if path not in in_tmp and not os.path.exists(root + path):
            _bind(path, root + path)
    for path in plan.hide:
        if path not in in_tmp and os.path.isdir(root + path):
            _hide(root + path)
    # Absolute links last: until the pivot they would resolve on the host.
    for name, target in (("tmp", "/tmp"), ("run", "/run")):
        if not os.path.lexists(f"{root}/var/{name}"):
            os.symlink(target, f"{root}/var/{name}")
    os.mkdir(f"{root}/.old")
    pivot_root(root, f"{root}/.old")
    os.chdir("/")
    _tmpfs("/tmp", plan.tmp_bytes, "1777")
    _tmpfs("/dev/shm", plan.dev_shm_bytes, "1777")
    for target, content in (("/etc/passwd", plan.passwd), ("/etc/resolv.conf", plan.resolv_conf)):
        if content:
            _cover_file(target, content)
    # Interpreters installed under the host's /tmp reappear, read-only, in the private one.
    for path in plan.expose:
        if path in in_tmp:
            _bind("/.old" + path, path)
    for path in plan.hide:
        if path in in_tmp and os.path.isdir(path):
            _hide(path)
    umount("/.old", MNT_DETACH)
    os.rmdir("/.old")
    _seal("/")
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if plan.code_follows_host:
        # Now that the host's tree is gone from this namespace, only the root's own mounts
        # are left to make private: all but the two the code will arrive on.
        _make_private_except((TASK_ROOT, OPT_ROOT))
    os.chdir(TASK_ROOT)
    for holder in holders:
        os.waitpid(holder, 0)


def _make_private_except(kept: tuple[str, ...]) -> None:
    for point in dict.fromkeys(mount_points()):
        if point not in kept:
            mount(None, point, None, MS_PRIVATE)


def mount_points() -> list[str]:
    """Every mount point of this process's mount namespace, in mount order."""
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        return [unescape(line.split()[4]) for line in mountinfo]


def unescape(field: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are written as octal escapes."""
    parts = field.split("\\")
    # (No `re` here: this runs between fork and exec; see the module's docstring.)
    return parts[0] + "".join(chr(int(part[:3], 8)) + part[3:] for part in parts[1:])


def attach_read_only(source: str, target: str) -> None:
    """Mount `source` (and what is mounted below it) on `target`, read-only, nosuid and
    nodev from the first instant: the copy is made detached, its attributes set, and only
    then attached. Mounts that propagate from `target` carry the same attributes (a bind
    made and then remounted read-only would propagate writable)."""
    tree = _libc.syscall(
        _SYS_OPEN_TREE,
        ctypes.c_int(_AT_FDCWD),
        source.encode(),
        ctypes.c_uint(_OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_RECURSIVE),
    )
    if tree < 0:
        _check(-1, f"open_tree {source}")
    try:
        attributes = _mount_attributes(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV)
        _attach_tree(tree, attributes, _AT_RECURSIVE, target, source)
    finally:
        os.close(tree)


def _attach_tree(
    tree: int, attributes: ctypes.Array[ctypes.c_char], flags: int, target: str, what: str
) -> None:
    """Set a detached mount tree's attributes (`flags`: _AT_RECURSIVE for every mount of
    it), then attach it on `target`."""
    result = _libc.syscall(
        _SYS_MOUNT_SETATTR,
        ctypes.c_int(tree),
        b"",
        ctypes.c_uint(_AT_EMPTY_PATH | flags),
        attributes,
        ctypes.c_size_t(len(attributes)),
    )
    _check(result, f"mount_setattr {what}")
    result = _libc.syscall(
        _SYS_MOVE_MOUNT,
        ctypes.c_int(tree),
        b"",
        ctypes.c_int(_AT_FDCWD),
        target.encode(),
        ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH),
    )
    _check(result, f"move_mount {target}")


def detached_procfs() -> int:
    """A new procfs instance, attached nowhere: a descriptor of its root, to open paths
    below it (`dir_fd`). Its /proc/sys follows the opener's network namespace, as /proc's
    does (its process directories are those of this process's PID namespace). The instance
    goes when the descriptor is closed."""
    context = _libc.syscall(_SYS_FSOPEN, b"proc", ctypes.c_uint(_FSOPEN_CLOEXEC))
    if context < 0:
        _check(-1, "fsopen proc")
    try:
        result = _libc.syscall(
            _SYS_FSCONFIG, ctypes.c_int(context), ctypes.c_uint(_FSCONFIG_CMD_CREATE), None, None, 0
        )
        _check(result, "fsconfig proc")
        root = _libc.syscall(
            _SYS_FSMOUNT, ctypes.c_int(context), ctypes.c_uint(_FSMOUNT_CLOEXEC), ctypes.c_uint(0)
        )
        if root < 0:
            _check(-1, "fsmount proc")
        return int(root)
    finally:
        os.close(context)


# (host path, the path it has inside the sandbox), longest host path first.
PathMapping = list[tuple[str, str]]


def inside_paths(value: str, mapping: PathMapping) -> str:
    """`value` (an argument, an environment variable) with host paths replaced by the paths
    the sandbox sees them at."""
    for host, inside in mapping:
        if host in value:
            value = value.replace(host, inside)
    return value
