"""Tolerances for comparing a notebook's numbers with a trusted implementation's.

Each is named for the comparison it serves and carries the reason for its size; a suite
that needs another writes its own `Tolerance` with its own reason beside it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    reason: str

    def kwargs(self) -> dict[str, float]:
        """For `assert_close(actual, expected, what=..., **tol.kwargs())`."""
        return {"atol": self.atol, "rtol": self.rtol}


F64_VS_TRUSTED = Tolerance(
    1e-9, 1e-7,
    "float64 against timm or a hand-written trusted module given the same weights: measured differences "
    "are 0 to 5e-15 for whole models (m1w01, m1w02), so 1e-9 leaves room for any valid order of operations "
    "while LayerNorm eps 1e-5 instead of 1e-6 (5e-6) or the tanh GELU (5e-4) still fail")
F32_VS_TRUSTED = Tolerance(
    1e-4, 1e-3,
    "float32 against a trusted module: rounding in a few stacked blocks is ~1e-6 relative "
    "(max |Δlogits| 1.3e-7 for m1w01's ViT), so 1e-4 absolute is loose enough for any order of sums")
