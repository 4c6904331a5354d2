"""Workers in Docker containers: the `docker` backend.

Each container runs the same worker as the local sandbox (`autograder.sandbox.worker`),
from the course's grader image, as `nobody`, with no network, a read-only root, a small
tmpfs, no capabilities, `no-new-privileges`, and memory, CPU and process limits from
course.yaml, and an empty folder mounted over each package its week forbids. It sees
two folders of the host: the released helpers of the week
(read-only) and a private folder holding one Unix socket, through which the worker
connects back to the trusted side; everything after that (the submission's source, the
child's own socket and output pipe) travels over that socket exactly as in the local
sandbox. Hidden tests, references and the gradebook never enter a container.

A container serves one submission (its worker is not root, so it cannot clean up after a
child) and is removed when the submission is done, when it is killed after a timeout,
and, by label, when a grading run ends for any reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any

import autograder
from autograder.sandbox.host import WorkerHost
from autograder.sandbox.spec import HELPERS_DIR, SUBMISSION_DIR, WorkerSpec, package_locations

IMAGE = "vitssl-grader:latest"
LOCK_LABEL = "org.vitssl.uv-lock"
ENGINE_LABEL = "org.vitssl.engine"
RUN_LABEL = "org.vitssl.grading-run"
WIRE_DIR = "/wire"
PLATFORM = Path(autograder.__file__).resolve().parent.parent  # where uv.lock and docker/ live
PYTHON = "/opt/course/.venv/bin/python"
SITE_PACKAGES = "/opt/course/site-packages"  # a link the Dockerfile makes to the image's purelib


class DockerUnavailable(RuntimeError):
    """No engine, no image, a stale image or no GPU where one is required: what to do is in the message."""


def docker_sdk():
    """The Docker SDK, an optional extra of the course's package."""
    try:
        import docker
    except ImportError:
        raise DockerUnavailable("the docker backend needs the Docker SDK: `uv sync --extra docker` in the course's "
                                "checkout (or pip install 'vitssl-course[docker]')") from None
    return docker


def client():
    """A Docker SDK client for the engine at DOCKER_HOST (or the default socket), checked."""
    docker = docker_sdk()

    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        engine = docker.from_env(timeout=120)
        engine.ping()
    except Exception as exc:  # the SDK raises several kinds, all meaning "no engine here"
        raise DockerUnavailable(f"no Docker engine answers at {where} ({type(exc).__name__}); start Docker "
                                "or set DOCKER_HOST (docker/engine.sh start runs a private engine for tests)") from None
    return engine


def lock_digest() -> str:
    """The platform's uv.lock (not a course's: one image serves every course on this install)."""
    return hashlib.sha256((PLATFORM / "uv.lock").read_bytes()).hexdigest()[:16]


def engine_digest() -> str:
    """A digest of the worker's code and the image's recipe: an image with other code would
    grade differently."""
    package = Path(autograder.__file__).resolve().parent
    digest = hashlib.sha256((PLATFORM / "docker" / "Dockerfile").read_bytes())
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def check_image(engine, image: str = IMAGE) -> None:
    """The image exists and was built from this installation's uv.lock and worker code."""
    docker = docker_sdk()

    try:
        labels = engine.images.get(image).labels or {}
    except docker.errors.ImageNotFound:
        raise DockerUnavailable(f"the grader image {image} is missing; build it with `course image build`") from None
    if labels.get(LOCK_LABEL) != lock_digest():
        raise DockerUnavailable(f"the grader image {image} was built from another uv.lock "
                                f"({labels.get(LOCK_LABEL)}, this checkout {lock_digest()}); "
                                "rebuild it with `course image build`")
    if labels.get(ENGINE_LABEL) != engine_digest():
        raise DockerUnavailable(f"the grader image {image} holds other worker code than this checkout; "
                                "rebuild it with `course image build` (only the last layer changes)")


def gpu_count() -> int:
    """NVIDIA GPUs on this host, counted from their device files (no CUDA set-up needed)."""
    return sum(1 for p in Path("/dev").glob("nvidia[0-9]*") if p.name[len("nvidia"):].isdigit())


def gpu_request(policy: str, index: int) -> tuple[list, str]:
    """Docker device requests for one GPU (job `index` spread over the GPUs), and its name."""
    count = gpu_count()
    if policy == "require" and count == 0:
        raise DockerUnavailable("course.yaml's grading.gpu is `require`, but this host has no NVIDIA GPU")
    if policy == "never" or count == 0:
        return [], "cpu"
    docker = docker_sdk()

    chosen = str(index % count)
    return [docker.types.DeviceRequest(device_ids=[chosen], capabilities=[["gpu"]])], f"gpu {chosen}"


def remove_run_containers(run_id: str) -> int:
    """Remove every container of a grading run; returns how many were left."""
    try:
        engine = client()
    except DockerUnavailable:
        return 0
    left = engine.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})
    for container in left:
        try:
            container.remove(force=True)
        except Exception:  # already gone
            pass
    return len(left)


