"""The interface every sandbox backend gives the worker pool: a "zygote", a sandboxed process
that has imported torch and forks one child per submission, reached through a control socket.

Backends: `bubblewrap.LocalZygote` (a process on this machine, in bubblewrap where installed)
and `container.ContainerZygote` (a container from the grader image). The pool
(`pool.ZygotePool`) and the remote transport use only what `WorkerHost` declares.
"""

from __future__ import annotations

import os
import socket
import threading
from abc import ABC, abstractmethod
from typing import Protocol

from autograder.sandbox.spec import WorkerSpec


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


class BootOutput(Protocol):
    """What a zygote printed while it booted: an `OutputTail`, or a container's log."""

    def text(self) -> str: ...

    def close(self, wait: float = 0.0) -> None: ...


class WorkerHost(ABC):
    """A booted or booting zygote, seen from the trusted side. Subclasses set `spec` (the recipe
    it was started from: its sandbox hides that spec's packages), `sandbox` (its name), `sock`
    (the control socket), `boot_output`, and the flags `booted` (it said so) and `reusable` (it
    can serve another child after this one)."""

    spec: WorkerSpec
    sandbox: str
    booted: bool = False
    reusable: bool = False
    boot_output: "BootOutput"
    sock: socket.socket

    @abstractmethod
    def child_config(self, spec: WorkerSpec) -> dict:
        """What one submission's child needs: its code, its limits, its guards."""

    @abstractmethod
    def alive(self) -> bool:
        """Whether the zygote is still running."""

    @abstractmethod
    def wait_briefly(self, seconds: float = 2.0) -> int | None:
        """The exit status, once the zygote has ended on its own (None if it has not)."""

    @abstractmethod
    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the zygote and everything it started (None: unknown),
        measured from outside the sandbox."""

    @abstractmethod
    def kill(self) -> None:
        """Kill the zygote, its children and everything they started."""

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
