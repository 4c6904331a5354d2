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
# # Week 2 — ViT against Swin, CoAtNet and DeiT: self-attention in the spatial domain
#
# Last week's ViT treats an image as a bag of patches: every patch attends to every
# other patch, and the only trace of the 2-D layout is a learned position embedding.
# That is very general, and it is also expensive (the cost of attention grows with the
# *square* of the number of patches) and hungry for data (the model has to learn from
# examples what a convolution knows by construction: that nearby pixels matter most and
# that a pattern means the same thing wherever it appears).
#
# Three well-known answers, published within a few months of each other, attack these
# problems from different sides:
#
# | model | paper | what it changes | the idea |
# | --- | --- | --- | --- |
# | **Swin** | Liu et al., ICCV 2021 | the attention | attend only inside local windows, shift the windows from one layer to the next, and add a bias that depends on the *relative* position of two tokens |
# | **CoAtNet** | Dai et al., NeurIPS 2021 | the architecture | convolutions (MBConv) in the early, high-resolution stages, attention with a relative bias in the late ones |
# | **DeiT** | Touvron et al., ICML 2021 | the training | the plain ViT, trained on ImageNet alone with a strong recipe and a *distillation token* that learns from a convnet teacher |
#
# This week you write the parts that make each of them what it is, and each part is
# checked against `timm`'s own module holding the same weights. On the way you look
# closely at attention itself: which properties it must have, and what it costs.
#
# **What you may use.** Any tensor operation, `nn.Linear`, `nn.Conv2d`, `nn.LayerNorm`,
# `nn.BatchNorm2d`, `nn.AvgPool2d`, `nn.GELU`, `nn.SiLU`, `nn.Identity`, `nn.Parameter`,
# `torch.roll`. **What you may not use** (outside cells tagged `demo`): `timm`,
# `torchvision`, `nn.MultiheadAttention`, `nn.TransformerEncoderLayer` and
# `F.scaled_dot_product_attention`. Attention is written by hand, once, in part 1, and
# every attention module you write calls it.

# %% [markdown] boilerplate="how_this_notebook_works"
# (the build writes this cell from autograder/pipeline/templates/how_this_notebook_works.md)

# %% [markdown]
# ## The contract with the grader
#
# The grader builds your classes by name with keyword arguments, loads the weights of the
# matching `timm` module into them with `load_state_dict(..., strict=True)`, and compares
# outputs and gradients. These details decide whether that works:
#
# | part | `timm` counterpart | what must match |
# | --- | --- | --- |
# | windows | `swin_transformer.window_partition`, `window_reverse` | channels-last `[B, H, W, C]` maps; windows ordered image by image, then row-major over the window grid; `window_size` is an `(h, w)` tuple |
# | relative position | `swin_transformer.get_relative_position_index` | index $(\Delta y + M_h - 1)(2M_w - 1) + (\Delta x + M_w - 1)$ with $\Delta$ = query position minus key position |
# | window attention | `swin_transformer.WindowAttention` | `qkv`, `proj`, `relative_position_bias_table` of shape `[(2Mh-1)(2Mw-1), heads]`; the index is a buffer registered with `persistent=False` |
# | shifted-window mask | `SwinTransformerBlock.attn_mask` | `[num_windows, M², M²]`, `0` where two tokens may attend, `-100` where they may not |
# | Swin block | `swin_transformer.SwinTransformerBlock` | `norm1`, `attn`, `norm2`, `mlp.fc1`, `mlp.fc2`; channels-last input; **LayerNorm eps 1e-5** (PyTorch's default, unlike ViT's 1e-6) |
# | Swin classifier | `swin_transformer.SwinTransformer` (one stage) | `patch_embed.proj`, `patch_embed.norm`, `blocks.{i}`, `norm`, `head`; global average pooling |
# | MBConv | `maxxvit.MbConvBlock` (CoAtNet-0's settings) | `shortcut`, `pre_norm`, `conv1_1x1`, `norm1`, `conv2_kxk`, `norm2`, `se.fc1`, `se.fc2`, `conv3_1x1` |
# | relative attention | `maxxvit.Attention2d` with `RelPosBias` | `qkv` and `proj` as 1×1 convs, `rel_pos.relative_position_bias_table`; channels-first; *head-first* `qkv` layout |
# | DeiT | `deit.VisionTransformerDistilled` | last week's names plus `dist_token`, `head_dist`; `pos_embed` has $N + 2$ slots |

# %%
import math

import torch
import torch.nn.functional as F
from torch import nn

# %% tags=["demo"]
from autograder.selfcheck import check

_ = torch.manual_seed(0)  # it returns the generator, which a cell would display

# %% [markdown]
# ## Last week's building blocks (given)
#
# DeiT is a ViT, so it needs last week's pieces. They are given here, written compactly
# and with `timm`'s names; read them, do not change them. `Mlp` is also the MLP of a Swin
# block.

# %% given="vit_blocks"
# filled in by the build from reference/given/vit_blocks.py


# %% [markdown]
# # Part A — Self-attention in the spatial domain
#
# ## Part 1 — Attention with an additive bias
#
# Everything this week is a variation on one formula. For queries, keys and values
# $Q, K, V \in \mathbb{R}^{N \times d}$ and a bias $B \in \mathbb{R}^{N \times N}$,
#
# $$
# \operatorname{Attention}(Q, K, V; B) = \operatorname{softmax}\!\left(\frac{QK^\top}{\sqrt d} + B\right) V .
# $$
#
# Last week $B = 0$. This week $B$ carries two new kinds of information:
#
# - **where the tokens are, relative to each other** — Swin's and CoAtNet's *relative
#   position bias*: $B_{ij}$ is a learned number that depends only on the offset between
#   token $i$ and token $j$;
# - **who may look at whom** — a *mask*: a large negative $B_{ij}$ makes
#   $\exp(\cdot) \approx 0$, so token $i$ ignores token $j$ (Swin's shifted windows).
#
# The bias is added to the scores *before* the softmax, so each row of weights still sums
# to one. Write `attention` for any number of leading (batch, head) dimensions and let the
# bias broadcast: a bias of shape `[heads, N, N]` with inputs of shape `[B, heads, N, d]`
# gives every image the same bias per head.
#
# ### Properties you can test
#
# A few facts follow from the formula alone, and the grader tests your function with them
# (try them yourself in the demo below):
#
# 1. **Uniform attention.** If $Q = 0$ (or $K = 0$) and $B = 0$, all scores are equal,
#    every weight is $1/N$, and each output row is the mean of the values.
# 2. **Permutation equivariance.** Reorder the tokens with a permutation matrix $P$:
#    $\operatorname{Attention}(PQ, PK, PV) = P\,\operatorname{Attention}(Q, K, V)$. The
#    scores become $P\,QK^\top P^\top$, a row-wise softmax commutes with permuting rows and
#    columns, and $P^\top P = I$. With a bias this holds only if the bias is permuted too
#    ($PBP^\top$): attention itself knows nothing about positions; position information has
#    to be *put in*, by embeddings (ViT) or by a bias (Swin, CoAtNet).
# 3. **Equality with PyTorch's fused kernel.** `F.scaled_dot_product_attention(q, k, v,
#    attn_mask=B)` computes the same thing without storing the $N \times N$ weights (it
#    adds a float `attn_mask` to the scaled scores). You may not use it in your code, but
#    the grader compares against it.

