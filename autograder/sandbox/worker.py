"""The worker: the only process that runs student code.

It imports the submission as a module, then answers requests from the trusted side
until the connection closes: get an attribute, call something, give gradients for
these cotangents. Everything it knows is untrusted by the other side, so it needs no
secrets and holds none.

Run as `python -m autograder.sandbox.worker CONFIG_JSON`; the config names the socket's fd
(or, in a container, the path of the trusted side's Unix socket).
The process boots once and then serves submissions one at a time, each in a forked child.
"""

from __future__ import annotations

import json
import linecache
import os
import random
import resource
import shutil
import socket
import sys
import traceback
import types
from typing import Any

NOBODY = 65534


def main() -> None:
    """Boot once (imports), then fork one child per submission, one at a time; each child gets
    its week's forbidden APIs and released folder, so one zygote serves every week of a run.

    The booted process is a zygote: a child costs a fork instead of a Python start and a
    torch import. Children run one after another, never side by side, so no two
    submissions share the sandbox at once; between them, the zygote removes what the
    last one left (processes, files in /tmp). Without root, or outside a sandbox of its own
    (whose /tmp and processes are the machine's), it cannot clean up after a child, and serves
    a single one.
    """
    config = json.loads(sys.argv[1])
    sock = _control_socket(config)
    import torch

    torch.set_num_threads(1)  # before any torch work: forking after threaded work can hang
    torch.set_num_interop_threads(1)
    # An optimizer's first step imports torch._dynamo (about 900 modules, 8 s here); imported
    # once in the zygote, every child that trains has it already.
    import torch._dynamo  # noqa: F401
    from autograder.sandbox import guard, wire

    # Cleaning up kills every process of `nobody` and empties /tmp: only in namespaces of our own.
    reusable = os.getuid() == 0 and config.get("drop_privileges", False) and config.get("private", False)
    wire.send(sock, wire.encode({"booted": True, "reusable": reusable}, []), [])
    while True:
        try:
            message, blobs = wire.receive(sock)
            message = wire.decode(message, blobs)
        except EOFError:
            return
        if not isinstance(message, dict) or message.get("op") != "spawn":
            return
        status = _run_child(sock, torch, wire, guard, message["child"])
        if reusable:
            _clean_up_after_child()
        wire.send(sock, wire.encode({"child_exited": os.waitstatus_to_exitcode(status)}, []), [])
        if not reusable:
            return


def _control_socket(config: dict) -> socket.socket:
    """The trusted side's socket: inherited (a local sandbox) or, in a container, a Unix
    socket in the one folder mounted from the host."""
    if "socket_path" in config:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(config["socket_path"])
        return sock
    return socket.socket(fileno=config["socket_fd"])


def _run_child(control: socket.socket, torch: Any, wire: Any, guard: Any, child: dict) -> int:
    """Fork the child for one submission, with a socket and an output pipe of its own.

    Both go to the trusted side over the control socket, which the child closes before
    any student code runs: a child can never speak for the zygote nor hear the next one.
    """
    data, data_child = socket.socketpair()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            control.close()
            data.close()
            os.close(read_end)
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)
            os.close(write_end)
            os.setsid()
            _child(data_child, torch, wire, guard, child)
        except Exception:  # the worker's own failure (student code's errors are answered by Server)
            traceback.print_exc()
            os._exit(70)
        finally:
            os._exit(0)
    data_child.close()
    os.close(write_end)
    socket.send_fds(control, [b"child"], [data.fileno(), read_end])
    data.close()
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return status


def _child(sock: socket.socket, torch: Any, wire: Any, guard: Any, config: dict) -> None:
    torch.set_num_threads(config.get("threads", 1))
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    _apply_limits(config["limits"])
    if config.get("drop_privileges") and os.getuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    guard.forbid(config.get("forbidden", []), config.get("week", "this week"))
    for path in config.get("helper_paths", []):
        sys.path.insert(0, path)
    guard.install_audit_hooks(config.get("denied_paths", []))
    Server(sock, torch, wire, config).run()


def _clean_up_after_child() -> None:
    """Kill whatever the last child left running and delete its files (the zygote is root)."""
    killer = os.fork()
    if killer == 0:
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.kill(-1, 9)  # every process of nobody in this pid namespace, not the zygote
        finally:
            os._exit(0)
    os.waitpid(killer, 0)
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                break
        except ChildProcessError:
            break
    keep = [os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, *sys.path) if p]
    for folder in ("/tmp", "/dev/shm"):
        for entry in os.listdir(folder) if os.path.isdir(folder) else []:
            path = os.path.join(folder, entry)
            if any(k == path or k.startswith(path + os.sep) for k in keep):
                continue  # the course's own code, mounted read-only under /tmp (a checkout there)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.remove(path)
                except OSError:
                    pass


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
        module, error = self._import_submission(self.config["module_path"], self.config["source"])
        self.objects[0] = module
        self._send({"ready": True, "import_error": error, "names": self._names(module), "device": self._device()})
        while True:
            try:
                message, blobs = self.wire.receive(self.sock)
            except EOFError:
                return
            if isinstance(message, dict) and message.get("op") == "shutdown":
                return
            self._send(self._handle(message, blobs))

    def _import_submission(self, path: str, source: str) -> tuple[Any, dict | None]:
        """Run the submission's code as the module `submission`; it never exists as a file here."""
        module = types.ModuleType("submission")
        module.__file__ = path
        sys.modules["submission"] = module
        linecache.cache[path] = (len(source), None, source.splitlines(True), path)  # for inspect
        try:
            exec(compile(source, path, "exec"), vars(module))
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are student errors too
            return module, self._describe(exc)
        return module, None

    def _device(self) -> str:
        """What the student's code can use: after the fork, so CUDA is never set up in the zygote."""
        if self.torch.cuda.is_available():
            return f"cuda ({self.torch.cuda.get_device_name(0)})"
        return "cpu"

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

    def _op_vjp(self, target: Any, args: list, kwargs: dict, cotangents: list,
                want_params: bool) -> dict:
        """Gradients of sum(output_i * cotangent_i) for the float tensor arguments and parameters."""
        from autograder.sandbox.gradients import vector_jacobian_product

        inputs, params = vector_jacobian_product(target, args, kwargs, cotangents, want_params)
        return {"inputs": inputs, "params": params}

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


if __name__ == "__main__":
    main()
