"""{{week}} hidden suite. Each test has a kind (shape, value, grad or convergence) and points;
values are compared with an independent truth, here PyTorch's own layer_norm.

TODO(author): for every part, tests of all four kinds: shapes for several sizes; values
against a trusted implementation, a closed form or hand-computed cases (every argument
exercised with a non-default value); gradients against the trusted implementation's; and
a tiny training run on the kit's data (autograder.kit.data) that must reach a metric the
trusted side computes (autograder.kit.probes), its gate calibrated over >= 10 seeds.

A test belongs to the part its name starts with (`test_<part>_...`): that is how the
gradebook, the feedback and the null variants group tests by part. Objects built through
`sub` live in the worker: set a remote module's weights with `load_state_dict`, since an
in-place edit of a tensor read from it changes only the trusted side's copy.
"""

import pytest
import torch
import torch.nn.functional as F

from autograder.kit import F64_VS_TRUSTED, assert_close, assert_shape, randn


@pytest.mark.points(2)
@pytest.mark.kind("shape")
@pytest.mark.parametrize("shape", [(5,), (2, 3, 9)])
def test_standardize_shapes(sub, shape):
    """standardize keeps the shape of its input, for several shapes."""
    assert_shape(sub.standardize(randn(*shape, seed=1)), shape, what=f"standardize's output for {list(shape)}")


@pytest.mark.points(4)
@pytest.mark.kind("value")
@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_standardize_matches_layer_norm(sub, eps):
    """standardize equals layer_norm without affine parameters, for the default and a large eps."""
    x = randn(4, 6, seed=2, scale=0.3)
    expected = F.layer_norm(x, (6,), eps=eps)
    assert_close(sub.standardize(x, eps=eps), expected, what=f"standardize(x, eps={eps})", **F64_VS_TRUSTED.kwargs())
