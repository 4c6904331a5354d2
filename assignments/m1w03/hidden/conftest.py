"""Trusted implementations and data for m1w03's hidden suite (the trusted side only).

Everything here is written independently of the notebook's code: patches are cut with
`F.unfold`, masks are built from `topk` and `scatter`, tokens are put back with index
assignment instead of `gather`, and attention is PyTorch's own multi-head attention
(`F.multi_head_attention_forward`, whose packed in-projection has the same layout as timm's
`qkv`). Fixture names start with `m1w03_` so that they cannot clash with other weeks' fixtures.
"""

from __future__ import annotations

import copy
import math
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder.kit import randomize
from autograder.kit.data import digits


EPS_NORM_PIX = 1e-6   # MAE's norm_pix_loss: (t - mean) / sqrt(var + 1e-6)
EPS_SIMMIM = 1e-5     # SimMIM: / (masked pixels + 1e-5)
LN_EPS = 1e-6         # every LayerNorm of the week


# -- patches and masks ------------------------------------------------------------------------
def ref_patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, L, p*p*C], channels last inside a patch, via F.unfold."""
    B, C, H, W = imgs.shape
    cols = F.unfold(imgs, kernel_size=p, stride=p)                      # [B, C*p*p, L], (c, y, x) order
    L = cols.shape[-1]
    return cols.reshape(B, C, p * p, L).permute(0, 3, 2, 1).reshape(B, L, p * p * C)


def ref_unpatchify(patches: torch.Tensor, p: int) -> torch.Tensor:
    """The inverse of ref_patchify for square images, via F.fold."""
    B, L, P = patches.shape
    C = P // (p * p)
    side = math.isqrt(L) * p
    cols = patches.reshape(B, L, p * p, C).permute(0, 3, 2, 1).reshape(B, C * p * p, L)
    return F.fold(cols, output_size=(side, side), kernel_size=p, stride=p)


def len_keep(L: int, ratio: float) -> int:
    return int(L * (1 - ratio))


def ref_keep_indices(noise: torch.Tensor, ratio: float) -> torch.Tensor:
    """[B, len_keep]: the positions with the smallest noise, in increasing order of noise."""
    return torch.topk(noise, len_keep(noise.shape[1], ratio), dim=1, largest=False, sorted=True).indices


def ref_mask(noise: torch.Tensor, ratio: float, dtype=torch.float64) -> torch.Tensor:
    """[B, L] with 1 where a patch is removed: every position except the kept ones."""
    mask = torch.ones(noise.shape, dtype=dtype)
    return mask.scatter(1, ref_keep_indices(noise, ratio), 0.0)


def keep_order_from_restore(ids_restore: torch.Tensor, keep: int) -> torch.Tensor:
    """The positions of the visible tokens in the order a submission returned them.

    ids_restore is the inverse of the shuffle, so the shuffle is its inverse: slot j of the
    shuffled sequence holds position shuffle[j], where shuffle[ids_restore[i]] = i."""
    B, L = ids_restore.shape
    shuffle = torch.empty_like(ids_restore)
    shuffle.scatter_(1, ids_restore, torch.arange(L).expand(B, L).contiguous())
    return shuffle[:, :keep]


def noise_for(batch: int, L: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, L, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- losses -------------------------------------------------------------------------------------
def ref_mae_loss(pred, target, mask, norm_pix_loss=True):
    if norm_pix_loss:
        P = target.shape[-1]
        mean = target.sum(-1, keepdim=True) / P
        var = ((target - mean) ** 2).sum(-1, keepdim=True) / (P - 1)     # unbiased
        target = (target - mean) / torch.sqrt(var + EPS_NORM_PIX)
    per_patch = ((pred - target) ** 2).sum(-1) / target.shape[-1]
    return (per_patch * mask).sum() / mask.sum()


def pixel_mask(mask: torch.Tensor, H: int, W: int, p: int) -> torch.Tensor:
    """[B, L] patch mask -> [B, 1, H, W]: pixel (y, x) belongs to patch (y // p) * (W // p) + x // p."""
    ys = torch.arange(H)[:, None] // p
    xs = torch.arange(W)[None, :] // p
    index = (ys * (W // p) + xs).reshape(-1)                              # [H*W]
    return mask[:, index].reshape(mask.shape[0], 1, H, W)


def ref_simmim_loss(imgs, pred_imgs, mask, p):
    B, C, H, W = imgs.shape
    m = pixel_mask(mask, H, W, p).to(imgs.dtype)
    return ((imgs - pred_imgs).abs() * m).sum() / (m.sum() + EPS_SIMMIM) / C


# -- trusted modules, with the notebook's parameter names --------------------------------------
class TrustedBlock(nn.Module):
    """A pre-norm block with timm's names; attention by F.multi_head_attention_forward."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.mlp.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        D = x.shape[-1]
        h = self.norm1(x).transpose(0, 1)                                   # [N, B, D]
        a, _ = F.multi_head_attention_forward(
            h, h, h, D, self.num_heads, self.attn.qkv.weight, self.attn.qkv.bias, None, None, False, 0.0,
            self.attn.proj.weight, self.attn.proj.bias, training=False, need_weights=False)
        x = x + a.transpose(0, 1)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


def make_identity(module: nn.Module) -> nn.Module:
    """Make every block of `module` the identity: zero residual branches."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "blocks." in name and (".attn.proj." in name or ".mlp.fc2." in name):
                p.zero_()
    return module


class RefEncoder(nn.Module):
    def __init__(self, img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0):
        super().__init__()
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Linear(patch_size * patch_size * in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim))
        self.blocks = nn.ModuleList([TrustedBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)

    def forward(self, imgs, keep_idx):
        """keep_idx [B, K]: the visible positions, in the order the latent lists them."""
        x = self.patch_embed(ref_patchify(imgs, self.patch_size)) + self.pos_embed
        x = x[torch.arange(x.shape[0])[:, None], keep_idx]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class RefDecoder(nn.Module):
    def __init__(self, num_patches=16, patch_size=2, in_chans=1, embed_dim=64, decoder_embed_dim=32,
                 decoder_depth=1, decoder_num_heads=4, mlp_ratio=2.0):
        super().__init__()
        self.embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, decoder_embed_dim))
        self.blocks = nn.ModuleList([TrustedBlock(decoder_embed_dim, decoder_num_heads, mlp_ratio)
                                     for _ in range(decoder_depth)])
        self.norm = nn.LayerNorm(decoder_embed_dim, eps=LN_EPS)
        self.pred = nn.Linear(decoder_embed_dim, patch_size * patch_size * in_chans)

    def tokens(self, latent, keep_idx):
        """The decoder's input sequence in patch order, before the position embeddings."""
        B, L = latent.shape[0], self.pos_embed.shape[1]
        x = self.mask_token.expand(B, L, -1).clone()
        x[torch.arange(B)[:, None], keep_idx] = self.embed(latent)
        return x

    def forward(self, latent, keep_idx):
        x = self.tokens(latent, keep_idx) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))


