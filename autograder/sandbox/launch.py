"""Starting a worker inside the local sandbox.

bubblewrap, where it is installed, gives the worker its own network (none), process
and mount namespaces: it sees the Python installation, the engine package, the
submission and the released helpers, read-only, and a small private /tmp; nothing of
the course (hidden tests, references, results). Run as root, the worker drops to
`nobody` before student code runs so that the process limit applies. Resource limits
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
import threading
from dataclasses import dataclass, field
from pathlib import Path

import autograder

SUBMISSION_DIR = "/submission"
HELPERS_DIR = "/helpers"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one worker; the defaults suit a 2-core laptop."""

    memory_mb: int = 4096
    cpu_seconds: int = 600
    processes: int = 64
    file_size_mb: int = 64
    tmp_size_mb: int = 256

    def rlimits(self, thread_baseline: int) -> dict[str, int]:
        return {
            "RLIMIT_DATA": self.memory_mb << 20,
            "RLIMIT_CPU": self.cpu_seconds,
            "RLIMIT_NPROC": thread_baseline + self.processes,
            "RLIMIT_FSIZE": self.file_size_mb << 20,
            "RLIMIT_CORE": 0,
        }


@dataclass
class WorkerSpec:
    """Everything needed to start a worker for one submission."""

    module_path: Path
    week: str = "this week"
    helper_dirs: list[Path] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    denied_paths: list[Path] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    sandbox: str = "auto"  # "auto", "bwrap", "none" or "docker"
    threads: int = 1
    image: str = "vitssl-grader:latest"   # the docker backend's image
    run_id: str = ""                      # labels a grading run's containers, to remove them all
    gpu: str = "prefer"                   # never | prefer | require (docker backend)
    gpu_index: int = 0                    # which GPU, where there are several


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


class OutputTail:
    """Drains a pipe in a thread, keeping the start and the end of what came through it."""

    KEEP = 32 * 1024

    def __init__(self, stream):
        self._stream = stream
        self._head, self._tail, self._dropped = bytearray(), bytearray(), 0
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        read = getattr(self._stream, "read1", self._stream.read)
        try:
            while chunk := read(65536):
                if len(self._head) < self.KEEP:
                    take = self.KEEP - len(self._head)
                    self._head += chunk[:take]
                    chunk = chunk[take:]
                if chunk:
                    self._tail += chunk
                    if len(self._tail) > self.KEEP:
                        self._dropped += len(self._tail) - self.KEEP
                        del self._tail[: len(self._tail) - self.KEEP]
        except (OSError, ValueError):
            pass

    def text(self) -> str:
        out = self._head.decode(errors="replace")
        if self._dropped:
            out += f"\n... [{self._dropped} bytes of output cut] ...\n"
        return out + self._tail.decode(errors="replace")

    def close(self, wait: float = 2.0) -> None:
        self._thread.join(timeout=wait)
        try:
            self._stream.close()
        except OSError:
            pass


class ControlChannel:
    """The trusted side's end of a zygote's control socket (`self.sock`): ask for a child,
    hear how it ended. Shared by the local zygote and the container one."""

    def spawn(self, spec: WorkerSpec) -> tuple[socket.socket, OutputTail]:
        """Fork a child for this submission: its own socket, and its output."""
        from autograder.sandbox import wire

        wire.send(self.sock, wire.encode({"op": "spawn", "child": self.child_config(spec)}, []), [])
        self.sock.settimeout(30)
        try:
            _, fds, _, _ = socket.recv_fds(self.sock, 16, 2)
        finally:
            self.sock.settimeout(None)
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            raise EOFError("the worker did not start a child")
        return socket.socket(fileno=fds[0]), OutputTail(os.fdopen(fds[1], "rb", buffering=0))

    def child_exit_status(self, seconds: float) -> int | None:
        """The zygote's report of its child's end: the exit code, or minus the signal."""
        from autograder.sandbox import wire

        self.sock.settimeout(seconds)
        try:
            message, blobs = wire.receive(self.sock)
            message = wire.decode(message, blobs)
        except (OSError, EOFError, wire.WireError):
            return None
        finally:
            self.sock.settimeout(None)
        code = message.get("child_exited") if isinstance(message, dict) else None
        return code if isinstance(code, int) else None


class Zygote(ControlChannel):
    """A sandboxed process that has imported torch and forks one child per submission.

    Children run one at a time over the zygote's socket; `spawn` hands back a pipe with the
    child's output. A zygote that is not `reusable` (not root) serves one child only.
    """

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.sandbox = resolve_sandbox(spec.sandbox)
        self.drop_privileges = self.sandbox == "bwrap" and os.getuid() == 0
        self.sock, child = socket.socketpair()
        inside = self.sandbox == "bwrap"
        config = {
            "socket_fd": child.fileno(),
            "week": spec.week,
            "helper_paths": ([f"{HELPERS_DIR}/{i}" for i in range(len(spec.helper_dirs))] if inside
                             else [str(p) for p in spec.helper_dirs]),
            "forbidden": spec.forbidden,
            "drop_privileges": self.drop_privileges,
        }
        command = [sys.executable, "-m", "autograder.sandbox.worker", json.dumps(config)]
        if inside:
            command = self._bwrap_prefix() + command
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=(child.fileno(),), env=_worker_env(), start_new_session=True, cwd="/tmp")
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
        for path in _python_paths():
            args += _parent_dirs(path) + ["--ro-bind", path, path]
        for device in sorted(Path("/dev").glob("nvidia*")):  # a GPU, where the host has one
            args += ["--dev-bind", str(device), str(device)]
        if any(Path("/dev").glob("nvidia*")):
            args += ["--ro-bind-try", "/sys", "/sys", "--ro-bind-try", "/proc/driver/nvidia", "/proc/driver/nvidia"]
        for i, helper in enumerate(spec.helper_dirs):
            args += ["--ro-bind", str(Path(helper).resolve()), f"{HELPERS_DIR}/{i}"]
        args += ["--chdir", "/tmp", "--setenv", "HOME", "/tmp", "--"]
        return args

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


class ZygotePool:
    """Booted zygotes for one grading run: idle ones are reused, one is kept booting ahead."""

    def __init__(self, spec: WorkerSpec, spare: bool = True):
        self.spec = spec
        self.spare = spare  # keep one booting ahead: worth it only when more submissions follow
        self._idle: list[Zygote] = []
        self._all: list[Zygote] = []

    def acquire(self) -> Zygote:
        zygote = self._idle.pop() if self._idle else self._start()
        return zygote

    def warm(self, first: bool = False) -> None:
        """Have one zygote booting or idle, so the next submission does not wait for torch."""
        if not self._idle and (first or self.spare):
            self._idle.append(self._start())

    def release(self, zygote: Zygote) -> None:
        if zygote.reusable and zygote.process.poll() is None:
            self._idle.append(zygote)
        else:
            zygote.kill()

    def close(self) -> None:
        for zygote in self._all:
            zygote.kill()
        self._idle.clear()

    def _start(self) -> Zygote:
        if self.spec.sandbox == "docker":
            from autograder.sandbox.container import ContainerZygote

            zygote = ContainerZygote(self.spec)
        else:
            zygote = Zygote(self.spec)
        self._all = [z for z in self._all if z.process.poll() is None] + [zygote]
        return zygote


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


def _worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    env.update({"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(Path(autograder.__file__).resolve().parent.parent)})
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
