"""A pre-initialised Python template process that forks ready runtimes on demand.

Runs on the function's interpreter (3.9+, stdlib only). It imports Lamina's bootstrap and what
the bootstrap needs once; each request over the control socket forks a child that becomes one
environment's runtime. That skips interpreter start-up and those imports on every cold start.
Once it has forked its first runtime, the template settles: it makes what it loaded immortal
(`immortal`), so its children share those pages rather than copying each one they touch.

Wire protocol on the control socket (a Unix stream socket from the platform):
Arguments: the control socket's descriptor, then, for templates whose children enter the
namespace sandbox, the directory holding the `lamina` package (its sandbox code is preloaded).

- request: 4-byte big-endian length + JSON {"env", "cwd", "limits", "sandbox", "ahead"} with
  file descriptors passed as SCM_RIGHTS: the environment's output pipe, then, for a runtime
  started "ahead", its assignment and waiting pipes, then, for a sandbox with a network
  namespace, that namespace; "limits" maps rlimit names to [soft, hard]; "sandbox", when
  present, asks for the namespace sandbox (see `_join_cgroup_and_network`);
- replies: 4-byte length + JSON {"pid": n, "pidfd": true} for each request, in order, the
  child's pidfd passed with it ("pidfd" false: the kernel has none), and
  {"exit": pid, "status": code} when a child ends (negative code: killed by that signal),
  once the template has killed what was left in the child's process group and reaped it;
- {"make_ready": n, "root": {"staging", "system", "hostname"}} asks for n more ready
  children, which prepare that much of the root (`mounts.prepare_root`); each is announced,
  once made, as {"ready_child": pid, "pidfd": true} with the descriptor of the socket that
  assigns it its environment, then its pidfd.

A pid alone names the child only until the template reaps it: the kernel may give it to any
process after that, and the platform may not have read the exit report yet when it ends an
environment. The platform signals a child through its pidfd, which names that process and no
other. The template opens it before it replies, and reaps only from its serving loop, never
between a fork and its reply, so the pid still names the child when it does.

Ready children go as far into the sandbox as they can without knowing their environment
(process 1 of a new PID namespace, the common part of the root), then wait. The platform
sends a request straight to one (the same message as to the template): a cold start saves a
fork of this process, a hop through it and part of its root. They are made only while no
request waits.

A runtime started "ahead" goes further: it enters its whole sandbox (uid, cgroup, network,
a root whose /var/task and /opt follow host mount points the function's code arrives on
later), says so by writing "waiting" to its waiting pipe, and blocks reading its assignment
pipe: JSON {"environment"} and a newline, the function's variables, written whole and then
closed. Only then does it take those variables, move into its code and run the bootstrap
(see the platform's `lamina.sandbox.prestarted`).
"""

import gc
import importlib
import json
import os
import resource
import select
import signal
import socket
import sys
import time
import traceback

import bootstrap  # preloaded: this import is the point of the template
from control_channel import receive, send

_CLONE_NEWNET = 0x40000000


def _become_runtime(request, fds, control, wake_read, wake_write):
    """In a freshly forked child: take the environment's identity, then run the bootstrap.
    A sandboxed child is process 1 of a PID namespace of its own already."""
    sandbox = request.get("sandbox")
    _leave_template(control, wake_read, wake_write, dies_with_template=bool(sandbox))
    output, pipes, netns = _split_descriptors(request, fds)
    if sandbox:
        _join_cgroup_and_network(sandbox, netns)
        _build_sandbox(request)
    _run_bootstrap(request, output, pipes)


def _become_ready(assignments, root, control, wake_read, wake_write):
    """In a ready child (process 1 of a PID namespace of its own): build the part of the
    root every environment shares, now; then wait for an environment, and enter the rest
    of its sandbox once assigned."""
    _leave_template(control, wake_read, wake_write, dies_with_template=True)
    mounts = _mounts()
    system = tuple(tuple(entry) for entry in root["system"])
    mounts.prepare_root(root["staging"], system, root["hostname"])
    # What does not depend on the environment, done while nobody waits (it also copies the
    # pages it touches now rather than during a cold start).
    _forget_platform_modules()
    os.environ.clear()
    request, fds = receive(assignments, max_fds=_MAX_FDS)
    assignments.close()
    if request is None:
        os._exit(0)  # the template ended, or discarded this child
    output, pipes, netns = _split_descriptors(request, fds)
    _join_cgroup_and_network(request["sandbox"], netns)
    _build_sandbox(request, root["staging"])
    _run_bootstrap(request, output, pipes)


