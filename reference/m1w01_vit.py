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
# # Week 1 — A Vision Transformer from scratch
#
# In *An Image is Worth 16x16 Words* (Dosovitskiy et al., 2020) a plain Transformer
# encoder — the one from *Attention Is All You Need* (Vaswani et al., 2017), almost
# unchanged — classifies images as well as the best convolutional networks of its
# time, **provided it is pre-trained on enough data**. The recipe is short: cut the
# image into patches, embed each patch linearly, treat the patches as the words of a
# sentence, and add a learned "class" token whose final state is the prediction.
#
# This week you write that model yourself, with tensor operations. At the end your
# model will give *the same numbers* as `timm`'s `VisionTransformer` when both hold the
# same weights, and you will train it on handwritten digits on a CPU in a few seconds.
#
# **What you may use.** `nn.Linear`, `nn.LayerNorm`, `nn.Conv2d`, `nn.GELU`, `nn.Dropout`,
# `nn.Parameter` and any tensor operation. **What you may not use** (outside cells
# tagged `demo`): `timm`, `nn.MultiheadAttention`, `nn.TransformerEncoderLayer` and
# `F.scaled_dot_product_attention`. The point is to write them.
#
# ## The whole model in four equations
#
# With an image $x \in \mathbb{R}^{H \times W \times C}$ cut into $N = HW/P^2$ patches
# $x_p^i \in \mathbb{R}^{P^2 C}$, the paper's equations 1–4 are
#
# $$
# \begin{aligned}
# z_0 &= [\,x_\text{class};\; x_p^1 E;\; x_p^2 E;\; \dots;\; x_p^N E\,] + E_\text{pos},
#   & E &\in \mathbb{R}^{(P^2 C) \times D},\; E_\text{pos} \in \mathbb{R}^{(N+1) \times D} \\
# z'_\ell &= \operatorname{MSA}(\operatorname{LN}(z_{\ell-1})) + z_{\ell-1}, & \ell &= 1 \dots L \\
# z_\ell &= \operatorname{MLP}(\operatorname{LN}(z'_\ell)) + z'_\ell, & \ell &= 1 \dots L \\
# y &= \operatorname{LN}(z_L^0)
# \end{aligned}
# $$
#
# followed by a linear classifier on $y$. Each part of this notebook builds one piece of it:
# the patch embedding $E$ (part 1), multi-head self-attention MSA (parts 2–3), the MLP
# (part 4), the pre-norm residual block (part 5), the class token, position embeddings
# and head (part 6), and the training loop (part 7).

# %% [markdown] boilerplate="how_this_notebook_works"
# (the build writes this cell from autograder/pipeline/templates/how_this_notebook_works.md)

# %% [markdown]
# ## The contract with the grader
#
# The grader builds your classes by name with keyword arguments, loads the weights of a
# `timm` model into them with `load_state_dict(..., strict=True)`, and compares outputs.
# For that to work, these details must match `timm`:
#
# | detail | what to do |
# | --- | --- |
# | parameter names | `patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.{i}.norm1`, `blocks.{i}.attn.qkv`, `blocks.{i}.attn.proj`, `blocks.{i}.norm2`, `blocks.{i}.mlp.fc1`, `blocks.{i}.mlp.fc2`, `norm`, `head` |
# | patch order | row-major: token $i$ is the patch in grid row $i \,//\, (W/P)$, column $i \bmod (W/P)$ |
# | `qkv` layout | `qkv(x).reshape(B, N, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4)` gives `q, k, v` |
# | attention scale | $1/\sqrt{d}$ with $d$ = `head_dim` (`scale = head_dim ** -0.5`) |
# | LayerNorm | `eps=1e-6` everywhere (PyTorch's default is `1e-5`) |
# | GELU | the exact one, $x\,\Phi(x)$ with the error function: `nn.GELU()`, not `approximate="tanh"` |
# | position embeddings | `pos_embed` has $N+1$ slots; slot 0 belongs to the class token and is added to it |
# | classifier | reads the class token (token 0) after the final LayerNorm |

# %%
import math

import torch
import torch.nn.functional as F
from torch import nn

# %% tags=["demo"]
from autograder.selfcheck import check

_ = torch.manual_seed(0)  # it returns the generator, which a cell would display

