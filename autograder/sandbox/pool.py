"""Booted zygotes for one grading run, of whichever backend the run's sandbox names."""

from __future__ import annotations

from dataclasses import replace

from autograder.sandbox.host import WorkerHost
from autograder.sandbox.spec import WorkerSpec


class ZygotePool:
    """Booted zygotes for one grading run: idle ones are reused, one is kept booting ahead.

    A zygote's sandbox hides the packages its week forbids, so zygotes are kept per set of
    hidden packages: weeks that forbid the same packages share them.
    """

    def __init__(self, spec: WorkerSpec, spare: bool = True):
        self.spec = spec
        self.spare = spare  # keep one booting ahead: worth it only when more submissions follow
        self._idle: dict[tuple[str, ...], list[WorkerHost]] = {}
        self._all: list[WorkerHost] = []

    def acquire(self, spec: WorkerSpec | None = None) -> WorkerHost:
        idle = self._idle.get(self._key(spec), [])
        return idle.pop() if idle else self._start(spec)

    def warm(self, first: bool = False, spec: WorkerSpec | None = None) -> None:
        """Have one zygote booting or idle, so the next submission does not wait for torch."""
        if not self._idle.get(self._key(spec)) and (first or self.spare):
            self._idle.setdefault(self._key(spec), []).append(self._start(spec))

    def release(self, zygote: WorkerHost) -> None:
        if zygote.reusable and zygote.alive():
            self._idle.setdefault(zygote.spec.hidden_packages, []).append(zygote)
        else:
            zygote.kill()

    def close(self) -> None:
        for zygote in self._all:
            zygote.kill()
        self._idle.clear()

    def _key(self, spec: WorkerSpec | None) -> tuple[str, ...]:
        return (spec or self.spec).hidden_packages

    def _start(self, spec: WorkerSpec | None) -> WorkerHost:
        recipe = replace(self.spec, forbidden=list((spec or self.spec).forbidden))
        if recipe.sandbox == "docker":
            from autograder.sandbox.container import ContainerZygote

            zygote: WorkerHost = ContainerZygote(recipe)
        else:
            from autograder.sandbox.bubblewrap import LocalZygote

            zygote = LocalZygote(recipe)
        self._all = [z for z in self._all if z.alive()] + [zygote]
        return zygote