# %%
def attention(q, k, v, bias=None):
    """Scaled dot-product attention with an optional additive bias.

    Args:
        q, k, v: tensors of shape [..., N, d] (any number of leading dimensions).
        bias: None, or a tensor that broadcasts to the [..., N, N] score matrix; it is added
            to q k^T / sqrt(d) before the softmax.

    Returns:
        softmax(q k^T / sqrt(d) + bias) v, of shape [..., N, d]; the softmax runs over the
        keys (the last axis of the scores). Written with tensor operations only.
    """
    ### BEGIN SOLUTION
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)   # [..., N, N]
    if bias is not None:
        scores = scores + bias
    return scores.softmax(dim=-1) @ v
    ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "attention")

# %% [markdown]
# The three properties, measured. A learned position bias (here a random one that is *not*
# permuted with the tokens) is exactly what breaks permutation equivariance.

# %% tags=["demo"]
g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(2, 9, 8, generator=g, dtype=torch.float64) for _ in range(3))
perm = torch.randperm(9, generator=g)
zero = torch.zeros_like(q)
pos_bias = torch.randn(9, 9, generator=g, dtype=torch.float64)
checks = {
    "uniform: |attn(0, k, v) - mean(v)|": attention(zero, k, v) - v.mean(dim=-2, keepdim=True),
    "equivariant: |attn(Pq, Pk, Pv) - P attn(q, k, v)|":
        attention(q[:, perm], k[:, perm], v[:, perm]) - attention(q, k, v)[:, perm],
    "... with a position bias that stays in place":
        attention(q[:, perm], k[:, perm], v[:, perm], pos_bias) - attention(q, k, v, pos_bias)[:, perm],
    "fused kernel: |attn(q, k, v, B) - sdpa(q, k, v, B)|":
        attention(q, k, v, pos_bias) - F.scaled_dot_product_attention(q, k, v, attn_mask=pos_bias),
}
for name, difference in checks.items():
    print(f"{name:52s} max {difference.abs().max().item():.1e}")

# %% [markdown]
# # Part B — Swin: attention inside shifted windows
#
# Swin (*Shifted windows*) keeps the Transformer block but changes where attention looks.
# The feature map of $h \times w$ tokens is cut into non-overlapping windows of
# $M \times M$ tokens ($M = 7$ in the paper), and self-attention runs **inside each
# window only**. Counting multiply-adds for one layer with $C$ channels (the paper's
# equations 1 and 2):
#
# $$
# \Omega(\text{MSA}) = 4hwC^2 + 2(hw)^2C, \qquad \Omega(\text{W-MSA}) = 4hwC^2 + 2M^2hwC .
# $$
#
# The first term is the four $C \times C$ projections (query, key, value, output) of every
# token; the second is $QK^\top$ and the weighted sum of values. Global attention is
# quadratic in the number of tokens $hw$, windowed attention linear, because each token
# only meets the $M^2$ tokens of its window. That is what lets Swin work at high
# resolution, with a pyramid of feature maps like a CNN (patch merging halves the
# resolution between stages; we stay within one stage here).
#
# Two more ideas complete the block:
#
# - **Shifted windows.** With fixed windows, information never crosses a window border.
#   So every second block shifts the window grid by $\lfloor M/2 \rfloor$ tokens, and the
#   windows of one layer straddle the borders of the previous layer's. The paper's ablation
#   finds the shift helps on classification and much more on detection and segmentation.
# - **Relative position bias.** Instead of adding position embeddings to the tokens,
#   each head adds a learned bias $B_{ij}$ to the attention scores that depends only on
#   the offset between token $i$ and token $j$ inside the window.
#
# ## Part 2 — Window partition and reverse
#
# Swin keeps feature maps **channels-last**, `[B, H, W, C]`, so that a window is a plain
# sub-array. `window_partition` cuts the map into windows of `window_size = (Mh, Mw)`
# and stacks them along the batch axis, `[B * nW, Mh, Mw, C]`: all windows of image 0
# first, each image's windows in row-major order over the window grid. The trick is one
# reshape that splits each spatial axis into (window index, position in window),
#
# ```
# x.reshape(B, H // Mh, Mh, W // Mw, Mw, C)  # b, window row, row in window, window column, column in window, c
# ```
#
# then a permute that brings the two window indices next to each other (and the two
# in-window positions next to each other) before merging. `window_reverse` undoes it
# exactly. Assume `H` and `W` are multiples of the window size.

# %%
def window_partition(x, window_size):
    """Cut a channels-last map into non-overlapping windows.

    Args:
        x: [B, H, W, C], with H and W multiples of the window size.
        window_size: (Mh, Mw), a tuple of two ints.

    Returns:
        [B * nW, Mh, Mw, C] with nW = (H // Mh) * (W // Mw): image by image, each image's
        windows in row-major order over the window grid.
    """
    ### BEGIN SOLUTION
    B, H, W, C = x.shape
    mh, mw = window_size
    x = x.reshape(B, H // mh, mh, W // mw, mw, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, mh, mw, C)
    ### END SOLUTION


def window_reverse(windows, window_size, H, W):
    """The inverse of window_partition: [B * nW, Mh, Mw, C] -> [B, H, W, C]."""
    ### BEGIN SOLUTION
    mh, mw = window_size
    C = windows.shape[-1]
    x = windows.reshape(-1, H // mh, W // mw, mh, mw, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)
    ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "windows")

# %% [markdown]
# A 4×6 map of numbered tokens cut into 2×3 windows: each window holds a contiguous block.

# %% tags=["demo"]
grid = torch.arange(24).reshape(1, 4, 6, 1)
for i, w in enumerate(window_partition(grid, (2, 3))):
    print(f"window {i}:", w[..., 0].tolist())

# %% [markdown]
# ## Part 3 — The relative position index
#
# Inside an $M_h \times M_w$ window, the offset between a query at $(y_i, x_i)$ and a key at
# $(y_j, x_j)$ is $(\Delta y, \Delta x) = (y_i - y_j,\, x_i - x_j)$, with
# $\Delta y \in [-(M_h-1), M_h-1]$ and $\Delta x \in [-(M_w-1), M_w-1]$: there are only
# $(2M_h-1)(2M_w-1)$ different offsets, however many pairs of tokens there are. Swin keeps
# one learnable number per offset and per head in a table $\hat B$ of shape
# `[(2Mh-1)(2Mw-1), heads]`, and looks up $B_{ij} = \hat B[\text{index}(i, j)]$ with
#
# $$
# \text{index}(i, j) = (\Delta y + M_h - 1)\,(2M_w - 1) + (\Delta x + M_w - 1),
# $$
#
# the offset shifted to start at zero and flattened row-major. Tokens are numbered
# row-major inside the window ($i = y_i M_w + x_i$). The index is the same for every
# layer and never trained, so it is computed once.
#
# For a 2×2 window, token 0 is the top-left one, and its offset to itself is $(0, 0)$,
# index $1 \cdot 3 + 1 = 4$, the centre of the 3×3 table of offsets:
#
# ```
# [[4, 3, 1, 0],
#  [5, 4, 2, 1],
#  [7, 6, 4, 3],
#  [8, 7, 5, 4]]
# ```
#
# Why relative rather than absolute positions? Inside a window, what matters for a
# pattern is where things are *relative to each other*; a bias that depends on the offset
# is the same wherever the window sits, which is the translation equivariance a
# convolution has by construction. The Swin paper reports that relative bias beats
# absolute position embeddings (and no position information at all) in its ablation.

# %%
def relative_position_index(win_h, win_w):
    """The relative position index of a win_h x win_w window.

    Returns:
        A long tensor [N, N], N = win_h * win_w, tokens numbered row-major. Entry (i, j) is
        (dy + win_h - 1) * (2 * win_w - 1) + (dx + win_w - 1), where (dy, dx) is the
        position of token i minus the position of token j.
    """
    ### BEGIN SOLUTION
    ys, xs = torch.meshgrid(torch.arange(win_h), torch.arange(win_w), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])   # [2, N]
    offsets = coords[:, :, None] - coords[:, None, :]    # [2, N, N]: query minus key
    dy = offsets[0] + win_h - 1
    dx = offsets[1] + win_w - 1
    return dy * (2 * win_w - 1) + dx
    ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "relative_position")

