"""m1w03 public self-checks: run them in the notebook with `check("m1w03")` or `check("m1w03", "<part>")`.

Parts: patchify, masking, mae_loss, encoder, decoder, autoencoder, simmim_loss, simmim_model, train.
These check shapes, names, small hand-computed cases and the properties the notebook states; the
hidden suite that grades the notebook checks much more.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder.kit import assert_close, assert_shape
from autograder.kit.seeding import generator

pytestmark = [pytest.mark.visibility("visible")]


def randn(*shape, seed, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def noise_for(batch, L, seed):
    return torch.rand(batch, L, generator=generator(seed))


def patches_of(imgs, p):
    """The notebook's patch layout, written as a loop: patches in row-major grid order, and
    inside a patch the pixels row by row with the channels of each pixel together."""
    B, C, H, W = imgs.shape
    out = []
    for row in range(H // p):
        for col in range(W // p):
            block = imgs[:, :, row * p:(row + 1) * p, col * p:(col + 1) * p]  # [B, C, p, p]
            out.append(block.permute(0, 2, 3, 1).reshape(B, p * p * C))
    return torch.stack(out, 1)


def reseed_weights(model, seed, scale=0.5):
    """Give a model the test's own weights (every float tensor of its state dict, by sorted name),
    so that what it computes does not depend on how the notebook initialises it."""
    state = model.state_dict()
    g = generator(seed)
    for name in sorted(state):
        if state[name].is_floating_point():
            state[name] = torch.randn(state[name].shape, generator=g) * scale
    model.load_state_dict(state)
    return state


def silence_residual_branches(model, seed):
    """Seeded weights, then the output projections of every block's attention and MLP set to zero:
    a pre-norm block z + attn(norm1(z)), then + mlp(norm2(z)), is then exactly the identity."""
    state = reseed_weights(model, seed)
    for name in state:
        if ".attn.proj." in name or ".mlp.fc2." in name:
            state[name] = torch.zeros_like(state[name])
    model.load_state_dict(state)
    return state


def layer_norm(x, state, prefix):
    return F.layer_norm(x, x.shape[-1:], state[prefix + "weight"], state[prefix + "bias"], eps=1e-6)


def masks_from_generators(draw):
    """`draw(generator)` three times: seed 7 under global seed 1, seed 7 under global seed 2, seed 8."""
    out = []
    for global_seed, seed in ((1, 7), (2, 7), (1, 8)):
        torch.manual_seed(global_seed)
        out.append(draw(generator(seed)))
    return out


def assert_generator_decides(masks, what):
    same_seed, other_global, other_seed = masks
    assert torch.equal(same_seed, other_global), (
        f"{what} drew different masks from two generators with the same seed (only torch's global random state "
        "differed): draw the noise from the `generator` argument (torch.rand(B, L, generator=generator)) and pass "
        "the generator on to random_masking")
    assert not torch.equal(same_seed, other_seed), (
        f"{what} drew the same masks from generators seeded 7 and 8: the masks should come from the generator")


# Ranks of the noise used below: noise [0.3, 0.9, 0.1, 0.6] keeps, at ratio 0.5, tokens 2 then 0
# (increasing noise), and masks tokens 1 and 3.
NOISE4 = torch.tensor([[0.3, 0.9, 0.1, 0.6]])
KEEP4 = [2, 0]
MASK4 = torch.tensor([[0.0, 1.0, 0.0, 1.0]])


# -- patchify ---------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_patchify_shapes_and_round_trip(sub):
    """patchify turns [2, 3, 8, 8] into [2, 16, 12] with 2x2 patches, and unpatchify gives the image back."""
    x = randn(2, 3, 8, 8, seed=0)
    patches = sub.patchify(x, 2)
    assert_shape(patches, (2, 16, 12), what="patchify output")
    assert_close(sub.unpatchify(patches, 2), x, what="unpatchify(patchify(x))", atol=0, rtol=0)  # exact


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_patchify_first_patch(sub):
    """The first patch of a numbered 1-channel 4x4 image is its top-left 2x2 block, row by row: [0, 1, 4, 5]."""
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert_close(sub.patchify(x, 2)[0, 0], torch.tensor([0.0, 1.0, 4.0, 5.0]), what="patch 0", atol=0, rtol=0)  # exact


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_patchify_channels_last(sub):
    """With 2 channels the channels of a pixel sit together: patch 0 is [0, 16, 1, 17, 4, 20, 5, 21]."""
    x = torch.arange(32.0).reshape(1, 2, 4, 4)  # channel 1 holds 16..31
    got = sub.patchify(x, 2)
    assert_shape(got, (1, 4, 8), what="patchify of a [1, 2, 4, 4] image with p=2")
    want = torch.tensor([[0.0, 16, 1, 17, 4, 20, 5, 21], [2, 18, 3, 19, 6, 22, 7, 23]])
    if torch.equal(got[0, 0], torch.tensor([0.0, 1, 4, 5, 16, 17, 20, 21])):
        raise AssertionError("patchify lists the patch channel by channel ([0, 1, 4, 5, 16, 17, 20, 21]); the "
                             "contract puts the C values of each pixel together: [0, 16, 1, 17, 4, 20, 5, 21] "
                             "(permute to [B, h, w, p, q, C] before flattening)")
    assert_close(got[0, :2], want, what="patches 0 and 1 of a numbered 2-channel image", atol=0, rtol=0)  # exact
    assert_close(sub.unpatchify(got, 2), x, what="unpatchify(patchify(x)) with 2 channels", atol=0, rtol=0)  # exact


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_patchify_uses_patch_size(sub):
    """patch_size=4 cuts an 8x8 image into 4 patches of 16 pixels, and unpatchify(., 4) undoes it."""
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    got = sub.patchify(x, 4)
    assert_shape(got, (1, 4, 16), what="patchify(x, 4) of a [1, 1, 8, 8] image")
    top_right = x[0, 0, :4, 4:].reshape(16)
    assert_close(got[0, 1], top_right, what="patch 1 with patch_size=4 (the top-right 4x4 block, row by row)",
                 atol=0, rtol=0)  # a rearrangement: exact
    y = randn(2, 3, 8, 8, seed=4)  # unpatchify is a rearrangement too: exact below
    assert_close(sub.unpatchify(patches_of(y, 4), 4), y, atol=0, rtol=0,
                 what="unpatchify(patches, 4) of [2, 4, 48] patches (it should use its patch_size argument)")
    assert_close(sub.unpatchify(patches_of(y, 1), 1), y, atol=0, rtol=0,
                 what="unpatchify(patches, 1) of [2, 64, 3] patches")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_patchify_wide_image_row_major(sub):
    """A 4x8 image gives 8 patches in row-major order: patch 4 is the first block of the second grid row."""
    x = torch.arange(32.0).reshape(1, 1, 4, 8)
    got = sub.patchify(x, 2)
    assert_shape(got, (1, 8, 4), what="patchify of a [1, 1, 4, 8] image with p=2 (a 2x4 grid)")
    assert_close(got, patches_of(x, 2), atol=0, rtol=0,  # exact
                 what="patchify of a numbered 4x8 image (grid of H/p rows and W/p columns, row by row)")


# -- masking ----------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_masking_shapes_and_count(sub):
    """random_masking of [2, 16, 8] tokens at ratio 0.75 keeps 4 per row and masks 12."""
    x_masked, mask, ids_restore = sub.random_masking(randn(2, 16, 8, seed=0), 0.75)
    assert_shape(x_masked, (2, 4, 8), what="x_masked")
    assert_shape(mask, (2, 16), what="mask")
    assert_shape(ids_restore, (2, 16), what="ids_restore")
    assert mask.sum(1).tolist() == [12.0, 12.0], f"each row should mask 12 tokens, not {mask.sum(1).tolist()}"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_masking_keeps_smallest_noise(sub):
    """With noise [0.9, 0.1, 0.5, 0.3] and ratio 0.5, tokens 1 and 3 stay visible: mask [1, 0, 1, 0]."""
    x = torch.arange(4.0).reshape(1, 4, 1)
    x_masked, mask, ids_restore = sub.random_masking(x, 0.5, noise=torch.tensor([[0.9, 0.1, 0.5, 0.3]]))
    assert_close(mask, torch.tensor([[1.0, 0.0, 1.0, 0.0]]), atol=0, rtol=0,  # zeros and ones: exact
                 what="mask (1 = removed, in the tokens' own order: tokens 0 and 2 have the largest noise)")
    assert sorted(x_masked.flatten().tolist()) == [1.0, 3.0], \
        f"x_masked should hold tokens 1 and 3, not {x_masked.flatten().tolist()}"
    restored = torch.cat([x_masked, torch.zeros(1, 2, 1)], 1).gather(1, ids_restore.unsqueeze(-1))
    assert_close(restored.flatten(), torch.tensor([0.0, 1.0, 0.0, 3.0]), atol=0, rtol=0,  # a selection: exact
                 what="cat([x_masked, zeros]) gathered with ids_restore")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_masking_len_keep_rounds_down(sub):
    """Ratio 0.25 of 10 tokens keeps int(10 * 0.75) = 7 (rounded down, not to 8)."""
    x_masked, mask, _ = sub.random_masking(randn(3, 10, 2, seed=1), 0.25, noise=noise_for(3, 10, 2))
    assert_shape(x_masked, (3, 7, 2), what="x_masked at ratio 0.25 of 10 tokens (len_keep = int(10 * 0.75) = 7)")
    assert mask.sum(1).tolist() == [3.0, 3.0, 3.0], \
        f"each row should mask 10 - 7 = 3 tokens at ratio 0.25, not {mask.sum(1).tolist()}"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_masking_follows_the_noise_of_each_row(sub):
    """With given noise, each row keeps its own smallest-noise tokens in increasing order, and ids_restore undoes it."""
    B, L, D = 3, 8, 2
    x = randn(B, L, D, seed=5)
    noise = noise_for(B, L, 6)
    x_masked, mask, ids_restore = sub.random_masking(x, 0.5, noise=noise)
    order = noise.argsort(1)
    want = torch.stack([x[b, order[b, :4]] for b in range(B)])
    assert_close(x_masked, want, atol=0, rtol=0,  # a selection: exact
                 what="x_masked (row b: the tokens of x[b] with the 4 smallest noise values, smallest first)")
    want_mask = torch.ones(B, L)
    for b in range(B):
        want_mask[b, order[b, :4]] = 0.0
    assert_close(mask, want_mask, atol=0, rtol=0,  # zeros and ones: exact
                 what="mask (1 = removed, in the tokens' original order)")
    assert mask.dtype == x.dtype, f"mask should have the dtype of x ({x.dtype}), not {mask.dtype}"
    assert ids_restore.dtype == torch.int64, f"ids_restore should be int64, not {ids_restore.dtype}"
    filled = torch.cat([x_masked, torch.zeros(B, L - 4, D)], 1)
    restored = filled.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, D))
    assert_close(restored, x * (1 - want_mask).unsqueeze(-1), atol=0, rtol=0,  # a selection: exact
                 what="cat([x_masked, zeros], 1) gathered with ids_restore (should be x with the masked tokens zeroed)")


@pytest.mark.points(1)
@pytest.mark.kind("grad")
def test_masking_gradients_reach_the_visible_tokens(sub):
    """The gradient of x_masked reaches each visible token of x (from its slot) and none of the masked ones."""
    x = randn(2, 6, 3, seed=7, dtype=torch.float64).requires_grad_(True)
    noise = noise_for(2, 6, 8)
    cot = randn(2, 3, 3, seed=9, dtype=torch.float64)  # weights for x_masked, [B, len_keep, D]
    x_masked = sub.differentiable(sub.random_masking)(x, 0.5, noise=noise)[0]
    # a scalar backward (torch.autograd.grad with explicit cotangents imports sympy: seconds, once)
    if x_masked.requires_grad:
        (x_masked * cot).sum().backward()
    grad = x.grad
    assert grad is not None, ("no gradient reached x through random_masking: select the visible tokens with "
                              "torch.gather or indexing, which pass gradients back (no .detach(), no new tensors)")
    want = torch.zeros(2, 6, 3, dtype=torch.float64)
    order = noise.argsort(1)
    for b in range(2):
        want[b, order[b, :3]] = cot[b]                # slot j of x_masked came from token order[b, j]
    assert_close(grad, want, atol=1e-12, rtol=0,      # float64 copies of the cotangent: exact up to rounding
                 what="the gradient of sum(x_masked * c) with respect to x (c[b, j] at the token in slot j; 0 where masked)")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_masking_draws_from_the_generator_per_sample(sub):
    """Without noise, the generator decides the masks (not torch's global state), and each image gets its own."""
    x = randn(6, 16, 2, seed=0)
    masks = masks_from_generators(lambda g: sub.random_masking(x, 0.5, generator=g)[1])
    assert_generator_decides(masks, "random_masking")
    assert len({tuple(row.tolist()) for row in masks[0]}) > 1, (
        "random_masking gave all 6 images of the batch the same mask: draw one noise value per token of every "
        "image, torch.rand(B, L, generator=generator), not one row for the whole batch")


# -- mae_loss ---------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mae_loss_perfect_prediction_is_zero(sub):
    """mae_loss is 0 when pred equals the target (raw pixels) and positive otherwise."""
    target = randn(2, 5, 4, seed=1)
    mask = torch.tensor([[1.0, 0, 1, 0, 0], [0, 1, 0, 0, 1]])
    zero = float(sub.mae_loss(target.clone(), target, mask, norm_pix_loss=False))
    assert abs(zero) < 1e-12, (f"mae_loss(target, target, mask, norm_pix_loss=False) should be 0, not {zero:.4g}: "
                               "with norm_pix_loss=False the targets are the raw pixels (normalise only when it is True)")
    assert float(sub.mae_loss(target + 1.0, target, mask, norm_pix_loss=False)) > 0.5


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mae_loss_zero_prediction(sub):
    """With normalised targets and pred = 0, a patch of 48 values with variance >> 1e-6 costs 47/48."""
    target = randn(1, 3, 48, seed=2, dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    got = float(sub.mae_loss(torch.zeros_like(target), target, mask, norm_pix_loss=True))
    # s^2 / (s^2 + 1e-6) differs from 1 by ~1e-6 for these patches (variance ~1): 1e-4 covers it
    assert abs(got - 47 / 48) < 1e-4, f"expected about 47/48 = {47 / 48:.5f} (unbiased variance), got {got:.5f}"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mae_loss_hand_computed_masked_mean(sub):
    """Raw pixels off by 1, 2, 3 (image 0) and 4, 5, 6 (image 1), masks [1, 0, 1] and [0, 0, 1]: (1 + 9 + 36) / 3."""
    target = randn(2, 3, 4, seed=3, dtype=torch.float64)
    errors = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    pred = target + errors.unsqueeze(-1)  # every pixel of patch i is off by errors[i]: its MSE is errors[i]**2
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    got = float(sub.mae_loss(pred, target, mask, norm_pix_loss=False))
    want = (1 + 9 + 36) / 3
    assert abs(got - want) < 1e-9, (  # float64 sums of a few squares
        f"mae_loss should average the per-patch MSE over the 3 masked patches of the batch: (1 + 9 + 36) / 3 "
        f"= {want:.6g}, got {got:.6g}" + (" (that is the mean over every patch: weight by the mask and divide by "
                                          "mask.sum())" if abs(got - 91 / 6) < 1e-6 else "")
        + (" (that averages each image first: divide the masked sum of the whole batch by mask.sum())"
           if abs(got - (5 + 36) / 2) < 1e-6 else ""))


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mae_loss_ignores_visible_patches(sub):
    """With normalised targets, errors in visible patches cost nothing: only mask == 1 counts."""
    target = randn(2, 4, 6, seed=4, dtype=torch.float64)
    mask = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    perfect = (target - mean) / (var + 1e-6).sqrt()
    pred = perfect + 10.0 * (1 - mask).unsqueeze(-1)  # wrong only where the patch is visible
    got = float(sub.mae_loss(pred, target, mask, norm_pix_loss=True))
    hint = ("visible patches count: weight the per-patch errors by the mask" if got > 1 else
            "the masked patches' targets differ from (x - mean) / sqrt(var + 1e-6) with torch.var's unbiased variance")
    assert abs(got) < 1e-9, (  # float64; the exact answer is 0
        f"pred equals the normalised targets on every masked patch and is off by 10 on the visible ones, so "
        f"mae_loss should be 0; got {got:.4g}: {hint}")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mae_loss_eps_inside_the_root(sub):
    """A patch whose unbiased variance equals eps = 1e-6 costs exactly (P - 1) / (2P) = 3/8 with pred = 0 (P = 4)."""
    s = math.sqrt(1e-6 * 3 / 4)  # [s, -s, s, -s] has mean 0 and unbiased variance 4 s^2 / 3 = 1e-6
    target = torch.tensor([[[s, -s, s, -s]]], dtype=torch.float64) + 0.5  # a shift changes nothing
    got = float(sub.mae_loss(torch.zeros_like(target), target, torch.ones(1, 1, dtype=torch.float64),
                             norm_pix_loss=True))
    hints = {0.75 * 1e-6 / (1e-3 + 1e-6) ** 2: " (that is what (x - mean) / (std + 1e-6) gives: eps belongs under "
                                              "the square root, (var + 1e-6) ** 0.5)",
             0.75e-6 / 1.75e-6: " (that is what the biased variance gives: use torch.var's default, unbiased)"}
    hint = next((h for v, h in hints.items() if abs(got - v) < 1e-4), "")  # the known wrong values differ by > 0.05
    assert abs(got - 3 / 8) < 1e-6, (  # float64; the formula is exact up to rounding
        f"with s^2 = eps the normalised target is x / sqrt(2 eps) and the loss is (P - 1) / (2P) = 0.375; "
        f"got {got:.6g}{hint}")


# -- encoder ----------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_encoder_shapes(sub):
    """MAEEncoder on [2, 1, 8, 8] with 2x2 patches and ratio 0.75: latent [2, 4, 16], pos_embed [1, 16, 16]."""
    enc = sub.MAEEncoder(img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=1, num_heads=2)
    assert_shape(enc.pos_embed, (1, 16, 16), what="pos_embed")
    assert_shape(enc.patch_embed.weight, (16, 4), what="patch_embed.weight (a Linear from p*p*C to D)")
    latent, mask, ids_restore = enc(randn(2, 1, 8, 8, seed=0), mask_ratio=0.75)
    assert_shape(latent, (2, 4, 16), what="latent (the 4 visible tokens)")
    assert_shape(mask, (2, 16), what="mask")


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_encoder_uses_mask_ratio(sub):
    """MAEEncoder(imgs, mask_ratio=0.5) keeps 8 of 16 patches: latent [2, 8, 16], 8 masked per row."""
    enc = sub.MAEEncoder(img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=1, num_heads=2)
    latent, mask, _ = enc(randn(2, 1, 8, 8, seed=0), mask_ratio=0.5)
    assert_shape(latent, (2, 8, 16), what="latent at mask_ratio=0.5 (pass mask_ratio on to random_masking)")
    assert mask.sum(1).tolist() == [8.0, 8.0], f"mask should have 8 ones per row at ratio 0.5, not {mask.sum(1).tolist()}"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_encoder_visible_tokens_keep_their_positions(sub):
    """With identity blocks, latent = norm(patch_embed(patch_i) + pos_embed[i]) for the kept patches i, in noise order."""
    enc = sub.MAEEncoder(img_size=4, patch_size=2, in_chans=1, embed_dim=4, depth=1, num_heads=2)
    state = silence_residual_branches(enc, seed=11)
    imgs = randn(1, 1, 4, 4, seed=12)
    latent, mask, ids_restore = enc(imgs, mask_ratio=0.5, noise=NOISE4)
    assert_close(mask, MASK4, atol=0, rtol=0, what="the encoder's mask for noise [0.3, 0.9, 0.1, 0.6] at ratio 0.5")
    tokens = patches_of(imgs, 2) @ state["patch_embed.weight"].T + state["patch_embed.bias"] + state["pos_embed"]
    want = layer_norm(tokens[:, KEEP4], state, "norm.")
    # float32 through one Linear and a LayerNorm: rounding is ~1e-6
    try:
        assert_close(latent, want, atol=1e-4, rtol=1e-4, what="latent (kept patches 2 then 0)")
    except AssertionError as exc:
        raise AssertionError(f"{exc}. Expected: embed every patch, add pos_embed for all L positions, then mask "
                             "(so patch 2 keeps pos_embed[2]), then the blocks and norm") from None


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_encoder_depends_on_the_positions_of_visible_patches_only(sub):
    """Changing pos_embed at the masked patches leaves the latent alone; changing it at a visible patch does not."""
    enc = sub.MAEEncoder(img_size=8, patch_size=2, in_chans=1, embed_dim=8, depth=1, num_heads=2)
    state = reseed_weights(enc, seed=16)
    imgs, noise = randn(1, 1, 8, 8, seed=19), noise_for(1, 16, 17)
    before = enc(imgs, mask_ratio=0.75, noise=noise)[0]
    order = noise.argsort(1)[0]
    visible, masked = sorted(order[:4].tolist()), sorted(order[4:].tolist())
    for rows, should_change in ((masked, False), (visible[:1], True)):
        changed = {**state, "pos_embed": state["pos_embed"].clone()}
        changed["pos_embed"][0, rows] += 3.0 * randn(len(rows), 8, seed=20)  # not a constant: LayerNorm ignores those
        enc.load_state_dict(changed)
        diff = float((enc(imgs, mask_ratio=0.75, noise=noise)[0] - before).abs().max())
        if should_change:
            assert diff > 1e-3, (  # a change of size 3 moves the latent by order 1
                f"changing pos_embed at visible patch {rows[0]} did not change the latent: add pos_embed[i] to the "
                "embedding of patch i before random_masking, so each kept token carries its own position")
        else:
            assert diff < 1e-6, (  # those rows should not enter the computation at all; float32 rounding only
                f"changing pos_embed at the masked patches {masked} changed the latent by {diff:.3g} (the visible "
                f"patches are {visible}): add pos_embed to all L patch embeddings before random_masking, so that "
                "each kept token keeps the position of its own patch")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_encoder_num_heads_matters(sub):
    """The same weights in MAEEncoder(num_heads=1) and MAEEncoder(num_heads=2) give different latents."""
    kw = dict(img_size=4, patch_size=2, in_chans=1, embed_dim=8, depth=1)
    one, two = sub.MAEEncoder(num_heads=1, **kw), sub.MAEEncoder(num_heads=2, **kw)
    reseed_weights(one, seed=13)
    reseed_weights(two, seed=13)
    imgs = randn(2, 1, 4, 4, seed=14)
    a = one(imgs, mask_ratio=0.0, noise=noise_for(2, 4, 15))[0]
    b = two(imgs, mask_ratio=0.0, noise=noise_for(2, 4, 15))[0]
    assert_shape(a, (2, 4, 8), what="MAEEncoder's latent at mask_ratio=0.0 (every patch stays)")
    diff = float((a - b).abs().max())
    assert diff > 1e-3, (  # these weights give a difference of about 0.09 (the heads split D differently)
        f"MAEEncoder gave the same latent with num_heads=1 and num_heads=2 (largest difference {diff:.2g}): "
        "build its Blocks with num_heads")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_encoder_draws_masks_from_the_generator(sub):
    """MAEEncoder without noise draws its mask from the generator it is given."""
    enc = sub.MAEEncoder(img_size=8, patch_size=2, in_chans=1, embed_dim=8, depth=1, num_heads=2)
    imgs = randn(3, 1, 8, 8, seed=0)
    assert_generator_decides(masks_from_generators(lambda g: enc(imgs, mask_ratio=0.5, generator=g)[1]),
                             "MAEEncoder")


# -- decoder ----------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_decoder_shapes(sub):
    """MAEDecoder maps latent [2, 4, 16] and ids_restore [2, 16] to predictions [2, 16, 4]."""
    dec = sub.MAEDecoder(num_patches=16, patch_size=2, in_chans=1, embed_dim=16, decoder_embed_dim=8,
                         decoder_depth=1, decoder_num_heads=2)
    assert_shape(dec.mask_token, (1, 1, 8), what="mask_token")
    assert_shape(dec.pos_embed, (1, 16, 8), what="the decoder's pos_embed")
    ids_restore = noise_for(2, 16, 1).argsort(1).argsort(1)
    assert_shape(dec(randn(2, 4, 16, seed=0), ids_restore), (2, 16, 4), what="the decoder's output")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_decoder_unshuffles_then_adds_positions(sub):
    """With identity blocks, pred[i] = pred(norm(token_i + pos_embed[i])), token_i = embed(its latent) or mask_token."""
    dec = sub.MAEDecoder(num_patches=4, patch_size=1, in_chans=2, embed_dim=3, decoder_embed_dim=4,
                         decoder_depth=1, decoder_num_heads=2)
    state = silence_residual_branches(dec, seed=21)
    latent = randn(1, 2, 3, seed=22)                   # the encoded patches 2 and 0, in that order
    ids_restore = NOISE4.argsort(1).argsort(1)          # [[1, 3, 0, 2]]
    got = dec(latent, ids_restore)
    embedded = latent @ state["embed.weight"].T + state["embed.bias"]
    tokens = state["mask_token"].expand(1, 4, 4).clone()
    tokens[:, KEEP4] = embedded                         # patch 2 <- latent 0, patch 0 <- latent 1
    want = layer_norm(tokens + state["pos_embed"], state, "norm.") @ state["pred.weight"].T + state["pred.bias"]
    assert_shape(got, (1, 4, 2), what="the decoder's output")
    if torch.allclose(got[0, 1], got[0, 3], atol=1e-6):  # identical up to rounding: no position told them apart
        raise AssertionError("the decoder predicts the same pixels for the two masked patches 1 and 3: add the "
                             "decoder's pos_embed after unshuffling, so that each mask token knows its position")
    try:  # float32 through two Linears and a LayerNorm: rounding is ~1e-6
        assert_close(got, want, atol=1e-4, rtol=1e-4, what="the decoder's output (patches 0..3)")
    except AssertionError as exc:
        raise AssertionError(f"{exc}. Expected: embed the latent, append the mask tokens after it, gather with "
                             "ids_restore, add pos_embed, then blocks, norm and pred") from None


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_decoder_num_heads_matters(sub):
    """The same weights in MAEDecoder(decoder_num_heads=1) and (=2) give different predictions."""
    kw = dict(num_patches=4, patch_size=1, in_chans=1, embed_dim=4, decoder_embed_dim=8, decoder_depth=1)
    one, two = sub.MAEDecoder(decoder_num_heads=1, **kw), sub.MAEDecoder(decoder_num_heads=2, **kw)
    reseed_weights(one, seed=23)
    reseed_weights(two, seed=23)
    latent, ids_restore = randn(2, 2, 4, seed=24), noise_for(2, 4, 25).argsort(1).argsort(1)
    diff = float((one(latent, ids_restore) - two(latent, ids_restore)).abs().max())
    assert diff > 1e-3, (  # these weights give a difference of about 0.1 (the heads split D differently)
        f"MAEDecoder gave the same output with decoder_num_heads=1 and 2 (largest difference {diff:.2g}): "
        "build its Blocks with decoder_num_heads, and run them in forward")


# -- autoencoder ------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_autoencoder_shapes(sub):
    """MaskedAutoencoder returns a finite scalar loss, pred [2, 16, 4] and mask [2, 16]."""
    model = sub.MaskedAutoencoder(img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=1, num_heads=2,
                                  decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)
    loss, pred, mask = model(randn(2, 1, 8, 8, seed=0), mask_ratio=0.75)
    assert_shape(loss, (), what="the loss")
    assert math.isfinite(float(loss)), "the loss is not finite"
    assert_shape(pred, (2, 16, 4), what="pred")
    assert_shape(mask, (2, 16), what="mask")


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_autoencoder_depths(sub):
    """MaskedAutoencoder(depth=3, decoder_depth=2) has blocks 0..2 in its encoder and 0..1 in its decoder."""
    model = sub.MaskedAutoencoder(img_size=4, patch_size=2, in_chans=1, embed_dim=8, depth=3, num_heads=2,
                                  decoder_embed_dim=8, decoder_depth=2, decoder_num_heads=2)
    names = list(model.state_dict())
    for part, arg, count in (("encoder", "depth", 3), ("decoder", "decoder_depth", 2)):
        found = sorted({int(n.split(".")[2]) for n in names if n.startswith(f"{part}.blocks.")})
        assert found == list(range(count)), (
            f"MaskedAutoencoder({arg}={count}) should have {count} blocks in its {part} ({part}.blocks.0 .. "
            f"{count - 1}), but its state dict has {part}.blocks {found}: pass {arg} on to the {part}")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_autoencoder_mask_follows_noise_and_ratio(sub):
    """MaskedAutoencoder(imgs, mask_ratio=0.5, noise=...) masks exactly the 8 patches with the largest noise."""
    model = sub.MaskedAutoencoder(img_size=8, patch_size=2, in_chans=1, embed_dim=8, depth=1, num_heads=2,
                                  decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)
    noise = noise_for(2, 16, 31)
    _, pred, mask = model(randn(2, 1, 8, 8, seed=32), mask_ratio=0.5, noise=noise)
    want = (noise.argsort(1).argsort(1) >= 8).float()
    assert_shape(pred, (2, 16, 4), what="pred")
    assert_close(mask, want, atol=0, rtol=0,
                 what="the mask at mask_ratio=0.5 (pass mask_ratio and noise on to the encoder)")


@pytest.mark.points(1)
@pytest.mark.kind("value")
@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_autoencoder_loss_is_mae_loss_of_its_outputs(sub, norm_pix_loss):
    """The returned loss is the masked MSE of pred against patchify(imgs), normalised or not as norm_pix_loss says."""
    model = sub.MaskedAutoencoder(img_size=4, patch_size=2, in_chans=2, embed_dim=8, depth=1, num_heads=2,
                                  decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2,
                                  norm_pix_loss=norm_pix_loss)
    imgs = randn(2, 2, 4, 4, seed=33)
    loss, pred, mask = model(imgs, mask_ratio=0.5, noise=noise_for(2, 4, 34))
    raw = patches_of(imgs, 2)
    normalised = (raw - raw.mean(-1, keepdim=True)) / (raw.var(-1, keepdim=True) + 1e-6).sqrt()
    want, other = [float((((pred - t) ** 2).mean(-1) * mask).sum() / mask.sum())
                   for t in ((normalised, raw) if norm_pix_loss else (raw, normalised))]
    close = lambda a, b: abs(a - b) < 1e-5 * max(1.0, abs(b))  # float32 sums of a few terms
    hint = (f"that is the loss with norm_pix_loss={not norm_pix_loss}: pass self.norm_pix_loss on to mae_loss"
            if close(float(loss), other) else "compare pred with patchify(imgs), on the masked patches")
    assert close(float(loss), want), (
        f"MaskedAutoencoder(norm_pix_loss={norm_pix_loss}) returned loss {float(loss):.6g}, but the masked MSE of its "
        f"own pred against patchify(imgs) is {want:.6g}; {hint}")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_autoencoder_draws_masks_from_the_generator(sub):
    """MaskedAutoencoder without noise draws its mask from the generator it is given."""
    model = sub.MaskedAutoencoder(img_size=8, patch_size=2, in_chans=1, embed_dim=8, depth=1, num_heads=2,
                                  decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)
    imgs = randn(3, 1, 8, 8, seed=0)
    assert_generator_decides(masks_from_generators(lambda g: model(imgs, mask_ratio=0.5, generator=g)[2]),
                             "MaskedAutoencoder")


# -- simmim_loss ------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_simmim_loss_counts_masked_pixels_only(sub):
    """simmim_loss is 0 when the masked pixels are right (whatever the visible ones) and 1 when all are off by 1."""
    imgs = randn(1, 1, 4, 4, seed=0)
    mask = torch.tensor([[1.0, 0.0, 0.0, 0.0]])            # the top-left 2x2 block
    pred = imgs.clone()
    pred[..., 2:, :] += 5.0                                  # errors only in visible pixels
    visible_only = float(sub.simmim_loss(imgs, pred, mask, 2))
    assert abs(visible_only) < 1e-12, (
        f"pred is wrong only on visible pixels (mask [1, 0, 0, 0] with p=2 covers the top-left 2x2 block), so "
        f"simmim_loss should be 0, not {visible_only:.4g}: only the pixels of masked patches count (enlarge each "
        "mask entry to a p x p block with repeat_interleave)")
    got = float(sub.simmim_loss(imgs, imgs + 1.0, mask, 2))
    assert abs(got - 4 / (4 + 1e-5)) < 1e-6, f"4 masked pixels off by 1 should give 4 / (4 + 1e-5), not {got}"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_simmim_loss_uses_patch_size(sub):
    """With patch_size=4 on 8x8 images, mask [0, 1, 0, 0] covers the top-right 4x4 block, 16 pixels."""
    imgs = randn(1, 1, 8, 8, seed=41, dtype=torch.float64)
    pred = imgs + 7.0                                        # wrong everywhere ...
    pred[..., :4, 4:] = imgs[..., :4, 4:] + 2.0              # ... but off by exactly 2 on the masked block
    got = float(sub.simmim_loss(imgs, pred, torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64), 4))
    want = 2.0 * 16 / (16 + 1e-5)
    assert abs(got - want) < 1e-9, (  # float64 sums of 16 terms
        f"simmim_loss with patch_size=4 should average |error| = 2 over the 16 pixels of the top-right block: "
        f"2 * 16 / (16 + 1e-5) = {want:.8f}; got {got:.8g}. Upsample the [B, 2, 2] patch mask with "
        "repeat_interleave(patch_size) along H and W")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_simmim_loss_averages_over_channels(sub):
    """Two channels off by 1 and 3 on the masked pixels give 2: the sum is divided by the pixel count and by C."""
    imgs = randn(2, 2, 4, 4, seed=42, dtype=torch.float64)
    pred = imgs.clone()
    pred[:, 0] += 1.0
    pred[:, 1] -= 3.0
    mask = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]], dtype=torch.float64)  # 3 patches = 12 pixels
    got = float(sub.simmim_loss(imgs, pred, mask, 2))
    want = (1 + 3) * 12 / (12 + 1e-5) / 2
    assert abs(got - want) < 1e-9, (  # float64
        f"expected (1 + 3) * 12 masked pixels / (12 + 1e-5) / C = {want:.8f}, got {got:.8g} (the sum runs over "
        "the channels too: divide by the number of masked pixel positions plus 1e-5, then by C)")


