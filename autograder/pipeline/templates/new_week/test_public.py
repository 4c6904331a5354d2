"""{{week}} public self-checks: cheap, one or two per part, catching the common bugs without
revealing the hidden cases."""

import torch

from autograder.kit import assert_close, assert_shape, randn


def test_standardize_shape_and_moments(sub):
    """standardize keeps the shape and gives each row mean 0 and variance close to 1."""
    y = sub.standardize(randn(3, 7, seed=0, scale=4.0))
    assert_shape(y, (3, 7), what="standardize's output for a [3, 7] input")
    assert_close(y.mean(-1), torch.zeros(3), what="the mean of each row", atol=1e-5)
