"""The in-process transport: fast self-checks on a student's own machine, no sandbox."""

from __future__ import annotations

import random
import types
from typing import Any, Callable

import numpy as np
import torch

from autograder.sandbox.gradients import vector_jacobian_product
from autograder.testing.errors import StudentCodeError, student_error
from autograder.testing.submission import VJP, Submission, as_cotangent_list


class LocalSubmission(Submission):
    def __init__(self, module: types.ModuleType | dict, forbidden_parts: dict[str, str] | None = None):
        super().__init__(forbidden_parts)
        self._namespace = module if isinstance(module, dict) else vars(module)

    def has(self, name: str) -> bool:
        return name in self._namespace

    def _lookup(self, name: str) -> Any:
        return _guard(self._namespace[name])

    def differentiable(self, fn: Any) -> Callable[..., Any]:
        return fn

    def vjp(self, fn: Any, *args: Any, cotangents: Any, params: bool = True, **kwargs: Any) -> VJP:
        args_in = [_unwrap(a) for a in args]
        kwargs_in = {k: _unwrap(v) for k, v in kwargs.items()}
        inputs, grads = _call(vector_jacobian_product,
                              [_unwrap(fn), args_in, kwargs_in, as_cotangent_list(cotangents), params], {})
        return VJP(inputs, grads)

    def seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


class _Guarded:
    """A student object or callable, seen from a test: its errors read as they do over the wire.

    Everything reached through it (attributes, results, methods) is guarded too, and
    guarded values are unwrapped again on their way back into student code.
    """

    __slots__ = ("_wrapped",)

    def __init__(self, wrapped: Any):
        object.__setattr__(self, "_wrapped", wrapped)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _guard(_call(self._wrapped, [_unwrap(a) for a in args], kwargs))

    def __getattr__(self, name: str) -> Any:
        return _guard(_call(getattr, [self._wrapped, name], {}))

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._wrapped, name, _unwrap(value))

    def __getitem__(self, key: Any) -> Any:
        return _guard(_call(lambda: self._wrapped[key], [], {}))

    def __len__(self) -> int:
        return len(self._wrapped)

    def __iter__(self):
        return (_guard(v) for v in self._wrapped)

    def __repr__(self) -> str:
        return repr(self._wrapped)


def _call(fn: Any, args: list, kwargs: dict) -> Any:
    try:
        return fn(*args, **{k: _unwrap(v) for k, v in kwargs.items()})
    except StudentCodeError:
        raise
    except AttributeError as exc:
        raise student_error({"type": "AttributeError", "message": str(exc)}) from exc
    except Exception as exc:
        raise student_error({"type": type(exc).__name__, "message": str(exc)}) from exc


def _guard(value: Any) -> Any:
    if isinstance(value, (torch.Tensor, np.ndarray, str, bytes, int, float, bool, type(None), list, tuple, dict)):
        return value
    if callable(value) or isinstance(value, torch.nn.Module) or hasattr(value, "__dict__"):
        return _Guarded(value)
    return value


def _unwrap(value: Any) -> Any:
    return object.__getattribute__(value, "_wrapped") if isinstance(value, _Guarded) else value


