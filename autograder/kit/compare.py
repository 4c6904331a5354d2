"""Comparisons whose failure messages teach: what differs, where, and by how much."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch


def assert_shape(actual: Any, expected: Sequence[int], *, what: str) -> None:
    """`actual` is a tensor of exactly this shape."""
    if not isinstance(actual, (torch.Tensor, np.ndarray)):
        raise AssertionError(f"{what} should be a tensor of shape {tuple(expected)}, "
                             f"but your code returned a {type(actual).__name__}")
    if tuple(actual.shape) != tuple(expected):
        raise AssertionError(f"{what} should have shape {tuple(expected)}, but has shape {tuple(actual.shape)}")


def assert_close(actual: Any, expected: Any, *, what: str, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """`actual` equals `expected` within |a - e| <= atol + rtol * |e|, elementwise."""
    expected_t = torch.as_tensor(expected).detach()
    if not isinstance(actual, (torch.Tensor, np.ndarray, float, int)):
        raise AssertionError(f"{what} should be a tensor, but your code returned a {type(actual).__name__}")
    actual_t = torch.as_tensor(actual).detach()
    assert_shape(actual_t, expected_t.shape, what=what)
    if not (actual_t.is_floating_point() or actual_t.is_complex()) and expected_t.is_floating_point():
        actual_t = actual_t.to(expected_t.dtype)
    a, e = actual_t.to(torch.float64), expected_t.to(torch.float64)
    if not torch.isfinite(a).all() and torch.isfinite(e).all():
        bad = int((~torch.isfinite(a)).sum())
        raise AssertionError(f"{what} contains {bad} NaN or infinite values")
    error = (a - e).abs()
    allowed = atol + rtol * e.abs()
    if bool((error <= allowed).all()):
        return
    worst = int(torch.argmax(error - allowed))
    index = tuple(int(i) for i in np.unravel_index(worst, tuple(a.shape))) if a.dim() else ()
    wrong = int((error > allowed).sum())
    raise AssertionError(
        f"{what} differs from the expected value at {wrong} of {a.numel()} entries; "
        f"the largest error is {float(error.flatten()[worst]):.3g} at index {index} "
        f"(yours {float(a.flatten()[worst]):.6g}, expected {float(e.flatten()[worst]):.6g}; "
        f"tolerance {atol:g} + {rtol:g}·|expected|)")
