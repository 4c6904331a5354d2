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
# # Week 4 — Attention maps, frozen features, linear probing
#
# Two questions come up every time someone hands you a pretrained Vision Transformer:
#
# 1. **Where does it look?** The attention weights say, token by token, how much of every
#    other token a layer mixes in. The class token's attention over the patches of the last
#    layer is the famous "attention map".
# 2. **What does it know?** Freeze the network, read its features, and train the simplest
#    possible classifier on top: a linear map (a *linear probe*) or a nearest-neighbour vote
#    (a *kNN probe*). Their accuracy measures the features, not the classifier.
#
# Caron et al. (2021, *Emerging Properties in Self-Supervised Vision Transformers*, **DINO**)
# made both famous for self-supervised ViTs: the class token's attention in the last layer of
# a DINO ViT outlines the objects in the image although no label or mask was ever used, and its
# frozen features are excellent kNN classifiers. DINOv2 (Oquab et al., 2023) scaled the recipe
# up; CLIP (Radford et al., 2021) learns from image–text pairs instead. Comparing their
# attention maps is a small industry, and it needs numbers, not only pictures: how spread out a
# map is (its **entropy**), how much of it falls **inside the object**, and whether a few
# **high-norm tokens** soak up the attention (Darcet et al., 2024, *Vision Transformers Need
# Registers*).
#
# This week you write the tools: per-layer attention maps, attention rollout, DINO's
# attention-mass thresholding, three metrics that compare maps, frozen-feature extraction from
# chosen layers, a linear probe that gives *the same answer as scikit-learn's
# `LogisticRegression`*, and DINO's weighted kNN classifier. No pretrained weights are needed:
# the grader plants attention patterns with known answers and trains tiny models inside the
# tests. At the end, an optional section shows how to run the same tools on real DINOv2 and CLIP
# weights when you are online.
#
# **What you may use.** Any tensor operation, `torch.nn`, `torch.nn.functional` and
# `torch.optim`. **What you may not use** (outside cells tagged `demo`): `sklearn` — the point is
# to match it, not to call it — and `timm` (the grader uses it as the trusted reference).

# %% [markdown] boilerplate="how_this_notebook_works"
# (the build writes this cell from autograder/pipeline/templates/how_this_notebook_works.md)

# %%
import math

import torch
import torch.nn.functional as F
from torch import nn

# %% tags=["demo"]
from autograder.selfcheck import check

_ = torch.manual_seed(0)  # it returns the generator, which a cell would display

# %% [markdown]
# ## A small ViT with timm's names
#
# You built this model in week 1; here it is again, compact and finished, so that this week is
# about *reading* a ViT rather than writing one. Its parameter names are `timm`'s
# (`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.{i}.norm1`, `blocks.{i}.attn.qkv`, …,
# `norm`, `head`), so the weights of a `timm.models.vision_transformer.VisionTransformer` load
# into it unchanged — which is how the grader gives it known weights.
#
# Two things to remember from week 1, because this week depends on them:
#
# - **Pre-norm.** Block $\ell$ computes $z'_\ell = z_{\ell-1} + \operatorname{MSA}(\operatorname{LN}_1(z_{\ell-1}))$:
#   the attention weights of a block are computed from the *normalised* tokens
#   $\operatorname{LN}_1(z_{\ell-1})$, not from the block's input itself.
# - **Token 0 is the class token**; the $P$ patch tokens follow in row-major order. The
#   attribute `num_prefix_tokens` counts the tokens that are not patches (one here; DINOv2 with
#   registers has five).
#
# `embed(x)` returns the tokens that enter the first block, `[B, 1 + P, D]`.

# %% given="vit_blocks"
# filled in by the build from reference/given/vit_blocks.py


# %%
class ViT(nn.Module):
    """A Vision Transformer with timm's parameter names (num_classes=0 means no head)."""

    def __init__(self, img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64, depth=3,
                 num_heads=4, mlp_ratio=4.0, qkv_bias=True):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.num_prefix_tokens = 1
        self.grid_size = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def embed(self, x):
        """The tokens that enter the first block: [B, 1 + P, D]."""
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos_embed

    def forward_features(self, x):
        return self.norm(self.blocks(self.embed(x)))

    def forward(self, x):
        return self.head(self.forward_features(x)[:, 0])


# %% [markdown]
# ## Part 1 — Attention maps, layer by layer
#
# In layer $\ell$ and head $h$, the attention matrix is
#
# $$
# A^{(\ell, h)} = \operatorname{softmax}\!\left(\frac{Q^{(\ell,h)} K^{(\ell,h)\top}}{\sqrt{d}}\right) \in \mathbb{R}^{N \times N},
# \qquad [Q, K, V] = \operatorname{LN}_1(z_{\ell-1})\, W_{qkv} + b_{qkv},
# $$
#
# with $N = 1 + P$ tokens and the softmax over keys, so **every row sums to one**: row $i$ says
# how token $i$ spreads its reading over all tokens.
#
# **How do you get it out of a model?** The forward pass computes $A$ and throws it away. Three
# common ways to keep it:
#
# - *A forward hook* on the module that produces it. In `timm`, that module is
#   `attn.attn_drop` (dropout applied to the weights, the identity at evaluation) — but only if
#   you first set `block.attn.fused_attn = False`, because the fused kernel
#   `F.scaled_dot_product_attention` computes the output without ever materialising $A$.
# - *Asking the model*: `timm`'s `forward_intermediates` returns tokens, not attention, and
#   DINO's own ViT has a `get_last_selfattention` method for the last layer only.
# - *Recomputing it* from the parts that are visible: run the blocks one by one, and before
#   each block apply its `norm1` and `attn.qkv` to the tokens, split $q, k$ as the block does,
#   and take the softmax yourself. This needs no hooks, works whatever attention kernel the
#   model uses, and is what you write here.
#
# Write `attention_maps(model, x)` for the `ViT` above: it returns all layers' attention, stacked
# into one tensor `[L, B, H, N, N]` (layer, image, head, query token, key token). Reuse the
# block's own modules and its `scale`; the token stream must go through each block exactly as in
# the forward pass (`tokens = block(tokens)`), so that layer $\ell + 1$ sees what it really sees.

