"""The guard's child side: the audit hook that refuses, installed before the learner's code runs.

``pplab.exercises.guard.run_guarded`` starts this file as a script in an isolated interpreter
(``python -I -S -B``) with the request on stdin. ``main`` bounds the process (memory, CPU time,
file size, soft and hard limits alike), loads the task (pplab's own code, standard library
only, unless the policy's ``task_loads_refused`` lets it load pplab and torch: the runtime
lab's, whose ``prepare`` joins the process group; those modules leave ``sys.modules`` before
the learner's code runs), then puts a finder first on ``sys.meta_path`` and adds an audit
hook (PEP 578) that refuse, per the request's policy, importing modules (CPython raises the
``import`` event for ``import``, ``__import__`` and ``importlib`` alike, after
``sys.modules`` was cleared too),
reading outside the standard library and the child's own folder, writing outside that folder,
paths with ``..``, and the audit events of processes, signals, sockets, native code and the
calls that could disarm the hook. A refusal writes one line naming what was refused and ends
the process at once (``os._exit``), so no ``except`` in the learner's code swallows it.

The hook touches only values bound before the learner's code ran (closure values, exact
``str``/``bytes``/``int`` checked by type, string methods): a builtin or a module function the
learner replaces later is never called. The finder on ``sys.meta_path`` is in plain sight and
is built apart from the hook, so changing what it holds changes nothing the hook reads.

Only the standard library is imported at the top: nothing refused may be loaded before the
hook is in (``main`` checks).

    (started by pplab.exercises.guard.run_guarded; see that module)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REFUSED_STATUS = 86  # the child's exit status after a refusal
RESULT_FILE = "result.json"
REFUSAL_FILE = "refused.txt"
OUTPUT_FILE = "output.txt"

PPLAB = ("pplab",)
TORCH = ("torch", "torchvision", "functorch")
PROCESSES = ("subprocess", "_posixsubprocess", "multiprocessing", "_multiprocessing", "pty",
             "signal", "_signal")
NETWORK = ("socket", "_socket", "ssl", "_ssl", "select", "selectors", "asyncio")
NATIVE = ("ctypes", "_ctypes", "cffi")
PROCESS_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn",
                  "os.fork", "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill")
NETWORK_EVENTS = ("socket.__new__", "socket.connect", "socket.bind", "socket.sendto",
                  "socket.getaddrinfo")
NATIVE_EVENTS = ("ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.cdata",
                 "ctypes.cdata/buffer", "ctypes.call_function", "ctypes.string_at",
                 "ctypes.addressof")
# Calls that could find the hook or its data, or undo the child's bounds.
# ``REWRITE_CODE`` stands for replacing a function's ``__code__`` (CPython audits it as
# ``object.__setattr__``, which harmless code raises too).
REWRITE_CODE = "function.__code__"
DISARM_EVENTS = ("gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace",
                 "sys.setprofile", "resource.setrlimit", "resource.prlimit", "os.chdir",
                 "os.symlink", "os.link", REWRITE_CODE)
# Events whose first argument (and the second, for a rename) is a path the code changes.
_PATH_CHANGES = ("os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.truncate", "os.chmod",
                 "os.chown", "os.utime", "shutil.rmtree", "os.mkfifo", "os.mknod")


def _why(top: str) -> str:
    """Why importing the module ``top`` is refused, in a few words."""
    if top in PPLAB:
        return ("the lab grades code you wrote; pplab's builders, simulator and search are out "
                "of reach here")
    if top in TORCH:
        return "this lab is written without torch"
    if top in PROCESSES:
        return "the lab's code may not start processes"
    if top in NETWORK:
        return "the lab's code may not open the network"
    if top in NATIVE:
        return "the lab's code may not load native code"
    return "this lab does not allow it"


def _normal(path: str, cwd: str) -> tuple[str, bool]:
    """(the absolute path with . and // removed, whether it climbs with ..), by string
    operations only: nothing the learner's code could have replaced is called."""
    if not path.startswith("/"):
        path = cwd + "/" + path
    parts = [part for part in path.split("/") if part and part != "."]
    return "/" + "/".join(parts), ".." in parts


def _make_guard(policy: dict, refused_paths: list[str], readable: list[str], writable: str,
                refusal_fd: int):
    """The audit hook and a finder that refuses the same imports. Everything they use is
    bound here, before the learner's code runs, as closure values: builtins and module
    functions looked up later could have been replaced."""
    modules = frozenset(policy["refused_modules"])
    events = frozenset(policy["refused_events"])
    changes = frozenset(_PATH_CHANGES)
    rewrite_refused = REWRITE_CODE in events
    reasons = {name: _why(name) for name in modules}
    refused_roots = tuple(path.rstrip("/") for path in refused_paths)
    readable_roots = tuple(path.rstrip("/") for path in readable) + (writable,)
    devices = ("/dev/null", "/dev/urandom", "/dev/random")
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    cwd = writable
    str_, bytes_, int_, type_, normal = str, bytes, int, type, _normal
    write, exit_ = os.write, os._exit

    def inside(path: str, roots: tuple[str, ...]) -> bool:
        for root in roots:
            if path == root or path.startswith(root + "/"):
                return True
        return False

    def refuse(message: str) -> None:
        try:
            write(refusal_fd, ("refused: " + message)[:500].encode("utf-8", "replace"))
        finally:
            exit_(REFUSED_STATUS)

    def path_of(value: object) -> str | None:
        if type_(value) is str_:
            return value
        if type_(value) is bytes_:
            return value.decode("utf-8", "surrogateescape")
        return None

    def check_path(value: object, writing: bool, what: str) -> None:
        text = path_of(value)
        if text is None:
            if type_(value) is int_:
                return  # an open file descriptor, reached through an open already checked
            refuse(f"{what} of {str_.__str__(type_(value).__name__)} instead of a path")
        path, climbs = normal(text, cwd)
        shown = path[:200]
        if climbs:
            refuse(f"{what} of {shown} (a path with ..): the lab's code stays in its folder")
        if inside(path, refused_roots):
            refuse(f"{what} of {shown}: it is part of pplab (or another package the lab "
                   f"keeps out of reach); the lab grades code you wrote")
        if writing and not inside(path, (writable,)):
            refuse(f"{what} of {shown}: the lab's code may write only in its own temporary "
                   f"folder")
        if not writing and not inside(path, readable_roots) and path not in devices:
            refuse(f"{what} of {shown}: the lab's code may read only the standard library "
                   f"and its own folder")

    def check_import(name: object) -> None:
        if type_(name) is not str_:
            refuse("an import by a name that is not text")
        top = name.partition(".")[0]
        if top in modules:
            refuse(f"import of {name}: {reasons[top]}")

    class Refuser:
        """First on ``sys.meta_path``: ``importlib.import_module`` of a module that is not
        there at all asks the finders before any audit event, and is refused here too."""

        @staticmethod
        def find_spec(name, path=None, target=None):
            check_import(name)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            flags = args[2] if type_(args[2]) is int_ else write_flags
            mode = args[1] if type_(args[1]) is str_ else ""
            writing = flags & write_flags != 0 or "w" in mode or "a" in mode or "x" in mode \
                or "+" in mode
            check_path(args[0], writing, "writing" if writing else "reading")
        elif event == "import":
            check_import(args[0])
        elif event in events:
            refuse(f"{event}: the lab's code may not start processes, signal them, open the "
                   f"network, load native code or disarm the grader")
        elif event in changes:
            for value in args[:2] if event == "os.rename" else args[:1]:
                check_path(value, True, event)
        elif event == "object.__setattr__" and rewrite_refused and type_(args[1]) is str_ \
                and args[1] == "__code__":
            refuse("replacing a function's __code__: the lab's code may not rewrite functions")

    return hook, Refuser()


def _limit(seconds: float, memory_bytes: int, written_bytes: int) -> None:
    """Bound memory, file writes and CPU time, soft and hard alike, so no raise is possible
    (set here, not by the parent: a preexec hook is unsafe in a threaded parent, the app)."""
    try:
        import resource
    except ImportError:
        return
    for limit, value in ((resource.RLIMIT_AS, memory_bytes),
                         (resource.RLIMIT_FSIZE, written_bytes),
                         (resource.RLIMIT_CPU, int(seconds) + 1)):
        _, hard = resource.getrlimit(limit)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(limit, (value, value))


def _install(payload: dict, here: str) -> None:
    """Put the finder first on ``sys.meta_path`` and add the hook. Each comes from a guard of
    its own, and neither is kept in a variable that outlives this call: the finder is in
    plain sight on ``sys.meta_path``, and what it closes over must not be the hook's."""
    refusal_fd = os.open(REFUSAL_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    readable = [p for p in sys.path if p.startswith("/") and p != here]
    readable += payload["policy"]["readable"]
    arguments = (payload["policy"], payload["refused_paths"], readable, here, refusal_fd)
    sys.meta_path.insert(0, _make_guard(*arguments)[1])
    sys.addaudithook(_make_guard(*arguments)[0])


def main() -> int:
    import importlib.util
    import linecache

    payload = json.load(sys.stdin)
    here = os.getcwd()
    _limit(payload["seconds"], payload["memory_bytes"], payload["written_bytes"])
    # The task (pplab's own code, standard library only) is loaded before the hook, and its
    # lines and this file's are cached now: a warning or traceback that shows a line of them
    # later must not read pplab's files (the hook would refuse, blaming the learner).
    spec = importlib.util.spec_from_file_location("pplab_guarded_task", payload["task"])
    task = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = task  # a dataclass in the task looks its module up there
    spec.loader.exec_module(task)
    sys.modules.pop(spec.name)  # and the learner's code need not find it there
    for source in (payload["task"], __file__):
        linecache.getlines(source)
    refused = payload["policy"]["refused_modules"]
    for name in ("_signal",):  # loaded at start-up; gone from sys.modules, re-importing is refused
        if name in refused:
            sys.modules.pop(name, None)
    early = [n for n in sys.modules if n.partition(".")[0] in refused]
    if early and not payload["policy"]["task_loads_refused"]:
        # a refused module loaded before the hook would be reachable through sys.modules
        raise RuntimeError(f"the guard's own imports loaded {early}")
    try:
        prepare = getattr(task, "prepare", None)
        if prepare is not None:  # e.g. join the process group, before the hook
            prepare(payload["request"])
        # The refused modules the task loaded: their lines cached now, as the task's are,
        # and out of sys.modules, where ``import pplab`` would find them without an import
        # event (the task keeps what it uses through its own references).
        for name, module in list(sys.modules.items()):
            if name.partition(".")[0] in refused:
                source = getattr(module, "__file__", None)
                if isinstance(source, str):
                    linecache.getlines(source)
                del sys.modules[name]
        _install(payload, here)
        sys.path.insert(0, here)
        answer = task.run(Path(payload["learner_file"]), payload["request"])
    except BaseException as error:  # the task's own error: said in the answer, no traceback
        answer = {"load_error": f"the grader failed: {type(error).__name__}: {error}"[:500]}
    with open(RESULT_FILE, "w") as result:
        json.dump(answer, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
