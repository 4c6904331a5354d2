"""What a test sees of a submission: the `sub` fixture's interface.

Two transports share it. `RemoteSubmission` (grading) talks to a sandboxed worker;
`InProcessSubmission` (self-checks) holds the student's module in this process. A test
written against this interface runs unchanged on both:

    model = sub.VisionTransformer(img_size=32, patch_size=4, embed_dim=64)
    model.load_state_dict(reference.state_dict())
    logits = model(x)                              # a tensor, whatever the transport
    attention = sub.differentiable(sub.attention)  # gradients flow across the boundary
    torch.autograd.gradcheck(attention, (q, k, v))
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from autograder.submission.forbidden import WHOLE_SUBMISSION

from autograder.testing.errors import ForbiddenAPIUsed, MissingName


@dataclass
class VJP:
    """Gradients of sum(output * cotangent): one per float tensor argument, and per parameter."""

    inputs: list[torch.Tensor | None]
    params: dict[str, torch.Tensor | None] = field(default_factory=dict)


class Submission(abc.ABC):
    """The student's notebook as a module, seen from a test."""

    def __init__(self, forbidden_parts: dict[str, str] | None = None):
        self._forbidden_parts = dict(forbidden_parts or {})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        reason = self._forbidden_parts.get(name) or self._forbidden_parts.get(WHOLE_SUBMISSION)
        if reason:
            raise ForbiddenAPIUsed(reason)
        if not self.has(name):
            raise MissingName(name)
        return self._lookup(name)

    @abc.abstractmethod
    def has(self, name: str) -> bool:
        """Whether the notebook defines `name` at top level."""

    @abc.abstractmethod
    def _lookup(self, name: str) -> Any: ...

    @abc.abstractmethod
    def differentiable(self, fn: Any) -> Callable[..., Any]:
        """`fn` as a function whose float tensor arguments receive gradients on this side."""

    @abc.abstractmethod
    def vjp(self, fn: Any, *args: Any, cotangents: Any, params: bool = True, **kwargs: Any) -> VJP:
        """Vector-Jacobian product of `fn(*args, **kwargs)`, for arguments and parameters."""

    @abc.abstractmethod
    def seed(self, seed: int) -> None:
        """Seed the student's side (torch, numpy, random) before a test."""

    def output(self) -> str:
        """What the student's code printed so far."""
        return ""

    transport = ""  # "in-process" or "remote"


def as_cotangent_list(cotangents: Any) -> list[torch.Tensor]:
    if isinstance(cotangents, torch.Tensor):
        return [cotangents]
    return list(cotangents)
