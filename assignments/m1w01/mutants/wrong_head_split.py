# mutant: Attention splits qkv as (heads, 3, head_dim) instead of timm's (3, heads, head_dim)
# catches: test_attention_module_matches_timm, test_block_matches_timm, test_vit_matches_timm_float64, test_vit_matches_timm_float32, test_block_input_grad_matches_timm, test_vit_parameter_grads_match_timm
import math

import torch
import torch.nn.functional as F
from torch import nn


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
        assert img_size % patch_size == 0, "img_size must be a multiple of patch_size"
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        x = self.proj(x)                     # [B, D, H/P, W/P]
        return x.flatten(2).transpose(1, 2)  # [B, N, D], row-major over the patch grid


def attention(q, k, v):
    """Scaled dot-product attention: softmax(q k^T / sqrt(d)) v.

    Args:
        q, k, v: tensors of shape [..., N, d] (any number of leading dimensions).

    Returns:
        A tensor of shape [..., N, d]. The softmax is taken over the keys (the last axis
        of the [..., N, N] score matrix) and d is the size of the last dimension of q.
        Written with tensor operations only, so that it is differentiable.
    """
    scale = q.shape[-1] ** -0.5
    scores = (q * scale) @ k.transpose(-2, -1)  # [..., N, N]
    weights = scores.softmax(dim=-1)            # each row sums to 1 over the keys
    return weights @ v


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
        assert dim % num_heads == 0, "dim must be divisible by num_heads"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, self.num_heads, 3, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4)  # each [B, heads, N, head_dim]
        out = attention(q, k, v)               # [B, heads, N, head_dim]
        out = out.transpose(1, 2).reshape(B, N, D)
        return self.proj(out)


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
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


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
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


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

    def forward_features(self, x):
        x = self.patch_embed(x)                              # [B, N, D]
        cls = self.cls_token.expand(x.shape[0], -1, -1)      # [B, 1, D]
        x = torch.cat([cls, x], dim=1) + self.pos_embed      # [B, N+1, D]
        x = self.blocks(x)
        return self.norm(x)

    def forward(self, x):
        return self.head(self.forward_features(x)[:, 0])


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