# -- simmim_model -----------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_simmim_model_shapes(sub):
    """SimMIM returns a finite scalar loss, pred [2, 16, 4] for every patch, and mask [2, 16]."""
    model = sub.SimMIM(img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=1, num_heads=2)
    assert_shape(model.mask_token, (1, 1, 16), what="mask_token")
    loss, pred, mask = model(randn(2, 1, 8, 8, seed=0), mask_ratio=0.6)
    assert_shape(loss, (), what="the loss")
    assert math.isfinite(float(loss)), "the loss is not finite"
    assert_shape(pred, (2, 16, 4), what="pred")
    assert_shape(mask, (2, 16), what="mask")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_simmim_model_mask_follows_noise_and_ratio(sub):
    """SimMIM(imgs, mask_ratio=0.25, noise=...) masks exactly the 4 patches with the largest noise."""
    model = sub.SimMIM(img_size=8, patch_size=2, in_chans=1, embed_dim=8, depth=1, num_heads=2)
    noise = noise_for(2, 16, 51)
    _, _, mask = model(randn(2, 1, 8, 8, seed=52), mask_ratio=0.25, noise=noise)
    want = (noise.argsort(1).argsort(1) >= 12).float()
    assert_close(mask, want, atol=0, rtol=0,
                 what="SimMIM's mask at mask_ratio=0.25 (pass mask_ratio and noise on to random_masking)")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_simmim_model_mask_token_then_positions(sub):
    """With identity blocks, pred[i] = head(norm(e_i + pos_embed[i])), e_i = mask_token where masked; loss = L1 there."""
    model = sub.SimMIM(img_size=4, patch_size=2, in_chans=1, embed_dim=4, depth=1, num_heads=2)
    state = silence_residual_branches(model, seed=53)
    imgs = randn(1, 1, 4, 4, seed=54)
    loss, pred, mask = model(imgs, mask_ratio=0.5, noise=NOISE4)
    assert_close(mask, MASK4, atol=0, rtol=0, what="SimMIM's mask for noise [0.3, 0.9, 0.1, 0.6] at ratio 0.5")
    patches = patches_of(imgs, 2)
    tokens = patches @ state["patch_embed.weight"].T + state["patch_embed.bias"]
    tokens = torch.where(MASK4.bool().unsqueeze(-1), state["mask_token"], tokens)
    want = layer_norm(tokens + state["pos_embed"], state, "norm.") @ state["head.weight"].T + state["head.bias"]
    if torch.allclose(pred[0, 1], pred[0, 3], atol=1e-6):  # identical up to rounding: no position told them apart
        raise AssertionError("SimMIM predicts the same pixels for the masked patches 1 and 3: replace the masked "
                             "embeddings by mask_token first, then add pos_embed to every token")
    # float32 through two Linears and a LayerNorm: rounding is ~1e-6
    assert_close(pred, want, atol=1e-4, rtol=1e-4, what="SimMIM's pred (every patch)")
    want_loss = ((patches - want).abs().sum(-1) * MASK4).sum() / (MASK4.sum() * 4 + 1e-5)
    assert abs(float(loss) - float(want_loss)) < 1e-4 * max(1.0, float(want_loss)), (  # float32, as above
        f"SimMIM's loss should be simmim_loss(imgs, unpatchify(pred), mask, p) = {float(want_loss):.6g}, "
        f"got {float(loss):.6g}")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_simmim_model_num_heads_matters(sub):
    """The same weights in SimMIM(num_heads=1) and SimMIM(num_heads=2) give different predictions."""
    kw = dict(img_size=4, patch_size=2, in_chans=1, embed_dim=8, depth=1)
    one, two = sub.SimMIM(num_heads=1, **kw), sub.SimMIM(num_heads=2, **kw)
    reseed_weights(one, seed=55)
    reseed_weights(two, seed=55)
    imgs, noise = randn(2, 1, 4, 4, seed=56), noise_for(2, 4, 57)
    a, b = one(imgs, mask_ratio=0.5, noise=noise)[1], two(imgs, mask_ratio=0.5, noise=noise)[1]
    assert_shape(a, (2, 4, 4), what="SimMIM's pred")
    diff = float((a - b).abs().max())
    assert diff > 1e-3, (  # these weights give a difference of about 0.1 (the heads split D differently)
        f"SimMIM gave the same pred with num_heads=1 and num_heads=2 (largest difference {diff:.2g}): "
        "build its Blocks with num_heads")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_simmim_model_draws_masks_from_the_generator(sub):
    """SimMIM without noise draws its mask from the generator it is given."""
    model = sub.SimMIM(img_size=8, patch_size=2, in_chans=1, embed_dim=8, depth=1, num_heads=2)
    imgs = randn(3, 1, 8, 8, seed=0)
    assert_generator_decides(masks_from_generators(lambda g: model(imgs, mask_ratio=0.5, generator=g)[2]), "SimMIM")


