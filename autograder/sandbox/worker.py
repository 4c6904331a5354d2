"""The worker: the only process that runs student code.

It imports the submission as a module, then answers requests from the trusted side
until the connection closes: get an attribute, call something, give gradients for
these cotangents. Everything it knows is untrusted by the other side, so it needs no
secrets and holds none.

Run as `python -m autograder.sandbox.worker CONFIG_JSON`; the config names the socket's fd.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import resource
import socket
import sys
import traceback
from typing import Any

NOBODY = 65534


def main() -> None:
    config = json.loads(sys.argv[1])
    sock = socket.socket(fileno=config["socket_fd"])
    import torch  # paid before the student's clock starts

    torch.set_num_threads(config.get("threads", 1))
    torch.set_num_interop_threads(1)
    from autograder.sandbox import guard, wire

    guard.forbid(config.get("forbidden", []), config.get("week", "this week"))
    for path in config.get("helper_paths", []):
        sys.path.insert(0, path)
    _apply_limits(config["limits"])
    if config.get("drop_privileges") and os.getuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    guard.install_audit_hooks(config.get("denied_paths", []))
    Server(sock, torch, wire, config).run()


def _apply_limits(limits: dict) -> None:
    for name, value in limits.items():
        kind = getattr(resource, name)
        resource.setrlimit(kind, (value, value))


class Server:
    def __init__(self, sock: socket.socket, torch: Any, wire: Any, config: dict):
        self.sock, self.torch, self.wire, self.config = sock, torch, wire, config
        self.objects: dict[int, Any] = {}
        self.next_id = 1

    # -- lifecycle ---------------------------------------------------------------
    def run(self) -> None:
        self._seed(0)
        self._send({"booted": True})  # the student's import clock starts now
        module, error = self._import_submission(self.config["module_path"])
        self.objects[0] = module
        self._send({"ready": True, "import_error": error, "names": self._names(module)})
        while True:
            try:
                message, blobs = self.wire.receive(self.sock)
            except EOFError:
                return
            self._send(self._handle(message, blobs))

    def _import_submission(self, path: str) -> tuple[Any, dict | None]:
        spec = importlib.util.spec_from_file_location("submission", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["submission"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are student errors too
            return module, self._describe(exc)
        return module, None

    def _names(self, module: Any) -> dict[str, str]:
        return {k: self._kind(v) for k, v in vars(module).items() if not k.startswith("__")}

    # -- requests ------------------------------------------------------------------
    def _handle(self, message: dict, blobs: list[bytes]) -> dict:
        try:
            op = message["op"]
            args = self.wire.decode(message.get("args", []), blobs, self._resolve)
            value = getattr(self, "_op_" + op)(*args)
            return {"ok": True, "value": value}
        except BaseException as exc:
            return {"ok": False, "error": self._describe(exc)}

    def _op_ping(self) -> str:
        return "pong"

    def _op_seed(self, seed: int) -> None:
        self._seed(seed)

    def _op_getattr(self, target: Any, name: str) -> Any:
        return getattr(target, name)

    def _op_setattr(self, target: Any, name: str, value: Any) -> None:
        setattr(target, name, value)

    def _op_call(self, target: Any, args: list, kwargs: dict) -> Any:
        return target(*args, **kwargs)

    def _op_call_method(self, target: Any, name: str, args: list, kwargs: dict) -> Any:
        result = getattr(target, name)(*args, **kwargs)
        return list(result) if _is_generator(result) else result

    def _op_release(self, ids: list) -> None:
        for i in ids:
            if i != 0:
                self.objects.pop(i, None)

    def _op_vjp(self, target: Any, args: list, kwargs: dict, cotangents: list,
                want_params: bool) -> dict:
        """Gradients of sum(output_i * cotangent_i) for the float tensor arguments and parameters."""
        torch = self.torch
        args = [a.detach().clone().requires_grad_(True) if _is_float_tensor(torch, a) else a for a in args]
        params = self._parameters(target) if want_params else {}
        for p in params.values():
            p.grad = None
        with torch.enable_grad():
            outputs = target(*args, **kwargs)
        flat = _flatten_tensors(torch, outputs)
        if len(flat) != len(cotangents):
            raise ValueError(f"expected {len(cotangents)} tensor outputs, got {len(flat)}")
        pairs = [(o, c.to(o.dtype)) for o, c in zip(flat, cotangents) if o.requires_grad]
        inputs = [a for a in args if _is_float_tensor(torch, a)] + list(params.values())
        grads = torch.autograd.grad([o for o, _ in pairs], inputs, [c for _, c in pairs],
                                    allow_unused=True) if pairs and inputs else [None] * len(inputs)
        n = len(inputs) - len(params)
        return {"inputs": list(grads[:n]), "params": dict(zip(params.keys(), grads[n:]))}

    def _parameters(self, target: Any) -> dict:
        owner = getattr(target, "__self__", target)
        if isinstance(owner, self.torch.nn.Module):
            return dict(owner.named_parameters())
        return {}

    # -- encoding ------------------------------------------------------------------
    def _send(self, message: dict) -> None:
        blobs: list[bytes] = []
        try:
            encoded = self.wire.encode(message, blobs, self._to_handle)
        except BaseException as exc:
            blobs = []
            encoded = self.wire.encode({"ok": False, "error": self._describe(exc)}, blobs)
        self.wire.send(self.sock, encoded, blobs)

    def _to_handle(self, obj: Any) -> dict:
        handle_id = self.next_id
        self.next_id += 1
        self.objects[handle_id] = obj
        return {"__t": "handle", "id": handle_id, "type": getattr(type(obj), "__name__", "object"),
                "kind": self._kind(obj), "is_module": isinstance(obj, self.torch.nn.Module)}

    def _resolve(self, ref: dict) -> Any:
        handle_id = ref.get("id")
        if handle_id not in self.objects:
            raise LookupError(f"object {handle_id} no longer exists in the worker")
        return self.objects[handle_id]

    def _kind(self, obj: Any) -> str:
        if isinstance(obj, type):
            return "class"
        if isinstance(obj, type(sys)):
            return "module"
        if callable(obj) and hasattr(obj, "__self__") and not isinstance(obj, self.torch.nn.Module):
            return "method"
        if callable(obj) and hasattr(obj, "__code__"):
            return "function"
        return "object"

    def _describe(self, exc: BaseException) -> dict:
        path = self.config["module_path"]
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
        where = "".join(traceback.format_list(frames[-5:]))
        message = str(exc)
        if isinstance(exc, SystemExit):
            message = f"your code called sys.exit({exc.code!r})"
        return {"type": type(exc).__name__, "message": message[:4000], "traceback": where[-4000:]}

    def _seed(self, seed: int) -> None:
        random.seed(seed)
        self.torch.manual_seed(seed)
        try:
            import numpy

            numpy.random.seed(seed)
        except ImportError:
            pass


def _is_generator(obj: Any) -> bool:
    return type(obj).__name__ == "generator"


def _is_float_tensor(torch: Any, value: Any) -> bool:
    return isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex())


def _flatten_tensors(torch: Any, value: Any) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flatten_tensors(torch, v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flatten_tensors(torch, v)]
    return []


if __name__ == "__main__":
    main()
