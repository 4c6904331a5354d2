"""m1w04 public self-checks: run them in the notebook with `check("m1w04")` or `check("m1w04", "<part>")`.

Parts: attention, rollout, threshold, metrics, features, linear_probe, knn. These check shapes, small
hand-computed cases and properties stated in the notebook; the hidden suite that grades the notebook
checks much more.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autograder.kit import assert_close, assert_shape

pytestmark = [pytest.mark.visibility("visible")]


def randn(*shape, seed, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def state_with(model, **values):
    """The model's state dict with some entries replaced (loaded back into the model)."""
    state = model.state_dict()
    for name, value in values.items():
        value = torch.as_tensor(value, dtype=state[name].dtype)
        state[name] = value.expand(state[name].shape).clone() if value.dim() == 0 else value.reshape(state[name].shape)
    model.load_state_dict(state)
    return model


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


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_attention_maps_hand_built_heads(sub):
    """A one-block ViT with hand-set weights: two heads with known maps (norm1, the scale, the head split)."""
    model = sub.ViT(img_size=4, patch_size=4, in_chans=1, num_classes=0, embed_dim=4, depth=1, num_heads=2)
    # The patch embedding is zeroed, so the two tokens are the position embeddings, and norm1 (weight 1,
    # bias 0) turns them into u0 = [1, 1, -1, -1] and u1 = [1, -1, 1, -1] (they have mean 0 and variance 4, 9).
    qkv = torch.zeros(12, 4)
    c, d = math.log(3) / 2, math.log(2)
    qkv[0, 0] = 1.0                          # head 0: q = u[0]           -> q = (1, 1) for tokens (0, 1)
    qkv[2, 1] = 1.0                          # head 1: q = u[1]           -> q = (1, -1)
    qkv[4, 1] = math.sqrt(2) * c             # head 0: k = sqrt(2) c u[1] -> k = sqrt(2) c (1, -1)
    qkv[6, 0:2] = math.sqrt(2) * d / 2       # head 1: k = sqrt(2) d (u[0] + u[1]) / 2 -> k = sqrt(2) d (1, 0)
    state_with(model, **{"patch_embed.proj.weight": 0.0, "patch_embed.proj.bias": 0.0, "cls_token": 0.0,
                         "pos_embed": [[2.0, 2.0, -2.0, -2.0], [3.0, -3.0, 3.0, -3.0]],
                         "blocks.0.norm1.weight": 1.0, "blocks.0.norm1.bias": 0.0,
                         "blocks.0.attn.qkv.weight": qkv, "blocks.0.attn.qkv.bias": 0.0})
    maps = sub.attention_maps(model, torch.ones(1, 1, 4, 4))
    assert_shape(maps, (1, 1, 2, 2, 2),
                 what="attention_maps of the hand-built model (1 block, 1 image, 2 heads, 2 tokens)")
    # scale = head_dim^-0.5 = 1/sqrt(2): head 0's logits are (c, -c) in both rows, head 1's (d, 0) and (-d, 0).
    expected = torch.tensor([[[0.75, 0.25], [0.75, 0.25]],           # e^c / (e^c + e^-c) = 3/4
                             [[2 / 3, 1 / 3], [1 / 3, 2 / 3]]])      # e^d / (e^d + 1) = 2/3
    # float32, and LayerNorm's eps (1e-6 against variances 4 and 9) moves the weights by ~1e-7.
    tol = dict(atol=1e-5, rtol=0)
    try:
        assert_close(maps[0, 0], expected, what="the two heads' attention weights", **tol)
    except AssertionError as error:
        hints = []
        if torch.allclose(maps[0, 0], expected.flip(0), **tol):
            hints.append("your heads come out swapped: split qkv as [B, N, 3, num_heads, head_dim], as the block does")
        if torch.allclose(maps[0, 0], expected.transpose(-2, -1), **tol):
            hints.append("your maps are transposed: rows are queries (q @ k^T), softmax over the keys")
        hints = hints or ["compute q and k from block.norm1(tokens) with block.attn.qkv, split them as the block "
                          "does ([B, N, 3, num_heads, head_dim]), multiply the logits by block.attn.scale and take "
                          "the softmax over the last axis (the keys)"]
        raise AssertionError(f"{error}\n" + "; ".join(hints)) from None


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_attention_maps_see_normalised_tokens(sub):
    """Layer 0's maps do not change when the images are scaled (norm1 removes the scale of the tokens)."""
    torch.manual_seed(0)
    model = sub.ViT(img_size=8, patch_size=4, in_chans=2, num_classes=0, embed_dim=16, depth=1, num_heads=4)
    # Without biases, class token and position embeddings, every token scales with the images.
    state_with(model, **{"patch_embed.proj.bias": 0.0, "cls_token": 0.0, "pos_embed": 0.0})
    x = randn(2, 2, 8, 8, seed=3) * 5.0
    maps, scaled = sub.attention_maps(model, x), sub.attention_maps(model, 4.0 * x)
    # LayerNorm is scale-invariant up to its eps (1e-6, against token variances ~3 here) and float32 rounding:
    # measured changes ~1e-7; attention computed from the unnormalised tokens changes by ~0.5.
    assert torch.allclose(scaled, maps, atol=1e-4, rtol=0), (
        "attention_maps changed when the images (and so the tokens entering block 0) were multiplied by 4 "
        f"(largest change {float((scaled - maps).abs().max()):.3g}); the block computes q and k from "
        "block.norm1(tokens), which does not depend on the tokens' scale: apply norm1 before attn.qkv")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_attention_maps_follow_the_token_stream(sub):
    """With two identical blocks, block 1's maps differ from block 0's: block 1 reads block 0's output."""
    torch.manual_seed(1)
    model = sub.ViT(img_size=8, patch_size=4, in_chans=1, num_classes=0, embed_dim=16, depth=2, num_heads=2)
    state = model.state_dict()
    for name in [n for n in state if n.startswith("blocks.0.")]:
        state["blocks.1." + name[len("blocks.0."):]] = state[name].clone()
    model.load_state_dict(state)
    maps = sub.attention_maps(model, randn(2, 1, 8, 8, seed=4, dtype=torch.float32))
    assert_shape(maps, (2, 2, 2, 5, 5), what="attention_maps output (2 blocks, 2 images, 2 heads, 5 tokens)")
    # Block 0 changes the tokens (residual attention and MLP): measured over 5 init seeds, the two blocks' maps
    # differ by at least 0.15 somewhere.
    assert not torch.allclose(maps[1], maps[0], atol=1e-5, rtol=0), (
        "the two blocks have the same weights and your maps are the same for both: block 1 must see block 0's "
        "output, so run the tokens through each block (tokens = block(tokens)) after computing its map")


