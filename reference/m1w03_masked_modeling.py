# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Week 3 — Masked image modeling: MAE and SimMIM
#
# BERT (Devlin et al., 2019) learns language by hiding words and guessing them back. The
# text itself is the label, so any amount of unlabelled text becomes training data. For
# images the same recipe — hide part of the picture, predict the hidden part — is older
# than BERT (denoising autoencoders, context encoders), but for years it trailed
# contrastive learning. Two papers from late 2021 changed that, with recipes short enough
# to write in an afternoon:
#
# - **MAE**, *Masked Autoencoders Are Scalable Vision Learners* (He et al., 2022): cut the
#   image into patches, **remove** a large random subset (75%), encode only the visible
#   patches with a ViT, and let a small decoder, given the encoded patches plus a learned
#   *mask token* for each missing one, predict the missing pixels.
# - **SimMIM**, *A Simple Framework for Masked Image Modeling* (Xie et al., 2022): keep every
#   patch in the sequence, **replace** the masked ones by a learned mask token, run the
#   encoder on all of them, and predict the raw pixels of the masked patches with a
#   single linear layer and an L1 loss.
#
# This week you build both from their parts: patchify and unpatchify, per-sample random
# masking with the indices that undo it, the MAE encoder and decoder, both losses, and one
# training loop that trains either model on handwritten digits on a CPU. At the end you will
# see the models fill in digits of which they saw a quarter.
#
# ## Why masking images took longer than masking words
#
# The MAE paper (section 1) gives three reasons, and each one shows up in the design:
#
# 1. **Architecture.** A convolution slides over a regular grid; there is no natural place
#    in it for "a missing patch here". A ViT works on a *set* of tokens with position
#    embeddings, so a missing patch is simply a token that is not there (MAE), or a token
#    replaced by a learned "[MASK]" vector (SimMIM, as in BERT).
# 2. **Information density.** Language is dense: a missing word is hard to guess. Images
#    are redundant: a missing patch can often be interpolated from its neighbours without
#    understanding anything. BERT masks 15% of words; MAE masks **75%** of patches, so that
#    the task cannot be solved by interpolation.
# 3. **The decoder.** Words carry meaning; pixels do not. Predicting pixels is a low-level
#    task, so what the decoder does decides what the encoder has to learn. MAE uses a
#    separate, lightweight decoder and throws it away after pre-training.

# %% [markdown] boilerplate="how_this_notebook_works"
# (the build writes this cell from autograder/pipeline/templates/how_this_notebook_works.md)

# %% [markdown]
# **What you may use.** Any tensor operation and any `torch.nn` layer. A pre-norm Transformer
# `Block` with `timm`'s parameter names is given below (it is last week's exercise); you may
# replace it with your own `Block` from week 1, or with `timm.models.vision_transformer.Block`
# built with `norm_layer=partial(nn.LayerNorm, eps=1e-6)` (importing `timm` makes loading your
# notebook about ten seconds slower for the grader). **What you may not use:** `timm`'s
# `PatchDropout` (its `timm.layers.patch_dropout` module), which does the random token dropping
# of part 2 for you, and `timm.data.patchify_image`, which does part 1.
#
# ## The contract with the grader
#
# The grader builds your classes by name with keyword arguments, loads weights into them with
# `load_state_dict(..., strict=True)`, and compares what they compute with its own
# implementation. For that to work, these details must be as follows:
#
# | detail | what to do |
# | --- | --- |
# | patch layout | `patchify` gives `[B, L, p*p*C]`; patches in row-major order over the grid; inside a patch, pixels row by row and the channels of a pixel together (MAE's `nchpwq -> nhwpqc`) |
# | mask ratio | `len_keep = int(L * (1 - mask_ratio))` patches stay visible |
# | which patches | draw `noise = torch.rand(B, L, generator=generator)` (or use the `noise` given), keep the `len_keep` patches with the **smallest** noise |
# | `mask` | `[B, L]`, the dtype of the input, `1` for a removed patch and `0` for a visible one, in the patches' original order |
# | `ids_restore` | `[B, L]` int64: concatenating the visible tokens (in the order returned) with the mask tokens and gathering with `ids_restore` along dim 1 puts every token back at its patch position |
# | targets | per-patch normalisation uses the patch's mean and its **unbiased** variance (`torch.var`'s default) with $\epsilon = 10^{-6}$ inside the square root |
# | parameter names | listed in each class's docstring; the blocks are `Block`s with timm's names (`norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2`) |
# | LayerNorm | `eps=1e-6` everywhere (PyTorch's default is `1e-5`) |
# | position embeddings | learned, one per patch, no class token: `[1, L, D]` |
#
# **Randomness.** Every function that masks takes `noise=None, generator=None`. With `noise`
# given it is fully deterministic (the grader uses this); otherwise it draws the noise from
# `generator` (a `torch.Generator`; `None` means PyTorch's global one). Your training loop
# creates one generator from its `seed` and passes it down, so the same seed gives the same
# run.

# %%
import math

import torch
import torch.nn.functional as F
from torch import nn

# %% tags=["demo"]
from autograder.selfcheck import check

_ = torch.manual_seed(0)  # it returns the generator, which a cell would display

