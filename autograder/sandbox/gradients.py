"""Vector-Jacobian products of student code, the same in the worker and in-process.

Gradients of sum_i <output_i, cotangent_i> for the float tensor arguments of a call and,
when the callable is a module or one of its methods, for the module's parameters.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch


def vector_jacobian_product(fn: Callable[..., Any], args: list, kwargs: dict, cotangents: list,
                            want_params: bool) -> tuple[list, dict]:
    """(gradients per float tensor argument, gradients per parameter name); None where unused."""
    args = [a.detach().clone().requires_grad_(True) if is_float_tensor(a) else a for a in args]
    owner = getattr(fn, "__self__", fn)
    params = dict(owner.named_parameters()) if want_params and isinstance(owner, torch.nn.Module) else {}
    with torch.enable_grad():
        outputs = flatten_tensors(fn(*args, **kwargs))
    if len(outputs) != len(cotangents):
        raise ValueError(f"expected {len(cotangents)} tensor outputs, got {len(outputs)}")
    pairs = [(o, c.to(o.dtype)) for o, c in zip(outputs, cotangents) if o.requires_grad]
    inputs = [a for a in args if is_float_tensor(a)] + list(params.values())
    grads: Sequence[torch.Tensor | None]
    if pairs and inputs:
        grads = torch.autograd.grad([o for o, _ in pairs], inputs, [c for _, c in pairs], allow_unused=True)
    else:
        grads = [None] * len(inputs)
    n = len(inputs) - len(params)
    return list(grads[:n]), dict(zip(params.keys(), grads[n:]))


def is_float_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex())


def flatten_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in flatten_tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in flatten_tensors(v)]
    return []
