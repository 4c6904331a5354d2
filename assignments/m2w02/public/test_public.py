"""m2w02 public self-checks: cheap, one or two per part, catching the common bugs without
revealing the hidden cases."""

import torch

from autograder.kit import assert_close, assert_shape, randn


def test_standardize_shape_and_moments(sub):
    """standardize keeps the shape and gives each row mean 0 and variance close to 1."""
    y = sub.standardize(randn(3, 7, seed=0, scale=4.0))
    assert_shape(y, (3, 7), what="standardize's output for a [3, 7] input")
    assert_close(y.mean(-1), torch.zeros(3), what="the mean of each row", atol=1e-5)


def test_standardize_hand_computed(sub):
    """[1, 3] has mean 2 and variance 1 (the mean square over its 2 values, not over 2 - 1): about [-1, 1]."""
    y = sub.standardize(torch.tensor([[1.0, 3.0]]))
    assert_close(y, torch.tensor([[-1.0, 1.0]]), what="standardize([[1, 3]]): divide by the number of values",
                 atol=1e-4)  # eps = 1e-5 under the square root moves the result by 5e-6