# %% [markdown]
# ## Given: the Transformer block
#
# Both models are stacks of the pre-norm block you wrote in week 1,
# $z \leftarrow z + \operatorname{MSA}(\operatorname{LN}_1 z)$, then
# $z \leftarrow z + \operatorname{MLP}(\operatorname{LN}_2 z)$, with `timm`'s parameter names. Here
# it is, as week 1's solution (the same code as in week 2). Read it, run it, and move on: this week
# is about what goes *into* the blocks.

# %% given="vit_blocks"
# filled in by the build from reference/given/vit_blocks.py


# %% [markdown]
# ## Part 1 — Images as sequences of patches, and back
#
# The targets of MAE and SimMIM are pixels, patch by patch, so we need the two maps between
# an image and its patches. With patch size $p$, an image $x \in \mathbb{R}^{C \times H \times W}$
# becomes $L = (H/p)(W/p)$ vectors of $P = p^2 C$ numbers each:
#
# $$
# \operatorname{patchify}: \mathbb{R}^{B \times C \times H \times W} \to \mathbb{R}^{B \times L \times p^2 C},
# \qquad \operatorname{unpatchify} = \operatorname{patchify}^{-1}.
# $$
#
# Both are pure rearrangements (no arithmetic), so `unpatchify(patchify(x)) == x` exactly.
# Two orders have to be fixed:
#
# - **Which patch is token $i$:** row-major over the $H/p \times W/p$ grid, as in week 1:
#   token $i$ is grid row $i \,//\, (W/p)$, column $i \bmod (W/p)$.
# - **Where each pixel goes inside a patch vector:** MAE's code puts the channels *last*:
#   the vector lists the pixels of the patch row by row, and for each pixel its $C$ channel
#   values together. In `einsum` notation, with $h, w$ the grid and $p, q$ the position
#   inside the patch, it is `nchpwq -> nhwpqc`: reshape `[B, C, H, W]` to
#   `[B, C, h, p, w, q]`, permute to `[B, h, w, p, q, C]`, and flatten.
#
# The second order is a convention, not a law: `F.unfold` (and the convolution of week 1)
# list a patch channel by channel instead. What matters is that the prediction head and
# the targets agree, and that `unpatchify` undoes exactly what `patchify` did.
# `unpatchify` only has to handle square images: $h = w = \sqrt{L}$ and $C = P / p^2$.

# %%
def patchify(imgs, patch_size):
    """Cut images into non-overlapping patches, one vector per patch.

    Args:
        imgs: [B, C, H, W], H and W multiples of patch_size.
        patch_size: p.

    Returns:
        [B, L, p*p*C] with L = (H/p) * (W/p): patches in row-major grid order; inside a
        patch, pixels row by row with the C channel values of each pixel together.
    """
    ### BEGIN SOLUTION
    B, C, H, W = imgs.shape
    p = patch_size
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # [B, h, w, p, q, C]
    return x.reshape(B, h * w, p * p * C)
    ### END SOLUTION