# %% [markdown]
# ## Part 4 — Window attention with a relative position bias
#
# `WindowAttention` is last week's multi-head attention applied to a batch of windows,
# `[B * nW, N, C]` with $N = M_h M_w$ tokens each, plus the bias:
#
# 1. `qkv` and the split into heads exactly as last week: `qkv(x).reshape(B_, N, 3,
#    heads, head_dim).permute(2, 0, 3, 1, 4)`.
# 2. The bias: gather the table with the flattened index, `[N*N, heads]`, reshape to
#    `[N, N, heads]` and **move the heads first**, `[heads, N, N]`, so that it broadcasts
#    over the windows of the batch.
# 3. An optional `mask` of shape `[nW, N, N]` (part 5) is added to the bias of each
#    window. The windows in the batch are ordered image by image, so window `b * nW + w`
#    gets `mask[w]`: view `q, k, v` as `[B, nW, heads, N, head_dim]` and the combined bias
#    as `[nW, heads, N, N]`, and broadcasting does the rest.
# 4. `attention(q, k, v, bias)`, then merge the heads and apply `proj` as last week.
#
# **Parameters and buffers.** Initialise the table with small random values
# (`nn.init.trunc_normal_(table, std=0.02)`, as `timm` does) and register the index with
# `self.register_buffer("relative_position_index", ..., persistent=False)`: a buffer moves
# with the module (`.double()`, `.to(device)`), and `persistent=False` keeps it out of the
# `state_dict`, as in `timm` — it is derived data, not a learned weight.