# %%
def attention_maps(model, x):
    """The attention weights of every layer and head of `model` on images `x`.

    Args:
        model: a `ViT` (timm's layout: model.embed, model.blocks[i].norm1, .attn.qkv,
            .attn.num_heads, .attn.head_dim, .attn.scale).
        x: images [B, C, H, W].

    Returns:
        A tensor [L, B, num_heads, N, N] with N = 1 + P: entry [l, b, h, i, j] is how much
        token i attends to token j in head h of block l. Each row sums to one. Written with
        differentiable tensor operations (no .detach(), no torch.no_grad()).
    """
    ### BEGIN SOLUTION
    tokens = model.embed(x)
    maps = []
    for block in model.blocks:
        attn = block.attn
        B, N, _ = tokens.shape
        qkv = attn.qkv(block.norm1(tokens)).reshape(B, N, 3, attn.num_heads, attn.head_dim)
        q, k, _ = qkv.permute(2, 0, 3, 1, 4)                  # each [B, heads, N, head_dim]
        maps.append(((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1))
        tokens = block(tokens)                                 # the next block sees this block's output
    return torch.stack(maps)
    ### END SOLUTION


# %% [markdown]
# ### The class token's map
#
# Row 0 of $A$ is what the **class token** reads. Its entries in the patch columns,
# $A_{0,\,j}$ for the patch tokens $j$, form the attention map that DINO's figures show, one per
# head, once reshaped to the patch grid. Two details:
#
# - It is the **row** (what the class token reads), not the column (how much the others read
#   the class token). The matrix is not symmetric.
# - The columns of the prefix tokens are dropped: the class token's attention to itself, and to
#   register tokens if the model has them. What remains sums to *less* than one — keep that in
#   mind when you compare maps (part 4).
#
# Write `cls_attention(attn, num_prefix_tokens=1)`: for any tensor whose last two dimensions are
# $N \times N$ (one layer `[B, H, N, N]`, all layers `[L, B, H, N, N]`, or a rollout `[B, N, N]`),
# return the class token's row over the patch columns, `[..., N - num_prefix_tokens]`. We keep
# maps flat (one entry per patch, row-major); reshape to `grid × grid` only to plot them.

# %%
def cls_attention(attn, num_prefix_tokens=1):
    """The class token's attention over the patch tokens.

    Args:
        attn: [..., N, N] attention (rows = queries, columns = keys); token 0 is the class token.
        num_prefix_tokens: how many leading tokens are not patches (1 = the class token only).

    Returns:
        [..., N - num_prefix_tokens]: row 0, patch columns only.
    """
    ### BEGIN SOLUTION
    return attn[..., 0, num_prefix_tokens:]
    ### END SOLUTION


# %% tags=["demo"]
check("m1w04", "attention")

# %% [markdown]
# The same maps from `timm`: turn off the fused kernel, hook `attn_drop`, and compare. (The
# grader does exactly this, with the same weights in both models.)

# %% tags=["demo"]
import timm.models.vision_transformer as timm_vit


def timm_attention_maps(model, x):
    """[L, B, H, N, N] from a timm ViT, with forward hooks on attn.attn_drop."""
    store, hooks = [], []
    for block in model.blocks:
        block.attn.fused_attn = False   # the fused kernel never forms the attention matrix
        hooks.append(block.attn.attn_drop.register_forward_hook(lambda m, i, out: store.append(out)))
    try:
        model.forward_features(x)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(store)


cfg = dict(img_size=16, patch_size=4, in_chans=3, num_classes=0, embed_dim=32, depth=3, num_heads=4, mlp_ratio=2.0)
reference = timm_vit.VisionTransformer(**cfg).eval()
ours = ViT(**cfg).eval()
ours.load_state_dict(reference.state_dict(), strict=True)
x = torch.randn(2, 3, 16, 16)
with torch.no_grad():
    mine, theirs = attention_maps(ours, x), timm_attention_maps(reference, x)
print("shape", tuple(mine.shape), " max |ours - timm| =", (mine - theirs).abs().max().item())

# %% [markdown]
# ## Part 2 — Attention rollout
#
# A single layer's map shows what that layer mixes, but the class token of the last layer does
# not read patches directly: it reads tokens that already mixed other tokens in earlier layers.
# Abnar & Zuidema (2020, *Quantifying Attention Flow in Transformers*) follow the mixing through
# all layers with **attention rollout**.
#
# **One layer as a mixing matrix.** Average the heads, $\bar A_\ell = \frac1H \sum_h A^{(\ell,h)}$.
# The block's output is $z_{\ell-1} + \operatorname{MSA}(\dots)$: the **residual connection**
# carries every token straight through, on top of what attention mixes in. Rollout models that
# with an identity term and gives both paths equal weight:
#
# $$
# \hat A_\ell = \operatorname{rownorm}\!\left(\bar A_\ell + I\right), \qquad
# \operatorname{rownorm}(M)_{ij} = \frac{M_{ij}}{\sum_{j'} M_{ij'}} .
# $$
#
# Since the rows of $\bar A_\ell$ already sum to one, this is $\tfrac12 \bar A_\ell + \tfrac12 I$;
# write the renormalisation anyway — it keeps the rows stochastic whatever you add or drop
# (other head fusions such as the maximum, or discarding small weights, break the row sums).
# Without the identity, a map that attends "uniformly" wipes out where each token came from, and
# the product of many layers tends to collapse to the same row for every token.
#
# **Composing layers.** Token $i$ after layer $L$ reads the tokens after layer $L - 1$ with
# weights $\hat A_L[i, :]$, each of which read the tokens after layer $L - 2$ with weights from
# $\hat A_{L-1}$, and so on. Summing over all paths is a matrix product, **later layers on the
# left**:
#
# $$
# R = \hat A_L\, \hat A_{L-1} \cdots \hat A_1, \qquad R_{ij} = \text{how much of input token } j \text{ reaches token } i .
# $$
#
# Each $\hat A_\ell$ is row-stochastic, so $R$ is too. The order matters: these matrices do not
# commute in general, and $\hat A_1 \cdots \hat A_L$ answers a different question.
#
# **A closed form to check against.** If every layer attends uniformly, $\bar A_\ell = U = \frac1N \mathbf 1 \mathbf 1^\top$,
# then $U^k = U$ for $k \ge 1$ and the binomial theorem gives
#
# $$
# R = \left(\tfrac12 I + \tfrac12 U\right)^L = 2^{-L} I + \left(1 - 2^{-L}\right) U .
# $$
#
# After many layers the token's own share $2^{-L}$ fades and every token sees the same uniform
# mixture. (Rollout ignores the values, the MLPs and LayerNorm, and the equal split between the
# residual and attention paths is a heuristic. It is a picture of *where information can flow*,
# not an explanation of the prediction.)
#
# Write `attention_rollout(attentions)` for attentions `[L, B, H, N, N]` (as `attention_maps`
# returns them), returning $R$ as `[B, N, N]`.

# %%
def attention_rollout(attentions):
    """Attention rollout (Abnar & Zuidema, 2020): R = Â_L ... Â_1 with Â = rownorm(mean_heads(A) + I).

    Args:
        attentions: [L, B, H, N, N], layer 0 first (the input layer).

    Returns:
        [B, N, N]; each row sums to one. Differentiable.
    """
    ### BEGIN SOLUTION
    L, B, H, N, _ = attentions.shape
    eye = torch.eye(N, dtype=attentions.dtype, device=attentions.device)
    rollout = eye.expand(B, N, N)
    for layer in attentions:                    # first layer first
        a = layer.mean(dim=1) + eye             # average the heads, add the residual path
        a = a / a.sum(dim=-1, keepdim=True)     # rows sum to one again
        rollout = a @ rollout                   # a later layer multiplies on the left
    return rollout
    ### END SOLUTION


# %% tags=["demo"]
check("m1w04", "rollout")

# %% [markdown]
# The closed form, numerically: uniform attention in 4 layers of 5 tokens.

# %% tags=["demo"]
L, N = 4, 5
uniform = torch.full((L, 1, 2, N, N), 1.0 / N, dtype=torch.float64)
expected = 2.0 ** -L * torch.eye(N) + (1 - 2.0 ** -L) * torch.full((N, N), 1.0 / N)
print("max |rollout - closed form| =", (attention_rollout(uniform)[0] - expected).abs().max().item())

# %% [markdown]
# ## Part 3 — Thresholding a map by its mass
#
# To turn a soft attention map into a mask, DINO keeps **the patches that carry a given share of
# the attention mass** — not a fixed number of patches, and not the patches above a fixed value.
# With the map normalised to sum to one and its entries sorted in decreasing order,
# $a_{(1)} \ge a_{(2)} \ge \dots \ge a_{(P)}$, the mask keeps the smallest top set that reaches the
# mass $t$:
#
# $$
# \text{keep } a_{(1)}, \dots, a_{(k)} \quad\text{with}\quad k = \min\Big\{k : \sum_{i \le k} a_{(i)} \ge t\Big\}.
# $$
#
# A peaked map gives a small mask, a flat map a large one: the mask adapts to how confident the
# map is, which a fixed count ("the top 60% of the patches") cannot do.
#
# DINO's code (`visualize_attention.py` and `video_generation.py` in facebookresearch/dino)
# computes it without a loop: sort **ascending**, normalise, take the cumulative sum, and keep
# the entries where it exceeds $1 - t$ — an entry is kept exactly when the entries above it in
# the ranking hold less than $t$. Then it puts the kept flags back in the patches' own order
# (the inverse of the sorting permutation, `argsort` of the sort indices). In that repository,
# `video_generation.py` defaults to $t = 0.6$ and `visualize_attention.py` thresholds only when
# `--threshold` is given; the paper's segmentation figures keep 60% of the mass.
#
# Write `mass_threshold(attn_map, mass=0.6)` for maps `[..., P]` (any leading dimensions), which
# need not sum to one — a class-token row without its own column does not. Return a boolean
# tensor of the same shape. (Tied values at the cut can go either way; the grader avoids them.)

# %%
def mass_threshold(attn_map, mass=0.6):
    """DINO's mask: the smallest set of largest entries that holds `mass` of the map's total.

    Args:
        attn_map: [..., P] non-negative values (need not sum to one).
        mass: the share of the total to keep, in (0, 1].

    Returns:
        A bool tensor [..., P], True for the kept entries.
    """
    ### BEGIN SOLUTION
    values, order = attn_map.sort(dim=-1)                        # ascending
    values = values / values.sum(dim=-1, keepdim=True)           # a distribution over the patches
    keep_sorted = values.cumsum(dim=-1) > 1 - mass               # what lies above holds less than `mass`
    return keep_sorted.gather(-1, order.argsort(dim=-1))         # back to the patches' own order
    ### END SOLUTION


# %% tags=["demo"]
check("m1w04", "threshold")

# %% tags=["demo"]
peaked = torch.tensor([0.02, 0.70, 0.03, 0.15, 0.02, 0.03, 0.03, 0.02])
flat = torch.full((8,), 1 / 8) + 0.01 * torch.arange(8)
for name, m in (("peaked", peaked), ("flat", flat)):
    print(f"{name:6s} map keeps {int(mass_threshold(m, 0.6).sum())} of 8 patches for 60% of the mass")

# %% [markdown]
# ## Part 4 — Numbers for comparing maps
#
# Pictures of attention maps are easy to over-read. Three numbers make comparisons between
# models (DINO against CLIP, with or without registers) concrete.
#
# **Entropy.** For one row $a$ of an attention matrix (a distribution over $N$ keys),
#
# $$
# H(a) = -\sum_j a_j \ln a_j \quad\text{(nats)}, \qquad 0 \le H(a) \le \ln N,
# $$
#
# with $0 \ln 0 = 0$. It is $0$ for a one-hot row and $\ln N$ for a uniform one: low entropy means
# a focused head. Use the natural logarithm, and sum over the **keys** (the last axis): each row
# is one distribution, each column is not. `torch.xlogy(a, a)` computes $a \ln a$ with $0 \ln 0 = 0$.
#
# **Mass inside a mask.** Given a known object mask $M$ over the patches,
#
# $$
# \operatorname{inside}(a, M) = \frac{\sum_{j \in M} a_j}{\sum_j a_j},
# $$
#
# the fraction of the map's mass on the object. Divide by the map's own total: a class-token map
# without its prefix columns sums to less than one, and different models keep different amounts
# on the class token. A map that ignores the image scores $|M| / P$ — the baseline to beat.
#
# **High-norm tokens.** Darcet et al. (2024) found that large ViTs trained with labels
# (DeiT-III), with text (OpenCLIP) or without supervision (DINOv2) — but not the original DINO —
# repurpose a few patch tokens in low-information background regions to carry global
# information. Those tokens have a far larger norm than the others, the class token attends to
# them, and the attention map shows bright spots on the background. Their fix is a few extra
# "register" tokens, which DINOv2 now ships with. A simple, model-agnostic detector compares
# each token's norm with the typical norm in the same image:
#
# $$
# \operatorname{outlier}(t_j) = \big[\, \lVert t_j \rVert_2 > r \cdot \operatorname{median}_{j'} \lVert t_{j'} \rVert_2 \,\big],
# $$
#
# with the median over the image's tokens (`torch.median` is fine; the grader's cases do not
# depend on how the median of an even count is defined) and a ratio $r$ such as 2.
#
# Write the three functions. Each works on the last dimension and keeps any leading ones.

# %%
def attention_entropy(attn):
    """Shannon entropy in nats of each distribution along the last axis (0 log 0 = 0).

    Args:
        attn: [..., N], each row non-negative and summing to one.

    Returns:
        [...]: -sum_j a_j ln a_j. Differentiable where the entries are positive.
    """
    ### BEGIN SOLUTION
    return -torch.xlogy(attn, attn).sum(dim=-1)
    ### END SOLUTION


def mass_inside(attn_map, mask):
    """The fraction of each map's mass that falls inside `mask`.

    Args:
        attn_map: [..., P] non-negative values (need not sum to one).
        mask: bool [..., P] (or broadcastable to it), True inside the object.

    Returns:
        [...]: sum of the map inside the mask / sum of the whole map.
    """
    ### BEGIN SOLUTION
    return (attn_map * mask).sum(dim=-1) / attn_map.sum(dim=-1)
    ### END SOLUTION


def high_norm_tokens(tokens, ratio=2.0):
    """Tokens whose L2 norm exceeds `ratio` times the median token norm of their image.

    Args:
        tokens: [B, P, D] (patch tokens of B images).
        ratio: how many times the median norm counts as an outlier.

    Returns:
        A bool tensor [B, P].
    """
    ### BEGIN SOLUTION
    norms = tokens.norm(dim=-1)                                  # [B, P]
    typical = norms.median(dim=-1, keepdim=True).values          # one typical norm per image
    return norms > ratio * typical
    ### END SOLUTION


# %% tags=["demo"]
check("m1w04", "metrics")

# %% [markdown]
# ### A DINO-like and a CLIP-like map, planted
#
# Without pretrained weights we can still see what the metrics do, on maps built to look like
# the two behaviours: a 7×7 patch grid with an object in the middle 3×3 patches. The "DINO-like"
# class token puts most of its attention on the object. The "CLIP-like" one reads the image
# diffusely, plus two background tokens with a large norm that take a big share of the
# attention — the artifact pattern of Darcet et al.

# %% tags=["demo"]
g = torch.Generator().manual_seed(0)
grid = 7
obj = torch.zeros(grid, grid, dtype=torch.bool)
obj[2:5, 2:5] = True
obj = obj.flatten()                                            # [49], row-major like the patches
artifacts = torch.tensor([0, 46])                              # two background patches

dino_like = torch.softmax(2.5 * obj + 0.3 * torch.randn(49, generator=g), dim=0)
clip_logits = 0.3 * torch.randn(49, generator=g)
clip_logits[artifacts] += 4.0
clip_like = torch.softmax(clip_logits, dim=0)
dino_tokens = torch.randn(1, 49, 16, generator=g)
clip_tokens = torch.randn(1, 49, 16, generator=g)
clip_tokens[0, artifacts] *= 8.0

print(f"uniform baseline inside the object: {obj.float().mean():.3f};  max entropy ln 49 = {math.log(49):.3f}")
for name, amap, toks in (("DINO-like", dino_like, dino_tokens), ("CLIP-like", clip_like, clip_tokens)):
    outliers = high_norm_tokens(toks, ratio=3.0)[0]
    print(f"{name}: inside {mass_inside(amap, obj):.3f}, entropy {attention_entropy(amap):.3f}, "
          f"high-norm tokens {outliers.nonzero().flatten().tolist()}, "
          f"mass on them {mass_inside(amap, outliers):.3f}, "
          f"60%-mass mask size {int(mass_threshold(amap, 0.6).sum())}")

# %% tags=["demo"]
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
for ax, (title, image) in zip(axes, [("object mask", obj), ("DINO-like map", dino_like),
                                     ("CLIP-like map", clip_like),
                                     ("CLIP-like token norms", clip_tokens[0].norm(dim=-1))]):
    ax.imshow(image.reshape(grid, grid).float(), cmap="viridis")
    ax.set_title(title)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown] written=2
