"""The in-process transport: fast self-checks on a student's own machine, no sandbox."""

from __future__ import annotations

import random
import types
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch

from autograder.sandbox.gradients import vector_jacobian_product
from autograder.submission.locate import kernel_frames
from autograder.testing.errors import StudentCodeError, student_error
from autograder.testing.submission import VJP, Submission, as_cotangent_list


class InProcessSubmission(Submission):
    transport = "in-process"

    def __init__(self, module: types.ModuleType | dict, forbidden_parts: dict[str, str] | None = None):
        super().__init__(forbidden_parts)
        self._namespace = module if isinstance(module, dict) else vars(module)

    def has(self, name: str) -> bool:
        return name in self._namespace

    def _lookup(self, name: str) -> Any:
        return _guard(self._namespace[name])

    def differentiable(self, fn: Any) -> Callable[..., Any]:
        """Gradients flow through this one, as through the wire's autograd bridge."""
        return _Guarded(_unwrap(fn), copies=False)

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
    """A student object or callable, seen from a test: it behaves as it does over the wire.

    Its errors read as the wire's do; everything reached through it (attributes, results,
    methods) is guarded too, and guarded values are unwrapped again on their way back
    into student code. Tensors cross as the wire carries them: as detached copies, so a
    result never brings the student's autograd graph along and neither side sees the
    other's in-place changes (except through `differentiable`, where gradients flow).
    """

    __slots__ = ("_wrapped", "_copies")

    def __init__(self, wrapped: Any, copies: bool = True):
        object.__setattr__(self, "_wrapped", wrapped)
        object.__setattr__(self, "_copies", copies)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        cross = _crossing if self._copies else _same
        result = _call(self._wrapped, [cross(_unwrap(a)) for a in args], {k: cross(v) for k, v in kwargs.items()})
        return _guard(cross(result))

    def __getattr__(self, name: str) -> Any:
        return _guard(_crossing(_call(getattr, [self._wrapped, name], {})))

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._wrapped, name, _crossing(_unwrap(value)))

    def __getitem__(self, key: Any) -> Any:
        return _guard(_crossing(_call(lambda: self._wrapped[key], [], {})))

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
        raise student_error({"type": "AttributeError", "message": str(exc), "traceback": kernel_frames(exc)}) from exc
    except Exception as exc:
        raise student_error({"type": type(exc).__name__, "message": str(exc), "traceback": kernel_frames(exc)}) from exc


def _guard(value: Any) -> Any:
    if isinstance(value, (torch.Tensor, np.ndarray, str, bytes, int, float, bool, type(None), list, tuple, dict)):
        return value
    if callable(value) or isinstance(value, torch.nn.Module) or hasattr(value, "__dict__"):
        return _Guarded(value)
    return value


def _crossing(value: Any) -> Any:
    """A value as the wire would deliver it: tensors (also inside lists, tuples and dicts)
    become detached copies; everything else is passed as it is."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        items = [_crossing(v) for v in value]
        return type(value)(items) if type(value) in (list, tuple) else value
    if type(value) in (dict, OrderedDict):
        return type(value)((k, _crossing(v)) for k, v in value.items())
    return value


def _same(value: Any) -> Any:
    return value


def _unwrap(value: Any) -> Any:
    return object.__getattribute__(value, "_wrapped") if isinstance(value, _Guarded) else value