# %% [markdown]
# ## Part 1 — An image is a sequence of patches
#
# A Transformer consumes a sequence of vectors. ViT makes one from an image by cutting it
# into non-overlapping $P \times P$ patches, flattening each to a vector of $P^2 C$ numbers
# and multiplying it by one shared matrix $E \in \mathbb{R}^{(P^2C) \times D}$ (plus a bias).
# A $224 \times 224$ image with $P = 16$ gives $14 \times 14 = 196$ tokens: the "16x16 words"
# of the title.
#
# **The convolution trick.** "Flatten each patch, then apply the same linear map" is exactly
# a convolution whose kernel is $P \times P$ and whose stride is $P$: each output position
# sees one patch, and the kernel *is* $E$ (reshaped). So
#
# ```
# proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
# proj(x)   # [B, D, H/P, W/P]: one D-vector per patch, laid out on the patch grid
# ```
#
# What remains is to turn the grid into a sequence, `[B, N, D]`: merge the two grid axes
# into one of length $N$ and move $D$ last. `flatten(2)` reads the $H/P \times W/P$ grid
# **row by row** (row-major, like reading a page), so token $i$ is the patch in row
# $i \,//\, (W/P)$ and column $i \bmod (W/P)$.
#
# The order itself is arbitrary — attention does not care, and the position embeddings
# will learn whatever order you pick — but loading weights trained by someone else
# (`timm`'s) only works if you pick the same one.
#
# This is the only place where ViT uses the 2-D structure of the image (apart from
# resizing position embeddings when fine-tuning at another resolution). The paper calls
# it out: ViT has "much less image-specific inductive bias than CNNs".

# %%
class PatchEmbed(nn.Module):
    """Cut an image into non-overlapping patches and embed each one linearly.

    Args:
        img_size: height and width of the (square) input image.
        patch_size: height and width of a patch; `img_size` must be a multiple of it.
        in_chans: number of input channels C.
        embed_dim: size D of each token.

    Attributes:
        proj: an `nn.Conv2d(in_chans, embed_dim)` with kernel_size = stride = patch_size.
        num_patches: N = (img_size // patch_size) ** 2.

    forward(x): x is [B, C, H, W]; returns [B, N, D], patches in row-major order.
    """

    def __init__(self, img_size=32, patch_size=4, in_chans=3, embed_dim=64):
        super().__init__()
        ### BEGIN SOLUTION
        assert img_size % patch_size == 0, "img_size must be a multiple of patch_size"
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        x = self.proj(x)                     # [B, D, H/P, W/P]
        return x.flatten(2).transpose(1, 2)  # [B, N, D], row-major over the patch grid
        ### END SOLUTION


# %% tags=["demo"]
check("m1w01", "patch_embed")

# %% [markdown]
# The convolution really is "flatten the patches, then one matrix": `F.unfold` cuts the
# patches out explicitly (in the same row-major order), and multiplying by the conv kernel
# reshaped to a matrix gives the same tokens.

# %% tags=["demo"]
pe = PatchEmbed(img_size=8, patch_size=2, in_chans=3, embed_dim=16)
x = torch.randn(2, 3, 8, 8)
patches = F.unfold(x, kernel_size=2, stride=2).transpose(1, 2)   # [B, N, P*P*C]
E = pe.proj.weight.reshape(16, -1).T                              # [P*P*C, D]
print("tokens:", tuple(pe(x).shape), " max |conv - unfold @ E| =",
      (pe(x) - (patches @ E + pe.proj.bias)).abs().max().item())

# %% [markdown]
# ## Part 2 — Scaled dot-product attention
#
# Attention lets every token gather information from every other token, with weights
# that depend on the content. Each token emits a **query** $q_i$ ("what am I looking
# for?"), a **key** $k_j$ ("what do I contain?") and a **value** $v_j$ ("what do I pass on
# if chosen?"). Token $i$'s output is a weighted average of all values, with weights from
# how well its query matches each key:
#
# $$
# \operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right) V,
# \qquad
# A_{ij} = \frac{\exp(q_i \cdot k_j / \sqrt d)}{\sum_{j'} \exp(q_i \cdot k_{j'} / \sqrt d)} .
# $$
#
# With $Q, K, V \in \mathbb{R}^{N \times d}$, $A = \operatorname{softmax}(QK^\top/\sqrt d)$ is
# $N \times N$ and **each row sums to one**: the softmax runs over the keys, the last axis.
#
# **Why divide by $\sqrt d$?** If the entries of $q$ and $k$ are independent with mean 0
# and variance 1, then $q \cdot k = \sum_{m=1}^d q_m k_m$ has mean 0 and variance $d$.
# With $d = 64$ the scores are typically $\pm 8$, the softmax puts almost all its mass on
# one key, and its gradients vanish (Vaswani et al., section 3.2.1). Dividing by $\sqrt d$
# brings the variance back to 1 whatever the head size.
#
# **Numerical stability.** $\exp(1000)$ overflows. `torch.softmax` subtracts each row's
# maximum before exponentiating (which does not change the result), so use it rather than
# writing `exp(...) / exp(...).sum()` yourself.
#
# Write `attention` for any number of leading (batch, head) dimensions: `q @ k.transpose(-2, -1)`
# works on `[..., N, d]` tensors as a batch of matrix products.

