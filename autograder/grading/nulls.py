"""Null variants: the answer key with one part's code replaced by code that does nothing.

A suite that gives points to code that does nothing rewards students for nothing. For
each part of a week (the functions and methods whose bodies students write, up to that
part's `check(...)` cell), `course verify` grades three nulls on that part's hidden tests:

- `constant`: every tensor it would return is replaced by a constant of the same shape and
  dtype (its mean; a single number, whose mean is itself, plus one), every number by 0;
- `identity`: it returns its first tensor argument;
- `copy`: it returns its first tensor argument's values, repeated or cut to the shape of
  each tensor it would return (numbers become 0).

The right shapes come from calling the key's own code on copies of the arguments, so the
real arguments (a model a training loop should train) are left untouched; a function that
returned no tensor (a training loop's losses) is called so only once. Each null must earn
nothing in every test of its part but the shape tests.

The variants are the key's module with a few plain assignments appended, which wrap the
part's functions with `null` from this module (the worker imports it; it needs only torch).
"""

from __future__ import annotations

import ast
import copy
import functools
from dataclasses import dataclass
from typing import Any, Callable

NULL_KINDS = ("constant", "identity", "copy")
SOLUTION_MARK = "### BEGIN SOLUTION"


@dataclass(frozen=True)
class NullVariant:
    part: str
    kind: str
    targets: tuple[str, ...]  # "name" or "Class.method"

    @property
    def name(self) -> str:
        return f"null:{self.part}:{self.kind}"

    def source(self, key_source: str) -> str:
        lines = ["", "", "from autograder.grading.nulls import null as _vitssl_null", ""]
        lines += [f"{target} = _vitssl_null({target}, {self.kind!r})" for target in self.targets]
        return key_source.rstrip("\n") + "\n".join(lines) + "\n"


def student_targets(cells: list[tuple[str, str | None]]) -> dict[str, list[str]]:
    """Per part, the functions and methods (not constructors) whose bodies hold a solution.

    `cells` are the key notebook's code cells in order, each with the part its self-check
    names (None for other cells); a definition belongs to the next part checked after it.
    """
    parts: dict[str, list[str]] = {}
    pending: list[str] = []
    for source, part in cells:
        if part is not None:
            parts.setdefault(part, []).extend(pending)
            pending = []
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        lines = source.splitlines()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _has_solution(node, lines):
                pending.append(node.name)
            elif isinstance(node, ast.ClassDef):
                pending += [f"{node.name}.{m.name}" for m in node.body
                            if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name != "__init__"
                            and _has_solution(m, lines)]
    return {part: targets for part, targets in parts.items() if targets}


def null_variants(cells: list[tuple[str, str | None]]) -> list[NullVariant]:
    return [NullVariant(part, kind, tuple(targets))
            for part, targets in student_targets(cells).items() for kind in NULL_KINDS]


def _has_solution(node: ast.stmt, lines: list[str]) -> bool:
    return any(SOLUTION_MARK in line for line in lines[node.lineno - 1:node.end_lineno])


# -- run time, in the worker -------------------------------------------------------------------------

def null(fn: Callable[..., Any], kind: str) -> Callable[..., Any]:
    """`fn` doing nothing in the way `kind` names; what it would return gives the shapes."""
    import torch

    without_tensors: list[Any] = []  # what it returned, when that held no tensor (a training loop's losses)

    @functools.wraps(fn)
    def nothing(*args: Any, **kwargs: Any) -> Any:
        first = next((a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)), None)
        if kind == "identity" and first is not None:
            return first
        if without_tensors:  # its shape does not follow its inputs': calling it again (training) buys nothing
            would = without_tensors[0]
        else:
            would = fn(*_copies(args), **_copies(kwargs))
            if not _holds_tensor(would):
                without_tensors.append(would)
        if kind == "copy" and first is not None:
            return _map(would, lambda t: _resized(first, t), lambda n: type(n)(0))
        return _map(would, _constant, lambda n: type(n)(0))

    return nothing


def _holds_tensor(obj: Any) -> bool:
    import torch

    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, (list, tuple)):
        return any(_holds_tensor(o) for o in obj)
    if isinstance(obj, dict):
        return any(_holds_tensor(v) for v in obj.values())
    return False


def _copies(obj: Any) -> Any:
    """Copies of the arguments, so that the key's code called for shapes changes nothing real."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copies(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _copies(v) for k, v in obj.items()}
    try:
        return copy.deepcopy(obj)
    except Exception:  # not copyable: a generator, a non-leaf tensor inside an object
        return obj


def _map(obj: Any, tensor: Callable, number: Callable) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return tensor(obj)
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, (int, float)):
        return number(obj)
    if isinstance(obj, (list, tuple)):
        mapped = [_map(o, tensor, number) for o in obj]
        return type(obj)(*mapped) if hasattr(obj, "_fields") else type(obj)(mapped)
    if isinstance(obj, dict):
        return {k: _map(v, tensor, number) for k, v in obj.items()}
    return obj


def _constant(t: Any) -> Any:
    """The mean of what it would return, everywhere; a single number (whose mean is itself) is
    moved off its value instead."""
    import torch

    if not (t.is_floating_point() or t.is_complex()):
        return torch.zeros_like(t)
    if t.numel() == 1:
        return t.detach() + 1.0
    return torch.full_like(t, t.detach().mean().item() if t.numel() else 0.0)


def _resized(source: Any, like: Any) -> Any:
    flat = source.reshape(-1)
    if flat.numel() == 0 or like.numel() == 0:
        return _constant(like)
    repeats = -(-like.numel() // flat.numel())
    return flat.repeat(repeats)[: like.numel()].reshape(like.shape).to(like.dtype)
