"""Gradients on the trusted side, to compare a notebook's with."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from autograder.kit.compare import assert_close
from autograder.kit.tolerances import F64_VS_TRUSTED, Tolerance


def trusted_grads(module: nn.Module, x: torch.Tensor, cotangent: torch.Tensor, **kwargs: Any
                  ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor | None]]:
    """Gradients of sum(module(x) * cotangent) with respect to x and every parameter."""
    module.zero_grad()
    xt = x.detach().clone().requires_grad_(True)
    (module(xt, **kwargs) * cotangent).sum().backward()
    return xt.grad, {name: p.grad for name, p in module.named_parameters()}


def assert_grads_close(got: Mapping[str, Any], want: Mapping[str, torch.Tensor | None], what: str,
                       tol: Tolerance = F64_VS_TRUSTED) -> None:
    """Every parameter with a trusted gradient has the same gradient in the notebook's module."""
    for name, expected in want.items():
        if expected is None:
            continue
        assert got.get(name) is not None, \
            f"parameter `{name}` of your {what} gets no gradient: is it used in forward?"
        assert_close(got[name], expected, what=f"gradient of `{name}` in your {what}", **tol.kwargs())