# %%
def attention(q, k, v):
    """Scaled dot-product attention: softmax(q k^T / sqrt(d)) v.

    Args:
        q, k, v: tensors of shape [..., N, d] (any number of leading dimensions).

    Returns:
        A tensor of shape [..., N, d]. The softmax is taken over the keys (the last axis
        of the [..., N, N] score matrix) and d is the size of the last dimension of q.
        Written with tensor operations only, so that it is differentiable.
    """
    ### BEGIN SOLUTION
    scale = q.shape[-1] ** -0.5
    scores = (q * scale) @ k.transpose(-2, -1)  # [..., N, N]
    weights = scores.softmax(dim=-1)            # each row sums to 1 over the keys
    return weights @ v
    ### END SOLUTION


# %% tags=["demo"]
check("m1w01", "attention")  # the Attention module's checks will pass after part 3

# %% [markdown]
# The effect of the scale, measured: the entropy of the attention weights of random
# queries and keys. Uniform attention over 16 keys has entropy $\ln 16 \approx 2.77$;
# without the scale the weights collapse towards one key as $d$ grows.

# %% tags=["demo"]
def entropy(weights):
    return -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean().item()


for d in (4, 64, 512):
    q, k = torch.randn(1000, 16, d), torch.randn(1000, 16, d)
    scores = q @ k.transpose(-2, -1)
    print(f"d={d:3d}  entropy scaled {entropy((scores / math.sqrt(d)).softmax(-1)):.2f}"
          f"   unscaled {entropy(scores.softmax(-1)):.2f}")

# %% [markdown]
# ## Part 3 — Multi-head self-attention
#
# In *self*-attention, queries, keys and values all come from the same tokens, through
# three learned linear maps. One set of attention weights per layer would let each token
# look at the others in only one way, so the Transformer runs $h$ attentions **in
# parallel** on $h$ smaller subspaces ("heads") of size $d = D/h$, concatenates their
# outputs and mixes them with one more linear map:
#
# $$
# \operatorname{MSA}(z) = [\,\text{head}_1; \dots; \text{head}_h\,]\, W_O,
# \qquad \text{head}_m = \operatorname{Attention}(z W_Q^m,\; z W_K^m,\; z W_V^m).
# $$
#
# The cost is the same as one head of size $D$; what changes is that each head has its own
# attention pattern. ViT-Base has $D = 768$ and $h = 12$ heads of size 64.
#
# **The tensor layout.** Like `timm`, compute all three projections with **one**
# `nn.Linear(D, 3D)` called `qkv`, and split its output like this:
#
# ```
# qkv = self.qkv(x).reshape(B, N, 3, num_heads, head_dim)   # the 3D features read as (q|k|v, head, channel)
# q, k, v = qkv.permute(2, 0, 3, 1, 4)                     # each [B, num_heads, N, head_dim]
# ```
#
# The order `(3, num_heads, head_dim)` in the reshape decides which rows of the `qkv`
# weight belong to which head: with another order your module still runs, but with
# `timm`'s weights loaded it computes something else.
#
# The heads are now just one more leading dimension, so one call of your `attention`
# handles all of them. Then undo the split: the result is `[B, num_heads, N, head_dim]`,
# and the heads must end up side by side in each token's `D` features, so bring the
# token axis back in front of the head axis *before* merging `(num_heads, head_dim)` into
# `D` — a reshape straight to `[B, N, D]` runs without error but mixes tokens and heads.
# Finish with the output projection `proj`.
#
# `Attention.forward(x)` returns only the output. (To look at the attention weights, the
# demo at the end of the notebook recomputes them from `qkv`.) Keep a `scale` attribute
# equal to `head_dim ** -0.5` as `timm` does; your `attention` function computes the same
# factor from the size of the last dimension.