# -- train ------------------------------------------------------------------------------------
class Recorder(nn.Module):
    """A stand-in for a model with train_mim's interface: it records how it is called, draws one
    random number from the generator it gets (as a mask would be drawn), and its loss is
    (g_t * w).sum() with a gradient g_t chosen by the test for the t-th call."""

    def __init__(self, grads):
        super().__init__()
        self.w = nn.Parameter(torch.ones(len(grads[0]), dtype=torch.float64))
        self.grads = [torch.tensor(g, dtype=torch.float64) for g in grads]
        self.calls = []

    def forward(self, imgs, mask_ratio=0.75, noise=None, generator=None):
        draw = float(torch.rand(1, generator=generator))
        self.calls.append(dict(images=imgs[:, 0, 0, 0].tolist(), mask_ratio=mask_ratio, generator=generator,
                               training=self.training, draw=draw, w=self.w.detach().clone()))
        g = self.grads[min(len(self.calls), len(self.grads)) - 1]
        return (g * self.w).sum(), imgs, torch.zeros(imgs.shape[0], 1)


def numbered_images(n):
    return torch.arange(float(n)).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).clone()  # image i is filled with i


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_train_calls_the_model_as_documented(sub):
    """train_mim(steps=3, batch_size=5, mask_ratio=0.3) calls the model 3 times in train mode with those arguments."""
    model = Recorder([[1.0]]).eval()  # train_mim should switch it to train mode itself
    losses = sub.train_mim(model, numbered_images(10), steps=3, lr=0.01, batch_size=5, mask_ratio=0.3,
                           weight_decay=0.0, seed=0)
    assert len(losses) == 3, f"train_mim(steps=3) should return 3 losses, one per step, not {len(losses)}"
    assert all(isinstance(l, float) for l in losses), (
        f"train_mim should return Python floats (loss.item()), not {type(losses[0]).__name__}")
    assert len(model.calls) == 3, f"train_mim(steps=3) should call the model once per step, not {len(model.calls)} times"
    for call in model.calls:
        assert len(call["images"]) == 5, (
            f"train_mim(batch_size=5) passed the model a batch of {len(call['images'])} images: use batch_size")
        assert all(0 <= i < 10 and i == int(i) for i in call["images"]), "the batch should hold images of `images`"
        assert call["mask_ratio"] == 0.3, (
            f"train_mim(mask_ratio=0.3) called the model with mask_ratio={call['mask_ratio']!r}: pass it on")
        assert isinstance(call["generator"], torch.Generator), (
            f"train_mim should pass its seeded torch.Generator to the model (generator=...), not "
            f"{call['generator']!r}, so that the masks come from the seed too")
        assert call["training"], "the model should be in train mode during train_mim (model.train())"
    assert model.training is False, "train_mim should leave the model in eval mode (call model.eval())"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_train_seed_fixes_batches_and_masks(sub):
    """Two runs with seed=4 draw the same batches and masks whatever torch's global state; seed=5 draws others."""
    runs = []
    for global_seed, seed in ((1, 4), (2, 4), (1, 5)):
        torch.manual_seed(global_seed)
        model = Recorder([[1.0]])
        sub.train_mim(model, numbered_images(10), steps=4, lr=0.01, batch_size=6, mask_ratio=0.5,
                      weight_decay=0.0, seed=seed)
        runs.append(([c["images"] for c in model.calls], [c["draw"] for c in model.calls]))
    (batches, draws), (batches2, draws2), (batches3, draws3) = runs
    assert batches == batches2, ("two runs with seed=4 drew different batches: draw the batch indices from "
                                 "the generator made from `seed` (torch.randint(..., generator=generator))")
    assert draws == draws2, ("two runs with seed=4 drew different masks: pass the generator made from `seed` to "
                             "the model (model(batch, mask_ratio=mask_ratio, generator=generator))")
    assert (batches, draws) != (batches3, draws3), (
        "runs with seed=4 and seed=5 drew the same batches and masks: seed the generator with `seed`")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_train_adamw_steps_closed_form(sub):
    """Two AdamW steps with lr=0.1, weight_decay=0.5 and MAE's betas (0.9, 0.95) move w as Adam's formulas say."""
    # Gradients of w = [1, 1, 1]: step 1 g = [1, 0, 1], step 2 g = [0, 0, 1].
    model = Recorder([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    lr, wd, b1, b2, eps = 0.1, 0.5, 0.9, 0.95, 1e-8
    sub.train_mim(model, numbered_images(4), steps=2, lr=lr, batch_size=2, mask_ratio=0.5, weight_decay=wd, seed=0)
    assert len(model.calls) == 2, f"train_mim(steps=2) called the model {len(model.calls)} times"
    decay = 1 - lr * wd  # AdamW shrinks w by (1 - lr * weight_decay) at every step, whatever the gradient
    after1 = torch.tensor([decay - lr / (1 + eps), decay, decay - lr / (1 + eps)], dtype=torch.float64)
    m_hat, v_hat = b1 / (1 + b1), b2 / (1 + b2)  # bias-corrected moments after gradients 1 then 0
    after2 = torch.tensor([decay * after1[0] - lr * m_hat / (math.sqrt(v_hat) + eps), decay ** 2,
                           decay * after1[2] - lr / (1 + eps)], dtype=torch.float64)
    seen = model.calls[1]["w"]
    final = model.w.detach()
    # float64 arithmetic on three numbers; 1e-9 leaves room only for rounding
    if abs(float(seen[1]) - (1 - lr)) < 1e-6:  # a full Adam step, up to eps
        raise AssertionError("the weight whose gradient is 0 moved by a full lr in the first step: that is Adam's "
                             "weight_decay (added to the gradient); use torch.optim.AdamW, whose decay is decoupled")
    moved = float(seen[1] - seen[0])  # the gradient's part of the first step: lr / (1 + eps)
    assert abs(moved - lr) < 1e-6, (  # Adam's eps (1e-8) changes it by 1e-9
        f"Adam's first step moves a weight by lr whatever its gradient; with lr=0.1 yours moved by {moved:.6g}: "
        "pass lr to the optimiser")
    assert abs(float(seen[1]) - decay) < 1e-9, (  # a zero gradient: only the decay, exact up to rounding
        f"after one step the weight whose gradient is 0 should shrink to 1 - lr * weight_decay = {decay}, not "
        f"{float(seen[1]):.6g}: pass weight_decay to AdamW")
    assert_close(seen, after1, atol=1e-9, rtol=0,
                 what="w after the first AdamW step (lr=0.1: Adam's first step moves each weight by lr; "
                      "weight_decay=0.5 shrinks it by 1 - lr * weight_decay)")
    if torch.allclose(final, seen, atol=1e-12):  # unchanged to the last bit: no step was taken
        raise AssertionError("the last step did not change the weights: every one of the `steps` steps should "
                             "call optimizer.step()")
    assert_close(final[1:], after2[1:], atol=1e-9, rtol=0,
                 what="w[1:] after two AdamW steps (zero the gradients before each backward)")
    assert_close(final[:1], after2[:1], atol=1e-9, rtol=0,
                 what="w[0] after gradients 1 then 0 (this one depends on the betas: use betas=(0.9, 0.95))")


@pytest.mark.points(1)
@pytest.mark.kind("convergence")
def test_train_reduces_loss_on_a_tiny_problem(sub):
    """train_mim lowers an MAE's loss on blurry blobs (40 steps) and leaves the model in eval mode."""
    g = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    centres = 2 + 4 * torch.rand(64, 2, generator=g)
    images = torch.exp(-((ys - centres[:, :1, None]) ** 2 + (xs - centres[:, 1:, None]) ** 2) / 4).unsqueeze(1)
    model = sub.MaskedAutoencoder(img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=1, num_heads=2,
                                  decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, norm_pix_loss=False)
    losses = sub.train_mim(model, images, steps=40, lr=3e-3, batch_size=32, mask_ratio=0.5, seed=0)
    assert len(losses) == 40, f"train_mim should return one loss per step (40), got {len(losses)}"
    assert all(math.isfinite(float(l)) for l in losses), "some returned losses are NaN or infinite"
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"the loss should fall: first 5 steps {first:.4f}, last 5 {last:.4f}"
    assert model.training is False, "train_mim should leave the model in eval mode (call model.eval())"
