"""What a worker is started with: its submission, its week's helpers and forbidden APIs, its
resource limits, its sandbox, and the grading run it belongs to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from autograder.config import GradingLimits

RUN_ENV = "VITSSL_GRADING_RUN"  # every local worker of a grading run has its run id here
# Where a sandboxed worker sees the submission and the course's release/ (read-only), in both backends.
SUBMISSION_DIR = "/submission"
HELPERS_DIR = "/helpers"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one worker: course.yaml's `grading` block (`GradingLimits.worker_limits`),
    whose defaults these are, plus the size of the worker's private /tmp."""

    memory_mb: int = GradingLimits.model_fields["memory_mb"].default
    cpu_seconds: int = GradingLimits.model_fields["cpu_seconds"].default
    processes: int = GradingLimits.model_fields["processes"].default
    file_size_mb: int = GradingLimits.model_fields["file_size_mb"].default
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
    release_root: Path | None = None      # the course's release/: mounted read-only, the week's folder on sys.path
    forbidden: list[str] = field(default_factory=list)
    denied_paths: list[Path] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    sandbox: str = "auto"  # "auto", "bwrap", "none" or "docker"
    threads: int = 1
    image: str = "vitssl-grader:latest"   # the docker backend's image
    run_id: str = ""                      # the grading run: in its workers' RUN_ENV, on its containers' label
    gpu: str = "prefer"                   # never | prefer | require (docker backend)
    gpu_index: int = 0                    # which GPU, where there are several

    @property
    def hidden_packages(self) -> tuple[str, ...]:
        """The top-level packages the week forbids: absent from the worker's view (its mount
        namespace or container), not merely refused by a guard that student code could undo."""
        return tuple(sorted({name for name in self.forbidden if "." not in name}))


def package_locations(name: str) -> list[Path]:
    """Where an installed top-level package lives on this machine: its folder or file, any
    `.libs` folder beside it, and its metadata; found without importing it."""
    import importlib.util

    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if found is None:
        return []
    places = [Path(p) for p in (found.submodule_search_locations or [])]
    if not places and found.origin and found.origin not in ("built-in", "frozen"):
        places = [Path(found.origin)]
    for place in list(places):
        site = place.parent
        places += [p for p in site.glob(f"{name}.libs") if p.is_dir()]
        places += [p for p in site.glob(f"{name}-*.dist-info") if p.is_dir()]
    return places


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
