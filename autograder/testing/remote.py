"""The remote transport: the trusted side of the wire to a sandboxed worker.

Every request carries a deadline, the earlier of the test's and the submission's. A
worker that misses it is killed, the test fails with a timeout, and the next request
starts a fresh worker, so one stuck test costs only its own points.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable

import torch

from autograder.sandbox import wire
from autograder.sandbox.host import OutputTail, WorkerHost
from autograder.sandbox.pool import ZygotePool
from autograder.sandbox.spec import WorkerSpec
from autograder.testing.bounds import NAME_CHARS, REPLY_BASE_BYTES, bounded_names, cut, reply_limit
from autograder.testing.errors import (BudgetExhausted, ImportFailed, StudentCodeError, SubmissionError,
                                       WorkerCrashed, WorkerTimeout, student_error)
from autograder.testing.submission import VJP, Submission, as_cotangent_list

# A worker that got less than this share of one core while a deadline ran out was starved by a
# busy machine, not slow: an endless loop or heavy work keeps its one thread near 100%.
STARVED_CPU_SHARE = 0.5


class _ModuleRef:
    """Stands for the student's module itself (handle 0) in a request."""


class WorkerClient:
    """One submission's worker: a child of a booted zygote, replaced after a crash or a timeout."""

    BOOT_TIMEOUT_S = 300.0  # our own imports (torch) on a busy machine; not the student's time

    def __init__(self, spec: WorkerSpec, import_timeout: float = 60.0, pool: ZygotePool | None = None):
        self.spec = spec
        self.import_timeout = import_timeout
        self.pool = pool or ZygotePool(spec)
        self.zygote: WorkerHost | None = None
        self.child_output: OutputTail | None = None
        self.data: socket.socket | None = None
        self.generation = 0
        self.names: dict[str, str] = {}
        self.import_error: str | None = None
        self.deadline: float | None = None
        self.budget_deadline: float | None = None
        self.timeout_reason = "the time limit for this test"
        self._ready = False
        self._outputs: list[str] = []
        self._clock: tuple[float, float | None] = (time.monotonic(), None)
        self.device = ""  # what the student's code could use, as the worker saw it

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        """Take a zygote (booted or booting) for this submission, without waiting for it."""
        if self.zygote is None:
            self.zygote = self.pool.acquire(self.spec)
            self.generation += 1
            self._ready = False

    def ensure_ready(self) -> None:
        if self.import_error is not None:
            raise ImportFailed(self.import_error)
        self.start()
        if self._ready:
            return
        try:
            self._boot_and_spawn()
            deadline = time.monotonic() + self.import_timeout
            hello = self._receive(min(deadline, self._deadline() or deadline))
        except WorkerTimeout:
            self.import_error = (f"loading your notebook took longer than {self.import_timeout:.0f} s; "
                                 "move training and long demos into cells tagged 'demo' or guard them")
            self.kill()
            raise ImportFailed(self.import_error) from None
        except WorkerCrashed as exc:
            self.import_error = f"your notebook stopped the grader's worker while loading: {exc}"
            raise ImportFailed(self.import_error) from None
        if not isinstance(hello, dict) or not hello.get("ready"):
            self.import_error = "the worker did not start properly"
            self.kill()
            raise ImportFailed(self.import_error)
        error = hello.get("import_error")
        self.names = bounded_names(hello.get("names"))
        self.device = cut(hello.get("device", ""), 80)
        self._ready = True
        self.pool.warm(spec=self.spec)  # the next submission's zygote boots while this one is tested
        if error:
            info = student_error(error)
            self.import_error = f"running your notebook's code failed: {info}"
            raise ImportFailed(self.import_error)

    def _boot_and_spawn(self) -> None:
        zygote = self.zygote
        assert zygote is not None, "start() acquires a zygote first"
        if not zygote.booted:
            waited = time.monotonic()
            deadlines = self.deadline, self.budget_deadline
            self.deadline = self.budget_deadline = None  # our own imports are not the student's time
            try:
                boot = self._receive(time.monotonic() + self.BOOT_TIMEOUT_S, zygote.sock)
            finally:
                waited = time.monotonic() - waited
                self.deadline, self.budget_deadline = (d + waited if d is not None else None for d in deadlines)
            if not isinstance(boot, dict) or not boot.get("booted"):
                raise WorkerCrashed("the worker did not start properly")
            zygote.booted, zygote.reusable = True, bool(boot.get("reusable"))
        if self.data is None:
            try:
                self.data, self.child_output = zygote.spawn(self.spec)
            except (OSError, EOFError):
                self._crashed()

    def close(self) -> None:
        """The submission is done: end its child and give the zygote back for the next one."""
        zygote = self.zygote
        if zygote is None:
            return
        if self._ready and zygote.reusable and self.data is not None:
            try:
                wire.send(self.data, {"op": "shutdown"}, [])
            except OSError:
                pass
            if zygote.child_exit_status(10) is not None:
                self._detach()
                self.pool.release(zygote)
                return
        self.kill()

    def kill(self) -> None:
        """Kill the worker, its zygote and everything they started."""
        if self.zygote is not None:
            self.zygote.kill()
            self._detach()

    def _detach(self) -> None:
        if self.child_output is not None:
            self.child_output.close()
            self._outputs.append(self.child_output.text())
        if self.data is not None:
            self.data.close()
        self.zygote, self.child_output, self.data, self._ready = None, None, None, False

    def output(self, keep: int = 64 * 1024) -> str:
        """What the student's code printed, in every worker so far; the middle cut if long."""
        current = [self.child_output.text()] if self.child_output is not None else []
        text = "".join(self._outputs + current)
        if len(text) > keep:
            text = f"{text[: keep // 2]}\n... [{len(text) - keep} characters of output cut] ...\n{text[-keep // 2:]}"
        return text

    # -- requests -------------------------------------------------------------------
    def request(self, op: str, *args: Any) -> Any:
        self.ensure_ready()
        self._clock = (time.monotonic(), self.zygote.cpu_seconds() if self.zygote is not None else None)
        blobs: list[bytes] = []
        message = {"op": op, "args": wire.encode(list(args), blobs, self._ref)}
        assert self.data is not None, "ensure_ready() connects to the child"
        try:
            wire.send(self.data, message, blobs)
        except OSError:
            self._crashed()
        reply = self._receive(self._deadline(), limit=reply_limit(sum(len(b) for b in blobs)))
        if not isinstance(reply, dict):
            raise WorkerCrashed("the worker sent a malformed reply")
        if reply.get("ok"):
            return reply.get("value")
        error = reply.get("error")
        raise student_error(error if isinstance(error, dict) else {})

    def _deadline(self) -> float | None:
        candidates = [d for d in (self.deadline, self.budget_deadline) if d is not None]
        return min(candidates) if candidates else None

    def _receive(self, deadline: float | None, sock: socket.socket | None = None,
                 limit: int = REPLY_BASE_BYTES) -> Any:
        if self.budget_deadline is not None and time.monotonic() >= self.budget_deadline:
            self.kill()
            raise BudgetExhausted("the submission's total time limit was reached before this test")
        source = sock or self.data
        if source is None:
            raise WorkerCrashed("the worker is not connected")
        reader = _DeadlineSocket(source, deadline)
        try:
            message, blobs = wire.receive(reader, limit)
            return wire.decode(message, blobs, self._from_handle)
        except TimeoutError:
            budget = self.budget_deadline is not None and time.monotonic() >= self.budget_deadline - 0.01
            cpu, wall = self._cpu_since_request()
            self.kill()
            what = "the submission's total time limit" if budget else self.timeout_reason
            starved = not budget and cpu is not None and cpu < STARVED_CPU_SHARE * wall
            raise WorkerTimeout(f"your code did not finish within {what}; it was stopped "
                                "(look for an endless loop or far too much work)",
                                starved=starved, cpu_s=cpu, wall_s=wall) from None
        except (EOFError, OSError):
            self._crashed()
        except wire.FrameTooLarge as exc:
            self.kill()
            raise WorkerCrashed(f"your code returned about {exc.size / 2**20:.0f} MiB to the grader, more than the "
                                f"{exc.limit / 2**20:.0f} MiB this call may return; return only what was asked for "
                                "(the shapes in the notebook)") from None
        except wire.WireError as exc:
            self.kill()
            raise WorkerCrashed(f"the worker sent an invalid reply ({exc})") from None

    def _cpu_since_request(self) -> tuple[float | None, float]:
        """CPU seconds the worker used since the last request was sent, and the wall seconds."""
        started, cpu_before = self._clock
        now = self.zygote.cpu_seconds() if self.zygote is not None else None
        cpu = None if now is None or cpu_before is None else max(0.0, now - cpu_before)
        return cpu, time.monotonic() - started

    def _crashed(self) -> None:
        zygote = self.zygote
        code = zygote.child_exit_status(2) if zygote is not None and zygote.booted else None
        if code is None and zygote is not None:
            code = zygote.wait_briefly()
            if code is not None and zygote.sandbox in ("bwrap", "docker") and code > 128:
                code = -(code - 128)  # bubblewrap and docker report a fatal signal as 128 + signal
        self.kill()
        if code is not None and code < 0:
            reason = f"killed by signal {-code}"
            if -code in (9, 24, 25):
                reason += ": a memory, CPU-time or file-size limit is the usual cause"
            elif -code == 11:
                reason += ": a segmentation fault"
        else:
            reason = f"exit code {code}"
        raise WorkerCrashed(f"the process running your code ended unexpectedly ({reason})")

    def _ref(self, value: Any) -> dict:
        if isinstance(value, _ModuleRef):
            return {"__t": "ref", "id": 0}
        if isinstance(value, RemoteObject):
            if value._generation != self.generation:
                raise SubmissionError("this object was lost when the worker was restarted after an "
                                      "earlier failure of your code")
            return {"__t": "ref", "id": value._id}
        raise TypeError(f"cannot send a {type(value).__name__} to the worker")

    def _from_handle(self, obj: dict) -> "RemoteObject":
        if obj.get("__t") != "handle" or not isinstance(obj.get("id"), int):
            raise wire.WireError("malformed handle")
        return RemoteObject(self, obj["id"], cut(obj.get("type", "object"), NAME_CHARS),
                            cut(obj.get("kind", "object"), NAME_CHARS), bool(obj.get("is_module")))