# %%
class Attention(nn.Module):
    """Multi-head self-attention with timm's parameter names and layout.

    Args:
        dim: token size D; must be divisible by num_heads.
        num_heads: number of heads h; head_dim = D // h.
        qkv_bias: whether the qkv projection has a bias.

    Attributes:
        qkv: nn.Linear(dim, 3 * dim, bias=qkv_bias).
        proj: nn.Linear(dim, dim), the output projection W_O.
        num_heads, head_dim, and scale = head_dim ** -0.5.

    forward(x): x is [B, N, D]; returns [B, N, D]. Uses `attention(q, k, v)`.
    """

    def __init__(self, dim, num_heads=8, qkv_bias=True):
        super().__init__()
        ### BEGIN SOLUTION
        assert dim % num_heads == 0, "dim must be divisible by num_heads"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, N, head_dim]
        out = attention(q, k, v)               # [B, heads, N, head_dim]
        out = out.transpose(1, 2).reshape(B, N, D)
        return self.proj(out)
        ### END SOLUTION


# %% tags=["demo"]
check("m1w01", "attention")

# %% [markdown]
# ## Part 4 — The MLP
#
# After attention has mixed information *between* tokens, a two-layer MLP processes each
# token *on its own* (the same weights for every token):
#
# $$
# \operatorname{MLP}(z) = \operatorname{GELU}(z W_1 + b_1)\, W_2 + b_2,
# \qquad W_1 \in \mathbb{R}^{D \times rD},\; W_2 \in \mathbb{R}^{rD \times D},
# $$
#
# with an expansion ratio $r$ (`mlp_ratio`) of 4 in the paper: ViT-Base's MLP has 3072
# hidden units. The nonlinearity is GELU (Hendrycks & Gimpel, 2016),
#
# $$
# \operatorname{GELU}(x) = x\,\Phi(x) = \tfrac{x}{2}\left(1 + \operatorname{erf}(x/\sqrt 2)\right),
# $$
#
# a smooth ReLU that weights its input by the probability that a standard normal is below
# it. BERT and GPT-2 used the approximation $\tfrac{x}{2}(1 + \tanh(\sqrt{2/\pi}(x + 0.044715 x^3)))$;
# `timm` and PyTorch's `nn.GELU()` default to the exact form — use that. (The two differ
# by up to about $5\cdot 10^{-4}$: small, but not equal.)

# %%
class Mlp(nn.Module):
    """Two linear layers with an exact GELU between them, applied to each token.

    Args:
        in_features: token size D (input and output).
        hidden_features: hidden size (D * mlp_ratio).

    Attributes: fc1 (D -> hidden), act (exact GELU), fc2 (hidden -> D).
    forward(x): [..., D] -> [..., D].
    """

    def __init__(self, in_features, hidden_features):
        super().__init__()
        ### BEGIN SOLUTION
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.fc2(self.act(self.fc1(x)))
        ### END SOLUTION


# %% tags=["demo"]
check("m1w01", "mlp")

# %% [markdown]
# ## Part 5 — The pre-norm residual block
#
# A Transformer block is attention and MLP, each wrapped in a residual connection with a
# LayerNorm. *Where* the LayerNorm goes matters. The original Transformer normalised
# after the addition ("post-norm": $z \leftarrow \operatorname{LN}(z + f(z))$). ViT, like GPT-2
# and most Transformers since, normalises the input of each branch and leaves the residual
# path untouched ("pre-norm", equations 2–3 above):
#
# $$
# z \leftarrow z + \operatorname{MSA}(\operatorname{LN}_1(z)), \qquad
# z \leftarrow z + \operatorname{MLP}(\operatorname{LN}_2(z)).
# $$
#
# With pre-norm, the identity path runs from the input to the output of the whole network,
# so gradients reach the early layers undiminished at initialisation; Xiong et al. (2020)
# show this is why pre-norm Transformers train without the learning-rate warm-up that
# post-norm ones need. The price is that the residual stream is never normalised — which
# is why the model ends with one more LayerNorm (part 6).
#
# LayerNorm normalises each token over its $D$ features,
# $\operatorname{LN}(z) = \gamma \odot (z - \mu)/\sqrt{\sigma^2 + \epsilon} + \beta$. ViT's
# original JAX code uses $\epsilon = 10^{-6}$, and so does `timm`; PyTorch's default is
# $10^{-5}$, so pass `eps=1e-6`. The hidden size of the MLP is `int(dim * mlp_ratio)`.