@pytest.mark.points(1)
@pytest.mark.kind("grad")
def test_attention_maps_are_differentiable(sub):
    """attention_maps keeps the graph: a gradient reaches the images (no .detach(), no torch.no_grad())."""
    torch.manual_seed(3)
    model = sub.ViT(img_size=4, patch_size=2, in_chans=1, num_classes=0, embed_dim=8, depth=2, num_heads=2)
    x = randn(1, 1, 4, 4, seed=10).requires_grad_(True)
    maps = sub.differentiable(sub.attention_maps)(model, x)
    assert maps.requires_grad, ("no gradient reaches the images through your attention_maps: keep it differentiable "
                                "(no .detach(), torch.no_grad() or numpy)")
    # A scalar output (no cotangent tensor) keeps this check from importing sympy through torch.autograd.
    (grad,) = torch.autograd.grad((maps * randn(2, 1, 2, 5, 5, seed=11)).sum(), x)
    assert bool(torch.isfinite(grad).all()) and float(grad.abs().max()) > 0, \
        "the gradient of your attention maps with respect to the images is zero or not finite"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_attention_cls_with_register_tokens(sub):
    """cls_attention with num_prefix_tokens=3 drops the first 3 columns of row 0, for [B, N, N] and [L, B, H, N, N]."""
    attn = torch.arange(2 * 6 * 6, dtype=torch.float32).reshape(2, 6, 6)
    got = sub.cls_attention(attn, num_prefix_tokens=3)
    assert_close(got, attn[:, 0, 3:], what="cls_attention(attn, num_prefix_tokens=3) of a [2, 6, 6] tensor "
                 "(row 0, columns 3 to 5: use num_prefix_tokens)", atol=0, rtol=0)  # a selection: exact
    many = torch.arange(3 * 1 * 2 * 5 * 5, dtype=torch.float32).reshape(3, 1, 2, 5, 5)
    assert_close(sub.cls_attention(many, num_prefix_tokens=2), many[..., 0, 2:],
                 what="cls_attention(attn, num_prefix_tokens=2) of a [3, 1, 2, 5, 5] tensor", atol=0, rtol=0)