# %%
class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a relative position bias (timm's names).

    Args:
        dim: channels C; num_heads: heads (head_dim = C // num_heads).
        window_size: (Mh, Mw). qkv_bias: whether qkv has a bias.

    Attributes:
        qkv: nn.Linear(dim, 3 * dim); proj: nn.Linear(dim, dim); scale = head_dim ** -0.5.
        relative_position_bias_table: nn.Parameter [(2Mh-1)(2Mw-1), num_heads].
        relative_position_index: a non-persistent buffer, relative_position_index(Mh, Mw).

    relative_position_bias(): the bias [num_heads, N, N] read from the table.
    forward(x, mask=None): x is [B * nW, N, C]; mask is None or [nW, N, N]; returns [B * nW, N, C].
    """

    def __init__(self, dim, num_heads, window_size, qkv_bias=True):
        super().__init__()
        ### BEGIN SOLUTION
        self.window_size = tuple(window_size)
        mh, mw = self.window_size
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * mh - 1) * (2 * mw - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(mh, mw), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        ### END SOLUTION

    def relative_position_bias(self):
        ### BEGIN SOLUTION
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]  # [N*N, heads]
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)                         # [heads, N, N]
        ### END SOLUTION

    def forward(self, x, mask=None):
        ### BEGIN SOLUTION
        B_, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B_, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias()                  # [heads, N, N]
        if mask is not None:
            nw = mask.shape[0]
            q, k, v = (t.reshape(B_ // nw, nw, self.num_heads, N, self.head_dim) for t in (q, k, v))
            bias = bias + mask.unsqueeze(1)                    # [nW, heads, N, N]
        out = attention(q, k, v, bias).reshape(B_, self.num_heads, N, self.head_dim)
        return self.proj(out.transpose(1, 2).reshape(B_, N, C))
        ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "window_attention")

# %% [markdown]
# What one head's bias looks like: for the centre query of a 5×5 window, the bias it adds to
# each of the 25 keys, laid out on the window. A table in which only one offset is large
# makes the query look at one neighbour, wherever the window is: attention with a
# relative bias can imitate a convolution's fixed spatial pattern (CoAtNet builds on this,
# part 10).

# %% tags=["demo"]
import matplotlib.pyplot as plt

wa = WindowAttention(dim=8, num_heads=1, window_size=(5, 5))
with torch.no_grad():
    wa.relative_position_bias_table.zero_()
    wa.relative_position_bias_table[(0 + 4) * 9 + (-1 + 4)] = 3.0  # offset (dy, dx) = (0, -1): the key to the right
    bias = wa.relative_position_bias()[0]
plt.figure(figsize=(2.5, 2.5))
plt.imshow(bias[12].reshape(5, 5), cmap="viridis")
plt.title("bias of query 12 (centre)")
plt.axis("off")
plt.show()

# %% [markdown]
# ## Part 5 — The shifted-window mask
#
# Shifting the window grid by $s = \lfloor M/2 \rfloor$ naively creates more windows, some
# of them smaller than $M \times M$ ($\lceil h/M \rceil + 1$ per column instead of
# $\lceil h/M \rceil$), which breaks the batching. Swin's trick: **roll** the feature map
# by $-s$ along both axes (`torch.roll(x, shifts=(-s, -s), dims=(1, 2))`), cut the *same*
# regular windows as before, and roll back afterwards. The number of windows stays the
# same.
#
# The price: the windows along the bottom and right edges now contain tokens that were
# far apart in the image (rolled in from the top or the left). They must not attend to
# each other. Label the rolled map in $3 \times 3$ regions, along each axis
#
# | rows (or columns) | what is there after the roll |
# | --- | --- |
# | `[0, H - M)` | every window row but the last: tokens that were neighbours before the roll too |
# | `[H - M, H - s)` | the last window row's tokens from the bottom of the image |
# | `[H - s, H)` | the $s$ rows rolled in from the top |
#
# so region labels run 0…8. Two tokens of one window may attend to each other only if they
# have the same label. As a tensor:
#
# 1. an image of labels `[1, H, W, 1]`, filled region by region with slices
#    `slice(0, -M), slice(-M, -s), slice(-s, None)` along each axis;
# 2. `window_partition` of it, flattened to `[nW, M*M]`;
# 3. the pairwise difference of labels inside each window, `[nW, M*M, M*M]`;
# 4. `-100.0` where the difference is non-zero, `0.0` elsewhere.
#
# Adding $-100$ to a score multiplies its weight by $e^{-100} \approx 4 \times 10^{-44}$:
# zero for all practical purposes (`-inf` would also work, but a finite number can never
# produce `nan` from a fully masked row).

# %%
def shifted_window_mask(height, width, window_size, shift_size):
    """The attention mask of shifted-window attention (SW-MSA).

    Args:
        height, width: size H, W of the feature map (multiples of window_size).
        window_size: M (square windows). shift_size: s, with 0 < s < M.

    Returns:
        A float tensor [nW, M*M, M*M], nW = (H // M) * (W // M), windows in window_partition's
        order: 0.0 where two tokens of a window come from the same region of the rolled map,
        -100.0 where they do not.
    """
    ### BEGIN SOLUTION
    labels = torch.zeros(1, height, width, 1)
    bands = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    region = 0
    for rows in bands:
        for cols in bands:
            labels[:, rows, cols, :] = region
            region += 1
    windows = window_partition(labels, (window_size, window_size)).reshape(-1, window_size * window_size)
    different = windows[:, None, :] != windows[:, :, None]   # [nW, N, N]
    return torch.zeros(different.shape).masked_fill(different, -100.0)
    ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "shift_mask")

# %% [markdown]
# The four masks of an 8×8 map with $M = 4$, $s = 2$ (yellow: may attend). The top-left
# window lies in the interior and is unmasked; the others mix regions.

# %% tags=["demo"]
mask = shifted_window_mask(8, 8, 4, 2)
fig, axes = plt.subplots(1, 4, figsize=(10, 2.6))
for i, ax in enumerate(axes):
    ax.imshow(mask[i] == 0, cmap="viridis")
    ax.set_title(f"window {i}")
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Part 6 — The Swin block
#
# A Swin block is last week's pre-norm block with window attention in place of global
# attention, on a channels-last map `[B, H, W, C]`:
#
# $$
# \hat z = \text{(S)W-MSA}(\operatorname{LN}(z)) + z, \qquad z' = \operatorname{MLP}(\operatorname{LN}(\hat z)) + \hat z .
# $$
#
# The attention branch, step by step:
#
# 1. `norm1`, then, if `shift_size > 0`, roll by `(-s, -s)` over the spatial axes;
# 2. `window_partition`, reshaped to `[B * nW, M*M, C]`;
# 3. `attn(windows, mask=self.attn_mask)`;
# 4. back to `[B * nW, M, M, C]`, `window_reverse`, and roll by `(+s, +s)`;
# 5. the residual connection, then the MLP branch as in ViT (it works on the last axis, so
#    channels-last needs no change).
#
# Compute the mask once in `__init__` with your `shifted_window_mask` and register it as a
# non-persistent buffer `attn_mask` (`None` when `shift_size == 0`), as `timm` does.
#
# **One detail differs from last week:** Swin's LayerNorms use PyTorch's default
# `eps=1e-5`, not ViT's `1e-6`. Copying last week's `nn.LayerNorm(dim, eps=1e-6)` gives a
# block that runs and trains, but no longer computes what `timm`'s does.
#
# Assume `input_resolution` is a multiple of `window_size` and larger than it. (`timm`
# also pads maps that are not, and shrinks the window when the map is smaller.)

# %%
class SwinTransformerBlock(nn.Module):
    """A Swin Transformer block (W-MSA when shift_size == 0, SW-MSA otherwise), timm's names.

    Args:
        dim: channels C. input_resolution: (H, W) of the token map.
        num_heads: attention heads. window_size: M (int). shift_size: s (int, 0 or 0 < s < M).
        mlp_ratio: the MLP's hidden size is int(dim * mlp_ratio). qkv_bias: bias of attn.qkv.

    Attributes:
        norm1, norm2: nn.LayerNorm(dim) (eps 1e-5). attn: WindowAttention. mlp: Mlp.
        attn_mask: a non-persistent buffer, shifted_window_mask(H, W, M, s), or None if s == 0.

    forward(x): [B, H, W, C] -> [B, H, W, C].
    """

    def __init__(self, dim, input_resolution, num_heads, window_size=7, shift_size=0, mlp_ratio=4.0,
                 qkv_bias=True):
        super().__init__()
        ### BEGIN SOLUTION
        self.input_resolution = tuple(input_resolution)
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, (window_size, window_size), qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        H, W = self.input_resolution
        mask = shifted_window_mask(H, W, window_size, shift_size) if shift_size > 0 else None
        self.register_buffer("attn_mask", mask, persistent=False)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        B, H, W, C = x.shape
        M, s = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x)
        if s > 0:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        windows = window_partition(x, (M, M)).reshape(-1, M * M, C)
        windows = self.attn(windows, mask=self.attn_mask)
        x = window_reverse(windows.reshape(-1, M, M, C), (M, M), H, W)
        if s > 0:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))
        ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "swin_block")

# %% [markdown]
# The same numbers as `timm`'s block, given the same weights:

# %% tags=["demo"]
from timm.models import swin_transformer as timm_swin

torch.manual_seed(0)
reference = timm_swin.SwinTransformerBlock(dim=32, input_resolution=(8, 8), num_heads=2, window_size=4,
                                           shift_size=2).eval()
ours = SwinTransformerBlock(dim=32, input_resolution=(8, 8), num_heads=2, window_size=4, shift_size=2).eval()
ours.load_state_dict(reference.state_dict(), strict=True)
x = torch.randn(2, 8, 8, 32)
with torch.no_grad():
    print(f"max |ours - timm| = {(ours(x) - reference(x)).abs().max().item():.1e}")

# %% [markdown]
# ## Part 7 — A small Swin classifier
#
# One stage of Swin is enough for 8×8 digits: a patch embedding, a stack of blocks that
# alternate regular and shifted windows (`shift_size = 0` for even blocks, `window_size // 2`
# for odd ones, as in the paper), a final LayerNorm, global average pooling over the token
# map (Swin has no class token) and a linear head:
#
# 1. `patch_embed.proj`: a convolution with kernel and stride `patch_size`, then move the
#    channels last: `[B, H/P, W/P, C]`;
# 2. `patch_embed.norm`: LayerNorm (Swin normalises the patch embeddings; ViT does not);
# 3. the blocks, then `norm` — this is `forward_features`, `[B, H/P, W/P, C]`;
# 4. `forward`: the mean over the two spatial axes, then `head`.
#
# `patch_embed` is any module holding `proj` and `norm`; an `nn.ModuleDict` will do. All
# LayerNorms use the default eps of 1e-5. These names are `timm`'s `SwinTransformer`
# with one stage, except that `timm` calls the blocks `layers.0.blocks` and the head
# `head.fc`; the grader renames them.
#
# Notice what is missing: there is no absolute position embedding. Positions enter only
# through the relative bias inside each window, and the pooling averages over the map, so
# the classifier is close to blind to *where* a pattern is — shifting an image by a
# multiple of the window leaves the windows' contents and biases unchanged. That is a
# CNN's prior, and mostly a good one: a task such as "is the top or the bottom half
# brighter?" is hard for this model, while "horizontal or vertical stripes?" is easy.

# %%
class SwinClassifier(nn.Module):
    """A one-stage Swin Transformer for classification.

    Args:
        img_size, patch_size, in_chans: inputs are [B, in_chans, img_size, img_size].
        num_classes, embed_dim: logits size and channels C.
        depth: number of blocks; block i has shift_size 0 if i is even, window_size // 2 if odd.
        num_heads, window_size, mlp_ratio, qkv_bias: passed to every SwinTransformerBlock.

    Attributes: patch_embed (with proj: Conv2d and norm: LayerNorm), blocks (nn.Sequential),
    norm (LayerNorm), head (nn.Linear).

    forward_features(x): [B, in_chans, H, W] -> [B, H/P, W/P, C]; forward(x): -> [B, num_classes].
    """

    def __init__(self, img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=2,
                 num_heads=2, window_size=2, mlp_ratio=4.0, qkv_bias=True):
        super().__init__()
        ### BEGIN SOLUTION
        grid = img_size // patch_size
        self.patch_embed = nn.ModuleDict({
            "proj": nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size),
            "norm": nn.LayerNorm(embed_dim),
        })
        self.blocks = nn.Sequential(*[
            SwinTransformerBlock(embed_dim, (grid, grid), num_heads, window_size,
                                 shift_size=0 if i % 2 == 0 else window_size // 2,
                                 mlp_ratio=mlp_ratio, qkv_bias=qkv_bias)
            for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        ### END SOLUTION

    def forward_features(self, x):
        ### BEGIN SOLUTION
        x = self.patch_embed["proj"](x).permute(0, 2, 3, 1)   # [B, H/P, W/P, C]
        x = self.patch_embed["norm"](x)
        return self.norm(self.blocks(x))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.head(self.forward_features(x).mean(dim=(1, 2)))
        ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "swin_classifier")

# %% [markdown]
# ## Part 8 — What attention costs
#
# Equations 1 and 2 above count multiply-adds (MACs) for one image and one layer; a
# multiply-add is two floating-point operations (FLOPs). Memory is dominated by what
# attention stores: one weight per (head, query, key) pair, $\text{heads} \cdot (hw)^2$
# for global attention and $\text{heads} \cdot hw \cdot M^2$ for windows — the weights must
# be kept for the backward pass. (Fused kernels such as FlashAttention avoid storing
# them by recomputing in the backward pass: they save memory, not FLOPs.)
#
# Write `attention_cost`, which returns both numbers for a feature map of `height × width`
# tokens with `dim` channels; `window_size=None` means global attention. The grader
# compares it with the closed form and with FLOPs that PyTorch counts while running a real
# attention module (`torch.utils.flop_counter.FlopCounterMode`, which counts
# $2 m n k$ FLOPs per matrix product and ignores the softmax and additions).

# %%
def attention_cost(height, width, dim, num_heads, window_size=None):
    """The cost of one multi-head self-attention layer on one image of height x width tokens.

    Args:
        height, width: the token map. dim: channels C. num_heads: heads.
        window_size: None for global attention, or M for attention in M x M windows
            (height and width multiples of M).

    Returns:
        {"macs": multiply-adds of the qkv and output projections and of the two attention
         products (Swin's equations 1 and 2), "attention_weights": the number of attention
         weights one forward pass computes, over all heads}. Both are Python ints.
    """
    ### BEGIN SOLUTION
    tokens = height * width
    keys = tokens if window_size is None else window_size * window_size
    return {"macs": 4 * tokens * dim * dim + 2 * tokens * keys * dim,
            "attention_weights": num_heads * tokens * keys}
    ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "cost")

# %% [markdown]
# ### Measured: global against windowed attention
#
# Swin-T's first stage works on $56 \times 56$ tokens with $C = 96$, 3 heads and $M = 7$.
# Global attention is the same `WindowAttention` module with one window covering the whole
# map. Below, for growing maps: the FLOPs PyTorch counts, the memory the softmax allocates
# for the attention weights (measured with `torch.profiler`) and the wall-clock time (the
# median of three runs; noisy on a shared machine), each next to what your
# `attention_cost` predicts. Doubling the side multiplies the tokens by 4: the windowed
# cost grows 4×, the global one up to 16×. The time of global attention grows even faster
# than its FLOPs: its $N \times N$ weights no longer fit in the CPU's caches.

# %% tags=["demo"]
import time

from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from autograder.kit import setup

setup(seed=0)  # one thread: on a small shared CPU it gives steadier timings than several

def measure(module, x, mask=None):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x, mask=mask)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        module(x, mask=mask)
    softmax_bytes = sum(e.self_cpu_memory_usage for e in prof.key_averages() if e.key == "aten::_softmax")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        with torch.no_grad():
            module(x, mask=mask)
        times.append(time.perf_counter() - start)
    return counter.get_total_flops(), softmax_bytes, sorted(times)[1]


C, heads, M = 96, 3, 7
rows = []
for side in (14, 28, 56):
    x = torch.randn(1, side, side, C)
    windowed = WindowAttention(C, heads, (M, M)).eval()
    flops_w, mem_w, time_w = measure(windowed, window_partition(x, (M, M)).reshape(-1, M * M, C))
    whole = WindowAttention(C, heads, (side, side)).eval()
    flops_g, mem_g, time_g = measure(whole, x.reshape(1, side * side, C))
    cost_w = attention_cost(side, side, C, heads, M)
    cost_g = attention_cost(side, side, C, heads)
    rows.append((side, flops_g, 2 * cost_g["macs"], mem_g, 4 * cost_g["attention_weights"], time_g,
                 flops_w, 2 * cost_w["macs"], mem_w, 4 * cost_w["attention_weights"], time_w))

print(f"{'tokens':>7} | {'global GFLOPs':>13} {'formula':>8} {'attn MB':>8} {'formula':>8} {'ms':>6} |"
      f" {'window GFLOPs':>13} {'formula':>8} {'attn MB':>8} {'formula':>8} {'ms':>6}")
for side, fg, cg, mg, wg, tg, fw, cw, mw, ww, tw in rows:
    print(f"{side * side:7d} | {fg / 1e9:13.3f} {cg / 1e9:8.3f} {mg / 2**20:8.2f} {wg / 2**20:8.2f} {tg * 1e3:6.1f} |"
          f" {fw / 1e9:13.3f} {cw / 1e9:8.3f} {mw / 2**20:8.2f} {ww / 2**20:8.2f} {tw * 1e3:6.1f}")

# %% [markdown]
# # Part C — CoAtNet: convolution and attention in one network
#
# CoAtNet starts from two observations. A depthwise convolution computes
# $y_i = \sum_{j \in \mathcal{L}(i)} w_{i-j} \odot x_j$: fixed weights that depend only on the
# *offset* $i - j$ (translation equivariance, a strong prior that helps with little data).
# Self-attention computes $y_i = \sum_{j} \operatorname{softmax}_j(x_i^\top x_j)\, x_j$:
# weights that depend on the *content*, over the whole image (more capacity, needs more
# data). **Relative attention** adds the two inside the softmax (the paper's
# pre-normalisation variant):
#
# $$
# y_i = \sum_j \frac{\exp\!\left(x_i^\top x_j + w_{i-j}\right)}{\sum_k \exp\!\left(x_i^\top x_k + w_{i-k}\right)}\, x_j ,
# $$
#
# which is exactly Swin's relative position bias, applied to the whole feature map instead
# of a window. Then the paper stacks the two kinds of layer vertically: a convolutional
# stem, two stages of MBConv blocks at high resolution (1/4 and 1/8 of the input), two
# stages of Transformer blocks with relative attention at low resolution (1/16, 1/32) —
# the C-C-T-T layout. Among the layouts the paper compares, more convolution generalised
# better and more attention gave more capacity; C-C-T-T was the best trade-off, and it
# transferred best. CoAtNet reports 86.0% ImageNet top-1 without extra data.
#
# ## Part 9 — The MBConv block
#
# MBConv is the inverted-bottleneck block of MobileNetV2 and EfficientNet: expand the
# channels 4× with a 1×1 convolution, filter each channel spatially with a 3×3
# *depthwise* convolution (`groups` = channels: one 3×3 filter per channel, no mixing),
# reweight the channels with squeeze-and-excitation, and project back with a 1×1
# convolution. CoAtNet uses it with a pre-norm residual, like its Transformer blocks:
#
# ```
# shortcut = shortcut(x)                              # identity, or avg-pool 2x2 + 1x1 conv when stride = 2
# x = pre_norm(x)                                     # BatchNorm, no activation
# x = GELU(norm1(conv1_1x1(x)))                       # in_chs -> mid = out_chs * expand_ratio, no bias
# x = GELU(norm2(conv2_kxk(x)))                       # 3x3 depthwise, padding 1, stride 1 or 2, no bias
# x = se(x)                                           # squeeze-and-excitation
# return conv3_1x1(x) + shortcut                      # mid -> out_chs, with bias
# ```
#
# **Squeeze-and-excitation** (Hu et al., 2018) lets each channel be scaled by a gate that
# depends on the whole image: average over space (the squeeze), two 1×1 convolutions with
# a SiLU in between down to `int(out_chs * se_ratio)` channels and back (the excitation),
# a sigmoid, and multiply: `x * sigmoid(fc2(silu(fc1(x.mean((2, 3), keepdim=True)))))`.
#
# **The details `timm` fixes** (its `MbConvBlock` with CoAtNet-0's configuration):
# BatchNorm layers with PyTorch's defaults; `conv1_1x1` and `conv2_kxk` without bias,
# `conv3_1x1` and the SE convolutions with bias; with stride 2 the downsampling happens in
# the depthwise convolution, and the shortcut is `shortcut.pool` (`nn.AvgPool2d(2)`)
# followed by `shortcut.expand` (a 1×1 convolution with bias, or `nn.Identity()` when
# `in_chs == out_chs`); with stride 1, `in_chs == out_chs` and the shortcut is
# `nn.Identity()`. Name the norms, convolutions and the SE module as in the contract; the
# GELU has no parameters, so how you hold it is up to you.

# %%
class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(silu(fc1(mean over space of x)))), with fc1, fc2 1x1 convs with bias."""

    def __init__(self, channels, reduced):
        super().__init__()
        ### BEGIN SOLUTION
        self.fc1 = nn.Conv2d(channels, reduced, kernel_size=1)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(reduced, channels, kernel_size=1)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        scale = self.fc2(self.act(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * scale.sigmoid()
        ### END SOLUTION


class MBConv(nn.Module):
    """CoAtNet's pre-norm MBConv block with squeeze-and-excitation (timm's MbConvBlock names).

    Args:
        in_chs, out_chs: channels in and out (equal when stride == 1).
        stride: 1 or 2. expand_ratio: mid = int(out_chs * expand_ratio) channels.
        se_ratio: the SE module reduces mid channels to int(out_chs * se_ratio).

    Attributes: shortcut, pre_norm, conv1_1x1, norm1, conv2_kxk, norm2, se (SqueezeExcite),
    conv3_1x1 (see the markdown above for their exact form).

    forward(x): [B, in_chs, H, W] -> [B, out_chs, H / stride, W / stride].
    """

    def __init__(self, in_chs, out_chs, stride=1, expand_ratio=4.0, se_ratio=0.25):
        super().__init__()
        ### BEGIN SOLUTION
        mid = int(out_chs * expand_ratio)
        if stride == 2:
            self.shortcut = nn.Sequential()
            self.shortcut.add_module("pool", nn.AvgPool2d(2))
            self.shortcut.add_module("expand", nn.Conv2d(in_chs, out_chs, 1) if in_chs != out_chs
                                     else nn.Identity())
        else:
            assert in_chs == out_chs, "with stride 1 the residual needs in_chs == out_chs"
            self.shortcut = nn.Identity()
        self.pre_norm = nn.BatchNorm2d(in_chs)
        self.conv1_1x1 = nn.Conv2d(in_chs, mid, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(mid)
        self.conv2_kxk = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.se = SqueezeExcite(mid, int(out_chs * se_ratio))
        self.conv3_1x1 = nn.Conv2d(mid, out_chs, 1)
        self.act = nn.GELU()
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        shortcut = self.shortcut(x)
        x = self.pre_norm(x)
        x = self.act(self.norm1(self.conv1_1x1(x)))
        x = self.act(self.norm2(self.conv2_kxk(x)))
        x = self.se(x)
        return self.conv3_1x1(x) + shortcut
        ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "mbconv")

# %% [markdown]
# ## Part 10 — Relative attention, the CoAtNet way
#
# CoAtNet's Transformer stages attend over the whole (small) feature map with a relative
# position bias: your `WindowAttention` with a single window would compute it. `timm`'s
# implementation (`maxxvit.Attention2d`) differs in layout, and we follow it so that its
# weights load:
#
# - the input is **channels-first**, `[B, C, H, W]`, and `qkv` and `proj` are 1×1
#   convolutions (the same maps as linear layers, with weights of shape `[out, in, 1, 1]`);
# - the `qkv` output channels are laid out **head first**: `[B, heads, 3 * dim_head, H*W]`,
#   and each head's block of `3 * dim_head` channels holds its q, then its k, then its v —
#   unlike ViT's `(3, heads, head_dim)` order. So
#   `q, k, v = qkv(x).reshape(B, heads, 3 * dim_head, H * W).transpose(-2, -1).chunk(3, dim=-1)`;
# - the bias table lives in a submodule, `rel_pos.relative_position_bias_table`, of shape
#   `[(2H-1)(2W-1), heads]` for a `feat_size = (H, W)` map, with the same index as Swin
#   (a non-persistent buffer);
# - the number of heads is `dim // dim_head`.
#
# The output of `attention` is `[B, heads, H*W, dim_head]`; channel `h * dim_head + c` of
# the result is head `h`'s channel `c`, reshaped back to `[B, C, H, W]`, then `proj`.
#
# With $W_q = W_k = 0$ the scores are all equal and only the bias remains: a table that is
# large at a single offset makes every query copy the value of one neighbour — a
# convolution with a one-hot kernel, written as attention. The grader checks that closed
# form, and that without a bias the layer is permutation-equivariant over pixels.

# %%
class RelativePositionBias(nn.Module):
    """A learned bias per (offset, head) over an H x W map (timm's RelPosBias names).

    Attributes: relative_position_bias_table: nn.Parameter [(2H-1)(2W-1), num_heads];
    relative_position_index: a non-persistent buffer, relative_position_index(H, W).
    forward(): the bias [num_heads, H*W, H*W].
    """

    def __init__(self, feat_size, num_heads):
        super().__init__()
        ### BEGIN SOLUTION
        h, w = feat_size
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * h - 1) * (2 * w - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(h, w), persistent=False)
        ### END SOLUTION

    def forward(self):
        ### BEGIN SOLUTION
        n = self.relative_position_index.shape[0]
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)
        ### END SOLUTION


class RelativeAttention2d(nn.Module):
    """CoAtNet's multi-head relative attention over a whole [B, C, H, W] map (timm's Attention2d).

    Args:
        dim: channels C. feat_size: (H, W) of the map. dim_head: channels per head
        (num_heads = dim // dim_head). bias: whether qkv and proj have a bias.

    Attributes: qkv: nn.Conv2d(dim, 3 * dim, 1); rel_pos: RelativePositionBias(feat_size, heads);
    proj: nn.Conv2d(dim, dim, 1); num_heads, dim_head.

    forward(x): [B, C, H, W] -> [B, C, H, W].
    """

    def __init__(self, dim, feat_size, dim_head=32, bias=True):
        super().__init__()
        ### BEGIN SOLUTION
        self.num_heads = dim // dim_head
        self.dim_head = dim_head
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=bias)
        self.rel_pos = RelativePositionBias(feat_size, self.num_heads)
        self.proj = nn.Conv2d(dim, dim, 1, bias=bias)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        B, C, H, W = x.shape
        qkv = self.qkv(x).reshape(B, self.num_heads, 3 * self.dim_head, H * W)  # head first
        q, k, v = qkv.transpose(-2, -1).chunk(3, dim=-1)                        # each [B, heads, HW, dim_head]
        out = attention(q, k, v, self.rel_pos())                                # [B, heads, HW, dim_head]
        return self.proj(out.transpose(-2, -1).reshape(B, C, H, W))
        ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "relative_attention")

# %% [markdown]
# # Part D — DeiT: a ViT that learns from a teacher
#
# DeiT does not change ViT's architecture for its main result: with a strong training
# recipe (heavy augmentation, stochastic depth, AdamW, long schedules) a ViT-B trained on
# ImageNet-1k alone reaches 81.8% top-1 at 224×224 pixels (83.1% after fine-tuning at
# 384×384), where the ViT paper's ViT-B/16 trained on ImageNet alone reached 77.9%. On
# top of that it adds **distillation through attention**: a second learned token, the
# *distillation token*, enters the sequence beside the class token, goes through the same
# blocks, and its output feeds a second head, `head_dist`, trained to reproduce the
# predictions of a teacher network. Because the two tokens attend to the patches like
# any other token, the student "learns from the teacher through attention".
#
# The paper's findings that shape the exercise:
#
# - **A convnet is the better teacher.** Distilled from a RegNetY convnet, the ViT ends up
#   more accurate than when distilled from a transformer teacher; the authors' explanation
#   is that the convnet's inductive biases are passed on through its predictions.
# - **Hard labels work better than soft ones.** Instead of matching the teacher's softened
#   probabilities (the KL divergence of Hinton et al.), the distillation head is trained
#   with cross-entropy against the teacher's *argmax* label $y_t = \arg\max_c Z_t(c)$:
#
# $$
# \mathcal{L} = (1 - \alpha)\, \mathcal{L}_\text{CE}\big(\psi(Z_\text{cls}), y\big) + \alpha\, \mathcal{L}_\text{CE}\big(\psi(Z_\text{dist}), y_t\big), \qquad \alpha = \tfrac12 ,
# $$
#
#   where $Z_\text{cls}$ and $Z_\text{dist}$ are the logits of the class and distillation
#   heads and $\psi$ the softmax. The teacher's label can differ from the true one, for
#   example when a random crop removed the object.
# - **At test time both heads vote.** The paper's "late fusion" of the two heads is, in
#   the released code and in `timm`, the average of the two heads' logits.
#
# ## Part 11 — The distilled ViT
#
# Compared with last week's `VisionTransformer`: a `dist_token` of shape `[1, 1, D]`,
# placed right after the class token, so the sequence is `[cls, dist, patch_1, …, patch_N]`;
# `pos_embed` with $N + 2$ slots (both tokens get a position); and `head_dist`. As in the
# DeiT code, `forward` returns the pair `(head(x[:, 0]), head_dist(x[:, 1]))` in training
# mode (`self.training` is True) — the loss needs both — and their average in eval mode.
# (`timm` returns the pair only after `set_distilled_training(True)`; the grader sets it.)
# Use the given `PatchEmbed`, `Block` and a final `nn.LayerNorm(D, eps=1e-6)`, and
# initialise the tokens and `pos_embed` with `nn.init.trunc_normal_(p, std=0.02)`.

# %%
class DistilledVisionTransformer(nn.Module):
    """DeiT: a ViT with a class token and a distillation token (timm's names).

    Args: as last week's VisionTransformer: img_size, patch_size, in_chans, num_classes,
    embed_dim, depth, num_heads, mlp_ratio, qkv_bias.

    Attributes: patch_embed (PatchEmbed), cls_token [1, 1, D], dist_token [1, 1, D],
    pos_embed [1, N + 2, D], blocks (nn.Sequential of Block), norm (LayerNorm eps 1e-6),
    head and head_dist (nn.Linear(D, num_classes)).

    forward_features(x): [B, C, H, W] -> [B, N + 2, D] after the final norm (token 0 is the
    class token, token 1 the distillation token).
    forward(x): in training mode the pair (class-head logits, distillation-head logits);
    in eval mode their average. Each is [B, num_classes].
    """

    def __init__(self, img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=2,
                 num_heads=2, mlp_ratio=4.0, qkv_bias=True):
        super().__init__()
        ### BEGIN SOLUTION
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 2, embed_dim))
        for p in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        self.head_dist = nn.Linear(embed_dim, num_classes)
        ### END SOLUTION

    def forward_features(self, x):
        ### BEGIN SOLUTION
        x = self.patch_embed(x)
        B = x.shape[0]
        tokens = [self.cls_token.expand(B, -1, -1), self.dist_token.expand(B, -1, -1), x]
        x = torch.cat(tokens, dim=1) + self.pos_embed
        return self.norm(self.blocks(x))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        features = self.forward_features(x)
        logits, logits_dist = self.head(features[:, 0]), self.head_dist(features[:, 1])
        if self.training:
            return logits, logits_dist
        return (logits + logits_dist) / 2
        ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "deit")