# **Question (2 points).** In the planted example, the CLIP-like map has a *lower* entropy than
# you might expect from a map that "reads the image diffusely", yet little of its mass is on the
# object. Explain why, and what this says about using entropy alone to compare the attention
# maps of two models. Which of the three numbers would you report together, and why?
#
# ### BEGIN SOLUTION
# Entropy measures how concentrated a map is, not *where* it is concentrated. The two artifact
# tokens take a large share of the mass, so the CLIP-like distribution is dominated by two
# entries and its entropy drops, although those entries are background patches. A low entropy
# can therefore mean "focused on the object" (DINO-like) or "focused on artifacts" (CLIP-like);
# on its own it cannot tell them apart. Report the mass inside the object mask (where the
# attention goes, against the |M|/P baseline), the entropy (how spread it is), and the share of
# attention on high-norm tokens (how much is spent on artifacts): together they separate a map
# that segments the object from one that is sharp for the wrong reason.
# ### END SOLUTION

# %% [markdown]
# ### A tiny ViT that learns to look
#
# A model trained inside this notebook, in a second or two: 16×16 images of noise with one
# patch-sized object somewhere, striped horizontally (class 0) or vertically (class 1). A
# one-block ViT can only classify them if its class token attends to the object's patch, and it
# learns to: after 150 steps the share of the class token's patch attention on the object's
# patch rises from about 1/16 (one patch of 16) to more than half, and the map's entropy drops.
# The grader trains the same kind of model inside a test and checks your maps and metrics on it.

