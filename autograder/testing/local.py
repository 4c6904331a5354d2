"""The in-process transport: fast self-checks on a student's own machine, no sandbox."""

from __future__ import annotations

import random
import types
from typing import Any, Callable

import numpy as np
import torch

from autograder.testing.errors import StudentCodeError, student_error
from autograder.testing.submission import VJP, Submission, as_cotangent_list


class LocalSubmission(Submission):
    def __init__(self, module: types.ModuleType | dict, forbidden_parts: dict[str, str] | None = None):
        super().__init__(forbidden_parts)
        self._namespace = module if isinstance(module, dict) else vars(module)

    def has(self, name: str) -> bool:
        return name in self._namespace

    def _lookup(self, name: str) -> Any:
        value = self._namespace[name]
        return _Reraising(value) if callable(value) else value

    def differentiable(self, fn: Any) -> Callable[..., Any]:
        return fn

    def vjp(self, fn: Any, *args: Any, cotangents: Any, params: bool = True, **kwargs: Any) -> VJP:
        args = [a.detach().clone().requires_grad_(True) if _is_float(a) else a for a in args]
        owner = getattr(fn, "__self__", getattr(fn, "_wrapped", fn))
        named = dict(owner.named_parameters()) if params and isinstance(owner, torch.nn.Module) else {}
        with torch.enable_grad():
            out = fn(*args, **kwargs)
        outputs = out if isinstance(out, (list, tuple)) else [out]
        pairs = [(o, c.to(o.dtype)) for o, c in zip(outputs, as_cotangent_list(cotangents))
                 if isinstance(o, torch.Tensor) and o.requires_grad]
        inputs = [a for a in args if _is_float(a)] + list(named.values())
        if not pairs or not inputs:
            grads = [None] * len(inputs)
        else:
            grads = torch.autograd.grad([o for o, _ in pairs], inputs, [c for _, c in pairs],
                                        allow_unused=True)
        n = len(inputs) - len(named)
        return VJP(list(grads[:n]), dict(zip(named.keys(), grads[n:])))

    def seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


class _Reraising:
    """Wraps a student callable so that its exceptions read the same as over the wire."""

    def __init__(self, wrapped: Any):
        object.__setattr__(self, "_wrapped", wrapped)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._wrapped(*args, **kwargs)
        except (AssertionError, StudentCodeError):
            raise
        except Exception as exc:
            raise student_error({"type": type(exc).__name__, "message": str(exc)}) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, self._wrapped)


def _is_float(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point()
