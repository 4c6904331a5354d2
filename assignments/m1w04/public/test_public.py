"""m1w04 public self-checks: run them in the notebook with `check("m1w04")` or `check("m1w04", "<part>")`.

Parts: attention, rollout, threshold, metrics, features, linear_probe, knn. These check shapes and a
few simple values; the hidden suite that grades the notebook checks much more.
"""

from __future__ import annotations

import math

import pytest
import torch

from autograder.kit import assert_close, assert_shape

pytestmark = [pytest.mark.visibility("visible")]


def randn(*shape, seed, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# -- attention --------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_attention_maps_shape_and_rows(sub):
    """attention_maps gives [layers, batch, heads, 1 + patches, 1 + patches] and every row sums to one."""
    model = sub.ViT(img_size=8, patch_size=4, in_chans=1, num_classes=0, embed_dim=16, depth=2, num_heads=2)
    maps = sub.attention_maps(model, randn(3, 1, 8, 8, seed=0))
    assert_shape(maps, (2, 3, 2, 5, 5), what="attention_maps output (2 blocks, 3 images, 2 heads, 5 tokens)")
    assert_close(maps.sum(-1), torch.ones(2, 3, 2, 5), what="the row sums of the attention maps",
                 atol=1e-5, rtol=0)  # a softmax over the keys sums to one up to float32 rounding


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_attention_cls_row(sub):
    """cls_attention returns row 0 (the class token's) without the class token's own column."""
    attn = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4)
    assert_close(sub.cls_attention(attn), attn[:, 0, 1:], what="cls_attention of a [2, 4, 4] tensor",
                 atol=0, rtol=0)  # a selection: exact


# -- rollout ----------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_rollout_of_identity_attention(sub):
    """If every token attends only to itself, the rollout is the identity, shape [B, N, N]."""
    attn = torch.eye(4).expand(3, 2, 2, 4, 4).clone()  # 3 layers, 2 images, 2 heads, 4 tokens
    assert_close(sub.attention_rollout(attn), torch.eye(4).expand(2, 4, 4), what="rollout of identity attention",
                 atol=1e-6, rtol=0)  # products of exact 0/1 values and halves


# -- threshold --------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_threshold_keeps_the_dominant_patch(sub):
    """With one patch holding 80% of the attention, 60% of the mass is that patch alone."""
    mask = sub.mass_threshold(torch.tensor([0.05, 0.8, 0.05, 0.1]), mass=0.6)
    assert mask.dtype == torch.bool, f"mass_threshold should return a bool tensor, not {mask.dtype}"
    assert mask.tolist() == [False, True, False, False], f"expected only patch 1 to be kept, got {mask.tolist()}"


# -- metrics ----------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_metrics_simple_values(sub):
    """Uniform attention over 8 keys has entropy ln 8; mass_inside of a uniform map is the mask's share."""
    uniform = torch.full((2, 8), 1 / 8, dtype=torch.float64)
    assert_close(sub.attention_entropy(uniform), torch.full((2,), math.log(8), dtype=torch.float64),
                 what="entropy of uniform rows", atol=1e-9, rtol=0)  # float64, exact up to rounding
    mask = torch.tensor([True, True, False, False, False, False, False, False])
    assert_close(sub.mass_inside(uniform, mask), torch.full((2,), 0.25, dtype=torch.float64),
                 what="mass_inside of uniform rows for a 2-of-8 mask", atol=1e-9, rtol=0)
    tokens = torch.ones(1, 5, 3)
    tokens[0, 2] *= 10.0
    flags = sub.high_norm_tokens(tokens, ratio=2.0)
    assert flags.tolist() == [[False, False, True, False, False]], f"expected token 2 only, got {flags.tolist()}"


# -- features ---------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_features_shape(sub):
    """extract_features with two layers concatenates two D-vectors per image: [B, 2 D]."""
    model = sub.ViT(img_size=8, patch_size=2, in_chans=1, num_classes=0, embed_dim=16, depth=3, num_heads=2)
    assert_shape(sub.extract_features(model, randn(4, 1, 8, 8, seed=0), [0, -1], "cls"), (4, 32),
                 what="extract_features output for layers [0, -1]")


# -- linear_probe -----------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_linear_probe_loss_at_zero(sub):
    """With zero weights and biases every class is equally likely: the loss is ln K."""
    features, labels = randn(10, 3, seed=0, dtype=torch.float64), torch.arange(10) % 4
    loss = sub.probe_loss(torch.zeros(4, 3, dtype=torch.float64), torch.zeros(4, dtype=torch.float64), features,
                          labels, C=1.0)
    assert_close(loss, torch.tensor(math.log(4), dtype=torch.float64), what="probe_loss at zero", atol=1e-9,
                 rtol=0)  # float64


# -- knn --------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_knn_vote_simple(sub):
    """Two neighbours of class 1 with similarities 0.8 and 0.7 (k=2, T=1): scores [0, e^0.8 + e^0.7]."""
    similarity = torch.tensor([[0.1, 0.8, 0.7]], dtype=torch.float64)
    scores = sub.knn_vote(similarity, torch.tensor([0, 1, 1]), 2, k=2, temperature=1.0)
    expected = torch.tensor([[0.0, math.exp(0.8) + math.exp(0.7)]], dtype=torch.float64)
    assert_close(scores, expected, what="knn_vote scores", atol=1e-9, rtol=1e-9)  # float64