# %% [markdown]
# ## Part 12 — The hard-label distillation loss
#
# Write the loss above. The teacher's logits only pick a label (`argmax` over the classes),
# so no gradient flows into them; the class head learns from the true labels, the
# distillation head from the teacher's.

# %%
def hard_distillation_loss(logits, logits_dist, labels, teacher_logits, alpha=0.5):
    """DeiT's hard-label distillation loss.

    Args:
        logits: [B, K] class-head logits. logits_dist: [B, K] distillation-head logits.
        labels: [B] true labels (int64). teacher_logits: [B, K] the teacher's logits.
        alpha: weight of the distillation term.

    Returns:
        A scalar: (1 - alpha) * CE(logits, labels) + alpha * CE(logits_dist, argmax of the
        teacher's logits), each cross-entropy averaged over the batch.
    """
    ### BEGIN SOLUTION
    teacher_labels = teacher_logits.argmax(dim=-1)
    return ((1 - alpha) * F.cross_entropy(logits, labels)
            + alpha * F.cross_entropy(logits_dist, teacher_labels))
    ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "distillation")

# %% [markdown]
# # Part E — Training
#
# ## Part 13 — One loop for both
#
# Last week's training loop, extended for distillation: without a teacher it minimises
# the cross-entropy of the model's logits; with `teacher_logits` (one row per training
# image, computed beforehand) the model must return the pair of logits in training mode,
# and the loss is your `hard_distillation_loss` on the batch.
#
# - Draw each batch's indices with a `torch.Generator` seeded with `seed`
#   (`torch.randint(0, n, (batch_size,), generator=g)`), so that a run is repeatable.
# - AdamW with the given learning rate and weight decay; `model.train()` before the loop,
#   `model.eval()` after it; record `loss.item()` at every step.

