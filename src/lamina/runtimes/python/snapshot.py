"""A SnapStart version's initialised process: its environments are forked from it.

Started once when a version with `SnapStart.ApplyOn=PublishedVersions` is published. It runs
the version's init (imports the handler's module) and the `register_before_snapshot` hooks,
reports that it is ready, then forks one child per environment of that version. Each child
runs the `register_after_restore` hooks and serves invocations with the handler imported
before the fork: the init is never run again. Runs on the function's interpreter (3.9+,
stdlib only), like the bootstrap it imports.

Arguments: the control socket's descriptor, then `--userns` when the platform isolates the
environments (namespace backend): the process then moves into a user namespace of its own
whose uids the platform maps (0 to its own host uid, 1..n to one host uid per environment),
so that each child can take mount, IPC, UTS, cgroup and network namespaces, a fresh /tmp and
a uid of its own, then drop every capability, without the snapshot ever holding privilege on
the host (see `lamina.sandbox.snapshots`).

Wire protocol on the control socket (4-byte big-endian length + JSON, as the template's):
- from the snapshot: {"userns": pid} (then waits for {"mapped": true}), then {"ready": pid}
  or {"init_error": payload}; {"pid": n} for each fork request, in order; {"exit": pid,
  "status": code} when a child ends;
- to the snapshot: fork requests {"env", "cwd", "limits", "isolation"} with the child's
  output pipe, its Runtime API connection and, when "isolation" is given, a pipe the child
  waits on until the platform has moved an interface into its network namespace, a pipe the
  child writes once it is in its cgroup and its namespaces exist, and the `cgroup.procs`
  files of its cgroup, opened by the platform for the child to join by (SCM_RIGHTS, in that
  order); {"hold": true} with one pipe forks a child that only makes a network
  namespace, writes to the pipe and waits, so that a later environment joins that
  namespace ("netns_holder": its pid) once the platform has moved an interface into it.
"""

import ctypes
import fcntl
import gc
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import time
import traceback

import bootstrap
import snapshot_restore_py
from control_channel import receive, send

_CLONE_NEWNS = 0x00020000
_CLONE_NEWCGROUP = 0x02000000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_PR_SET_NO_NEW_PRIVS = 38
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sH22x")

_libc = ctypes.CDLL(None, use_errno=True)
# A fork request's descriptors: four, and one `cgroup.procs` per cgroup hierarchy.
_MAX_FDS = 16


def _check(result):
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _enter_user_namespace(control):
    """Become root of a user namespace of our own; the platform writes its uid map."""
    _check(_libc.unshare(_CLONE_NEWUSER))
    send(control, {"userns": os.getpid()})
    reply, _ = receive(control, max_fds=4)
    if not reply or not reply.get("mapped"):
        os._exit(1)
    # Our host uid is 0 inside: the creator of a user namespace holds every capability
    # in it, and in it only (its own mount namespaces, its children's uids).
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))


def _init(control):
    """The version's init: import the handler, run the before-snapshot hooks."""
    try:
        handler = bootstrap.load_handler(os.environ.get("_HANDLER", ""))
        # Before the snapshot: the reverse order of registration.
        for func, args, kwargs in reversed(snapshot_restore_py.get_before_snapshot()):
            func(*args, **kwargs)
    except bootstrap.FaultError as fault:
        payload = {
            "errorMessage": fault.message,
            "errorType": fault.error_type,
            "requestId": "",
            "stackTrace": [],
        }
    except Exception as error:
        payload = bootstrap.error_payload(error)
    else:
        return handler
    bootstrap.log_error(payload)
    send(control, {"init_error": payload})
    sys.stdout.flush()
    os._exit(1)


def _lo_up():
    """A new network namespace's loopback starts down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = _IFREQ.pack(b"lo", 0)
        flags = _IFREQ.unpack(fcntl.ioctl(probe.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe.fileno(), _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))


def _isolate(isolation):
    """In the child, still root of the snapshot's user namespace: mount, IPC, UTS and
    (when asked) network namespaces of its own, and a fresh /tmp."""
    flags = _CLONE_NEWNS | _CLONE_NEWIPC | _CLONE_NEWUTS
    if isolation.get("own_network"):
        flags |= _CLONE_NEWNET
    holder = isolation.get("netns_holder")
    if holder:
        # A network namespace the platform prepared ahead (see `_hold_network`).
        netns = os.open(f"/proc/{holder}/ns/net", os.O_RDONLY)
        try:
            _check(_libc.setns(netns, _CLONE_NEWNET))
        finally:
            os.close(netns)
    _check(_libc.unshare(flags))
    options = "size={},mode=1777".format(isolation["tmp_bytes"])
    _check(_libc.mount(b"tmpfs", b"/tmp", b"tmpfs", _MS_NOSUID | _MS_NODEV, options.encode()))
    if isolation.get("own_network"):
        _lo_up()


_PR_SET_SECUREBITS = 28
_CAPABILITY_SETS = ("CapInh:", "CapPrm:", "CapEff:", "CapAmb:")


def _drop_to(uid):
    """Take the environment's own uid with no capability left in any set. Securebits are
    cleared first: init code may have set SECBIT_KEEP_CAPS (or locked them, which makes this
    fail and the environment with it), and a kept permitted set could be raised again.
    This hardens the common path only: init code shares this interpreter, and the version
    is one security domain (see lamina.sandbox.snapshots)."""
    _check(_libc.prctl(_PR_SET_SECUREBITS, 0, 0, 0, 0))
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(_CAPABILITY_SETS) and int(line.split()[1], 16) != 0:
                raise RuntimeError("capabilities left after the uid drop: " + line.strip())


def _hold_network(fds, closing):
    """A forked child that only holds a new network namespace, which the platform fills
    (an interface from its pool) ahead of need; an environment restored later joins it."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    for fd in closing:
        os.close(fd)
    _check(_libc.unshare(_CLONE_NEWNET))
    _lo_up()
    os.write(fds[0], b"r")
    os.close(fds[0])
    while True:
        signal.pause()


