"""m1w03 public self-checks: run them in the notebook with `check("m1w03")` or `check("m1w03", "<part>")`.

Parts: patchify, masking, mae_loss, encoder, decoder, autoencoder, simmim_loss, simmim_model, train.
These check shapes, names and a few simple values; the hidden suite that grades the notebook
checks much more.
"""

from __future__ import annotations

import math

import pytest
import torch

from autograder.kit import assert_close, assert_shape

pytestmark = [pytest.mark.visibility("visible")]


def randn(*shape, seed, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def noise_for(batch, L, seed):
    return torch.rand(batch, L, generator=torch.Generator().manual_seed(seed))


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
    assert_close(sub.patchify(x, 2)[0, 0], torch.tensor([0.0, 1.0, 4.0, 5.0]), what="patch 0", atol=0, rtol=0)


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
    assert_close(mask, torch.tensor([[1.0, 0.0, 1.0, 0.0]]), what="mask", atol=0, rtol=0)
    assert sorted(x_masked.flatten().tolist()) == [1.0, 3.0], \
        f"x_masked should hold tokens 1 and 3, not {x_masked.flatten().tolist()}"
    restored = torch.cat([x_masked, torch.zeros(1, 2, 1)], 1).gather(1, ids_restore.unsqueeze(-1))
    assert_close(restored.flatten(), torch.tensor([0.0, 1.0, 0.0, 3.0]), atol=0, rtol=0,
                 what="cat([x_masked, zeros]) gathered with ids_restore")


# -- mae_loss ---------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mae_loss_perfect_prediction_is_zero(sub):
    """mae_loss is 0 when pred equals the target (raw pixels) and positive otherwise."""
    target = randn(2, 5, 4, seed=1)
    mask = torch.tensor([[1.0, 0, 1, 0, 0], [0, 1, 0, 0, 1]])
    zero = float(sub.mae_loss(target.clone(), target, mask, norm_pix_loss=False))
    assert abs(zero) < 1e-12, f"mae_loss(target, target, ...) should be 0, not {zero}"
    assert float(sub.mae_loss(target + 1.0, target, mask, norm_pix_loss=False)) > 0.5


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mae_loss_zero_prediction(sub):
    """With normalised targets and pred = 0, a patch of 48 values with variance >> 1e-6 costs 47/48."""
    target = randn(1, 3, 48, seed=2, dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    got = float(sub.mae_loss(torch.zeros_like(target), target, mask, norm_pix_loss=True))
    assert abs(got - 47 / 48) < 1e-4, f"expected about 47/48 = {47 / 48:.5f} (unbiased variance), got {got:.5f}"


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


# -- simmim_loss ------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_simmim_loss_counts_masked_pixels_only(sub):
    """simmim_loss is 0 when the masked pixels are right (whatever the visible ones) and 1 when all are off by 1."""
    imgs = randn(1, 1, 4, 4, seed=0)
    mask = torch.tensor([[1.0, 0.0, 0.0, 0.0]])            # the top-left 2x2 block
    pred = imgs.clone()
    pred[..., 2:, :] += 5.0                                  # errors only in visible pixels
    assert abs(float(sub.simmim_loss(imgs, pred, mask, 2))) < 1e-12, "visible pixels should not count"
    got = float(sub.simmim_loss(imgs, imgs + 1.0, mask, 2))
    assert abs(got - 4 / (4 + 1e-5)) < 1e-6, f"4 masked pixels off by 1 should give 4 / (4 + 1e-5), not {got}"


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


# -- train ------------------------------------------------------------------------------------
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