# %%
def train_model(model, images, labels, steps=300, lr=3e-3, batch_size=128, weight_decay=0.05, seed=0,
                teacher_logits=None, alpha=0.5):
    """Train `model` with AdamW on random mini-batches; with hard-label distillation if a teacher is given.

    Args:
        model: maps [B, C, H, W] to logits [B, K] (or, in training mode and with a teacher,
            to the pair (logits, logits_dist)).
        images: [n, C, H, W]; labels: [n] int64.
        steps, lr, batch_size, weight_decay: the optimisation; batches are drawn with a
            torch.Generator seeded with `seed`.
        teacher_logits: None, or [n, K], the teacher's logits for each training image.
        alpha: the weight of the distillation term.

    Returns:
        The list of the `steps` training losses (Python floats). The model ends in eval mode.
    """
    ### BEGIN SOLUTION
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=generator)
        outputs = model(images[idx])
        if teacher_logits is None:
            loss = F.cross_entropy(outputs, labels[idx])
        else:
            loss = hard_distillation_loss(outputs[0], outputs[1], labels[idx], teacher_logits[idx], alpha)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
    ### END SOLUTION


# %% tags=["demo"]
check("m1w02", "train")

# %% [markdown]
# ## Part 14 — Try it on handwritten digits
#
# scikit-learn's 8×8 digits, scaled to $[0, 1]$, with 500 held out. First your Swin: 2×2
# patches give a 4×4 token map, windows of 2×2 tokens, and two blocks (regular, then
# shifted windows).

