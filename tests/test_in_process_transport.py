"""The in-process transport (`InProcessSubmission`) behind the `sub` fixture of self-checks."""

from __future__ import annotations

import random
import types

import numpy as np
import pytest
import torch
from torch import nn

from autograder.testing.errors import (ForbiddenAPIUsed, MissingName, NotImplementedYet, StudentCodeError,
                                       SubmissionError)
from autograder.testing.in_process import InProcessSubmission
from autograder.testing.submission import VJP, Submission


# -- a student's namespace --------------------------------------------------------------------------

def mix(x, w, scale=1.0):
    return (torch.sin(x) * w).sum(-1) * scale + x.pow(2).mean()


def attention(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
    return weights @ v


def split(x):
    return x.exp(), (x * 3).tanh()


class Net(nn.Module):
    def __init__(self, dim=3, out=2):
        super().__init__()
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.lin = nn.Linear(dim, out)
        self.scale = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return torch.tanh(self.lin(x)) * self.scale

    def unfinished(self):
        raise NotImplementedError()

    def broken(self):
        raise ValueError("bad shape")


def bad(x):
    raise ValueError(f"cannot handle {x}")


def todo(x):
    raise NotImplementedError()


@pytest.fixture
def namespace() -> dict:
    return {"mix": mix, "attention": attention, "split": split, "Net": Net, "bad": bad, "todo": todo,
            "PATCH": 4, "CONFIG": {"depth": 2},
            "Evil": attention, "torch": torch}


@pytest.fixture
def sub(namespace) -> InProcessSubmission:
    return InProcessSubmission(namespace, {"Evil": "`Evil` uses torch.nn.MultiheadAttention (line 3)",
                                       "Gone": "`Gone` relies on `Evil`"})


# -- names -------------------------------------------------------------------------------------

def test_is_a_submission_with_the_in_process_transport(sub):
    assert isinstance(sub, Submission)
    assert sub.transport == "in-process"
    assert sub.output() == ""


def test_plain_values_come_back_as_they_are(sub, namespace):
    assert sub.PATCH == 4
    assert sub.CONFIG is namespace["CONFIG"]


def test_functions_are_callable_and_return_the_same(sub):
    x, w = torch.randn(4, 3), torch.randn(3)
    assert torch.equal(sub.mix(x, w, scale=2.0), mix(x, w, scale=2.0))
    out = sub.split(x)
    assert isinstance(out, tuple) and torch.equal(out[0], x.exp())


def test_classes_build_working_instances(sub):
    """Instances are guarded (their errors read as over the wire) but behave like the real thing."""
    torch.manual_seed(0)
    model = sub.Net(3, 2)
    assert "Net(" in repr(model) and model.training
    assert sorted(model.state_dict()) == sorted(Net(3, 2).state_dict())
    assert model(torch.zeros(5, 3)).shape == (5, 2)
    assert sub.Net.__name__ == "Net"  # attributes of the wrapped class are reachable


def test_module_object_as_namespace():
    module = types.ModuleType("student")
    module.value = 7
    module.double = lambda x: 2 * x
    sub = InProcessSubmission(module)
    assert sub.has("value") and sub.value == 7 and sub.double(4) == 8
    with pytest.raises(MissingName):
        sub.missing


def test_has(sub):
    assert sub.has("mix") and sub.has("Net") and sub.has("PATCH")
    assert not sub.has("VisionTransformer") and not sub.has("mix ")
    assert sub.has("Evil")  # defined; that using it is forbidden is a separate question


def test_unknown_name_is_missing(sub):
    with pytest.raises(MissingName) as info:
        sub.VisionTransformer
    assert isinstance(info.value, SubmissionError)
    assert "`VisionTransformer`" in str(info.value)


def test_private_names_are_plain_attribute_errors(sub):
    with pytest.raises(AttributeError):
        sub._secret
    with pytest.raises(AttributeError):
        sub.__wrapped__


@pytest.mark.parametrize("name, reason", [("Evil", "uses torch.nn.MultiheadAttention"),
                                          ("Gone", "relies on `Evil`")])
def test_forbidden_parts_raise_forbidden_api_used(sub, name, reason):
    with pytest.raises(ForbiddenAPIUsed) as info:
        getattr(sub, name)
    assert isinstance(info.value, SubmissionError)
    assert reason in str(info.value)


# -- the student's exceptions --------------------------------------------------------------------------

def test_student_exception_is_reraised_as_student_code_error(sub):
    with pytest.raises(StudentCodeError) as info:
        sub.bad(5)
    error = info.value
    assert not isinstance(error, ValueError)
    assert error.type_name == "ValueError" and error.message == "cannot handle 5"
    assert "your code raised ValueError: cannot handle 5" in str(error)
    assert isinstance(error.__cause__, ValueError)


def test_not_implemented_is_not_implemented_yet(sub):
    with pytest.raises(NotImplementedYet) as info:
        sub.todo(1)
    assert isinstance(info.value, StudentCodeError)
    assert "not implemented yet" in str(info.value)


def test_exception_in_a_constructor_is_a_student_code_error(sub):
    with pytest.raises(StudentCodeError, match="dim must be positive"):
        sub.Net(0)


@pytest.mark.parametrize("method, expected", [("broken", StudentCodeError), ("unfinished", NotImplementedYet)])
def test_exceptions_from_methods_of_student_objects(sub, method, expected):
    model = sub.Net(3, 2)
    with pytest.raises(expected):
        getattr(model, method)()


# -- gradients -------------------------------------------------------------------------------------

def test_vjp_of_a_function_matches_autograd(sub):
    torch.manual_seed(1)
    x, w = torch.randn(4, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    cot = torch.randn(4, dtype=torch.float64)
    result = sub.vjp(sub.mix, x, w, cotangents=cot, scale=0.5)
    assert isinstance(result, VJP) and result.params == {}

    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    expected = torch.autograd.grad(mix(xr, wr, scale=0.5), (xr, wr), cot)
    assert len(result.inputs) == 2
    torch.testing.assert_close(result.inputs[0], expected[0], rtol=0, atol=0)
    torch.testing.assert_close(result.inputs[1], expected[1], rtol=0, atol=0)
    assert not x.requires_grad and x.grad is None  # the caller's tensors are left alone


def test_vjp_of_a_module_gives_input_and_parameter_gradients(sub):
    torch.manual_seed(2)
    model = sub.Net(3, 2).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    cot = torch.randn(5, 2, dtype=torch.float64)
    result = sub.vjp(model, x, cotangents=cot)

    twin = _twin(model, double=True)  # the test's own copy: results from `sub` carry no graph
    names = [n for n, _ in twin.named_parameters()]
    assert set(result.params) == set(names) == {"lin.weight", "lin.bias", "scale"}
    xr = x.clone().requires_grad_()
    expected = torch.autograd.grad(twin(xr), [xr, *twin.parameters()], cot)
    torch.testing.assert_close(result.inputs[0], expected[0], rtol=0, atol=0)
    for name, grad in zip(names, expected[1:]):
        torch.testing.assert_close(result.params[name], grad, rtol=0, atol=0)
    assert all(p.grad is None for p in _unwrapped(model).parameters())  # nothing accumulated into .grad


def test_vjp_of_a_bound_method_includes_the_owners_parameters(sub):
    model = sub.Net(3, 2)
    x, cot = torch.randn(2, 3), torch.randn(2, 2)
    result = sub.vjp(model.forward, x, cotangents=cot)
    assert set(result.params) == {"lin.weight", "lin.bias", "scale"}
    twin = _twin(model)
    xr = x.clone().requires_grad_()
    expected = torch.autograd.grad(twin(xr), [xr, twin.lin.weight], cot)
    torch.testing.assert_close(result.inputs[0], expected[0])
    torch.testing.assert_close(result.params["lin.weight"], expected[1])


def _unwrapped(guarded):
    from autograder.testing.in_process import _unwrap

    return _unwrap(guarded)


def _twin(model, double: bool = False) -> nn.Module:
    twin = Net(3, 2).double() if double else Net(3, 2)
    twin.load_state_dict(model.state_dict())
    return twin


def test_vjp_without_parameters(sub):
    model = sub.Net(3, 2)
    result = sub.vjp(model, torch.randn(2, 3), cotangents=torch.ones(2, 2), params=False)
    assert result.params == {} and len(result.inputs) == 1 and result.inputs[0].shape == (2, 3)


def test_vjp_skips_non_float_arguments(sub):
    x = torch.randn(3, 4, dtype=torch.float64)
    index = torch.tensor([2, 0])
    result = sub.vjp(lambda a, i: a[i] * 2, x, index, cotangents=torch.ones(2, 4, dtype=torch.float64))
    assert len(result.inputs) == 1
    expected = torch.zeros(3, 4, dtype=torch.float64)
    expected[[2, 0]] = 2
    torch.testing.assert_close(result.inputs[0], expected)


def test_vjp_of_several_outputs(sub):
    x = torch.randn(4, dtype=torch.float64)
    c1, c2 = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    result = sub.vjp(sub.split, x, cotangents=[c1, c2])
    xr = x.clone().requires_grad_()
    a, b = split(xr)
    expected = torch.autograd.grad([a, b], [xr], [c1, c2])[0]
    torch.testing.assert_close(result.inputs[0], expected)


def test_vjp_casts_the_cotangent_to_the_output_dtype(sub):
    x = torch.randn(3, dtype=torch.float32)
    result = sub.vjp(lambda a: a * 3, x, cotangents=torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(result.inputs[0], torch.full((3,), 3.0))


def test_vjp_reports_student_errors(sub):
    with pytest.raises(NotImplementedYet):
        sub.vjp(sub.todo, torch.randn(2), cotangents=torch.ones(2))


def test_differentiable_function_passes_gradcheck(sub):
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    fn = sub.differentiable(sub.attention)
    assert torch.autograd.gradcheck(fn, (q, k, v))
    out = fn(q, k, v)
    torch.testing.assert_close(out, attention(q, k, v))
    out.sum().backward()
    assert q.grad is not None and k.grad is not None and v.grad is not None


def test_gradcheck_detects_a_wrong_gradient_through_differentiable(sub):
    class WrongGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 3

    fn = sub.differentiable(lambda x: WrongGrad.apply(x))
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert not torch.autograd.gradcheck(fn, (x,), raise_exception=False)


# -- seeding -----------------------------------------------------------------------------------------

def draw():
    return torch.randn(8), random.random(), np.random.rand(3)


def test_seed_makes_random_draws_repeatable(sub):
    sub.seed(123)
    first = draw()
    sub.seed(123)
    second = draw()
    assert torch.equal(first[0], second[0])
    assert first[1] == second[1]
    np.testing.assert_array_equal(first[2], second[2])


def test_different_seeds_give_different_draws(sub):
    sub.seed(1)
    first = draw()
    sub.seed(2)
    second = draw()
    assert not torch.equal(first[0], second[0])
    assert first[1] != second[1]


def test_seed_makes_student_initialisation_repeatable(sub):
    sub.seed(7)
    a = sub.Net(3, 2)
    sub.seed(7)
    b = sub.Net(3, 2)
    assert torch.equal(a.lin.weight, b.lin.weight)


def test_tensors_cross_as_the_wire_carries_them():
    """Detached copies both ways, as over the wire: a result brings no autograd graph along
    (a second backward through it would fail in-process only), and in-place changes stay on
    their side; `differentiable` is where gradients flow."""
    namespace: dict = {}
    exec("import torch\n"
         "def features(x):\n    return (x * 2).requires_grad_()\n"
         "def bump(x):\n    x.add_(1)\n    return {'out': [x]}\n", namespace)
    sub = InProcessSubmission(namespace)
    y = sub.features(torch.ones(2))
    assert not y.requires_grad and y.grad_fn is None
    given = torch.zeros(2)
    returned = sub.bump(given)["out"][0]
    assert given.sum() == 0 and returned.sum() == 2
    returned.add_(5)
    x = torch.ones(2, requires_grad=True)
    sub.differentiable(sub.features)(x).sum().backward()
    assert torch.equal(x.grad, torch.full((2,), 2.0))