def unpatchify(x, patch_size):
    """The inverse of patchify for square images.

    Args:
        x: [B, L, p*p*C] with L a perfect square.
        patch_size: p.

    Returns:
        [B, C, H, W] with H = W = sqrt(L) * p and C = x.shape[-1] // p**2.
    """
    ### BEGIN SOLUTION
    B, L, P = x.shape
    p = patch_size
    h = w = math.isqrt(L)
    C = P // (p * p)
    x = x.reshape(B, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # [B, C, h, p, w, q]
    return x.reshape(B, C, h * p, w * p)
    ### END SOLUTION


# %% tags=["demo"]
check("m1w03", "patchify")

# %% [markdown]
# The channel-last layout, made visible: a 2-channel 4×4 image whose pixels are numbered. The
# first patch vector holds pixel (0, 0) of both channels, then pixel (0, 1) of both, then
# the second row of the patch.

# %% tags=["demo"]
example = torch.arange(32.0).reshape(1, 2, 4, 4)
print("channel 0:\n", example[0, 0], "\nchannel 1:\n", example[0, 1])
print("patch 0:", patchify(example, 2)[0, 0].tolist())
print("round trip exact:", torch.equal(unpatchify(patchify(example, 2), 2), example))

# %% [markdown]
# ## Part 2 — Per-sample random masking, and how to undo it
#
# MAE masks a **random** subset of patches, drawn **independently for every image**, without
# replacement, uniformly over positions. The paper calls this "random sampling" and compares
# it with block-wise masking (remove large square regions, as in BEiT) and grid-wise masking
# (keep every fourth patch): random sampling at 75% works best, because it leaves no large
# hole that can only be guessed and no regular pattern that can be interpolated.
#
# The trick that makes it fast is to **sort instead of index**. For each image draw one
# uniform number per patch, $u \in [0, 1]^L$, and sort the patches by it:
#
# $$
# \sigma = \operatorname{argsort}(u), \qquad
# \text{visible} = \{\sigma_1, \dots, \sigma_{L_\text{keep}}\}, \qquad
# L_\text{keep} = \lfloor L\,(1 - r) \rfloor,
# $$
#
# with $r$ the mask ratio. Since the $u_i$ are independent and identically distributed, every
# set of $L_\text{keep}$ patches is equally likely, each patch is masked with probability
# $1 - L_\text{keep}/L \approx r$, and each image of the batch gets its own mask. All of it is
# a couple of batched tensor operations, with no Python loop over images.
#
# The encoder then sees $x_\text{masked} = x_{\sigma_1..\sigma_{L_\text{keep}}}$: the first
# $L_\text{keep}$ patches of the shuffled sequence. To undo the shuffle later we keep its
# inverse permutation,
#
# $$
# \text{ids\_restore} = \sigma^{-1} = \operatorname{argsort}(\sigma),
# $$
#
# because `argsort` of a permutation is its inverse: if $\sigma$ sends slot $j$ to patch
# $\sigma_j$, then $\sigma^{-1}_i$ is the slot where patch $i$ went. So if `shuffled` is any
# sequence in the shuffled order, `shuffled.gather(1, ids_restore)` is the same sequence back
# in patch order. The decoder will build `shuffled` as "the encoded visible tokens, then
# mask tokens for the rest".
#
# The binary `mask` follows the same way: in the shuffled order it is
# $[0, \dots, 0, 1, \dots, 1]$ ($L_\text{keep}$ zeros); gathering it with `ids_restore` puts
# each 0 and 1 at its patch.
#
# Use `torch.gather` (with the index expanded over the feature axis: `index[..., None].expand(-1, -1, D)`)
# for $x_\text{masked}$; like indexing, it passes gradients back to the visible tokens.

# %%
def random_masking(x, mask_ratio, noise=None, generator=None):
    """Per-sample random masking by sorting random noise (MAE).

    Args:
        x: [B, L, D] tokens.
        mask_ratio: fraction r of tokens to remove; len_keep = int(L * (1 - r)) stay.
        noise: optional [B, L]; the len_keep tokens with the smallest noise stay visible.
            When None, noise = torch.rand(B, L, generator=generator, device=x.device).
        generator: the torch.Generator to draw noise from (None: the global one).

    Returns:
        x_masked: [B, len_keep, D], the visible tokens, in the order of increasing noise.
        mask: [B, L], dtype of x, 1 where a token was removed and 0 where it is visible.
        ids_restore: [B, L] int64, the inverse of the shuffle: cat([x_masked, fillers], 1)
            gathered with ids_restore along dim 1 puts every token back at its position.
    """
    ### BEGIN SOLUTION
    B, L, D = x.shape
    len_keep = int(L * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(B, L, generator=generator, device=x.device)
    ids_shuffle = torch.argsort(noise, dim=1)        # ascending: the smallest noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # the inverse permutation
    ids_keep = ids_shuffle[:, :len_keep]
    x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
    mask = torch.ones(B, L, dtype=x.dtype, device=x.device)
    mask[:, :len_keep] = 0                           # in the shuffled order
    mask = torch.gather(mask, 1, ids_restore)        # back to the patches' order
    return x_masked, mask, ids_restore
    ### END SOLUTION


# %% tags=["demo"]
check("m1w03", "masking")

# %% [markdown]
# Four images, 16 patches, ratio 0.75: each row keeps its own 4 patches, and gathering the
# visible tokens (followed by zeros) with `ids_restore` puts them back where they came from.

# %% tags=["demo"]
tokens = torch.arange(16.0).repeat(4, 1).unsqueeze(-1)  # token i holds the number i
visible, mask, ids_restore = random_masking(tokens, 0.75, generator=torch.Generator().manual_seed(1))
print("mask (1 = removed):\n", mask.int())
print("visible tokens:", visible[..., 0].int().tolist())
restored = torch.cat([visible, torch.zeros(4, 12, 1)], 1).gather(1, ids_restore.unsqueeze(-1))
print("restored equals tokens * (1 - mask):", torch.equal(restored[..., 0], tokens[..., 0] * (1 - mask)))

# %% [markdown]
# ## Part 3 — The MAE loss: masked patches, normalised targets
#
# The decoder predicts a vector $y_i \in \mathbb{R}^P$ for every patch $i$, visible or not.
# The loss is the mean squared error **on the masked patches only**:
#
# $$
# \ell_{bi} = \frac{1}{P} \sum_{j=1}^{P} (y_{bij} - t_{bij})^2, \qquad
# \mathcal{L} = \frac{\sum_{b,i} m_{bi}\, \ell_{bi}}{\sum_{b,i} m_{bi}},
# $$
#
# with $m_{bi} = 1$ for a masked patch. Like BERT's loss, it ignores the visible patches:
# copying what you can see teaches nothing, and the paper found a slightly lower accuracy
# when the loss covered every patch.
#
# **Normalised targets.** MAE's best variant does not predict the pixels $x_i$ of a patch
# but the pixels normalised by the patch's own mean and standard deviation,
#
# $$
# t_{ij} = \frac{x_{ij} - \mu_i}{\sqrt{s_i^2 + \epsilon}}, \qquad
# \mu_i = \frac{1}{P}\sum_j x_{ij}, \qquad
# s_i^2 = \frac{1}{P - 1}\sum_j (x_{ij} - \mu_i)^2, \qquad \epsilon = 10^{-6},
# $$
#
# (`norm_pix_loss=True` in the official code, which uses `torch.var`, the **unbiased**
# variance with $P - 1$). Table 1(d) of the paper shows it improves fine-tuning accuracy. The
# intuition: the model no longer spends its effort on the brightness and contrast of each
# patch, which are easy to guess and dominate a plain pixel loss, and must predict the
# *structure* (edges, strokes) instead; it also weights a faint texture as much as a bright one.
#
# **A closed form to check yourself.** Predict $y_i = 0$. Since
# $\sum_j (x_{ij} - \mu_i)^2 = (P-1)\,s_i^2$, each masked patch contributes
#
# $$
# \ell_i = \frac{1}{P}\sum_j t_{ij}^2 = \frac{P - 1}{P} \cdot \frac{s_i^2}{s_i^2 + \epsilon},
# $$
#
# which is $47/48 \approx 0.979$ for $4 \times 4$ RGB patches ($P = 48$) with $s_i^2 \gg \epsilon$,
# and exactly $\frac{P-1}{2P}$ when $s_i^2 = \epsilon$. A biased variance (dividing by $P$)
# would give $s^2/(s^2 + \epsilon) \approx 1$ instead.
#
# **Digits.** With `norm_pix_loss=False` the targets are the raw pixels, $t_i = x_i$. On 8×8
# digits with 2×2 patches ($P = 4$) many patches are blank or nearly so, and normalising a
# nearly-blank patch turns its few faint pixels into a full-contrast target; the digit
# experiments below therefore use raw pixels. On natural images, normalise.

# %%
def mae_loss(pred, target, mask, norm_pix_loss=True):
    """MAE's reconstruction loss: mean squared error over the masked patches.

    Args:
        pred: [B, L, P] predictions for every patch.
        target: [B, L, P] the patches' pixels (patchify of the images).
        mask: [B, L], 1 for masked patches (the ones that count) and 0 for visible ones.
        norm_pix_loss: if True, normalise each target patch by its mean and unbiased
            variance: (target - mean) / sqrt(var + 1e-6).

    Returns:
        A scalar tensor: per-patch mean squared error, averaged over the masked patches.
    """
    ### BEGIN SOLUTION
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)  # unbiased, as in the official code
        target = (target - mean) / (var + 1e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)  # [B, L], mean over the pixels of a patch
    return (loss * mask).sum() / mask.sum()     # mean over the masked patches
    ### END SOLUTION


# %% tags=["demo"]
check("m1w03", "mae_loss")

# %% [markdown]
# ## Part 4 — The encoder sees only the visible patches
#
# MAE's encoder is a plain ViT, with one change: it runs **only on the visible patches**.
# No mask tokens enter it.
#
# 1. embed every patch: `patch_embed` is an `nn.Linear(p*p*C, D)` applied to
#    `patchify(imgs, p)` (exactly week 1's convolution with kernel = stride = $p$, written as
#    the matrix it is);
# 2. add the position embeddings `pos_embed` ($[1, L, D]$) — **before** masking, so that every
#    kept token still knows where it came from;
# 3. `random_masking`: keep $L_\text{keep}$ tokens per image;
# 4. the `blocks`, then the final `norm`.
#
# **Why this asymmetry matters.** With 75% of the patches removed the encoder processes a
# quarter of the tokens: the MLPs cost 4× less and attention, quadratic in the number of
# tokens, 16× less. The paper reports a 3× or larger speed-up of pre-training, which is what
# made its ViT-Huge affordable. It is also *better*: an encoder that sees mask tokens during
# pre-training but never at test time has to cope with that mismatch, and the paper's
# Table 1(c) shows that putting the mask tokens into the encoder lowers accuracy,
# especially of linear probes.
#
# At test time (for a downstream task) the same encoder runs with `mask_ratio=0` and sees
# every patch.

# %%
class MAEEncoder(nn.Module):
    """MAE's encoder: a ViT on the visible patches only.

    Args:
        img_size, patch_size, in_chans: images are [B, in_chans, img_size, img_size].
        embed_dim: token size D.
        depth, num_heads, mlp_ratio: `depth` Blocks(embed_dim, num_heads, mlp_ratio).

    Attributes:
        patch_size, num_patches: p and L = (img_size // p) ** 2.
        patch_embed: nn.Linear(p * p * in_chans, embed_dim), applied to patchify(imgs, p).
        pos_embed: nn.Parameter [1, L, D], learned, initialised with trunc_normal_(std=0.02).
        blocks: nn.ModuleList of `depth` Blocks.
        norm: nn.LayerNorm(D, eps=1e-6).

    forward(imgs, mask_ratio=0.75, noise=None, generator=None) returns
        latent [B, len_keep, D] (the normed outputs of the visible tokens, in
        random_masking's order), mask [B, L] and ids_restore [B, L], as in random_masking.
    """

    def __init__(self, img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=2, num_heads=4,
                 mlp_ratio=2.0):
        super().__init__()
        ### BEGIN SOLUTION
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Linear(patch_size * patch_size * in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        ### END SOLUTION

    def forward(self, imgs, mask_ratio=0.75, noise=None, generator=None):
        ### BEGIN SOLUTION
        x = self.patch_embed(patchify(imgs, self.patch_size)) + self.pos_embed  # [B, L, D]
        x, mask, ids_restore = random_masking(x, mask_ratio, noise=noise, generator=generator)
        for block in self.blocks:
            x = block(x)                                                        # [B, len_keep, D]
        return self.norm(x), mask, ids_restore
        ### END SOLUTION


# %% tags=["demo"]
check("m1w03", "encoder")

# %% [markdown]
# ## Part 5 — A lightweight decoder with mask tokens
#
# The decoder gets the encoded visible tokens and has to produce a prediction for **every**
# patch. Step by step, for a batch:
#
# 1. `embed`: a linear map from the encoder's width $D$ to the decoder's width $D_d$;
# 2. append one copy of the learned `mask_token` ($[1, 1, D_d]$) per missing patch:
#    $L - L_\text{keep}$ of them, giving a sequence of length $L$ in the *shuffled* order;
# 3. **unshuffle** with `ids_restore` (part 2), so token $i$ sits at patch position $i$;
# 4. add the decoder's own position embeddings `pos_embed` ($[1, L, D_d]$). This step is
#    what tells the mask tokens apart: they are all the same vector, and without a position
#    the decoder could not know *which* patch it is asked to draw;
# 5. the `blocks`, the `norm`, and `pred`, a linear map from $D_d$ to $P = p^2 C$ pixel values
#    per patch (in `patchify`'s layout).
#
# **Lightweight.** The decoder is only used during pre-training, so it can be small. The
# paper's default has 8 blocks of width 512 against ViT-Large's 24 blocks of width 1024. A
# block costs about $12 D^2$ multiply-adds per token, so per token the decoder costs
# $8 \cdot 512^2 / (24 \cdot 1024^2) \approx 8\%$ of the encoder; even though it processes all
# $L$ tokens, that is cheap. The paper also shows that a decoder with a single block still
# fine-tunes well: the decoder's depth matters mostly for linear probing, where a deeper
# decoder leaves the encoder's last layers more abstract.

# %%
class MAEDecoder(nn.Module):
    """MAE's decoder: encoded visible tokens plus mask tokens -> pixels of every patch.

    Args:
        num_patches: L.
        patch_size, in_chans: the output has p * p * in_chans values per patch.
        embed_dim: the encoder's width D.
        decoder_embed_dim, decoder_depth, decoder_num_heads, mlp_ratio: the decoder's width
            D_d and its `decoder_depth` Blocks(D_d, decoder_num_heads, mlp_ratio).

    Attributes:
        embed: nn.Linear(D, D_d).
        mask_token: nn.Parameter [1, 1, D_d], initialised with normal_(std=0.02).
        pos_embed: nn.Parameter [1, L, D_d], trunc_normal_(std=0.02).
        blocks: nn.ModuleList of `decoder_depth` Blocks.
        norm: nn.LayerNorm(D_d, eps=1e-6).
        pred: nn.Linear(D_d, p * p * in_chans).

    forward(latent, ids_restore): latent [B, len_keep, D] (in random_masking's order) and
        ids_restore [B, L] -> predictions [B, L, p * p * in_chans] in patch order.
    """

    def __init__(self, num_patches=16, patch_size=2, in_chans=1, embed_dim=64, decoder_embed_dim=32,
                 decoder_depth=1, decoder_num_heads=4, mlp_ratio=2.0):
        super().__init__()
        ### BEGIN SOLUTION
        self.embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, decoder_embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList([Block(decoder_embed_dim, decoder_num_heads, mlp_ratio)
                                     for _ in range(decoder_depth)])
        self.norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        self.pred = nn.Linear(decoder_embed_dim, patch_size * patch_size * in_chans)
        ### END SOLUTION

    def forward(self, latent, ids_restore):
        ### BEGIN SOLUTION
        x = self.embed(latent)                                    # [B, len_keep, D_d]
        B, L = ids_restore.shape
        mask_tokens = self.mask_token.expand(B, L - x.shape[1], -1)
        x = torch.cat([x, mask_tokens], dim=1)                    # [B, L, D_d], shuffled order
        x = torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # unshuffle
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))                            # [B, L, p*p*C]
        ### END SOLUTION