# -- rollout ----------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_rollout_of_identity_attention(sub):
    """If every token attends only to itself, the rollout is the identity, shape [B, N, N]."""
    attn = torch.eye(4).expand(3, 2, 2, 4, 4).clone()  # 3 layers, 2 images, 2 heads, 4 tokens
    assert_close(sub.attention_rollout(attn), torch.eye(4).expand(2, 4, 4), what="rollout of identity attention",
                 atol=1e-6, rtol=0)  # products of exact 0/1 values and halves


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_rollout_one_layer_is_half_attention_half_identity(sub):
    """One layer rolls out to (mean over heads of A + I) / 2, whose rows sum to one."""
    attn = (2.0 * randn(1, 2, 3, 4, 4, seed=5, dtype=torch.float64)).softmax(dim=-1)
    expected = 0.5 * attn[0].mean(dim=1) + 0.5 * torch.eye(4, dtype=torch.float64)
    got = sub.attention_rollout(attn)
    assert_shape(got, (2, 4, 4), what="rollout of [1 layer, 2 images, 3 heads, 4, 4] attention")
    # float64: orders of operations differ by ~1e-16.
    assert_close(got.sum(-1), torch.ones(2, 4, dtype=torch.float64), atol=1e-9, rtol=0,
                 what="the row sums of the rollout (renormalise each layer's rows after adding the identity)")
    assert_close(got, expected, atol=1e-9, rtol=0,
                 what="rollout of one layer: rownorm(mean_heads(A) + I) = (mean_heads(A) + I) / 2 "
                      "(add the identity for the residual path, average the heads)")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_rollout_two_layers_later_on_the_left(sub):
    """Two layers of two tokens, by hand: R = Â2 Â1 (later layer on the left), for each image of a batch."""
    a1 = torch.tensor([[[0.5, 0.5], [1.0, 0.0]], [[0.5, 0.5], [1.0, 0.0]]], dtype=torch.float64)  # 2 heads
    a2 = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    # Â1 = rownorm(mean_h a1 + I) = [[3/4, 1/4], [1/2, 1/2]];  Â2 = rownorm(mean_h a2 + I) = [[3/4, 1/4], [0, 1]].
    # Image 0 sees a1 then a2: Â2 Â1; image 1 sees them in the other order: Â1 Â2.
    attn = torch.stack([torch.stack([a1, a2]), torch.stack([a2, a1])], dim=1)  # [L=2, B=2, H=2, 2, 2]
    expected = torch.tensor([[[11 / 16, 5 / 16], [1 / 2, 1 / 2]],
                             [[9 / 16, 7 / 16], [3 / 8, 5 / 8]]], dtype=torch.float64)
    got = sub.attention_rollout(attn)
    tol = dict(atol=1e-9, rtol=0)  # float64, exact binary fractions
    if got.shape == expected.shape and torch.allclose(got, expected.flip(0), **tol):
        raise AssertionError("your rollout multiplies the layers in the wrong order: R = Â_L ... Â_1, each new "
                             "layer multiplies on the left (rollout = a @ rollout)")
    assert_close(got, expected, what="rollout of the two-layer example, two images", **tol)


@pytest.mark.points(1)
@pytest.mark.kind("grad")
def test_rollout_is_differentiable(sub):
    """attention_rollout keeps the graph: a gradient reaches the attentions it is given."""
    attn = (2.0 * randn(2, 1, 2, 3, 3, seed=12, dtype=torch.float64)).softmax(dim=-1)
    attn.requires_grad_(True)
    rollout = sub.differentiable(sub.attention_rollout)(attn)
    assert rollout.requires_grad, ("no gradient reaches the attentions through your attention_rollout: keep every "
                                   "step a tensor operation (no .detach(), .item(), numpy or in-place edits of the "
                                   "input)")
    (grad,) = torch.autograd.grad((rollout * randn(1, 3, 3, seed=13, dtype=torch.float64)).sum(), attn)
    assert bool(torch.isfinite(grad).all()), "the gradient of your rollout contains NaN or infinite values"