# %% tags=["demo"]
def striped_objects(n, seed, size=16, patch=4):
    """Noise images with one striped patch; returns images, labels and the object's patch mask."""
    g = torch.Generator().manual_seed(seed)
    grid = size // patch
    images = 0.3 * torch.randn(n, 1, size, size, generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    where = torch.randint(0, grid * grid, (n,), generator=g)
    stripes = torch.zeros(2, patch, patch)
    stripes[0, ::2, :] = 1.0
    stripes[1, :, ::2] = 1.0
    for i in range(n):
        r, c = divmod(int(where[i]), grid)
        images[i, 0, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] += 2.0 * stripes[labels[i]]
    return images, labels, F.one_hot(where, grid * grid).bool()


images, labels, masks = striped_objects(2048, seed=1)
torch.manual_seed(0)
looker = ViT(img_size=16, patch_size=4, in_chans=1, num_classes=2, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2.0)
with torch.no_grad():
    untrained = cls_attention(attention_maps(looker, images[:256])[-1]).mean(dim=1)
optimizer = torch.optim.AdamW(looker.parameters(), lr=3e-3, weight_decay=0.05)
batches = torch.Generator().manual_seed(0)
for step in range(150):
    idx = torch.randint(0, len(images), (64,), generator=batches)
    loss = F.cross_entropy(looker(images[idx]), labels[idx])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
looker.eval()
with torch.no_grad():
    per_head = cls_attention(attention_maps(looker, images[:256])[-1])            # [256, heads, 16]
    trained = per_head.mean(dim=1)                                                 # mean over heads
for name, amap in (("untrained", untrained), ("trained", trained)):
    normalised = amap / amap.sum(dim=-1, keepdim=True)
    print(f"{name:9s}: inside the object {mass_inside(amap, masks[:256]).mean():.3f} (uniform 1/16 = 0.062), "
          f"entropy {attention_entropy(normalised).mean():.3f} (ln 16 = {math.log(16):.3f})")
print("trained, per head: inside the object",
      [round(v, 3) for v in mass_inside(per_head, masks[:256, None]).mean(dim=0).tolist()])

# %% [markdown]
# ## Part 5 — Frozen features from chosen layers
#
# A **frozen** backbone is used as a fixed function: no gradient reaches it, its weights never
# change, and the features are computed once. Two choices define the features:
#
# - **Which layers.** The last block is not always the best: DINO's linear evaluation
#   concatenates the class tokens of the last 4 blocks for ViT-S (1 for ViT-B), and DINOv2's
#   evaluates both 1 and 4 blocks. Earlier layers keep more local, lower-level information.
# - **Which tokens.** The class token (`"cls"`), or the average of the patch tokens (`"avg"`,
#   which DINO and DINOv2 optionally concatenate for larger models). Both are read after the
#   model's **final LayerNorm** (`model.norm`), applied to each chosen layer's tokens, as DINO's
#   and DINOv2's `get_intermediate_layers` and `timm`'s `forward_intermediates(norm=True)` do.
#
# Write `extract_features(model, x, layers, pool)`: `layers` holds block indices counted from 0
# (block $i$'s *output*; negative indices count from the end, as in Python), and the pooled
# vectors of the chosen layers are concatenated **in the order given**, `[B, len(layers) * D]`.
# Run it under `torch.no_grad()` (DINOv2 uses `torch.inference_mode()`): frozen features carry no
# gradient, and a forward pass without a graph uses far less memory.

# %%
def extract_features(model, x, layers=(-1,), pool="cls"):
    """Frozen features of `model` on images `x`, from the outputs of the chosen blocks.

    Args:
        model: a `ViT`.
        x: images [B, C, H, W].
        layers: block indices (0 = the first block's output; -1 = the last block's output).
        pool: "cls" for the class token, "avg" for the mean of the patch tokens.

    Returns:
        [B, len(layers) * D]: for each layer in the order given, model.norm applied to that
        block's output tokens, then pooled; concatenated along the features. No gradient.
    """
    ### BEGIN SOLUTION
    with torch.no_grad():
        tokens = model.embed(x)
        outputs = []
        for block in model.blocks:
            tokens = block(tokens)
            outputs.append(tokens)
        pooled = []
        for i in layers:
            normed = model.norm(outputs[i])
            pooled.append(normed[:, 0] if pool == "cls" else normed[:, model.num_prefix_tokens:].mean(dim=1))
        return torch.cat(pooled, dim=-1)
    ### END SOLUTION


# %% tags=["demo"]
check("m1w04", "features")

# %% [markdown]
# ## Part 6 — A linear probe that matches scikit-learn
#
# **Why a probe measures the features.** With the backbone frozen, the only thing trained is a
# linear map $x \mapsto W x + b$ on the features. A linear classifier can only separate what the
# features already separate linearly, so its accuracy is a property of the representation: two
# backbones probed the same way are compared on their features alone. (Fine-tuning, by
# contrast, changes the features and measures what they can *become*.) The probe must be
# trained to convergence, and its regularisation matters — so we pin it down exactly, by
# matching a trusted implementation.
#
# **The objective.** Multinomial logistic regression with features $x_i \in \mathbb{R}^D$, labels
# $y_i \in \{0, \dots, K-1\}$, weights $W \in \mathbb{R}^{K \times D}$ and biases $b \in \mathbb{R}^K$.
# scikit-learn's `LogisticRegression(C=C)` (L2 penalty, `lbfgs`, more than two classes) minimises
#
# $$
# C \sum_{i=1}^{n} \operatorname{CE}(W x_i + b,\ y_i) + \tfrac12 \lVert W \rVert_F^2,
# $$
#
# where CE is the softmax cross-entropy and **the intercept $b$ is not penalised**. Dividing by
# $C n$ does not move the minimum and gives the form we optimise — a mean loss plus a penalty
# whose strength shrinks with the number of samples:
#
# $$
# \mathcal{L}(W, b) = \frac1n \sum_{i=1}^n \operatorname{CE}(W x_i + b,\ y_i) + \frac{1}{2 C n} \lVert W \rVert_F^2 .
# $$
#
# (scikit-learn's own `lbfgs` solver works with this scaled form internally:
# `l2_reg_strength = 1 / (C * n_samples)`.) Forgetting the $n$ regularises $n$ times too strongly.
#
# **Two classes are different.** With $K = 2$, scikit-learn fits *one* weight vector (a binomial
# model) rather than two softmax rows, and the penalty on it is not the same as on the two rows.
# Everything here assumes $K \ge 3$.
#
# **Optimiser.** The objective is smooth and strictly convex in $W$, and small: full-batch L-BFGS
# (`torch.optim.LBFGS` with `line_search_fn="strong_wolfe"`, in float64, from zeros) reaches the
# minimum to many digits in a few dozen iterations, which is what lets us compare with
# scikit-learn to 1e-4. Stochastic gradient descent, as DINOv2 uses on ImageNet (where the data
# do not fit in one batch), would need many epochs and a schedule to get close.
#
# Write `probe_loss` (the objective $\mathcal{L}$ above) and `train_linear_probe`, which
# minimises it. The weights are `[K, D]` like `nn.Linear`'s, the logits `features @ weight.T + bias`.

# %%
def probe_loss(weight, bias, features, labels, C=1.0):
    """The linear probe's objective, matched to scikit-learn's LogisticRegression(C).

    Args:
        weight: [K, D]; bias: [K]; features: [n, D]; labels: int64 [n] in 0..K-1.
        C: inverse regularisation strength, as in scikit-learn.

    Returns:
        A scalar: mean cross-entropy + ||weight||^2 / (2 C n); the bias is not penalised.
    """
    ### BEGIN SOLUTION
    n = features.shape[0]
    logits = features @ weight.T + bias
    return F.cross_entropy(logits, labels) + (weight ** 2).sum() / (2 * C * n)
    ### END SOLUTION


def train_linear_probe(features, labels, num_classes, C=1.0, max_iter=100):
    """Minimise `probe_loss` with full-batch L-BFGS in float64, starting from zeros.

    Args:
        features: [n, D] (frozen features); labels: int64 [n]; num_classes: K (at least 3).
        C: inverse regularisation strength; max_iter: L-BFGS iterations.

    Returns:
        (weight [K, D], bias [K]), detached.
    """
    ### BEGIN SOLUTION
    features = features.double()
    weight = torch.zeros(num_classes, features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-10, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = probe_loss(weight, bias, features, labels, C)
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()
    ### END SOLUTION


# %% tags=["demo"]
check("m1w04", "linear_probe")

# %% [markdown]
# The match, on a small problem (scikit-learn is allowed here, in a demo cell):

# %% tags=["demo"]
from sklearn.linear_model import LogisticRegression

g = torch.Generator().manual_seed(0)
X = torch.randn(200, 6, generator=g, dtype=torch.float64)
y = torch.randint(0, 4, (200,), generator=g)
X[:, :4] += 1.5 * F.one_hot(y, 4)
W, b = train_linear_probe(X, y, 4, C=0.3)
sk = LogisticRegression(C=0.3, tol=1e-10, max_iter=10_000).fit(X.numpy(), y.numpy())
ours_p = torch.softmax(X @ W.T + b, dim=-1)
print("max |probabilities - sklearn's| =", (ours_p - torch.from_numpy(sk.predict_proba(X.numpy()))).abs().max().item())
print("max |weights - sklearn's coef_| =", (W - torch.from_numpy(sk.coef_)).abs().max().item())

# %% [markdown]
# ## Part 7 — A kNN probe, DINO style
#
# A kNN probe trains nothing at all: a test image is classified by a vote of its nearest
# training images in feature space. It needs no hyperparameter search over learning rates and
# reacts directly to the geometry of the features, which is why DINO reports it next to the
# linear probe. DINO's version (`eval_knn.py`):
#
# 1. L2-normalise all features, so that the dot product is the **cosine similarity** $s$;
# 2. take the $k$ most similar training samples ($k = 20$: the code's help says "20 is usually
#    working the best");
# 3. weight each neighbour's vote by $\exp(s / T)$ with temperature $T = 0.07$, so that closer
#    neighbours count much more;
# 4. the score of class $c$ is the sum of the weights of the neighbours labelled $c$; predict
#    the class with the highest score.
#
# Write it in three pieces: `knn_vote` does steps 2–4 for given similarities; `knn_classify`
# normalises and compares test features with training features; `knn_leave_one_out` classifies
# every sample of one labelled set by the *others* — useful when there is no separate test set,
# and correct only if a sample never votes for itself (its similarity to itself is 1, the
# largest possible, so it would always be its own nearest neighbour). Setting the diagonal of the
# similarity matrix to $-\infty$ before the top-$k$ removes it.

# %%
def knn_vote(similarity, train_labels, num_classes, k=20, temperature=0.07):
    """Weighted vote of the k most similar training samples.

    Args:
        similarity: [M, n] similarities between M queries and n training samples.
        train_labels: int64 [n]; num_classes: C.
        k: neighbours per query (k <= n); temperature: T in the weights exp(s / T).

    Returns:
        [M, C] class scores: the sum of exp(s / T) over each class's neighbours among the top k.
    """
    ### BEGIN SOLUTION
    top, index = similarity.topk(k, dim=-1)                                   # [M, k]
    weights = (top / temperature).exp()
    votes = F.one_hot(train_labels[index], num_classes).to(weights.dtype)     # [M, k, C]
    return (weights.unsqueeze(-1) * votes).sum(dim=1)
    ### END SOLUTION


def knn_classify(train_features, train_labels, test_features, num_classes, k=20, temperature=0.07):
    """DINO's weighted kNN: cosine similarities to the training features, then `knn_vote`.

    Returns:
        [M, C] class scores for the M test samples.
    """
    ### BEGIN SOLUTION
    train = F.normalize(train_features, dim=-1)
    test = F.normalize(test_features, dim=-1)
    return knn_vote(test @ train.T, train_labels, num_classes, k, temperature)
    ### END SOLUTION


def knn_leave_one_out(features, labels, num_classes, k=20, temperature=0.07):
    """Each sample classified by the weighted kNN vote of all the *other* samples.

    Returns:
        [n, C] class scores.
    """
    ### BEGIN SOLUTION
    normed = F.normalize(features, dim=-1)
    similarity = normed @ normed.T
    similarity.fill_diagonal_(float("-inf"))    # a sample never votes for itself
    return knn_vote(similarity, labels, num_classes, k, temperature)
    ### END SOLUTION


# %% tags=["demo"]
check("m1w04", "knn")

# %% [markdown]
# ## Try it: probing a frozen random ViT on digits
#
# scikit-learn's 1797 handwritten digits (8×8, values 0–16), scaled to $[0, 1]$, with 500 held
# out. The backbone is a ViT with 2×2 patches (16 tokens), three blocks of width 64, and **random
# weights**: PyTorch's default initialisation and position embeddings of standard deviation 0.5.
# We read the class token after blocks 0 and 2, train the linear probe and run the kNN probe.
# The grader runs this protocol with your functions and a fixed random backbone.
#
# A random network is the baseline every pretrained backbone must beat: its features are a
# fixed nonlinear transformation of the pixels, and on a dataset this easy the pixels
# themselves are hard to beat. (Try `std=0.02` for the position embeddings: the random network
# then barely knows where each patch is — nearly a bag of patches — and the probes drop sharply.)

# %% tags=["demo"]
import time

from autograder.kit import setup
from autograder.kit.data import digits

setup(seed=0)  # seeds, and one thread: models this small gain nothing from more
split = digits()  # scikit-learn's 8x8 digits in [0, 1]: 1297 to train on, 500 held out
pixels = torch.cat([split.x_train, split.x_test])   # all 1797 images: features are extracted once
targets = torch.cat([split.y_train, split.y_test])
train_idx, test_idx = torch.arange(1297), torch.arange(1297, 1797)

torch.manual_seed(0)
backbone = ViT(img_size=8, patch_size=2, in_chans=1, num_classes=0, embed_dim=64, depth=3, num_heads=4, mlp_ratio=2.0)
nn.init.normal_(backbone.pos_embed, std=0.5)
nn.init.normal_(backbone.cls_token, std=0.5)
backbone.eval()


def probe_accuracies(features):
    start = time.time()
    W, b = train_linear_probe(features[train_idx], targets[train_idx], 10, C=1.0)
    linear = ((features[test_idx].double() @ W.T + b).argmax(-1) == targets[test_idx]).float().mean().item()
    scores = knn_classify(features[train_idx], targets[train_idx], features[test_idx], 10)
    knn = (scores.argmax(-1) == targets[test_idx]).float().mean().item()
    return linear, knn, time.time() - start


for name, feats in (("raw pixels", pixels.flatten(1)),
                    ("random ViT, cls of blocks 0 and 2", extract_features(backbone, pixels, [0, -1], "cls")),
                    ("random ViT, avg of blocks 0 and 2", extract_features(backbone, pixels, [0, -1], "avg"))):
    linear, knn, seconds = probe_accuracies(feats)
    print(f"{name:34s} {feats.shape[1]:4d} features: linear probe {linear:.3f}, 20-NN {knn:.3f}  ({seconds:.1f} s)")

# %% [markdown]
# With these weights the random ViT's class tokens reach about 0.74 with the linear probe and
# 0.81 with the kNN probe (0.71–0.79 and 0.77–0.86 over the ten random backbones the grader was
# calibrated with), well below the pixels themselves (0.97 and 0.98). A pretrained backbone that
# does not beat its random initialisation, probed the same way, has learned nothing useful for
# the task.

# %% [markdown] written=2
# **Question (2 points).** A colleague reports "our self-supervised ViT reaches 75% linear-probe
# accuracy on this dataset" as evidence that pre-training worked. Using what you measured above,
# say what is missing from that claim and what you would report alongside it. Why does a probe
# keep the backbone frozen, rather than fine-tuning it, when the goal is to compare
# representations?
#
# ### BEGIN SOLUTION
# The number means little without baselines measured with the same probe: the frozen *random*
# initialisation of the same architecture reaches 71–79% here and raw pixels 97%, so 75% may
# be no gain at all. Report the probe accuracy of the random-init backbone and of the raw input
# (and the kNN probe, which has no training hyperparameters), with the same protocol (layers,
# pooling, C, split). The backbone is frozen so that the only trained part is a linear map (or
# nothing, for kNN): the accuracy then measures how linearly separable the classes already are
# in the representation. Fine-tuning changes the features themselves, so it measures what the
# network can be trained into, which mixes the representation with the optimisation.
# ### END SOLUTION

# %% [markdown]
# ## Optional, online: real DINO, DINOv2 and CLIP maps
#
# Everything above ran offline. If you are online and have a few hundred MB to spare, the cells
# below download real weights through `timm` (from the Hugging Face Hub) and compare the
# class-token maps of DINO ViT-S/16, DINOv2 ViT-S/14 (without and with registers) and CLIP
# ViT-B/16 on the first image of the DINO paper. `timm`'s models are not our `ViT` class, so the
# attention comes from hooks (`timm_attention_maps` from part 1); every metric is yours.
#
# Nothing here is graded, and nothing runs unless you set `RUN_ONLINE = True` *and* the Hub can
# be reached: offline, the cells print one line and stop.

# %% tags=["demo"]
import socket

RUN_ONLINE = False   # set to True to download the weights (several hundred MB in all)


def hub_reachable(host="huggingface.co", port=443, timeout=3.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


ONLINE = RUN_ONLINE and hub_reachable()
print("online section:", "running" if ONLINE else "skipped (set RUN_ONLINE = True, and be online)")

# %% tags=["demo"]
if ONLINE:
    import io
    import urllib.request

    import timm
    from PIL import Image

    with urllib.request.urlopen("https://dl.fbaipublicfiles.com/dino/img.png", timeout=30) as response:
        photo = Image.open(io.BytesIO(response.read())).convert("RGB")

    models = {"DINO ViT-S/16": "vit_small_patch16_224.dino",
              "DINOv2 ViT-S/14": "vit_small_patch14_dinov2.lvd142m",
              "DINOv2 ViT-S/14 + 4 registers": "vit_small_patch14_reg4_dinov2.lvd142m",
              "CLIP ViT-B/16": "vit_base_patch16_clip_224.openai"}
    fig, axes = plt.subplots(1, len(models) + 1, figsize=(3 * (len(models) + 1), 3))
    axes[0].imshow(photo.resize((224, 224)))
    axes[0].set_title("input")
    for ax, (name, timm_name) in zip(axes[1:], models.items()):
        model = timm.create_model(timm_name, pretrained=True, num_classes=0, img_size=224).eval()
        data = timm.data.resolve_data_config({}, model=model)
        data["input_size"] = (3, 224, 224)        # DINOv2's default is 518; its position embeddings were resized
        x = timm.data.create_transform(**data)(photo).unsqueeze(0)
        with torch.no_grad():
            maps = timm_attention_maps(model, x)                       # [L, 1, H, N, N]
            tokens = model.forward_features(x)[:, model.num_prefix_tokens:]
        side = int(math.isqrt(tokens.shape[1]))
        last = cls_attention(maps[-1, 0], model.num_prefix_tokens)    # [H, P]
        mean_map = last.mean(dim=0)
        rows = maps[-1, 0, :, 0] / maps[-1, 0, :, 0].sum(-1, keepdim=True)
        outliers = high_norm_tokens(tokens, ratio=2.0)[0]
        print(f"{name:30s} CLS entropy per head {attention_entropy(rows).mean():.2f} nats "
              f"(max {math.log(rows.shape[-1]):.2f}); high-norm patch tokens {int(outliers.sum())} "
              f"of {outliers.numel()}, holding {mass_inside(mean_map, outliers):.1%} of the CLS attention; "
              f"60%-mass mask covers {mass_threshold(mean_map, 0.6).float().mean():.1%} of the patches")
        ax.imshow(mean_map.reshape(side, side), cmap="inferno")
        ax.set_title(name, fontsize=8)
    for ax in axes:
        ax.axis("off")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# What to look for: DINO's map follows the object; DINOv2 and CLIP without registers show a few
# bright background spots that coincide with high-norm tokens and hold a large share of the
# attention; with registers the spots disappear (Darcet et al., 2024). Run `attention_rollout`
# on `maps` too, and compare `mass_threshold` masks across heads.
#
# ## What to take away
#
# - Attention weights are not stored by the forward pass: recompute them from `norm1` and `qkv`,
#   or hook them (with fused attention turned off). Each row is a distribution over keys; the
#   class token's map is row 0 over the patch columns.
# - Rollout multiplies the layers' head-averaged attention, each mixed half-and-half with the
#   identity for the residual path and renormalised, later layers on the left.
# - DINO's masks keep the smallest set of patches that holds a given share of the attention mass.
# - Compare maps with numbers: entropy (how focused), mass inside a known mask (where), and the
#   attention spent on high-norm tokens (artifacts).
# - Probes measure frozen features: a linear probe is logistic regression whose L2 penalty,
#   written as a mean loss, is $\lVert W \rVert^2 / (2Cn)$ with an unpenalised bias; a kNN probe
#   votes with cosine similarities weighted by $\exp(s/T)$. Always report a random-init baseline.
#
# Next: module 2 puts transformers to work on detection, starting with DETR.