# %% tags=["demo"]
from autograder.kit import setup
from autograder.kit.data import digits

setup(seed=0)  # seeds, and one thread: models this small gain nothing from more
split = digits()  # scikit-learn's 8x8 digits in [0, 1]: 1297 to train on, 500 held out
x_train, y_train, x_test, y_test = split.x_train, split.y_train, split.x_test, split.y_test


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


torch.manual_seed(0)
swin = SwinClassifier(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=2, num_heads=2,
                      window_size=2, mlp_ratio=2.0)
start = time.time()
losses = train_model(swin, x_train, y_train, steps=300, lr=5e-3, batch_size=128, seed=0)
print(f"Swin: {sum(p.numel() for p in swin.parameters()):,} parameters, {time.time() - start:.1f} s, "
      f"loss {losses[0]:.2f} -> {losses[-1]:.3f}, test accuracy {accuracy(swin, x_test, y_test):.3f}")

# %% [markdown]
# ### A convnet teacher for DeiT
#
# A small convnet built from your MBConv blocks is the teacher: a 3×3 stem, an MBConv at
# 8×8, a strided MBConv to 4×4, average pooling and a linear head. We train it, compute its
# logits on the training images once, and train two identical DeiTs: one with plain
# cross-entropy on the class head (the distillation head untrained) and one with
# hard-label distillation. Do not expect distillation to win here: on 1300 digits and 300
# steps the two end within a few points of each other, in either direction depending on
# the seed. The paper's gains come from long ImageNet training with heavy augmentation,
# where the teacher's labels on augmented crops carry information the true labels do not.
# The point here is the mechanics.

