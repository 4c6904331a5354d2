"""Guards the worker installs in itself before any student code runs.

None of this is the trust boundary (the sandbox and the wire are); it turns the common
misuses into clear errors early. A forbidden API becomes an object that raises when
used, so parts of a submission that do not rely on it still work. Audit hooks, which
Python cannot remove once added, refuse network, subprocesses and signals to others.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import types
from typing import Any, Iterable


class ForbiddenAPIError(RuntimeError):
    """Raised when student code uses an API the week forbids."""


def _refusal(name: str, week: str) -> str:
    return (f"{name} is not allowed in {week}: the point of this exercise is to write it "
            "yourself with tensor operations")


class _ForbiddenModule(types.ModuleType):
    def __init__(self, name: str, message: str):
        super().__init__(name)
        self.__path__ = []  # lets `import timm.models` resolve to another forbidden module
        object.__setattr__(self, "_message", message)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        raise ForbiddenAPIError(self._message)


class _ForbiddenFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots: set[str], week: str):
        self.roots = roots
        self.week = week

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return _ForbiddenModule(spec.name, _refusal(spec.name.split(".")[0], self.week))

    def exec_module(self, module):
        pass


def _stub(name: str, week: str):
    message = _refusal(name, week)

    def forbidden(*args, **kwargs):
        raise ForbiddenAPIError(message)

    forbidden.__name__ = name.rsplit(".", 1)[-1]
    return forbidden


def forbid(names: Iterable[str], week: str) -> None:
    """Make each dotted name unusable: a module by its import, an attribute everywhere it is bound."""
    names = list(names)
    modules = {n for n in names if "." not in n}
    for root in modules:
        for loaded in [m for m in sys.modules if m == root or m.startswith(root + ".")]:
            del sys.modules[loaded]
    if modules:
        sys.meta_path.insert(0, _ForbiddenFinder(modules, week))
    for name in names:
        if name in modules:
            continue
        owner_name, attr = name.rsplit(".", 1)
        owner = sys.modules.get(owner_name)
        original = getattr(owner, attr, None) if owner is not None else None
        if original is None:
            continue
        stub = _stub(name, week)
        for module in list(sys.modules.values()):
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict) or not getattr(module, "__name__", "").startswith("torch"):
                continue
            for key, value in list(namespace.items()):
                if value is original:
                    namespace[key] = stub


def install_audit_hooks(denied_roots: Iterable[str]) -> None:
    """Refuse network, processes, signals to others and reading the course's secret folders."""
    denied = tuple(os.path.realpath(p) + os.sep for p in denied_roots)
    own_pid = os.getpid()
    blocked = {
        "socket.connect": "network access", "socket.bind": "network access",
        "socket.sendto": "network access", "socket.getaddrinfo": "network access",
        "subprocess.Popen": "starting programs", "os.system": "starting programs",
        "os.exec": "starting programs", "os.posix_spawn": "starting programs",
        "os.spawn": "starting programs", "os.fork": "forking", "os.forkpty": "forking",
        "pty.spawn": "starting programs",
    }

    def hook(event: str, args: tuple) -> None:
        if event in blocked:
            raise PermissionError(f"{blocked[event]} is not allowed while grading ({event})")
        if event in ("os.kill", "os.killpg") and args and args[0] not in (own_pid, 0):
            raise PermissionError("signalling other processes is not allowed while grading")
        if event == "open" and denied and args and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            real = os.path.realpath(path) + os.sep
            if real.startswith(denied):
                raise PermissionError(f"reading {path} is not allowed while grading")

    sys.addaudithook(hook)
