"""The local backend: a worker zygote on this machine, inside bubblewrap where it is installed.

bubblewrap, where it is installed, gives the worker its own network (none), process
and mount namespaces: it sees the Python installation, the engine package, the
submission and the released helpers, read-only, and a small private /tmp; nothing of
the course (hidden tests, references, results), and not the packages its week forbids
(an empty folder is mounted over each). Run as root, with bubblewrap or without, the worker
drops to `nobody` before student code runs, so that the process limit applies and files only
root may read stay unread. Resource limits
and the wall-clock timeouts of the client apply in every case.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import autograder
from autograder.sandbox.host import OutputTail, WorkerHost
from autograder.sandbox.spec import HELPERS_DIR, RUN_ENV, SUBMISSION_DIR, WorkerSpec, package_locations


def bubblewrap_available() -> bool:
    return shutil.which("bwrap") is not None and _bwrap_works()


_BWRAP_OK: bool | None = None


def _bwrap_works() -> bool:
    global _BWRAP_OK
    if _BWRAP_OK is None:
        try:
            _BWRAP_OK = subprocess.run(
                ["bwrap", "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "true"],
                capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _BWRAP_OK = False
    return _BWRAP_OK


def resolve_sandbox(requested: str) -> str:
    if requested == "none":
        return "none"
    if bubblewrap_available():
        return "bwrap"
    if requested == "bwrap":
        raise RuntimeError("bubblewrap (bwrap) is not installed or cannot create namespaces; "
                           "install Debian's 'bubblewrap' package or grade with --sandbox none")
    return "none"


class LocalZygote(WorkerHost):
    """A sandboxed process that has imported torch and forks one child per submission.

    Children run one at a time over the zygote's socket; `spawn` hands back a pipe with the
    child's output. A zygote that is not `reusable` (not root) serves one child only.
    """

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.sandbox = resolve_sandbox(spec.sandbox)
        self.drop_privileges = os.getuid() == 0  # student code never runs as root (Gradescope's runner is root)
        self.sock, child = socket.socketpair()
        inside = self.sandbox == "bwrap"
        config = {"socket_fd": child.fileno(), "drop_privileges": self.drop_privileges, "private": inside}
        command = [sys.executable, "-m", "autograder.sandbox.worker", json.dumps(config)]
        if inside:
            command = self._bwrap_prefix() + command
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=(child.fileno(),), env=_worker_env(spec.run_id), start_new_session=True, cwd="/tmp")
        child.close()
        self.boot_output = OutputTail(self.process.stdout)
        self.booted = False
        self.reusable = False

    def child_config(self, spec: WorkerSpec) -> dict:
        """What one submission's child needs: its code, its limits, its guards."""
        baseline = _threads_of_uid(65534 if self.drop_privileges else os.getuid())
        inside = self.sandbox == "bwrap"
        return {
            "module_path": f"{SUBMISSION_DIR}/{spec.module_path.name}" if inside else str(spec.module_path),
            "source": Path(spec.module_path).read_text(),
            "denied_paths": [] if inside else [str(p) for p in spec.denied_paths],
            "limits": spec.limits.rlimits(baseline),
            "drop_privileges": self.drop_privileges,
            "threads": spec.threads,
            "week": spec.week,
            "forbidden": spec.forbidden,
            "helper_paths": [f"{HELPERS_DIR}/{spec.week}" if inside else str(Path(spec.release_root) / spec.week)]
                            if spec.release_root is not None else [],
        }

    def _bwrap_prefix(self) -> list[str]:
        spec = self.spec
        args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid",
                "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
                "--perms", "1777", "--tmpfs", "/dev/shm"]
        for top in ("usr", "bin", "sbin", "lib", "lib64", "lib32"):
            path = Path("/") / top
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.exists():
                args += ["--ro-bind", str(path), str(path)]
        for etc in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf",
                    "localtime", "hosts"):
            args += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
        for folder in _python_paths():
            args += _parent_dirs(folder) + ["--ro-bind", folder, folder]
        for package in spec.hidden_packages:  # the week forbids it: it is not there to be imported
            for place in package_locations(package):
                args += ["--tmpfs", str(place)] if place.is_dir() else ["--ro-bind", "/dev/null", str(place)]
        for device in sorted(Path("/dev").glob("nvidia*")):  # a GPU, where the host has one
            args += ["--dev-bind", str(device), str(device)]
        if any(Path("/dev").glob("nvidia*")):
            args += ["--ro-bind-try", "/sys", "/sys", "--ro-bind-try", "/proc/driver/nvidia", "/proc/driver/nvidia"]
        if spec.release_root is not None and Path(spec.release_root).is_dir():
            args += ["--ro-bind", str(Path(spec.release_root).resolve()), HELPERS_DIR]
        args += ["--chdir", "/tmp", "--setenv", "HOME", "/tmp", "--"]
        return args

    def cpu_seconds(self) -> float | None:
        return process_tree_cpu_seconds(self.process.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_briefly(self, seconds: float = 2.0) -> int | None:
        """The exit status, once the process has ended on its own (None if it has not)."""
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Kill the zygote, its children and everything they started."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.process.kill()
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.sock.close()
        self.boot_output.close()


def process_tree_cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a process and its live descendants, read from /proc (the
    kernel's count, which nothing inside the sandbox can change); None when it is gone."""
    ticks, pending, seen = 0, [pid], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            if current == pid:
                return None
    return ticks / os.sysconf("SC_CLK_TCK")


def _parent_dirs(path: str) -> list[str]:
    """bwrap creates missing parents with the caller's umask; `nobody` must be able to pass them."""
    args: list[str] = []
    for parent in reversed(Path(path).parents):
        if str(parent) != "/":
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _python_paths() -> list[str]:
    """The folders the worker's interpreter and its packages live in, and nothing else."""
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    package = Path(autograder.__file__).resolve().parent
    paths.add(str(package))
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        if real and "site-packages" in real and os.path.isdir(real):
            paths.add(real)
    return sorted(p for p in paths if not any(p != q and p.startswith(q + os.sep) for q in paths))


def _worker_env(run_id: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    env.update({"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(Path(autograder.__file__).resolve().parent.parent), RUN_ENV: run_id})
    for key in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def _threads_of_uid(uid: int) -> int:
    """How many threads the user already runs: RLIMIT_NPROC counts them all."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            total += int(fields.get("Threads", "1").strip())
    return total