# %% tags=["demo"]
check("m1w03", "decoder")

# %% [markdown]
# ## Part 6 — The masked autoencoder
#
# Put together, one training step of MAE is
#
# $$
# (z, m, \rho) = \operatorname{Enc}(x; r), \qquad
# y = \operatorname{Dec}(z, \rho), \qquad
# \mathcal{L} = \operatorname{mae\_loss}\big(y, \operatorname{patchify}(x), m\big),
# $$
#
# with $z$ the latent of the visible patches, $m$ the mask and $\rho$ = `ids_restore`.
# `forward` returns `(loss, pred, mask)`, like the official code, so that a training loop
# needs only the loss and a demo can draw `unpatchify(pred)`.
#
# Note the paper's defaults: `mask_ratio=0.75` and `norm_pix_loss=True`. Our defaults below
# are sized for 8×8 digits.

# %%
class MaskedAutoencoder(nn.Module):
    """MAE: an MAEEncoder on the visible patches and an MAEDecoder that predicts all patches.

    Args: those of MAEEncoder and MAEDecoder (the encoder's embed_dim is the decoder's
        input width), and norm_pix_loss for mae_loss.

    Attributes: encoder (MAEEncoder), decoder (MAEDecoder), patch_size, norm_pix_loss.

    forward(imgs, mask_ratio=0.75, noise=None, generator=None) returns (loss, pred, mask):
        the scalar mae_loss, the predictions [B, L, p * p * C] and the mask [B, L].
    """

    def __init__(self, img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=2, num_heads=4,
                 decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4, mlp_ratio=2.0,
                 norm_pix_loss=True):
        super().__init__()
        ### BEGIN SOLUTION
        self.patch_size = patch_size
        self.norm_pix_loss = norm_pix_loss
        self.encoder = MAEEncoder(img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio)
        self.decoder = MAEDecoder(self.encoder.num_patches, patch_size, in_chans, embed_dim,
                                  decoder_embed_dim, decoder_depth, decoder_num_heads, mlp_ratio)
        ### END SOLUTION

    def forward(self, imgs, mask_ratio=0.75, noise=None, generator=None):
        ### BEGIN SOLUTION
        latent, mask, ids_restore = self.encoder(imgs, mask_ratio, noise=noise, generator=generator)
        pred = self.decoder(latent, ids_restore)
        loss = mae_loss(pred, patchify(imgs, self.patch_size), mask, self.norm_pix_loss)
        return loss, pred, mask
        ### END SOLUTION


