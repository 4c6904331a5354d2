"""Booted zygotes for one grading run, of whichever backend the run's sandbox names."""

from __future__ import annotations

from autograder.sandbox.host import WorkerHost
from autograder.sandbox.spec import WorkerSpec


class ZygotePool:
    """Booted zygotes for one grading run: idle ones are reused, one is kept booting ahead."""

    def __init__(self, spec: WorkerSpec, spare: bool = True):
        self.spec = spec
        self.spare = spare  # keep one booting ahead: worth it only when more submissions follow
        self._idle: list[WorkerHost] = []
        self._all: list[WorkerHost] = []

    def acquire(self) -> WorkerHost:
        zygote = self._idle.pop() if self._idle else self._start()
        return zygote

    def warm(self, first: bool = False) -> None:
        """Have one zygote booting or idle, so the next submission does not wait for torch."""
        if not self._idle and (first or self.spare):
            self._idle.append(self._start())

    def release(self, zygote: WorkerHost) -> None:
        if zygote.reusable and zygote.alive():
            self._idle.append(zygote)
        else:
            zygote.kill()

    def close(self) -> None:
        for zygote in self._all:
            zygote.kill()
        self._idle.clear()

    def _start(self) -> WorkerHost:
        if self.spec.sandbox == "docker":
            from autograder.sandbox.container import ContainerZygote

            zygote: WorkerHost = ContainerZygote(self.spec)
        else:
            from autograder.sandbox.bubblewrap import LocalZygote

            zygote = LocalZygote(self.spec)
        self._all = [z for z in self._all if z.alive()] + [zygote]
        return zygote