class _DeadlineSocket:
    """A socket whose reads give up at an absolute deadline."""

    def __init__(self, sock: socket.socket, deadline: float | None):
        self.sock, self.deadline = sock, deadline

    def recv_into(self, view: memoryview, n: int) -> int:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
        else:
            self.sock.settimeout(None)
        try:
            return self.sock.recv_into(view, n)
        except socket.timeout:
            raise TimeoutError from None


class RemoteObject:
    """An object that lives in the worker: attribute access and calls go over the wire."""

    __slots__ = ("_client", "_id", "_type", "_kind", "_is_module", "_generation")

    def __init__(self, client: WorkerClient, handle_id: int, type_name: str, kind: str, is_module: bool):
        for key, value in (("_client", client), ("_id", handle_id), ("_type", type_name), ("_kind", kind),
                           ("_is_module", is_module), ("_generation", client.generation)):
            object.__setattr__(self, key, value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._client.request("getattr", self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._client.request("setattr", self, name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._client.request("call", self, list(args), kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self._client.request("call_method", self, "__getitem__", [key], {})

    def __len__(self) -> int:
        return self._client.request("call_method", self, "__len__", [], {})

    def __iter__(self):
        return iter(self._client.request("call_method", self, "__iter__", [], {}))

    def __repr__(self) -> str:
        return f"<{self._type} in the worker>"

    @property
    def remote_type(self) -> str:
        return self._type

    @property
    def is_module(self) -> bool:
        return self._is_module


class RemoteSubmission(Submission):
    transport = "remote"

    def __init__(self, client: WorkerClient, forbidden_parts: dict[str, str] | None = None):
        super().__init__(forbidden_parts)
        self._client = client

    def has(self, name: str) -> bool:
        self._client.ensure_ready()
        return name in self._client.names

    def _lookup(self, name: str) -> Any:
        return self._client.request("getattr", _ModuleRef(), name)

    def differentiable(self, fn: Any) -> Callable[..., Any]:
        client = self._client

        def call(*args: Any, **kwargs: Any) -> Any:
            return _RemoteFunction.apply(client, fn, kwargs, *args)

        return call

    def vjp(self, fn: Any, *args: Any, cotangents: Any, params: bool = True, **kwargs: Any) -> VJP:
        result = self._client.request("vjp", fn, list(args), kwargs, as_cotangent_list(cotangents), params)
        if not isinstance(result, dict):
            raise StudentCodeError("ValueError", "gradients came back malformed")
        return VJP(list(result.get("inputs", [])), dict(result.get("params", {})))

    def seed(self, seed: int) -> None:
        self._client.request("seed", seed)

    def output(self) -> str:
        return self._client.output()


class _RemoteFunction(torch.autograd.Function):
    """Calls a worker function forward, and asks the worker for a VJP backward."""

    @staticmethod
    def forward(ctx, client: WorkerClient, fn: Any, kwargs: dict, *args: Any) -> Any:
        ctx.client, ctx.fn, ctx.kwargs = client, fn, kwargs
        ctx.args = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
        out = client.request("call", fn, ctx.args, kwargs)
        ctx.is_tuple = isinstance(out, (tuple, list))
        return tuple(out) if ctx.is_tuple else out

    @staticmethod
    def backward(ctx, *grad_outputs: torch.Tensor) -> Any:
        vjp = ctx.client.request("vjp", ctx.fn, ctx.args, ctx.kwargs, list(grad_outputs), False)
        grads = iter(vjp.get("inputs", []) if isinstance(vjp, dict) else [])
        arg_grads = []
        for a in ctx.args:
            is_float = isinstance(a, torch.Tensor) and a.is_floating_point()
            g = next(grads, None) if is_float else None
            arg_grads.append(g.to(a.dtype) if isinstance(g, torch.Tensor) else None)
        return (None, None, None, *arg_grads)