# %% tags=["demo"]
check("m1w03", "autoencoder")

# %% [markdown]
# ## Part 7 — SimMIM's loss: L1 on the masked pixels
#
# SimMIM reconstructs the **raw** pixels (no per-patch normalisation) with an $\ell_1$ loss,
# again only where the image was masked:
#
# $$
# \mathcal{L} = \frac{1}{\Omega(x_M)} \, \lVert y_M - x_M \rVert_1 ,
# $$
#
# where $x_M$ and $y_M$ are the masked pixels of the image and of the prediction and
# $\Omega(x_M)$ is their number. The official code works at the pixel level: it upsamples the
# patch mask $[B, h, w]$ to a pixel mask $[B, 1, H, W]$ by repeating each entry $p$ times
# along both axes (`repeat_interleave`, not `repeat`, which would tile the whole mask instead
# of enlarging each cell), and computes
#
# ```
# loss = (|x - y| * mask_px).sum() / (mask_px.sum() + 1e-5) / C
# ```
#
# `mask_px.sum()` counts masked pixel *positions*; the sum runs over the $C$ channels too,
# hence the division by $C$. The $10^{-5}$ only guards against a mask with nothing masked.
# The paper found $\ell_1$ and $\ell_2$ about equally good, and predicting only the masked
# pixels better than reconstructing the whole image.