# At most: output, assignment and waiting pipes, network namespace.
_MAX_FDS = 4


def _split_descriptors(request, fds):
    """A request's descriptors: the output pipe, the (assignment, waiting) pipes of a
    runtime started ahead (else None), and the network namespace's, if sent."""
    if request.get("ahead"):
        return fds[0], (fds[1], fds[2]), fds[3:]
    return fds[0], None, fds[1:]


def _await_assignment(assignment_fd, waiting_fd):
    """Say this runtime waits, then read its function's variables (the platform writes them
    whole and closes the pipe); end quietly when the pipe closes without them."""
    _rehearse()
    os.write(waiting_fd, b"waiting")
    os.close(waiting_fd)
    chunks = []
    while True:
        chunk = os.read(assignment_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        # The assignment ends with a newline: the pipe's end may come later (a copy of its
        # write end can linger a moment in a process the server is starting).
        if chunk.endswith(b"\n"):
            break
    os.close(assignment_fd)
    if not chunks:
        os._exit(0)  # discarded before it was given a function
    return json.loads(b"".join(chunks))["environment"]


# A module the rehearsal imports, as the bootstrap will import the handler's.
_REHEARSED_MODULE = "lamina_rehearsal"


def _rehearse():
    """Run, before the function is known, what its cold start runs first: decoding its
    variables, setting them, importing a module from a new directory. A forked child's first
    run of that code writes to pages it shares with the template, and each such write copies
    a page (~265 of them from the assignment to the handler's first line): copied now, the
    cold start does not wait on them. Nothing of it is left: the module and its directory
    (in this sandbox's own /tmp, still empty) are removed, and the variables cleared."""
    os.environ.update(
        json.loads(json.dumps({"LAMINA_REHEARSAL_%d" % n: "-" * 60 for n in range(40)}))
    )
    os.environ.clear()
    directory = "/tmp/.lamina-rehearsal"
    source = os.path.join(directory, _REHEARSED_MODULE + ".py")
    os.mkdir(directory, 0o700)
    writes_bytecode = sys.dont_write_bytecode
    # As under /var/task, which is read-only: no __pycache__ is written.
    sys.dont_write_bytecode = True
    try:
        with open(source, "w") as module:
            module.write("import time\nLOADED = time.time()\n\n\ndef handler(event, context):\n")
            module.write("    return None\n")
        sys.path.insert(0, directory)
        importlib.import_module(_REHEARSED_MODULE)
    finally:
        sys.dont_write_bytecode = writes_bytecode
        sys.path.remove(directory)
        sys.modules.pop(_REHEARSED_MODULE, None)
        sys.path_importer_cache.pop(directory, None)
        os.unlink(source)
        os.rmdir(directory)


def _leave_template(control, wake_read, wake_write, dies_with_template):
    """What a child must not keep of the template: its session, its signal handling, and
    its control socket (which forks runtimes as root). The template keeps no ready child's
    socket past announcing it, so no child inherits another's. A sandboxed child is killed
    when the template ends (`dies_with_template`), and ends now if it already has."""
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    if dies_with_template:
        _die_with_template()
    else:
        _forget_template_pidfd()
    for fd in (control.fileno(), wake_read, wake_write, *_own_pid_namespace):
        os.close(fd)


def _die_with_template():
    """Set the parent-death signal, and end now if the template has ended already (its
    pidfd is readable then). Changing credentials clears the signal (prctl(2)): a sandboxed
    child sets it again once its uid is the environment's."""
    _mounts().prctl(_mounts().PR_SET_PDEATHSIG, signal.SIGKILL)
    if _template_pidfd:
        ended = select.poll()
        ended.register(_template_pidfd[0], select.POLLIN)
        if ended.poll(0):
            os._exit(1)


def _forget_template_pidfd():
    """Never in a runtime: function code must not hold a descriptor of the template."""
    while _template_pidfd:
        os.close(_template_pidfd.pop())


def _run_bootstrap(request, output_fd, pipes=None):
    """Become the environment's runtime; one started ahead (`pipes`) waits for its
    function's variables once nothing is left to do without them."""
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    # {"RLIMIT_NOFILE": [soft, hard], ...}: set while still privileged, before the uid drops.
    limits = request.get("limits") or {}
    for name, (soft, hard) in limits.items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    uid = request.get("uid")
    if uid is not None:
        # Last, once nothing needs root: the environment's own uid, for good.
        os.setresuid(uid, uid, uid)
        mounts_prctl_no_new_privs()
        _die_with_template()
    _forget_template_pidfd()
    _forget_platform_modules()
    os.environ.clear()
    os.environ.update(request["env"] if pipes is None else _await_assignment(*pipes))
    # The time module read the template's zone as it was imported; a fresh interpreter
    # reads the function's TZ. So it does PYTHONDONTWRITEBYTECODE (the platform starts
    # functions setting other PYTHON* variables afresh).
    time.tzset()
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        sys.dont_write_bytecode = True
    # Not before the assignment: a runtime started ahead would stay on the empty directory
    # its code is mounted over.
    os.chdir(request["cwd"])
    sys.argv = [bootstrap.__file__]
    status = 0
    try:
        bootstrap.main()
    except SystemExit as exit_request:
        # sys.exit() in a handler must end the child with its status, as in a fresh process.
        code = exit_request.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
        if code is not None and not isinstance(code, int):
            sys.stderr.write("%s\n" % code)
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


# The namespace sandbox, as the platform's namespace backend builds it for a fresh process:
# the template forks the runtime as process 1 of a new PID namespace; it joins the
# environment's cgroup and network namespace, builds the environment's root (new mount, IPC,
# UTS and cgroup namespaces), drops to the environment's uid and runs the bootstrap. Being
# the template's own child, its exit status reaches the template directly.

# The template's own PID namespace (sandboxed templates), to return to after each fork.
_own_pid_namespace = []
# A pidfd of the template itself (sandboxed templates, where the kernel has them), which its
# children watch until their parent-death signal is set.
_template_pidfd = []


def _fork_as_namespace_init():
    """os.fork(), the child being process 1 of a new PID namespace. unshare(CLONE_NEWPID)
    changes the namespace of the caller's next children only: the template enters a fresh
    one for this fork and returns to its own right after, in the parent alone."""
    mounts = _mounts()
    mounts.unshare(mounts.CLONE_NEWPID)
    pid = -1
    try:
        pid = os.fork()
    finally:
        if pid != 0:
            mounts.setns(_own_pid_namespace[0], mounts.CLONE_NEWPID)
    return pid


# The standard library's after-fork repairs (os.register_at_fork) that a template's children
# do without. In a child, threading's and logging's rebuild the locks and records of threads
# other than the forking one, for a fork made from another thread or while one held a lock.
# The template runs one thread and takes none of those locks, so in its children the two
# changed nothing (but what `_held_repairs` puts right) and wrote to pages otherwise shared
# with the template: 0.05 to 0.07 MiB of every idle environment, measured.
# (function, its own code, what to do in the child once it is back) of each repair held.
_held_repairs = []
# The interpreters whose repairs were checked to do no more than that (the unit test
# compares a child's threads and logging with and without them); later ones run theirs.
_CHECKED_REPAIRS = ((3, 9), (3, 13))


def _no_repair():
    """What a held repair runs in the template's children."""


def _hold_fork_repairs():
    """In the template, once: it starts no thread of its own, so while it runs one thread
    now, it always will, and its children's repairs do nothing."""
    if not _CHECKED_REPAIRS[0] <= sys.version_info[:2] <= _CHECKED_REPAIRS[1]:
        return
    try:
        if len(os.listdir("/proc/self/task")) != 1:
            return
    except OSError:
        return
    threading = sys.modules.get("threading")
    if threading is not None:
        _hold(threading._after_fork, _refresh_native_id)
    logging = sys.modules.get("logging")
    if logging is not None:
        # Logging's own before-fork hook takes its module lock: the child frees it, as the
        # repair would.
        _hold(logging._after_at_fork_child_reinit_locks, logging._lock._at_fork_reinit)


def _hold(repair, once_back):
    code = repair.__code__
    if code.co_freevars:
        return  # not the plain function this expects: it runs, as it always did
    repair.__code__ = _no_repair.__code__
    _held_repairs.append((repair, code, once_back))


def _refresh_native_id():
    """The main thread's native id is the child's own thread's, as in a fresh interpreter
    (threading's repair sets it from CPython 3.13.4 on; before, it kept the parent's)."""
    set_native_id = getattr(sys.modules["threading"].main_thread(), "_set_native_id", None)
    if set_native_id is not None:
        set_native_id()


def _restore_fork_repairs():
    """In a child, first: its repairs back, for forks of its own."""
    while _held_repairs:
        repair, code, once_back = _held_repairs.pop()
        repair.__code__ = code
        once_back()


def _join_cgroup_and_network(sandbox, netns):
    """`netns`: the descriptor of the environment's network namespace, when it has one
    (sent with the request: the platform holds each namespace by descriptor, not by name)."""
    for name in sandbox["procs_files"]:
        with open(name, "w") as procs:
            # "0" is the writer itself, in whatever PID namespace it is.
            procs.write("0")
    if sandbox.get("netns") and not netns:
        # Never run in the host's network for want of a descriptor.
        raise RuntimeError("the environment's network namespace did not arrive")
    for fd in netns:
        _mounts().setns(fd, _CLONE_NEWNET)
        os.close(fd)


def _build_sandbox(request, prepared=None):
    """The environment's root (finished on the staging directory of a ready child that
    `prepared` its common part), its group and, for `_run_bootstrap`, its uid."""
    mounts = _mounts()
    sandbox = request["sandbox"]
    plan = sandbox["plan"]
    for key in ("system", "expose", "hide", "file_systems"):
        plan[key] = tuple(tuple(item) if isinstance(item, list) else item for item in plan[key])
    if prepared is None:
        mounts.build_root(mounts.RootPlan(**plan))
    else:
        mounts.finish_root(mounts.RootPlan(**plan), prepared)
    _runtime_dir_inside(plan["runtime_dir"], mounts.RUNTIME_DIR)
    uid = sandbox["uid"]
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    request["uid"] = uid


def _runtime_dir_inside(host_dir, inside_dir):
    """The runtime's directory on sys.path as the sandbox shows it: function code imports
    the runtime's modules from there (`snapshot_restore_py`), as a fresh runtime would."""
    host_dir = host_dir.rstrip("/")
    for index, entry in enumerate(sys.path):
        if entry == host_dir or entry.startswith(host_dir + "/"):
            sys.path[index] = inside_dir + entry[len(host_dir) :]


def mounts_prctl_no_new_privs():
    mounts = _mounts()
    mounts.prctl(mounts.PR_SET_NO_NEW_PRIVS, 1)


def _mounts():
    return _preloaded["mounts"]


# Lamina's sandbox code (`lamina.sandbox.mounts` under "mounts"), imported once by a template
# whose children enter the namespace sandbox; empty for templates of the process backend.
_preloaded = {}


def _preload_sandbox(lamina_path):
    sys.path.insert(0, lamina_path)
    try:
        from lamina.sandbox import mounts
    finally:
        sys.path.pop(0)
    _preloaded["mounts"] = mounts
    _own_pid_namespace.append(os.open("/proc/self/ns/pid", os.O_RDONLY))
    try:
        _template_pidfd.append(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        pass  # before Linux 5.3: the parent-death signal alone


def _forget_platform_modules():
    """Function code must not find the platform's modules already imported."""
    for name in [name for name in sys.modules if name == "lamina" or name.startswith("lamina.")]:
        del sys.modules[name]


# The children this template forked (not the orphans it adopts), until they are reaped.
_forked = set()


def _reap(control):
    while True:
        try:
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if ended is None:
            return
        pid = ended.si_pid
        if pid in _forked:
            # Each leads a session and group of its own: what is left in it ends with it,
            # now, while the unreaped child still holds the group's id (once reaped, the
            # platform no longer signals that id: it may be another process's).
            _forked.discard(pid)
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        send(control, {"exit": pid, "status": code})


_PR_SET_CHILD_SUBREAPER = 36


def _adopt_orphans():
    """Become the reaper of our descendants: a process a runtime started that outlives it
    (outside a PID namespace) comes back here to be reaped rather than lingering as a
    zombie under a host init that may never reap it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: no sandboxed children to adopt either


def main():
    if len(sys.argv) > 2:
        _preload_sandbox(sys.argv[2])
    # Everything imported so far is shared with every child: keep the collector from
    # walking (and so copying, page by page) those objects in each child after the fork.
    gc.freeze()
    _hold_fork_repairs()
    _adopt_orphans()
    control = socket.socket(fileno=int(sys.argv[1]))
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    # A handler (not SIG_IGN) keeps exit statuses available to waitpid.
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    send(control, {"ready": os.getpid()})
    try:
        _serve_forks(control, wake_read, wake_write)
    except ConnectionError:
        pass  # the platform closed the control socket (it stopped): so does the template


def _serve_forks(control, wake_read, wake_write):
    owed = 0  # ready children asked for and not made yet
    root = None  # what they prepare of the root (`mounts.prepare_root`)
    # When the template settles (`_settle`), None once it has: after its first fork, or
    # after a moment with none.
    settle_at = time.monotonic() + _SETTLE_WITHIN_S
    while True:
        # Requests first; the template settles, then makes ready children, only while none
        # is waiting.
        if settle_at is not None:
            timeout = max(0.0, settle_at - time.monotonic())
        else:
            timeout = 0 if owed else None
        readable, _, _ = select.select([control, wake_read], [], [], timeout)
        if wake_read in readable:
            os.read(wake_read, 512)
            _reap(control)
        if control in readable:
            request, fds = receive(control, max_fds=_MAX_FDS)
            if request is None:
                return
            if "make_ready" in request:
                owed += int(request["make_ready"])
                root = request.get("root") or root
                continue
            if request.get("ahead") and settle_at is not None:
                # Nothing waits on a runtime started ahead, and one forked before the
                # template settles copies every page the settling writes.
                _settle()
                settle_at = None
            try:
                pid = _fork_as_namespace_init() if request.get("sandbox") else os.fork()
            except OSError as error:
                # This request fails (the platform raises for it); the template goes on.
                for fd in fds:
                    os.close(fd)
                send(control, {"error": "the template could not fork: %s" % error})
                continue
            if pid == 0:
                _in_child(_become_runtime, request, fds, control, wake_read, wake_write)
            _forked.add(pid)
            for fd in fds:
                os.close(fd)
            _send_forked(control, {"pid": pid}, pid)
            if settle_at is not None:
                settle_at = 0.0  # at the next idle moment: this cold start did not wait
        elif not readable and settle_at is not None:
            if time.monotonic() >= settle_at:
                _settle()
                settle_at = None
        elif not readable and owed:
            owed -= 1
            try:
                _make_ready(root, control, wake_read, wake_write)
            except OSError as error:
                # Cold starts fork afresh meanwhile; the next request asks again.
                sys.stderr.write("lamina template: no ready child: %s\n" % error)


# How long a template that forked nothing yet waits before it settles anyway.
_SETTLE_WITHIN_S = 0.1


def _settle():
    """Make what the template has loaded immortal (`immortal`), so that its children share
    those pages for good rather than copying each one they touch. It takes tens of
    milliseconds, so it waits until the template's first cold start is forked, which is
    usually what started it, and for a moment with no request. A child forked before it
    keeps its own copy of each page it writes (about 5 MiB more for that one environment);
    nothing else differs. Ready children and runtimes started ahead are made after it."""
    try:
        import immortal

        # Function code importing a module of that name must not find this one.
        del sys.modules["immortal"]
        immortal.make_immortal()
    except Exception:
        # Only memory is at stake: the template goes on forking as it did.
        traceback.print_exc()


def _in_child(become, *args):
    """Run a forked child's part; it ends the process and never returns into the
    template's loop, even when setting up its sandbox fails. First, the child puts back the
    after-fork repairs the template holds, so that forks of the function's own get them."""
    try:
        _restore_fork_repairs()
        become(*args)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(1)


def _make_ready(root, control, wake_read, wake_write):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = _fork_as_namespace_init()
    except OSError:
        ours.close()
        theirs.close()
        raise
    if pid == 0:
        ours.close()
        _in_child(_become_ready, theirs, root, control, wake_read, wake_write)
    _forked.add(pid)
    theirs.close()
    try:
        _send_forked(control, {"ready_child": pid}, pid, [ours.fileno()])
    finally:
        # Once announced, the platform holds its own copy; if not, the child reads its end
        # closed and ends.
        ours.close()


def _send_forked(control, message, pid, fds=()):
    """Report a child just forked, with `fds` and then its pidfd, where the kernel has them
    (Linux 5.3)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    message["pidfd"] = pidfd is not None
    try:
        send(control, message, [*fds, pidfd] if pidfd is not None else fds)
    finally:
        if pidfd is not None:
            os.close(pidfd)


if __name__ == "__main__":
    main()
