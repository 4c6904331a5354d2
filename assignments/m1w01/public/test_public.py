"""m1w01 public self-checks: run them in the notebook with `check("m1w01")` or `check("m1w01", "<part>")`.

Parts: patch_embed, attention, mlp, block, vit, train. These check shapes, names and a few
simple values; the hidden suite that grades the notebook checks much more.
"""

from __future__ import annotations

import math

import pytest
import torch

from autograder.kit import assert_close, assert_shape

pytestmark = [pytest.mark.visibility("visible")]


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- patch_embed ------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_patch_embed_output_shape(sub):
    """PatchEmbed turns [2, 3, 16, 16] images into [2, 16, 24] tokens with 4x4 patches."""
    pe = sub.PatchEmbed(img_size=16, patch_size=4, in_chans=3, embed_dim=24)
    assert pe.num_patches == 16, f"num_patches should be (16 // 4) ** 2 = 16, but is {pe.num_patches}"
    assert_shape(pe.proj.weight, (24, 3, 4, 4), what="PatchEmbed.proj.weight")
    assert_shape(pe(randn(2, 3, 16, 16, seed=0)), (2, 16, 24), what="PatchEmbed output")


# -- attention --------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_attention_uniform_when_queries_zero(sub):
    """With all-zero queries every key gets the same weight, so each output row is the mean of v."""
    q = torch.zeros(2, 4, 8)
    k, v = randn(2, 4, 8, seed=1), randn(2, 4, 8, seed=2)
    expected = v.mean(dim=-2, keepdim=True).expand(2, 4, 8)
    assert_close(sub.attention(q, k, v), expected, what="attention output for zero queries",
                 atol=1e-5, rtol=1e-5)  # float32 averaging of four values


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_attention_keeps_shape(sub):
    """attention() maps q, k, v of shape [2, 3, 5, 8] (batch, heads, tokens, head_dim) to [2, 3, 5, 8]."""
    q, k, v = (randn(2, 3, 5, 8, seed=s) for s in (1, 2, 3))
    out = sub.attention(q, k, v)
    assert_shape(out, (2, 3, 5, 8), what="attention output")
    assert torch.isfinite(out).all(), "attention output contains NaN or infinite values"


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_attention_module_output_shape(sub):
    """Attention(dim=32, num_heads=4) keeps [2, 5, 32] and has head_dim 8, scale 8^-0.5, qkv [96, 32]."""
    attn = sub.Attention(dim=32, num_heads=4)
    assert attn.head_dim == 8, f"head_dim should be 32 // 4 = 8, but is {attn.head_dim}"
    assert abs(float(attn.scale) - 8 ** -0.5) < 1e-9, f"scale should be 8 ** -0.5, but is {attn.scale}"
    assert_shape(attn.qkv.weight, (96, 32), what="Attention.qkv.weight")
    assert_shape(attn.proj.weight, (32, 32), what="Attention.proj.weight")
    assert_shape(attn(randn(2, 5, 32, seed=0)), (2, 5, 32), what="Attention output")


# -- mlp --------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_mlp_output_shape(sub):
    """Mlp(in_features=16, hidden_features=32) has fc1 [32, 16], fc2 [16, 32] and keeps [2, 5, 16]."""
    mlp = sub.Mlp(in_features=16, hidden_features=32)
    assert_shape(mlp.fc1.weight, (32, 16), what="Mlp.fc1.weight")
    assert_shape(mlp.fc2.weight, (16, 32), what="Mlp.fc2.weight")
    assert_shape(mlp(randn(2, 5, 16, seed=0)), (2, 5, 16), what="Mlp output")


# -- block ------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_block_shapes_and_names(sub):
    """Block(dim=32, num_heads=4) keeps [2, 5, 32] and names its parts norm1, attn, norm2, mlp."""
    block = sub.Block(dim=32, num_heads=4)
    names = set(block.state_dict())
    for name in ("norm1.weight", "attn.qkv.weight", "attn.proj.weight", "norm2.weight", "mlp.fc1.weight",
                 "mlp.fc2.weight"):
        assert name in names, f"Block has no parameter `{name}` (use timm's names: norm1, attn, norm2, mlp)"
    assert_shape(block.mlp.fc1.weight, (128, 32), what="Block.mlp.fc1.weight (mlp_ratio 4)")
    assert_shape(block(randn(2, 5, 32, seed=0)), (2, 5, 32), what="Block output")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_block_layernorm_eps(sub):
    """Block's LayerNorms use eps=1e-6, like timm's ViT (PyTorch's default is 1e-5)."""
    block = sub.Block(dim=16, num_heads=2)
    for name in ("norm1", "norm2"):
        eps = getattr(block, name).eps
        assert abs(eps - 1e-6) < 1e-12, f"Block.{name} should have eps=1e-6, but has eps={eps:g}"


# -- vit --------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_vit_output_shapes(sub):
    """VisionTransformer on [2, 3, 16, 16] with 4x4 patches: logits [2, 7], features [2, 17, 32], pos_embed [1, 17, 32]."""
    model = sub.VisionTransformer(img_size=16, patch_size=4, in_chans=3, num_classes=7, embed_dim=32, depth=1,
                                  num_heads=2)
    assert_shape(model.cls_token, (1, 1, 32), what="cls_token")
    assert_shape(model.pos_embed, (1, 17, 32), what="pos_embed (16 patches plus one slot for the class token)")
    assert len(model.blocks) == 1, f"blocks should hold depth=1 block, not {len(model.blocks)}"
    x = randn(2, 3, 16, 16, seed=0)
    assert_shape(model.forward_features(x), (2, 17, 32), what="forward_features output")
    assert_shape(model(x), (2, 7), what="VisionTransformer output (logits)")


# -- train ------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("convergence")
def test_train_reduces_loss_on_a_tiny_problem(sub):
    """train_classifier lowers the loss on a tiny task (is the top or the bottom half brighter?) and ends in eval mode."""
    g = torch.Generator().manual_seed(0)
    images = 0.5 * torch.rand(96, 1, 8, 8, generator=g)
    labels = torch.randint(0, 2, (96,), generator=g)
    images[labels == 1, :, :4] += 1.0  # class 1: bright top half
    images[labels == 0, :, 4:] += 1.0  # class 0: bright bottom half
    model = sub.VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=16, depth=1,
                                  num_heads=2, mlp_ratio=2.0)
    losses = sub.train_classifier(model, images, labels, steps=80, lr=3e-3, batch_size=32, seed=0)
    # Reference: the last 5 losses average at most 0.04x the first 5 over 12 seeds; 0.5 is a loose gate.
    assert len(losses) == 80, f"train_classifier should return one loss per step (80), got {len(losses)}"
    assert all(math.isfinite(float(l)) for l in losses), "some returned losses are NaN or infinite"
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (f"the loss should fall well below its starting value: mean of the first 5 steps "
                                f"{first:.3f}, of the last 5 {last:.3f}")
    assert model.training is False, "train_classifier should leave the model in eval mode (call model.eval())"