class ContainerZygote(WorkerHost):
    """A worker zygote in a container (the `docker` backend)."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.sandbox = "docker"
        self.drop_privileges = False
        self.booted = False
        self.reusable = False
        self._wire = Path(tempfile.mkdtemp(prefix="vitssl-wire-"))
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self._wire / "control.sock"))
        self._listener.listen(1)
        os.chmod(self._wire, 0o711)
        os.chmod(self._wire / "control.sock", 0o777)  # the container's nobody connects
        self._sock: socket.socket | None = None
        self._accepted = threading.Event()
        self.container: Any = None  # a docker SDK Container, once created
        self.boot_output = _ContainerLog(self)
        engine = client()
        devices, self.device = gpu_request(spec.gpu, spec.gpu_index)
        limits = spec.limits
        config = {"socket_path": f"{WIRE_DIR}/control.sock", "drop_privileges": False}
        volumes = {str(self._wire): {"bind": WIRE_DIR, "mode": "rw"}}
        if spec.release_root is not None and Path(spec.release_root).is_dir():
            volumes[str(Path(spec.release_root).resolve())] = {"bind": HELPERS_DIR, "mode": "ro"}
        tmpfs = {"/tmp": f"size={limits.tmp_size_mb}m,mode=1777", "/dev/shm": "size=64m,mode=1777"}
        for package in spec.hidden_packages:  # the week forbids it: an empty folder in its place
            for place in (p for p in package_locations(package) if p.is_dir()):
                tmpfs[f"{SITE_PACKAGES}/{place.name}"] = "size=1k,mode=0555"
        self.container = engine.containers.run(
            spec.image, [PYTHON, "-m", "autograder.sandbox.worker", json.dumps(config)],
            detach=True, user="65534:65534", network_mode="none", read_only=True, tmpfs=tmpfs,
            cap_drop=["ALL"], security_opt=["no-new-privileges"], mem_limit=f"{limits.memory_mb}m",
            memswap_limit=f"{limits.memory_mb}m", pids_limit=limits.processes + 64,
            nano_cpus=int(max(1, spec.threads) * 1e9), volumes=volumes, working_dir="/tmp",
            environment={"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
                         "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
                         "PYTHONUNBUFFERED": "1", "PYTHONPATH": "/opt/course"},
            device_requests=devices, labels={RUN_LABEL: spec.run_id or "none"}, stdin_open=False)
        threading.Thread(target=self._accept, daemon=True).start()

    # -- the trusted side's end of the wire ------------------------------------------
    def _accept(self) -> None:
        self._listener.settimeout(300)
        try:
            conn, _ = self._listener.accept()
        except OSError:
            self._accepted.set()
            return
        if self._is_our_worker(conn):
            self._sock = conn
        else:
            conn.close()
        self._listener.close()
        self._accepted.set()

    def _is_our_worker(self, conn: socket.socket) -> bool:
        """Only the container's own first process may take the socket (SO_PEERCRED)."""
        pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
        try:
            self.container.reload()
            return uid == 65534 and pid == self.container.attrs["State"]["Pid"]
        except Exception:
            return False

    @property
    def sock(self) -> socket.socket:  # type: ignore[override]  # the base's attribute, known once the container connects
        self._accepted.wait(300)
        if self._sock is None:
            raise EOFError("the worker's container did not connect")
        return self._sock

    # -- the WorkerHost interface -----------------------------------------------------
    def child_config(self, spec) -> dict:
        return {"module_path": f"{SUBMISSION_DIR}/{spec.module_path.name}",
                "source": Path(spec.module_path).read_text(),
                "denied_paths": [], "limits": self._rlimits(spec),
                "drop_privileges": False, "threads": spec.threads, "week": spec.week, "forbidden": spec.forbidden,
                "helper_paths": [f"{HELPERS_DIR}/{spec.week}"] if spec.release_root is not None else []}

    @staticmethod
    def _rlimits(spec: WorkerSpec) -> dict[str, int]:
        """The local sandbox's limits, less RLIMIT_NPROC: it counts every process of the uid on
        the whole host, so the container's pid limit takes its place."""
        limits = spec.limits.rlimits(0)
        limits.pop("RLIMIT_NPROC")
        return limits

    def cpu_seconds(self) -> float | None:
        """The container's CPU time from its cgroup (v2, or v1's cpuacct; the cgroupfs or systemd
        driver's folders); None where none is found."""
        cid = getattr(self.container, "id", "")
        for folder in (f"docker/{cid}", f"system.slice/docker-{cid}.scope"):
            for path, scale in ((f"/sys/fs/cgroup/{folder}/cpu.stat", 1e-6),
                                (f"/sys/fs/cgroup/cpuacct/{folder}/cpuacct.usage", 1e-9),
                                (f"/sys/fs/cgroup/cpu,cpuacct/{folder}/cpuacct.usage", 1e-9)):
                try:
                    text = Path(path).read_text()
                except OSError:
                    continue
                if path.endswith("cpu.stat"):
                    text = next((line.split()[1] for line in text.splitlines() if line.startswith("usage_usec ")), "")
                try:
                    return int(text.strip()) * scale
                except ValueError:
                    continue
        return None

    def wait_briefly(self, seconds: float = 2.0) -> int | None:
        try:
            status = self.container.wait(timeout=seconds)
        except Exception:
            return None
        return int(status.get("StatusCode", 0))

    def alive(self) -> bool:
        try:
            self.container.reload()
        except Exception:
            return False
        return self.container.status in ("created", "running")

    def kill(self) -> None:
        """Kill and remove the container; close our end of the wire."""
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except Exception:  # already gone
                pass
        for sock in (self._sock, self._listener):
            if sock is not None:
                sock.close()
        shutil.rmtree(self._wire, ignore_errors=True)


class _ContainerLog:
    """The container's own output (the zygote's boot), read when someone asks."""

    def __init__(self, zygote: ContainerZygote):
        self._zygote = zygote

    def text(self) -> str:
        try:
            return self._zygote.container.logs(tail=200).decode(errors="replace")
        except Exception:
            return ""

    def close(self, wait: float = 0.0) -> None:
        pass