class RefMAE(nn.Module):
    def __init__(self, img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=2, num_heads=4,
                 decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4, mlp_ratio=2.0, norm_pix_loss=True):
        super().__init__()
        self.patch_size, self.norm_pix_loss = patch_size, norm_pix_loss
        self.encoder = RefEncoder(img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio)
        self.decoder = RefDecoder(self.encoder.num_patches, patch_size, in_chans, embed_dim, decoder_embed_dim,
                                  decoder_depth, decoder_num_heads, mlp_ratio)

    def forward(self, imgs, mask_ratio, noise):
        keep_idx = ref_keep_indices(noise, mask_ratio)
        pred = self.decoder(self.encoder(imgs, keep_idx), keep_idx)
        mask = ref_mask(noise, mask_ratio, imgs.dtype)
        loss = ref_mae_loss(pred, ref_patchify(imgs, self.patch_size), mask, self.norm_pix_loss)
        return loss, pred, mask


class RefSimMIM(nn.Module):
    def __init__(self, img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0):
        super().__init__()
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Linear(patch_size * patch_size * in_chans, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim))
        self.blocks = nn.ModuleList([TrustedBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.head = nn.Linear(embed_dim, patch_size * patch_size * in_chans)

    def tokens(self, imgs, mask):
        """Patch embeddings with the masked ones replaced by the mask token (before positions)."""
        x = self.patch_embed(ref_patchify(imgs, self.patch_size))
        return torch.where(mask.bool().unsqueeze(-1), self.mask_token.expand_as(x), x)

    def forward(self, imgs, mask_ratio, noise):
        mask = ref_mask(noise, mask_ratio, imgs.dtype)
        x = self.tokens(imgs, mask) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        pred = self.head(self.norm(x))
        loss = ref_simmim_loss(imgs, ref_unpatchify(pred, self.patch_size), mask, self.patch_size)
        return loss, pred, mask


# -- training: AdamW runs the trusted side can predict --------------------------------------------
MAE_BETAS = (0.9, 0.95)  # the notebook's AdamW betas (MAE's), not PyTorch's default (0.9, 0.999)


def frozen_head_mae(cfg: dict, seed: int) -> nn.Module:
    """A trusted float64 MAE (raw-pixel loss) whose first two AdamW steps do not depend on which patches a
    training loop masks, when every image is constant (one value per image): they depend only on the mean
    of those values over each batch, and not at all on the batches when every image is the same.

    decoder.pred.weight = 0 makes every patch's prediction the bias alone, so the loss and the gradients
    of pred.* are the same for any mask; decoder.norm.weight = 0 makes the norm's output its bias alone,
    and no gradient reaches anything before it (those weights only decay). After step 1 pred.weight is
    no longer 0 but the norm's weight still is (it had no gradient), so step 2 is predictable too. Only
    decoder.norm.weight's second step depends on the masks."""
    model = randomize_f64(RefMAE(**cfg, norm_pix_loss=False), seed)
    with torch.no_grad():
        model.decoder.pred.weight.zero_()
        model.decoder.norm.weight.zero_()
    return model


def no_decay(name: str, p: torch.Tensor) -> bool:
    """The parameters that MAE's official code leaves out of weight decay (biases, norms: 1-D)."""
    return p.dim() <= 1 or name.endswith(".bias")


def trusted_adamw(model: nn.Module, batches, lr: float, weight_decay: float, mask_ratio: float,
                  decay_all: bool = True, betas=MAE_BETAS, eps: float = 1e-8) -> dict[str, torch.Tensor]:
    """The state of a copy of `model` after one AdamW step (betas (0.9, 0.95)) per batch.

    AdamW written out (Loshchilov & Hutter; torch.optim.AdamW's documented update) rather than called:
    it is the independent truth, and building torch's optimizer costs seconds of imports the first time.
    decay_all=False decays only matrices, as MAE's official code does: a training loop may do either."""
    model = copy.deepcopy(model).train()
    params = list(model.named_parameters())
    moments = {name: (torch.zeros_like(p), torch.zeros_like(p)) for name, p in params}
    (b1, b2), L = betas, model.encoder.num_patches
    for t, batch in enumerate(batches, start=1):
        model.zero_grad()
        model(batch, mask_ratio, noise_for(len(batch), L, 1000 + t))[0].backward()
        with torch.no_grad():
            for name, p in params:
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                decay = 0.0 if (not decay_all and no_decay(name, p)) else weight_decay
                m, v = moments[name]
                p.mul_(1 - lr * decay)                                  # decoupled weight decay
                m.mul_(b1).add_((1 - b1) * g)
                v.mul_(b2).add_((1 - b2) * g * g)
                m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)      # bias corrections
                p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def randomize_f64(module: nn.Module, seed: int) -> nn.Module:
    """The trusted module in float64 and eval mode, with the kit's random, non-trivial weights."""
    return randomize(module.double(), seed).eval()


@pytest.fixture(scope="session")
def m1w03_ref() -> types.SimpleNamespace:
    """The trusted implementations, as one namespace."""
    return types.SimpleNamespace(
        patchify=ref_patchify, unpatchify=ref_unpatchify, len_keep=len_keep, keep_indices=ref_keep_indices,
        mask=ref_mask, keep_order_from_restore=keep_order_from_restore, noise=noise_for,
        mae_loss=ref_mae_loss, pixel_mask=pixel_mask, simmim_loss=ref_simmim_loss,
        Encoder=RefEncoder, Decoder=RefDecoder, MAE=RefMAE, SimMIM=RefSimMIM,
        randomize=randomize_f64, make_identity=make_identity, frozen_head_mae=frozen_head_mae,
        trusted_adamw=trusted_adamw, no_decay=no_decay, betas=MAE_BETAS)


@pytest.fixture(scope="session")
def m1w03_digits() -> dict[str, torch.Tensor]:
    """scikit-learn's 8x8 digits in [0, 1], [n, 1, 8, 8]: the notebook's split, 1297 train / 500 test."""
    return digits().as_dict()