# -- threshold --------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_threshold_keeps_the_dominant_patch(sub):
    """With one patch holding 80% of the attention, 60% of the mass is that patch alone."""
    mask = sub.mass_threshold(torch.tensor([0.05, 0.8, 0.05, 0.1]), mass=0.6)
    assert mask.dtype == torch.bool, f"mass_threshold should return a bool tensor, not {mask.dtype}"
    assert mask.tolist() == [False, True, False, False], f"expected only patch 1 to be kept, got {mask.tolist()}"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_threshold_follows_the_mass(sub):
    """The map [0.05, 0.4, 0.3, 0.25] keeps 1, 2 or 3 patches for mass 0.3, 0.6 and 0.8."""
    amap = torch.tensor([0.05, 0.4, 0.3, 0.25])
    # Sorted shares 0.4, 0.7, 0.95, 1.0: every mass below sits at least 0.1 from a cumulative sum (no ties).
    for mass, kept in ((0.3, [False, True, False, False]), (0.6, [False, True, True, False]),
                       (0.8, [False, True, True, True])):
        got = sub.mass_threshold(amap, mass=mass)
        assert got.tolist() == kept, (f"mass_threshold([0.05, 0.4, 0.3, 0.25], mass={mass}) should keep {kept} "
                                      f"(the fewest largest entries holding {mass:.0%} of the total), got "
                                      f"{got.tolist()}: use the mass argument")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_threshold_maps_that_do_not_sum_to_one(sub):
    """Scaling a map by 0.5 or 3 leaves its mask unchanged (shares of its own total), for a batch of maps."""
    maps = torch.tensor([[0.05, 0.4, 0.3, 0.25], [0.05, 0.15, 0.7, 0.1]], dtype=torch.float64)
    kept = [[False, True, True, False], [False, False, True, False]]  # 60%: 0.4 + 0.3 = 0.7; 0.7 alone
    for factor in (1.0, 0.5, 3.0):
        got = sub.mass_threshold(factor * maps, mass=0.6)
        assert got.tolist() == kept, (f"mass_threshold of the maps times {factor} (which sum to {factor:g}) "
                                      f"should keep {kept}, got {got.tolist()}: divide the map by its own total "
                                      "before the cumulative sum")


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


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_metrics_entropy_with_zeros(sub):
    """Zeros count as 0 ln 0 = 0: [0.5, 0.5, 0, 0] has entropy ln 2, a one-hot row 0 (nats, last axis)."""
    rows = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    assert_close(sub.attention_entropy(rows), torch.tensor([math.log(2), 0.0], dtype=torch.float64),
                 what="attention_entropy of [[0.5, 0.5, 0, 0], [0, 0, 1, 0]] (torch.xlogy gives 0 ln 0 = 0)",
                 atol=1e-9, rtol=0)  # float64


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_metrics_mass_inside_is_a_share(sub):
    """mass_inside divides by the map's own total: [0.3, 0.1, 0.2, 0, 0.2] has 0.5 of its 0.8 inside [T, F, F, F, T]."""
    mask = torch.tensor([True, False, False, False, True])
    maps = torch.tensor([[0.3, 0.1, 0.2, 0.0, 0.2], [0.0, 1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    assert_close(sub.mass_inside(maps, mask), torch.tensor([0.625, 0.25], dtype=torch.float64),
                 what="mass_inside of two maps summing to 0.8 and 4 (sum inside / sum of the whole map)",
                 atol=1e-9, rtol=0)  # float64


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_metrics_high_norm_ratio_and_median(sub):
    """Token norms [1, 1, 1, 3, 5] (median 1): ratio 2 flags the 3 and the 5, ratio 4 only the 5; per image."""
    norms = torch.tensor([[1.0, 1.0, 1.0, 3.0, 5.0], [50.0, 10.0, 30.0, 10.0, 10.0]])  # image 1: ten times larger
    directions = F.normalize(randn(2, 5, 3, seed=6, dtype=torch.float32), dim=-1)
    tokens = directions * norms.unsqueeze(-1)
    for ratio, flagged in ((2.0, [[3, 4], [0, 2]]), (4.0, [[4], [0]])):
        got = sub.high_norm_tokens(tokens, ratio=ratio)
        assert_shape(got, (2, 5), what="high_norm_tokens of [2, 5, 3] tokens")
        found = [row.nonzero().flatten().tolist() for row in got]
        assert found == flagged, (f"with ratio={ratio}, expected the tokens {flagged} (norm > ratio * the median "
                                  f"norm of the same image; the medians are 1 and 10), got {found}: use ratio, "
                                  "the median (not the mean) and one median per image")


# -- features ---------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_features_shape(sub):
    """extract_features with two layers concatenates two D-vectors per image: [B, 2 D]."""
    model = sub.ViT(img_size=8, patch_size=2, in_chans=1, num_classes=0, embed_dim=16, depth=3, num_heads=2)
    assert_shape(sub.extract_features(model, randn(4, 1, 8, 8, seed=0), [0, -1], "cls"), (4, 32),
                 what="extract_features output for layers [0, -1]")


def small_vit(sub, depth=3):
    torch.manual_seed(2)
    return sub.ViT(img_size=8, patch_size=4, in_chans=1, num_classes=0, embed_dim=16, depth=depth,
                   num_heads=2).double().eval()


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_features_last_layer_is_forward_features(sub):
    """layers=[-1] gives the model's forward_features (final norm included): its class token, or its patch mean."""
    model = small_vit(sub)
    x = randn(3, 1, 8, 8, seed=7, dtype=torch.float64)
    tokens = model.forward_features(x)  # norm(blocks(embed(x))), [3, 5, 16]
    # float64, the same operations: valid implementations agree to ~1e-15.
    assert_close(sub.extract_features(model, x, [-1], "cls"), tokens[:, 0], atol=1e-9, rtol=0,
                 what="extract_features(model, x, [-1], 'cls') against model.forward_features(x)[:, 0] (the last "
                      "block's output, after model.norm)")
    assert_close(sub.extract_features(model, x, [-1], "avg"), tokens[:, 1:].mean(dim=1), atol=1e-9, rtol=0,
                 what="extract_features(model, x, [-1], 'avg') against the mean of forward_features' patch tokens "
                      "(pool='avg' averages the tokens after the class token)")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_features_layers_in_the_order_given(sub):
    """layers=[0, -1] and [-1, 0] concatenate block 0's and the last block's normed class tokens in that order."""
    model = small_vit(sub)
    x = randn(2, 1, 8, 8, seed=8, dtype=torch.float64)
    first = model.norm(model.blocks[0](model.embed(x)))[:, 0]   # block 0's output, normed
    last = model.forward_features(x)[:, 0]
    # float64, the same operations: valid implementations agree to ~1e-15.
    assert_close(sub.extract_features(model, x, [0, -1], "cls"), torch.cat([first, last], dim=-1), atol=1e-9,
                 rtol=0, what="extract_features(model, x, [0, -1], 'cls'): model.norm of block 0's output, then of "
                              "the last block's (block i's output, not its input)")
    assert_close(sub.extract_features(model, x, [-1, 0], "cls"), torch.cat([last, first], dim=-1), atol=1e-9,
                 rtol=0, what="extract_features(model, x, [-1, 0], 'cls') (the order given)")


@pytest.mark.points(1)
@pytest.mark.kind("grad")
def test_features_are_frozen(sub):
    """extract_features builds no autograd graph: no gradient reaches the images."""
    model = small_vit(sub, depth=2)
    grads = sub.vjp(sub.extract_features, model, randn(2, 1, 8, 8, seed=9, dtype=torch.float64), [-1], "cls",
                    cotangents=torch.ones(2, 16, dtype=torch.float64)).inputs
    assert not grads or grads[0] is None, ("a gradient flows from your features back to the images: frozen "
                                           "features are computed under torch.no_grad()")


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


def probe_data():
    """20 samples, 4 features of different scales, 3 classes of unequal frequencies."""
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 0, 1, 0, 2, 0, 1, 0])
    features = randn(20, 4, seed=3, dtype=torch.float64)
    features[:, :3] += 2.0 * F.one_hot(labels, 3).double()
    return features * torch.tensor([0.2, 1.0, 3.0, 1.0], dtype=torch.float64), labels


def objective(weight, bias, features, labels, C):
    """mean cross-entropy + |W|^2 / (2 C n), written out."""
    logits = features @ weight.T + bias
    cross_entropy = (logits.logsumexp(dim=-1) - logits.gather(1, labels[:, None])[:, 0]).mean()
    return cross_entropy + (weight ** 2).sum() / (2 * C * len(features))


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_linear_probe_loss_with_weights(sub):
    """probe_loss = mean cross-entropy + |W|^2 / (2 C n), the bias unpenalised (C = 0.25, n = 4, nonzero bias)."""
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    bias = torch.tensor([0.5, -0.5, 1.0], dtype=torch.float64)
    features = torch.tensor([[1.0, 2.0], [0.0, -1.0], [2.0, 0.5], [-1.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([1, 0, 2, 2])
    expected = objective(weight, bias, features, labels, 0.25)  # penalty 4 / (2 * 0.25 * 4) = 2
    got = sub.probe_loss(weight, bias, features, labels, C=0.25)
    # float64: the same sums in other orders agree to ~1e-15.
    assert_close(got, expected, atol=1e-9, rtol=0,
                 what=f"probe_loss with C=0.25 on 4 samples (mean cross-entropy {float(expected) - 2:.4f} + penalty "
                      "|W|^2 / (2 C n) = 2; the bias is not penalised)")


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_linear_probe_shapes_follow_num_classes(sub):
    """train_linear_probe returns weight [K, D] and bias [K] for K = num_classes, even if some classes are absent."""
    features, labels = probe_data()
    weight, bias = sub.train_linear_probe(features, labels, 5, C=1.0, max_iter=5)
    assert_shape(weight, (5, 4), what="the weight for num_classes=5 and 4 features (labels 0..2 only: use "
                                      "num_classes, not the labels)")
    assert_shape(bias, (5,), what="the bias for num_classes=5")


@pytest.mark.points(1)
@pytest.mark.kind("convergence")
def test_linear_probe_reaches_the_optimum_for_C(sub):
    """With C = 0.1 the probe is stationary: the objective's gradient vanishes at the returned weight and bias."""
    features, labels = probe_data()
    weight, bias = sub.train_linear_probe(features, labels, 3, C=0.1, max_iter=100)
    assert_shape(weight, (3, 4), what="the probe's weight")
    weight, bias = weight.double().requires_grad_(True), bias.double().requires_grad_(True)
    grad_w, grad_b = torch.autograd.grad(objective(weight, bias, features, labels, 0.1), [weight, bias])
    worst = max(float(grad_w.abs().max()), float(grad_b.abs().max()))
    # Measured: L-BFGS with or without line search, torch's default tolerances or not, reaches < 1e-5; a loop of
    # LBFGS(max_iter=1) steps 1e-2; a probe trained with C = 1 instead leaves ~0.4.
    assert worst < 0.05, (f"the gradient of mean CE + |W|^2 / (2 C n) with C=0.1 is {worst:.3g} at the weights your "
                          "train_linear_probe returns, not ~0: pass C on to probe_loss and minimise it to convergence")


@pytest.mark.points(1)
@pytest.mark.kind("convergence")
def test_linear_probe_max_iter_limits_training(sub):
    """max_iter=2 L-BFGS iterations stop well short of the optimum that max_iter=100 reaches."""
    features, labels = probe_data()
    loss = {}
    for max_iter in (2, 100):
        weight, bias = sub.train_linear_probe(features, labels, 3, C=1.0, max_iter=max_iter)
        loss[max_iter] = float(objective(weight.double(), bias.double(), features, labels, 1.0))
    # Measured for L-BFGS variants (with or without line search, one step(max_iter) or a loop of max_iter steps):
    # 2 iterations leave the objective 0.48-0.55 above what 100 reach (at zero it is 0.75 above).
    assert loss[2] - loss[100] > 0.05, (
        f"your probe's objective is {loss[2]:.4f} after max_iter=2 and {loss[100]:.4f} after max_iter=100: "
        "train_linear_probe should run at most max_iter L-BFGS iterations (torch.optim.LBFGS(..., max_iter=max_iter))")


# -- knn --------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_knn_vote_simple(sub):
    """Two neighbours of class 1 with similarities 0.8 and 0.7 (k=2, T=1): scores [0, e^0.8 + e^0.7]."""
    similarity = torch.tensor([[0.1, 0.8, 0.7]], dtype=torch.float64)
    scores = sub.knn_vote(similarity, torch.tensor([0, 1, 1]), 2, k=2, temperature=1.0)
    expected = torch.tensor([[0.0, math.exp(0.8) + math.exp(0.7)]], dtype=torch.float64)
    assert_close(scores, expected, what="knn_vote scores", atol=1e-9, rtol=1e-9)  # float64


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_knn_vote_temperature_and_classes(sub):
    """k=2, T=0.5, num_classes=4 (class 3 absent): each of the two nearest adds exp(s / T) to its class."""
    similarity = torch.tensor([[0.9, 0.3, 0.5], [0.2, 0.7, 0.1]], dtype=torch.float64)
    labels = torch.tensor([2, 0, 2])
    e = math.exp
    expected = torch.tensor([[0.0, 0.0, e(1.8) + e(1.0), 0.0], [e(1.4), 0.0, e(0.4), 0.0]], dtype=torch.float64)
    assert_close(sub.knn_vote(similarity, labels, 4, k=2, temperature=0.5), expected, atol=1e-9, rtol=1e-9,
                 what="knn_vote scores with k=2, temperature=0.5 (weights exp(s / T)) and num_classes=4 "
                      "(one column per class, absent classes included)")  # float64


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_knn_classify_uses_cosine_similarity(sub):
    """knn_classify on 2-D features of different lengths (k=2, T=0.5, 4 classes): votes use cosine similarities."""
    train = torch.tensor([[2.0, 0.0], [0.0, 3.0], [3.0, 3.0], [-1.0, 0.0], [0.0, -2.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1])
    test = torch.tensor([[1.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    # Cosines of test 0: [1, 0, 1/sqrt(2), -1, 0]; of test 1: [0, 1, 1/sqrt(2), 0, -1]; the top 2 are 1 and 1/sqrt(2).
    e, w = math.exp, math.exp(math.sqrt(2))  # exp((1 / sqrt(2)) / 0.5)
    expected = torch.tensor([[e(2.0), 0.0, w, 0.0], [0.0, e(2.0), w, 0.0]], dtype=torch.float64)
    got = sub.knn_classify(train, labels, test, 4, k=2, temperature=0.5)
    assert_close(got, expected, atol=1e-9, rtol=1e-9,
                 what="knn_classify scores (k=2, temperature=0.5, num_classes=4; L2-normalise the features first so "
                      "that similarities are cosines, and pass k and temperature on to knn_vote)")  # float64


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_knn_leave_one_out_never_votes_for_itself(sub):
    """Four samples, k=1, T=0.5, 3 classes: each is scored by its nearest *other* sample."""
    features = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    # Cosines: (0, 1) = 2/sqrt(5), (1, 2) = 1/sqrt(5), (0, 2) = (2, 3) = 0, (0, 3) = -1, (1, 3) = -2/sqrt(5).
    # Nearest other: 0 -> 1 (class 0), 1 -> 0 (class 0), 2 -> 1 (class 0), 3 -> 2 (class 1).
    e, s5 = math.exp, math.sqrt(5)
    expected = torch.tensor([[e(4 / s5), 0.0, 0.0], [e(4 / s5), 0.0, 0.0], [e(2 / s5), 0.0, 0.0], [0.0, 1.0, 0.0]],
                            dtype=torch.float64)
    got = sub.knn_leave_one_out(features, labels, 3, k=1, temperature=0.5)
    self_votes = e(1 / 0.5) * F.one_hot(labels, 3).double()  # what each sample's own vote would give
    if got.shape == expected.shape and torch.allclose(got, self_votes, rtol=1e-6):
        raise AssertionError("every sample voted for itself (similarity 1, score e^(1/T)): set the diagonal of the "
                             "similarity matrix to -inf before knn_vote")
    assert_close(got, expected, atol=1e-9, rtol=1e-9,
                 what="knn_leave_one_out scores (k=1, temperature=0.5, num_classes=3; a sample never votes for "
                      "itself)")  # float64