def _disconnect_inherited():
    """Connections made during init are seen closed by the peer, as after a restore on AWS
    (where the snapshot's connections do not survive): each environment reconnects. Left as
    they are, every fork would share them, and two environments would write on, and read
    each other's answers from, one connection. Each connected TCP socket's descriptor is
    replaced by a socket whose other end is closed: reads see the end, writes fail."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            with socket.socket(fileno=os.dup(fd)) as probe:
                if probe.family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                if probe.type != socket.SOCK_STREAM:
                    continue
                probe.getpeername()  # OSError when not connected (a listener, say)
        except OSError:
            continue
        try:
            ours, theirs = socket.socketpair()
        except OSError:
            os.close(fd)  # out of descriptors: closed, then, which reads as EBADF
            continue
        theirs.close()
        os.dup2(ours.fileno(), fd, inheritable=False)
        ours.close()


def _wait_for(go_fd):
    if os.read(go_fd, 1) != b"g":
        os._exit(1)


def _admit(isolation, fds):
    """Join the environment: our cgroup, then namespaces of our own (no user code has run),
    then tell the platform, which moves an interface into our network namespace and writes
    once it is done (nothing written: it gave up on this environment)."""
    go_fd = fds[2] if len(fds) > 2 else -1
    ready_fd = fds[3] if len(fds) > 3 else -1
    try:
        _disconnect_inherited()
        if isolation:
            for procs in fds[4:]:
                os.write(procs, b"0")
                os.close(procs)
            _isolate(isolation)
    except BaseException:
        # The platform's own step failed, not the function: say so before this child ends
        # (a pipe closed without a word means the function's code ended it).
        if ready_fd >= 0:
            os.write(ready_fd, b"x")
        raise
    if isolation:
        os.write(ready_fd, b"r")
        os.close(ready_fd)
        _wait_for(go_fd)
        os.close(go_fd)
        # Rooted at the cgroup we are in now: the environment sees only its own.
        _check(_libc.unshare(_CLONE_NEWCGROUP))


def _restore(request, fds, handler, closing):
    """In the forked child: become one environment, run the after-restore hooks, serve."""
    output_fd, runtime_fd = fds[0], fds[1]
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    for fd in closing:
        os.close(fd)
    isolation = request.get("isolation")
    _admit(isolation, fds)
    for name, (soft, hard) in (request.get("limits") or {}).items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    if isolation:
        _drop_to(isolation["uid"])
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    status = 0
    try:
        # After a restore: the order of registration.
        for func, args, kwargs in snapshot_restore_py.get_after_restore():
            func(*args, **kwargs)
        client = bootstrap.RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
        # The platform's end of this connection is the environment's Runtime API.
        client._socket = socket.socket(fileno=runtime_fd)
        bootstrap.serve(client, handler)
    except SystemExit as exit_request:
        code = exit_request.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException as error:
        bootstrap.log_error(bootstrap.error_payload(error))
        status = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _reap(control):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        send(control, {"exit": pid, "status": code})


def main():
    control = socket.socket(fileno=int(sys.argv[1]))
    if "--userns" in sys.argv[2:]:
        _enter_user_namespace(control)
    sys.stdout = os.fdopen(sys.stdout.fileno(), "w", buffering=1, closefd=False)
    os.chdir(os.environ.get("LAMBDA_TASK_ROOT") or ".")
    bootstrap.prepare_path(os.environ.get("LAMBDA_TASK_ROOT", os.getcwd()))
    bootstrap.configure_logging()
    started = time.perf_counter()
    handler = _init(control)
    sys.stdout.flush()
    # What every child shares stays out of the collector's walks (and so unshared).
    gc.freeze()
    send(control, {"ready": os.getpid(), "init_ms": (time.perf_counter() - started) * 1000})
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    try:
        while True:
            readable, _, _ = select.select([control, wake_read], [], [])
            if wake_read in readable:
                os.read(wake_read, 512)
                _reap(control)
            if control in readable:
                request, fds = receive(control, max_fds=_MAX_FDS)
                if request is None:
                    return
                pid = os.fork()
                if pid == 0:
                    # A child never returns into this loop: whatever fails, it ends here.
                    try:
                        closing = (control.fileno(), wake_read, wake_write)
                        if request.get("hold"):
                            _hold_network(fds, closing)
                        _restore(request, fds, handler, closing)
                    except BaseException:
                        traceback.print_exc()
                    finally:
                        os._exit(1)
                for fd in fds:
                    os.close(fd)
                send(control, {"pid": pid})
    except ConnectionError:
        pass  # the platform closed the control socket: the snapshot goes with it


if __name__ == "__main__":
    main()