# %%
def simmim_loss(imgs, pred_imgs, mask, patch_size):
    """SimMIM's loss: mean absolute error over the masked pixels.

    Args:
        imgs, pred_imgs: [B, C, H, W], the images and the reconstructions.
        mask: [B, L] patch mask (1 = masked) in row-major grid order, L = (H/p) * (W/p).
        patch_size: p.

    Returns:
        A scalar: sum over masked pixels and channels of |imgs - pred_imgs|, divided by
        (the number of masked pixel positions + 1e-5) and by C.
    """
    ### BEGIN SOLUTION
    B, C, H, W = imgs.shape
    p = patch_size
    mask_px = mask.reshape(B, H // p, W // p)
    mask_px = mask_px.repeat_interleave(p, dim=1).repeat_interleave(p, dim=2).unsqueeze(1)  # [B, 1, H, W]
    loss = (imgs - pred_imgs).abs()
    return (loss * mask_px).sum() / (mask_px.sum() + 1e-5) / C
    ### END SOLUTION


# %% tags=["demo"]
check("m1w03", "simmim_loss")

# %% [markdown]
# ## Part 8 — SimMIM: mask tokens *in* the encoder
#
# SimMIM makes the opposite choice to MAE on the point of part 4. Every patch stays in the
# sequence; a masked patch's embedding is **replaced** by a learned `mask_token`:
#
# $$
# e_i \leftarrow (1 - m_i)\, e_i + m_i\, e_\text{[M]},
# $$
#
# then the position embeddings are added (so that masked tokens, all equal before this step,
# still know where they are), the blocks and the final norm run on all $L$ tokens, and a
# single linear layer `head` predicts the $p^2 C$ pixels of every patch. There is no separate
# decoder: the paper shows that a linear head is enough, and heavier heads do not help.
#
# The cost is that the encoder processes every token, masked or not, at every step; the gain
# is simplicity, and that it works unchanged for architectures that need the full grid, such as
# Swin's windows (next week's comparison), where dropping tokens is not an option.
#
# SimMIM's own masking differs in two details we simplify: it masks square blocks of
# $32 \times 32$ pixels (larger than the model's patches) at a ratio of 0.6. Here the masked
# unit is the patch, drawn by your `random_masking` with the same `noise` rule, so that the
# two models can be trained by the same loop. `forward` returns the prediction as patches,
# `[B, L, p*p*C]`, like MAE; the loss sees it as an image through `unpatchify`.

# %%
class SimMIM(nn.Module):
    """SimMIM with a ViT encoder: masked patches are replaced by a learned mask token.

    Args:
        img_size, patch_size, in_chans: images are [B, in_chans, img_size, img_size].
        embed_dim, depth, num_heads, mlp_ratio: `depth` Blocks(embed_dim, num_heads, mlp_ratio).

    Attributes:
        patch_size, num_patches: p and L.
        patch_embed: nn.Linear(p * p * in_chans, embed_dim), applied to patchify(imgs, p).
        mask_token: nn.Parameter [1, 1, D], trunc_normal_(std=0.02).
        pos_embed: nn.Parameter [1, L, D], trunc_normal_(std=0.02).
        blocks: nn.ModuleList; norm: nn.LayerNorm(D, eps=1e-6).
        head: nn.Linear(D, p * p * in_chans).

    forward(imgs, mask_ratio=0.6, noise=None, generator=None) returns (loss, pred, mask): the
        mask as random_masking draws it, pred [B, L, p * p * C] for every patch, and the
        simmim_loss of unpatchify(pred) against imgs.
    """

    def __init__(self, img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=2, num_heads=4,
                 mlp_ratio=2.0):
        super().__init__()
        ### BEGIN SOLUTION
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Linear(patch_size * patch_size * in_chans, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, patch_size * patch_size * in_chans)
        ### END SOLUTION

    def forward(self, imgs, mask_ratio=0.6, noise=None, generator=None):
        ### BEGIN SOLUTION
        x = self.patch_embed(patchify(imgs, self.patch_size))                # [B, L, D]
        _, mask, _ = random_masking(x, mask_ratio, noise=noise, generator=generator)
        w = mask.unsqueeze(-1)
        x = x * (1 - w) + self.mask_token * w                                 # replace masked tokens
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        pred = self.head(self.norm(x))                                        # [B, L, p*p*C]
        loss = simmim_loss(imgs, unpatchify(pred, self.patch_size), mask, self.patch_size)
        return loss, pred, mask
        ### END SOLUTION


# %% tags=["demo"]
check("m1w03", "simmim_model")

# %% [markdown]
# ## Part 9 — One training loop for both
#
# Both models map `(images, mask_ratio, generator)` to `(loss, pred, mask)`, so one loop
# trains either. It is the loop of week 1 with the labels gone — the images are their own
# targets — and one new duty: the **masks** are random too, so they must come from the
# seeded generator, like the batches.
#
# - Create `generator = torch.Generator().manual_seed(seed)` once. At each step draw the
#   batch indices from it (`torch.randint(0, n, (batch_size,), generator=generator)`) and pass
#   it to the model (`model(batch, mask_ratio=mask_ratio, generator=generator)`), which
#   passes it on to `random_masking`. A fresh mask at every step is part of the method: over
#   many steps every patch of every image is, at some point, a target.
# - AdamW with MAE's $\beta = (0.9, 0.95)$ (a shorter memory for the second moment than
#   Adam's default 0.999) and a constant learning rate; the paper adds warm-up and cosine
#   decay.
# - `zero_grad`, `backward`, `step`, record `loss.item()`; `model.train()` before the loop and
#   `model.eval()` after it.

# %%
def train_mim(model, images, steps=800, lr=3e-3, batch_size=128, mask_ratio=0.75, weight_decay=0.05,
              seed=0):
    """Pre-train a masked image model (MaskedAutoencoder or SimMIM) with AdamW.

    Args:
        model: maps (imgs, mask_ratio=..., generator=...) to (loss, pred, mask).
        images: float tensor [n, C, H, W].
        steps: number of optimisation steps, one random mini-batch each.
        lr, weight_decay: AdamW's learning rate and weight decay, with betas=(0.9, 0.95).
        batch_size: images per step, drawn with replacement.
        mask_ratio: passed to the model.
        seed: seeds the one torch.Generator that draws both the batches and the masks.

    Returns:
        The list of the `steps` training losses (Python floats). The model ends in eval mode.
    """
    ### BEGIN SOLUTION
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=generator)
        loss, _, _ = model(images[idx], mask_ratio=mask_ratio, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
    ### END SOLUTION


# %% tags=["demo"]
check("m1w03", "train")

# %% [markdown]
# ## Part 10 — Try it: filling in handwritten digits
#
# scikit-learn's 8×8 digits, scaled to $[0, 1]$, with 500 held out. With 2×2 patches an image
# is 16 tokens, and at a ratio of 0.75 the encoder sees **4 of them**. We train a small MAE
# (encoder 1 block of width 32, decoder 1 block of width 32) on raw pixels for 800 steps.
#
# How good is good? The decoder always knows the *position* of a patch it must draw, so the
# honest baseline is the best prediction from the position alone: the **mean patch at that
# position** over the training images. An MAE that only learned where ink usually is would
# match it; beating it means the model reads the visible patches and infers the stroke.

# %% tags=["demo"]
import time

from autograder.kit import setup
from autograder.kit.data import digits

setup(seed=0)  # seeds, and one thread: models this small gain nothing from more
split = digits()  # scikit-learn's 8x8 digits in [0, 1]: 1297 to train on, 500 held out
x_train, x_test = split.x_train, split.x_test

torch.manual_seed(0)
mae = MaskedAutoencoder(img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=1, num_heads=2,
                        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, mlp_ratio=2.0,
                        norm_pix_loss=False)
start = time.time()
mae_losses = train_mim(mae, x_train, steps=800, lr=3e-3, batch_size=128, mask_ratio=0.75, seed=0)
print(f"MAE trained in {time.time() - start:.1f} s; loss {mae_losses[0]:.4f} -> {mae_losses[-1]:.4f}")

# %% tags=["demo"]
def held_out_error(model, mask_ratio, noise, metric="mse"):
    """Error on the masked patches of the held-out digits, and the same for the position baseline."""
    keep = int(16 * (1 - mask_ratio))
    mask = (noise.argsort(1).argsort(1) >= keep).float()          # 1 = masked, the same rule as yours
    target, train_patches = patchify(x_test, 2), patchify(x_train, 2)
    with torch.no_grad():
        _, pred, _ = model(x_test, mask_ratio=mask_ratio, noise=noise)
    if metric == "mse":
        baseline = train_patches.mean(0, keepdim=True)          # mean patch at each position
        err, base = ((pred - target) ** 2).mean(-1), ((baseline - target) ** 2).mean(-1)
    else:
        baseline = train_patches.median(0, keepdim=True).values  # the best constant under L1
        err, base = (pred - target).abs().mean(-1), (baseline - target).abs().mean(-1)
    return ((err * mask).sum() / mask.sum()).item(), ((base * mask).sum() / mask.sum()).item()


noise = torch.rand(500, 16, generator=torch.Generator().manual_seed(1))
mse, base = held_out_error(mae, 0.75, noise)
print(f"held-out masked MSE {mse:.4f}; mean patch per position {base:.4f}; ratio {mse / base:.2f}")

# %% [markdown]
# On this run the masked error is roughly three quarters of the baseline's (0.75–0.80 over
# seeds). Longer training keeps improving it; the first couple of hundred steps are spent
# learning the baseline itself (where ink usually is), and only then does the model start
# to use the visible strokes. The pictures say more than the number: the masked input, the
# reconstruction, and the reconstruction with the visible patches pasted back (as in the
# paper's figures).

# %% tags=["demo"]
import matplotlib.pyplot as plt


def show_reconstructions(model, mask_ratio, noise, title, count=8):
    with torch.no_grad():
        _, pred, mask = model(x_test[:count], mask_ratio=mask_ratio, noise=noise[:count])
    patches = patchify(x_test[:count], 2)
    masked = unpatchify(patches * (1 - mask).unsqueeze(-1), 2)
    recon = unpatchify(pred, 2)
    pasted = unpatchify(patches * (1 - mask).unsqueeze(-1) + pred * mask.unsqueeze(-1), 2)
    rows = [("original", x_test[:count]), ("masked", masked), ("prediction", recon),
            ("visible + prediction", pasted)]
    fig, axes = plt.subplots(len(rows), count, figsize=(1.2 * count, 1.3 * len(rows)))
    for r, (name, imgs) in enumerate(rows):
        for c in range(count):
            axes[r, c].imshow(imgs[c, 0].clamp(0, 1), cmap="gray_r", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title)
    plt.tight_layout()
    plt.show()


show_reconstructions(mae, 0.75, noise, "MAE, 75% of the patches masked")

# %% [markdown]
# The same trained model at other mask ratios (it was trained at 0.75 only). With more
# visible patches the reconstructions sharpen; at 90% (one visible patch) they fall back to a
# blurry "average digit around this patch".

# %% tags=["demo"]
for ratio in (0.5, 0.9):
    show_reconstructions(mae, ratio, noise, f"MAE trained at 0.75, tested at {ratio}")

# %% [markdown]
# ### SimMIM on the same digits
#
# Same loop, SimMIM's model and loss, at SimMIM's ratio of 0.6. Its loss is $\ell_1$, whose
# best constant guess is the median rather than the mean, so we compare its held-out mean
# absolute error with the **median** patch at each position. The $\ell_1$ gradient has the
# same size for every error, large or small, so it learns more slowly here: we give it 1200
# steps at a learning rate of $6 \cdot 10^{-3}$. Expect about 0.80–0.89 of the baseline.

# %% tags=["demo"]
torch.manual_seed(0)
simmim = SimMIM(img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2.0)
start = time.time()
simmim_losses = train_mim(simmim, x_train, steps=1200, lr=6e-3, batch_size=128, mask_ratio=0.6, seed=0)
l1, base = held_out_error(simmim, 0.6, noise, metric="l1")
print(f"SimMIM trained in {time.time() - start:.1f} s; held-out masked L1 {l1:.4f}; "
      f"median patch per position {base:.4f}; ratio {l1 / base:.2f}")
show_reconstructions(simmim, 0.6, noise, "SimMIM, 60% of the patches masked")

# %% tags=["demo"]
plt.figure(figsize=(5, 3))
plt.plot(mae_losses, label="MAE (MSE, masked patches)")
plt.plot(simmim_losses, label="SimMIM (L1, masked pixels)")
plt.xlabel("step")
plt.ylabel("training loss")
plt.yscale("log")
plt.legend()
plt.show()

# %% [markdown]
# ## What to take away
#
# - Masked image modeling turns unlabelled images into a prediction task: hide patches,
#   predict their pixels. The mask ratio must be high (75% for MAE) because images are
#   redundant: at low ratios, interpolation solves the task without understanding.
# - Per-sample random masking is a sort: argsort random noise, keep the first
#   $\lfloor L(1-r) \rfloor$ patches, and keep the inverse permutation (`ids_restore`) to put the
#   tokens back.
# - MAE's encoder never sees a mask token: it runs on the visible quarter of the patches,
#   which is both faster and better; a small decoder gets the mask tokens, with position
#   embeddings to tell them apart, and is thrown away after pre-training.
# - MAE's loss is the MSE on masked patches only, against targets normalised per patch
#   (mean and unbiased variance, $\epsilon = 10^{-6}$ inside the root).
# - SimMIM keeps all tokens in the encoder, replaces masked ones with a mask token before
#   the position embeddings, predicts raw pixels with a linear head, and averages an $\ell_1$
#   loss over the masked pixels.
#
# Next week: what a trained ViT attends to, and how to read out its frozen features with
# linear and $k$-NN probes — the standard way to judge what pre-training like this has learned.