# %%
class Block(nn.Module):
    """A pre-norm Transformer encoder block: x + attn(norm1(x)), then x + mlp(norm2(x)).

    Args:
        dim: token size D.
        num_heads: number of attention heads.
        mlp_ratio: the MLP's hidden size is int(dim * mlp_ratio).
        qkv_bias: whether the qkv projection has a bias.

    Attributes: norm1, attn (Attention), norm2, mlp (Mlp); both norms are
    nn.LayerNorm(dim, eps=1e-6).
    forward(x): [B, N, D] -> [B, N, D].
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True):
        super().__init__()
        ### BEGIN SOLUTION
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x
        ### END SOLUTION


# %% tags=["demo"]
check("m1w01", "block")

# %% [markdown]
# ## Part 6 — The Vision Transformer
#
# Three pieces remain, all from equation 1 and 4.
#
# **The class token.** Borrowed from BERT's `[CLS]`: one learned vector
# $x_\text{class} \in \mathbb{R}^{D}$ is put in front of the patch tokens of every image. It
# belongs to no patch, so through the layers it can only gather information by attending
# to the patches; its final state (after the last LayerNorm) is the image's
# representation, and a linear head maps it to class logits. The paper also tried
# average-pooling the patch tokens instead ("GAP"), which works as well once its learning
# rate is tuned (appendix D.3); `timm` calls the choice `global_pool='token'`.
#
# **Position embeddings.** Attention is *permutation-equivariant*: shuffle the input
# tokens and the outputs shuffle the same way. Without extra information the model cannot
# tell where a patch was. ViT adds a learned vector per position,
# $E_\text{pos} \in \mathbb{R}^{(N+1) \times D}$ — $N + 1$ because the class token gets a
# position slot too, slot 0. The paper found that 2-D-aware and relative position
# embeddings did not do better than these plain 1-D learned ones (appendix D.4): the
# model learns the 2-D structure by itself (its figure 7 shows the learned embeddings
# of nearby patches are similar).
#
# **Initialisation.** Parameters made with `torch.zeros` are all equal, so initialise
# `cls_token` and `pos_embed` with small random values: `nn.init.trunc_normal_(p, std=0.02)`,
# as `timm` does. The other layers can keep PyTorch's default initialisation.
#
# The forward pass, with shapes for a batch of $B$ images:
#
# 1. embed the patches: `[B, N, D]`;
# 2. put the class token in front of them, the same one for every image of the batch
#    (`expand` it to the batch size, then concatenate along the token axis): `[B, N+1, D]`;
# 3. add `pos_embed` (`[1, N+1, D]`, broadcast over the batch), slot 0 to the class token;
# 4. run the blocks, then the final `norm`: this is what `forward_features` returns;
# 5. `forward` applies `head` to token 0, the class token: `[B, num_classes]`.
#
# The paper's sizes: ViT-Base ($L = 12$, $D = 768$, 12 heads, 86M parameters), ViT-Large
# ($24$, $1024$, 16 heads, 307M) and ViT-Huge ($32$, $1280$, 16 heads, 632M). Ours, for
# 8×8 digits, has two blocks of width 64 and about 70 thousand parameters.

# %%
class VisionTransformer(nn.Module):
    """ViT for classification, with timm's parameter names.

    Args:
        img_size, patch_size, in_chans: the input images are [B, in_chans, img_size, img_size].
        num_classes: size of the output logits.
        embed_dim: token size D.
        depth: number of blocks L.
        num_heads: attention heads per block.
        mlp_ratio: the MLP hidden size is int(embed_dim * mlp_ratio).
        qkv_bias: whether the qkv projections have a bias.

    Attributes:
        patch_embed: PatchEmbed.
        cls_token: nn.Parameter of shape [1, 1, D].
        pos_embed: nn.Parameter of shape [1, N + 1, D] (slot 0 is the class token's).
        blocks: nn.Sequential of `depth` Blocks.
        norm: nn.LayerNorm(D, eps=1e-6), the final norm.
        head: nn.Linear(D, num_classes).

    forward_features(x): [B, C, H, W] -> [B, N + 1, D], after the final norm.
    forward(x): [B, C, H, W] -> [B, num_classes], the head applied to the class token.
    """

    def __init__(self, img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64,
                 depth=2, num_heads=4, mlp_ratio=4.0, qkv_bias=True):
        super().__init__()
        ### BEGIN SOLUTION
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        ### END SOLUTION

    def forward_features(self, x):
        ### BEGIN SOLUTION
        x = self.patch_embed(x)                              # [B, N, D]
        cls = self.cls_token.expand(x.shape[0], -1, -1)      # [B, 1, D]
        x = torch.cat([cls, x], dim=1) + self.pos_embed      # [B, N+1, D]
        x = self.blocks(x)
        return self.norm(x)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.head(self.forward_features(x)[:, 0])
        ### END SOLUTION


# %% tags=["demo"]
check("m1w01", "vit")

# %% [markdown]
# ## Part 7 — Training
#
# We train with the cross-entropy between the logits and the labels,
# $\mathcal{L} = -\frac{1}{B}\sum_b \log \operatorname{softmax}(\text{logits}_b)_{y_b}$
# (`F.cross_entropy`), and AdamW (Loshchilov & Hutter, 2019): Adam with *decoupled*
# weight decay, which shrinks the weights directly by `lr * weight_decay` each step
# instead of adding an L2 term to the loss (with Adam's per-parameter step sizes the two
# are not the same). The paper pre-trains with Adam ($\beta_1 = 0.9$, $\beta_2 = 0.999$),
# batch 4096 and a high weight decay of 0.1, with a linear warm-up and decay of the
# learning rate. Transformers have few built-in assumptions about images, and strong
# regularisation is part of what makes them work when data is limited.
#
# Our loop is the plain version: at each step, draw a batch of `batch_size` indices,
# compute the loss, `zero_grad`, `backward`, `step`, and record `loss.item()`.
#
# - **Deterministic.** Draw the batch indices from a `torch.Generator` seeded with `seed`
#   (for example `torch.randint(0, n, (batch_size,), generator=g)`), not from the global
#   random state, so that the same call gives the same losses.
# - **Modes.** Call `model.train()` before the loop and `model.eval()` after it. This model
#   has no dropout, so nothing changes here, but dropout and batch norm behave differently
#   in the two modes, and leaving a model in the wrong one is a classic bug.
# - For simplicity, weight decay applies to every parameter (larger recipes exclude
#   biases, norms, `pos_embed` and `cls_token`), and the learning rate stays constant.

# %%
def train_classifier(model, images, labels, steps=300, lr=3e-3, batch_size=128, weight_decay=0.05,
                     seed=0):
    """Train `model` with AdamW and cross-entropy on random mini-batches.

    Args:
        model: an nn.Module mapping [B, C, H, W] images to [B, num_classes] logits.
        images: float tensor [n, C, H, W]; labels: int64 tensor [n].
        steps: number of optimisation steps (one mini-batch each).
        lr, weight_decay: AdamW's learning rate and weight decay.
        batch_size: examples per step, drawn at random with a torch.Generator seeded by `seed`.

    Returns:
        The list of the `steps` training losses (Python floats), one per step.
        The model is left in eval mode.
    """
    ### BEGIN SOLUTION
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=generator)
        loss = F.cross_entropy(model(images[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
    ### END SOLUTION


# %% tags=["demo"]
check("m1w01", "train")

# %% [markdown]
# ## Part 8 — Try it
#
# ### Handwritten digits
#
# scikit-learn ships a small dataset of 1797 handwritten digits, 8×8 pixels with values
# 0–16. We scale them to $[0, 1]$, hold out 500 for testing, and train a ViT with 2×2
# patches (16 tokens plus the class token), two blocks of width 64 and four heads.

# %% tags=["demo"]
import time

from autograder.kit import setup
from autograder.kit.data import digits

setup(seed=0)  # seeds, and one thread: models this small gain nothing from more
split = digits()  # scikit-learn's 8x8 digits in [0, 1]: 1297 to train on, 500 held out

torch.manual_seed(0)
model = VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64,
                          depth=2, num_heads=4, mlp_ratio=2.0)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters")
start = time.time()
losses = train_classifier(model, split.x_train, split.y_train, steps=300, seed=0)
with torch.no_grad():
    accuracy = (model(split.x_test).argmax(-1) == split.y_test).float().mean().item()
print(f"trained in {time.time() - start:.1f} s; loss {losses[0]:.2f} -> {losses[-1]:.3f}; "
      f"test accuracy {accuracy:.3f}")

# %% tags=["demo"]
import matplotlib.pyplot as plt

plt.figure(figsize=(5, 3))
plt.plot(losses)
plt.xlabel("step")
plt.ylabel("training loss")
plt.yscale("log")
plt.title("ViT on 8x8 digits")
plt.show()

# %% [markdown]
# Around 94% of held-out digits (92–96% depending on the seed) after a few seconds. A
# small CNN, or even logistic regression, does as well or better on this dataset: with
# 1300 training images the lack of inductive bias shows. That is the paper's central finding — trained on ImageNet
# alone, ViT-Large falls *behind* ResNets; pre-trained on 14M (ImageNet-21k) or 300M
# (JFT) images it overtakes them. Large data beats built-in assumptions, and the
# self-supervised methods of module 3 are largely about getting that data without labels.
#
# ### The same numbers as timm
#
# Because the parameter names, shapes and every detail of the computation match, `timm`'s
# `VisionTransformer` accepts our trained weights as they are and gives the same logits,
# up to float32 rounding.

# %% tags=["demo"]
import timm.models.vision_transformer as timm_vit

reference = timm_vit.VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=10,
                                       embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0)
reference.load_state_dict(model.state_dict(), strict=True)
reference.eval()
with torch.no_grad():
    delta = (model(split.x_test) - reference(split.x_test)).abs().max().item()
print(f"max |our logits - timm's logits| = {delta:.2e}")

# %% [markdown]
# ### Where does the class token look?
#
# `Attention.forward` returns only its output, but the attention weights are easy to
# recompute: a forward hook saves the output of the last block's `qkv` layer, and we
# apply the same split and softmax as in part 3. Row 0 of each head's $N+1 \times N+1$
# matrix is the class token's attention over the tokens; dropping the class token's own
# column and reshaping the rest to the $4 \times 4$ patch grid shows which parts of the
# digit each head reads.

# %% tags=["demo"]
saved = {}
last = model.blocks[-1].attn
hook = last.qkv.register_forward_hook(lambda module, inputs, output: saved.update(qkv=output))
example = split.x_test[:1]
with torch.no_grad():
    model(example)
hook.remove()

B, N1, _ = saved["qkv"].shape
q, k, _ = saved["qkv"].reshape(B, N1, 3, last.num_heads, last.head_dim).permute(2, 0, 3, 1, 4)
weights = ((q @ k.transpose(-2, -1)) * last.scale).softmax(-1)    # [1, heads, N+1, N+1]
grid = math.isqrt(model.patch_embed.num_patches)                 # 4 patches per side
cls_to_patches = weights[0, :, 0, 1:].reshape(last.num_heads, grid, grid)

fig, axes = plt.subplots(1, last.num_heads + 1, figsize=(2 * (last.num_heads + 1), 2.2))
axes[0].imshow(example[0, 0], cmap="gray_r")
axes[0].set_title(f"label {split.y_test[0].item()}")
for h in range(last.num_heads):
    axes[h + 1].imshow(cls_to_patches[h], cmap="viridis")
    axes[h + 1].set_title(f"head {h}")
for ax in axes:
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What to take away
#
# - A ViT is a standard Transformer encoder on a sequence of linearly embedded patches,
#   plus a class token and learned position embeddings. The patch embedding is a
#   convolution with stride equal to its kernel.
# - Attention is $\operatorname{softmax}(QK^\top/\sqrt d)V$, the softmax over keys; the
#   $1/\sqrt d$ keeps the scores' variance at 1. Multi-head attention is a reshape away.
# - Pre-norm residual blocks keep an identity path through the network; a final
#   LayerNorm normalises the class token before the head.
# - Small details — the LayerNorm epsilon, exact vs approximate GELU, patch and head
#   order — do not change what a model *can* learn, but they decide whether two
#   implementations compute the same function, and so whether weights can be shared.
#
# Next week: what happens when attention is restricted to windows (Swin), when a CNN's
# inductive biases are mixed back in (CoAtNet), and how DeiT trains ViTs on ImageNet
# alone with distillation.