# %% tags=["demo"]
torch.manual_seed(0)
teacher = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), MBConv(32, 32), MBConv(32, 64, stride=2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
train_model(teacher, x_train, y_train, steps=300, seed=0)
with torch.no_grad():
    teacher_logits = teacher(x_train)
print(f"teacher (MBConv convnet): test accuracy {accuracy(teacher, x_test, y_test):.3f}")


class ClassHeadOnly(nn.Module):
    """Without a teacher, train and evaluate the class token's head alone."""

    def __init__(self, deit):
        super().__init__()
        self.deit = deit

    def forward(self, x):
        return self.deit.head(self.deit.forward_features(x)[:, 0])


for name, with_teacher in [("DeiT, no teacher", False), ("DeiT, hard distillation", True)]:
    torch.manual_seed(0)
    deit = DistilledVisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64,
                                      depth=2, num_heads=4, mlp_ratio=2.0)
    model = deit if with_teacher else ClassHeadOnly(deit)
    train_model(model, x_train, y_train, steps=300, seed=0, teacher_logits=teacher_logits if with_teacher else None)
    print(f"{name}: test accuracy {accuracy(model, x_test, y_test):.3f}")

# %% [markdown]
# ## What to take away
#
# - Attention is $\operatorname{softmax}(QK^\top/\sqrt d + B)V$; the bias $B$ is where
#   position (relative bias) and structure (masks) enter. Without it, attention is
#   permutation-equivariant: it does not know where anything is.
# - Swin restricts attention to $M \times M$ windows, which makes its cost linear in the
#   number of tokens, and recovers communication between windows by shifting them every
#   other block; a cyclic roll plus a mask keeps the shifted windows batched.
# - A relative position bias depends only on offsets, so it is shared across positions —
#   the translation equivariance of a convolution, inside attention. CoAtNet combines it
#   with real convolutions (MBConv) in the high-resolution stages.
# - DeiT keeps ViT and changes the training: a distillation token and head learn the
#   teacher's hard labels, and both heads vote at test time.
# - "Equal to `timm`" comes down to details: channel layouts (`(3, heads, head_dim)` for
#   Swin and ViT, head first in CoAtNet), which buffers are persistent, LayerNorm's epsilon
#   (1e-5 in Swin, 1e-6 in ViT/DeiT), which convolutions have a bias.
#
# Next week: masked image modelling (MAE, SimMIM), where the model learns by filling in
# the patches it was not shown.
