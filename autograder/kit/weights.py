"""Trusted modules with weights worth comparing against, and strict loading of the same
weights into a notebook's module.

timm's initialisation leaves biases at zero, norm weights at one, the class token and a
relative position bias tiny: a notebook's module that ignored any of them would still
match. Suites give the trusted module random, non-trivial values first (`randomize`),
then load them into the student's (`load_same_weights`), which checks every name and
shape first and says which differ.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from autograder.kit.compare import assert_shape
from autograder.kit.seeding import generator

# Learned tokens and tables that timm initialises near zero: drawn at scale 0.5 so they matter.
TOKENS = ("cls_token", "dist_token", "reg_token", "mask_token", "pos_embed", "relative_position_bias_table")
# Buffers that timm registers but a notebook derives from its arguments (not loaded, not compared).
DERIVED_BUFFERS = ("relative_position_index", "attn_mask")


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter and float statistic random and non-trivial, drawn in float64 from `seed`:
    tokens, position embeddings and bias tables at scale 0.5, matrices scaled by their fan-in,
    norm weights near 1, other vectors at scale 0.2, BatchNorm running means near 0 and running
    variances in [0.5, 1.5). Returns the module."""
    g = generator(seed)

    def noise(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)

    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(TOKENS):
                p.copy_(0.5 * noise(p))
            elif p.dim() >= 2:
                p.copy_(noise(p) / math.sqrt(p[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise(p))
            else:
                p.copy_(0.2 * noise(p))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * noise(b))
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g, dtype=torch.float64).to(b.dtype) + 0.5)
    return module


def check_names(student_state: Mapping[str, Any], trusted_state: Mapping[str, torch.Tensor], what: str,
                against: str = "timm's") -> None:
    """The student's state dict has exactly the trusted module's names, with the same shapes."""
    missing = sorted(k for k in trusted_state if k not in student_state)
    extra = sorted(k for k in student_state if k not in trusted_state)
    hint = ""
    if any(k.endswith(DERIVED_BUFFERS) for k in extra):
        hint = " (register derived buffers such as an index or a mask with persistent=False)"
    assert not missing and not extra, (
        f"the parameter names of your {what} differ from {against}: missing {missing[:6]}, "
        f"unexpected {extra[:6]}{hint} (names must match so that the same weights can be loaded into both)")
    for key, value in trusted_state.items():
        assert_shape(student_state[key], tuple(value.shape), what=f"{what} entry `{key}`")


def load_same_weights(student: Any, trusted: nn.Module, what: str, *, state: Mapping[str, torch.Tensor] | None = None,
                      double: bool = True, against: str = "timm's") -> Any:
    """Put the trusted module's weights (or `state`, the trusted weights under the notebook's
    names) into the student's module, after `check_names`; both in eval mode, and in float64
    unless `double` is False. Returns the student's module."""
    trusted.eval()
    if double:
        trusted.double()
        student.double()
    state = trusted.state_dict() if state is None else state
    check_names(student.state_dict(), state, what, against)
    student.load_state_dict(state, strict=True)
    student.eval()
    return student
