"""m1w01 public self-checks: run them in the notebook with `check("m1w01")` or `check("m1w01", "<part>")`.

Parts: patch_embed, attention, mlp, block, vit, train. These check shapes, names, small cases worked
out by hand and properties the notebook states; the hidden suite that grades the notebook checks much
more. Every case here is tiny, so the whole file runs in a few seconds.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder.kit import assert_close, assert_shape

pytestmark = [pytest.mark.visibility("visible")]


def randn(*shape, seed, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def random_state(module, seed):
    """The module's state with every tensor replaced by seeded random values of the same shape: around 1
    for LayerNorm weights, around 0 elsewhere (so that no two norms or layers are alike)."""
    state = module.state_dict()
    new = {}
    for i, (name, value) in enumerate(state.items()):
        noise = 0.5 * randn(*value.shape, seed=seed * 1000 + i, dtype=value.dtype)
        parts = name.split(".")
        is_norm_weight = len(parts) >= 2 and parts[-1] == "weight" and "norm" in parts[-2]
        new[name] = noise + 1.0 if is_norm_weight else noise
    return new


def largest_difference(a, b):
    """The largest |a - b| (0 for equal tensors)."""
    return (torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).abs().max().item()


# -- patch_embed ------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_patch_embed_output_shape(sub):
    """PatchEmbed turns [2, 3, 16, 16] images into [2, 16, 24] tokens with 4x4 patches."""
    pe = sub.PatchEmbed(img_size=16, patch_size=4, in_chans=3, embed_dim=24)
    assert pe.num_patches == 16, f"num_patches should be (16 // 4) ** 2 = 16, but is {pe.num_patches}"
    assert_shape(pe.proj.weight, (24, 3, 4, 4), what="PatchEmbed.proj.weight")
    assert_shape(pe(randn(2, 3, 16, 16, seed=0)), (2, 16, 24), what="PatchEmbed output")


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_patch_embed_other_arguments(sub):
    """PatchEmbed(img_size=10, patch_size=2, in_chans=1, embed_dim=6) uses every argument: 25 tokens of size 6."""
    pe = sub.PatchEmbed(img_size=10, patch_size=2, in_chans=1, embed_dim=6)
    assert pe.num_patches == 25, (f"PatchEmbed(img_size=10, patch_size=2).num_patches should be (10 // 2) ** 2 = "
                                  f"25, but is {pe.num_patches}: compute it from img_size and patch_size")
    assert_shape(pe.proj.weight, (6, 1, 2, 2),
                 what="PatchEmbed(in_chans=1, embed_dim=6, patch_size=2).proj.weight [embed_dim, in_chans, P, P]")
    assert tuple(pe.proj.stride) == (2, 2), \
        f"PatchEmbed(patch_size=2).proj should have stride 2 (one step per patch), not {tuple(pe.proj.stride)}"
    assert_shape(pe(randn(3, 1, 10, 10, seed=1)), (3, 25, 6), what="PatchEmbed output for [3, 1, 10, 10] images")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_patch_embed_tokens_in_row_major_order(sub):
    """PatchEmbed with a hand-built kernel (each token = its patch's mean and corner pixel): token i is the patch in row i // 4, column i % 4."""
    p, grid = 3, 4
    pe = sub.PatchEmbed(img_size=p * grid, patch_size=p, in_chans=2, embed_dim=2)
    assert_shape(pe.proj.weight, (2, 2, p, p), what="PatchEmbed(in_chans=2, embed_dim=2, patch_size=3).proj.weight")
    weight = torch.zeros(2, 2, p, p)
    weight[0, 0] = 1.0 / (p * p)  # feature 0: the mean of the patch's channel 0
    weight[1, 1, 0, 0] = 1.0      # feature 1: the top-left pixel of the patch's channel 1 ...
    bias = torch.tensor([0.0, -1.0])  # ... minus 1
    pe.load_state_dict({"proj.weight": weight, "proj.bias": bias})
    x = randn(1, 2, p * grid, p * grid, seed=2)
    tokens = pe(x)
    assert_shape(tokens, (1, grid * grid, 2), what="PatchEmbed output")

    def patch_token(r, c):
        return torch.stack([x[0, 0, r * p:(r + 1) * p, c * p:(c + 1) * p].mean(), x[0, 1, r * p, c * p] - 1.0])

    row_major = torch.stack([patch_token(i // grid, i % grid) for i in range(grid * grid)])[None]
    column_major = torch.stack([patch_token(i % grid, i // grid) for i in range(grid * grid)])[None]
    # float32: a 9-pixel mean computed by the convolution or by .mean() differs by ~1e-7.
    if largest_difference(tokens, column_major) < 1e-5:
        raise AssertionError("your tokens list the patches column by column (token 1 is the patch *below* the "
                             "first one); token i should be the patch in grid row i // 4, column i % 4: read the "
                             "[B, D, H/P, W/P] grid row by row (flatten its last two axes), then move D last")
    assert_close(tokens, row_major, what="PatchEmbed tokens (token i = patch in grid row i // 4, column i % 4)",
                 atol=1e-5, rtol=1e-5)


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
    """attention() maps [2, 3, 5, 8] (batch, heads, tokens, head_dim) to [2, 3, 5, 8], and [5, 8] (no leading dims) to [5, 8]."""
    q, k, v = (randn(2, 3, 5, 8, seed=s) for s in (1, 2, 3))
    out = sub.attention(q, k, v)
    assert_shape(out, (2, 3, 5, 8), what="attention output")
    assert torch.isfinite(out).all(), "attention output contains NaN or infinite values"
    out2 = sub.attention(q[0, 0], k[0, 0], v[0, 0])
    assert_shape(out2, (5, 8), what="attention output for [5, 8] inputs (use k.transpose(-2, -1), not fixed axes)")


# Three tokens with d = 4, so the scale is 1 / sqrt(4) = 1/2, and v = the first three unit vectors:
# the output's first three columns ARE the attention weights. Batch 0 is chosen so that the scores are
# logarithms: query 0 scores the keys (ln 2, 0, 0), so its weights are (2, 1, 1) / 4; query 1 scores them
# (0, ln 3, 0) -> (1, 3, 1) / 5; query 2 (ln 2, ln 2, 0) -> (2, 2, 1) / 5. Batch 1 has scores of +-1000
# (exp overflows there): each query picks one key, exactly.
LN2, LN3 = math.log(2.0), math.log(3.0)
HAND_K = [[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
HAND_Q = [[[2 * LN2, 0, 0, 0], [0, 2 * LN3, 0, 0], [2 * LN2, 2 * LN2, 0, 0]],
          [[0, 2000.0, 0, 0], [2000.0, 0, 0, 0], [-2000.0, -2000.0, 0, 0]]]
HAND_WEIGHTS = [[[2 / 4, 1 / 4, 1 / 4], [1 / 5, 3 / 5, 1 / 5], [2 / 5, 2 / 5, 1 / 5]],
                [[0.0, 1, 0], [1, 0, 0], [0, 0, 1]]]


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_attention_hand_computed_weights(sub):
    """attention() on 3 tokens worked out by hand: weights (2, 1, 1) / 4 and others, rows summing to 1 over the keys, scores of 1000 included."""
    q = torch.tensor(HAND_Q, dtype=torch.float64)
    k = torch.tensor([HAND_K, HAND_K], dtype=torch.float64)
    v = torch.eye(3, 4, dtype=torch.float64).expand(2, 3, 4).clone()
    out = sub.attention(q, k, v)
    assert_shape(out, (2, 3, 4), what="attention output for q, k, v of shape [2, 3, 4]")
    assert torch.isfinite(out).all(), (
        "attention() gives NaN or infinite values when the scores are about 1000: exp(1000) overflows; use "
        "scores.softmax(dim=-1), which subtracts each row's maximum first")
    weights = out[..., :3]
    rows, columns = weights.sum(-1), weights.sum(-2)
    # float64: sums of three weights are exact to ~1e-16.
    if not torch.allclose(rows, torch.ones_like(rows), atol=1e-9):
        over = "the queries (dim -2)" if torch.allclose(columns, torch.ones_like(columns), atol=1e-9) else "no axis"
        raise AssertionError(
            f"each query's attention weights should sum to 1 over the keys (the last axis of the scores); yours "
            f"sum to {[round(s, 4) for s in rows[0].tolist()]} for the three queries and sum to 1 over {over}: "
            "check the softmax's dim (softmax(q @ k^T / sqrt(d), dim=-1))")
    expected = torch.tensor(HAND_WEIGHTS, dtype=torch.float64)
    hints = {"without the 1/sqrt(d) scale": 1.0, "divided by d instead of sqrt(d)": 0.25}
    for hint, factor in hints.items():  # what a scale other than 1 / sqrt(d) = 1/2 would give
        other = ((q @ k.transpose(-2, -1)) * factor).softmax(dim=-1)
        if largest_difference(weights, other) < 1e-9:
            raise AssertionError(f"attention() weights are the softmax of the scores {hint}: scale q @ k^T by "
                                 "1 / sqrt(d), d = q.shape[-1] (here 4, so 1/2)")
    assert_close(weights, expected, what="attention weights (the output's first 3 columns, since v holds unit "
                 "vectors) for hand-computed scores", atol=1e-12, rtol=1e-10)  # float64, exact up to rounding
    assert_close(out[..., 3], torch.zeros(2, 3, dtype=torch.float64), what="the output's last column (v has "
                 "zeros there)", atol=1e-12, rtol=0)  # a weighted sum of exact zeros


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


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_attention_module_qkv_bias_argument(sub):
    """Attention(dim=8, num_heads=2, qkv_bias=False) has no qkv.bias; with qkv_bias=True it has one of size 24."""
    names = set(sub.Attention(dim=8, num_heads=2, qkv_bias=False).state_dict())
    assert "qkv.bias" not in names, ("Attention(qkv_bias=False) should make its qkv projection without a bias "
                                     "(nn.Linear(dim, 3 * dim, bias=qkv_bias)), but it has qkv.bias")
    with_bias = sub.Attention(dim=8, num_heads=2, qkv_bias=True)
    assert "qkv.bias" in set(with_bias.state_dict()), "Attention(qkv_bias=True) should have a qkv.bias"
    assert_shape(with_bias.qkv.bias, (24,), what="Attention(dim=8, qkv_bias=True).qkv.bias")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_attention_module_hand_built_heads(sub):
    """Attention(dim=4, num_heads=2) with a hand-built qkv: head 0 weighs the tokens (3, 1, 1) / 5, head 1 evenly, outputs side by side."""
    attn = sub.Attention(dim=4, num_heads=2, qkv_bias=True)
    # qkv rows, read as (q|k|v, head, channel): q = rows 0-3, k = rows 4-7, v = rows 8-11; head 0 owns
    # channels 0-1 of each, head 1 channels 2-3.
    w, b = torch.zeros(12, 4), torch.zeros(12)
    b[0] = math.sqrt(2.0) * LN3  # head 0's query is the constant (sqrt(2) ln 3, 0) for every token
    w[4, 0] = 1.0                # head 0's key of token j is (x_j[0], 0): score ln 3 * x_j[0] after the 1/sqrt(2)
    w[8:12] = torch.eye(4)       # v = x; head 1's query and key are 0, so it weighs the tokens evenly
    proj_w, proj_b = 2.0 * torch.eye(4), torch.tensor([0.5, -0.5, 1.0, 0.0])
    attn.load_state_dict({"qkv.weight": w, "qkv.bias": b, "proj.weight": proj_w, "proj.bias": proj_b})
    x = randn(2, 3, 4, seed=3)
    x[0, :, 0] = torch.tensor([1.0, 0.0, 0.0])  # sequence 0: token 0 gets weight 3/5 in head 0
    x[1, :, 0] = torch.tensor([0.0, 0.0, 1.0])  # sequence 1: token 2 does
    head0_weights = torch.tensor([[3.0, 1, 1], [1.0, 1, 3]]) / 5
    head0 = head0_weights[:, None, :] @ x[..., 0:2]         # [2, 1, 2]: the same for the three queries
    head1 = x[..., 2:4].mean(dim=1, keepdim=True)           # [2, 1, 2]
    merged = torch.cat([head0, head1], dim=-1).expand(2, 3, 4)
    expected = merged @ proj_w.T + proj_b
    out = attn(x)
    assert_shape(out, (2, 3, 4), what="Attention output")
    # The bug of merging [B, heads, N, head_dim] straight into [B, N, D]: token 0 gets head 0's output twice.
    heads = torch.stack([head0.expand(2, 3, 2), head1.expand(2, 3, 2)], dim=1)  # [B, heads, N, head_dim]
    unmerged = heads.reshape(2, 3, 4) @ proj_w.T + proj_b
    # float32: weighted sums of three numbers, ~1e-7.
    if largest_difference(out, unmerged) < 1e-5:
        raise AssertionError("the heads' outputs are merged without bringing the token axis back first: "
                             "[B, heads, N, head_dim] needs .transpose(1, 2) before .reshape(B, N, D), else "
                             "one token's features mix several tokens of one head")
    assert_close(out, expected, what="Attention output with a hand-built qkv (head 0 weighs the tokens (3, 1, 1) / "
                 "5 or (1, 1, 3) / 5, head 1 evenly; check the qkv split reshape(B, N, 3, heads, head_dim), that "
                 "the softmax runs over the keys, and the merge of the heads)", atol=1e-5, rtol=1e-5)


# -- mlp --------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_mlp_output_shape(sub):
    """Mlp(in_features=16, hidden_features=32) has fc1 [32, 16], fc2 [16, 32] and keeps [2, 5, 16]."""
    mlp = sub.Mlp(in_features=16, hidden_features=32)
    assert_shape(mlp.fc1.weight, (32, 16), what="Mlp.fc1.weight")
    assert_shape(mlp.fc2.weight, (16, 32), what="Mlp.fc2.weight")
    assert_shape(mlp(randn(2, 5, 16, seed=0)), (2, 5, 16), what="Mlp output")


def gelu_exact(x):
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mlp_exact_gelu_by_hand(sub):
    """Mlp(1, 2) with hand-set weights gives GELU(x) - GELU(0.5 - 2x) + 0.25, with the exact GELU x * Phi(x) (not the tanh one)."""
    mlp = sub.Mlp(in_features=1, hidden_features=2)
    assert_shape(mlp.fc1.weight, (2, 1), what="Mlp(in_features=1, hidden_features=2).fc1.weight")
    mlp.load_state_dict({"fc1.weight": torch.tensor([[1.0], [-2.0]]), "fc1.bias": torch.tensor([0.0, 0.5]),
                         "fc2.weight": torch.tensor([[1.0, -1.0]]), "fc2.bias": torch.tensor([0.25])})
    points = [-3.0, -1.5, 0.5, 2.5]

    def expected_with(gelu):
        return torch.tensor([[gelu(x) - gelu(0.5 - 2 * x) + 0.25] for x in points])

    out = mlp(torch.tensor(points)[:, None])
    assert_shape(out, (4, 1), what="Mlp(in_features=1) output for [4, 1] inputs")
    # The tanh approximation differs from the exact GELU by ~4e-4 at x = 2.5 and -3; float32 rounding of
    # numbers below 7 is ~1e-6, so 1e-5 separates the two.
    if largest_difference(out, expected_with(gelu_tanh)) < 1e-5:
        raise AssertionError("Mlp uses the tanh approximation of GELU; use the exact one, x * Phi(x): nn.GELU() "
                             "(not approximate='tanh')")
    if largest_difference(out, expected_with(lambda x: max(x, 0.0))) < 1e-5:
        raise AssertionError("Mlp uses ReLU; the activation should be the exact GELU, nn.GELU()")
    assert_close(out, expected_with(gelu_exact), what="Mlp output, fc2(GELU(fc1(x))) with the exact GELU",
                 atol=1e-5, rtol=1e-6)


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
@pytest.mark.kind("shape")
def test_block_other_arguments(sub):
    """Block(dim=12, num_heads=3, mlp_ratio=1.5, qkv_bias=False) has 3 heads, 18 hidden MLP units and no qkv bias."""
    block = sub.Block(dim=12, num_heads=3, mlp_ratio=1.5, qkv_bias=False)
    assert block.attn.num_heads == 3, \
        f"Block(num_heads=3).attn.num_heads should be 3, but is {block.attn.num_heads}: pass num_heads to Attention"
    assert_shape(block.mlp.fc1.weight, (18, 12), what="Block(dim=12, mlp_ratio=1.5).mlp.fc1.weight "
                 "(int(dim * mlp_ratio) = 18 hidden units)")
    assert "attn.qkv.bias" not in set(block.state_dict()), \
        "Block(qkv_bias=False) has attn.qkv.bias: pass qkv_bias on to Attention"
    assert_shape(block(randn(2, 4, 12, seed=0)), (2, 4, 12), what="Block(dim=12) output")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_block_layernorm_eps(sub):
    """Block's LayerNorms use eps=1e-6, like timm's ViT (PyTorch's default is 1e-5)."""
    block = sub.Block(dim=16, num_heads=2)
    for name in ("norm1", "norm2"):
        eps = getattr(block, name).eps
        assert abs(eps - 1e-6) < 1e-12, f"Block.{name} should have eps=1e-6, but has eps={eps:g}"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_block_silent_branches_leave_input_unchanged(sub):
    """With attn.proj and mlp.fc2 set to zero both branches output 0, so a pre-norm Block returns its input exactly."""
    block = sub.Block(dim=8, num_heads=2, mlp_ratio=2.0)
    state = random_state(block, seed=4)
    for name in ("attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight", "mlp.fc2.bias"):
        state[name] = torch.zeros_like(state[name])
    block.load_state_dict(state)
    x = 3.0 * randn(2, 5, 8, seed=5) + 1.0  # far from normalised, so that a LayerNorm on the sum shows
    out = block(x)
    assert_shape(out, (2, 5, 8), what="Block output")
    changed = largest_difference(out, x)
    # x + 0 + 0 is exact; 1e-6 forgives nothing real (a LayerNorm of x changes it by ~1).
    assert changed < 1e-6, (
        f"a pre-norm block, x + attn(norm1(x)) then x + mlp(norm2(x)), returns x when both branches output 0; "
        f"yours changed it by up to {changed:.3g}: normalise the branch's input, not the sum (no post-norm "
        "norm(x + f(x))), and keep both residual additions `x + ...`")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_block_is_two_prenorm_residual_steps(sub):
    """Block(x) = y + mlp(norm2(y)) with y = x + attn(norm1(x)), computed from your block's own parts (random weights)."""
    block = sub.Block(dim=8, num_heads=2, mlp_ratio=2.0)
    block.load_state_dict(random_state(block, seed=6))  # norm1 and norm2 differ, so mixing them up shows
    x = randn(2, 5, 8, seed=7)
    y = x + block.attn(block.norm1(x))
    expected = y + block.mlp(block.norm2(y))
    # float32; the same operations, perhaps grouped differently: ~1e-6.
    assert_close(block(x), expected, what="Block output compared with y + mlp(norm2(y)), y = x + attn(norm1(x)) "
                 "(pre-norm: each branch reads a normalised copy, the residual path adds the raw x)",
                 atol=1e-5, rtol=1e-5)


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


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_vit_other_arguments(sub):
    """VisionTransformer passes every argument on (img_size=12, patch_size=2, in_chans=2, num_classes=3, embed_dim=12, depth=2, num_heads=2, mlp_ratio=1.5, qkv_bias=False)."""
    model = sub.VisionTransformer(img_size=12, patch_size=2, in_chans=2, num_classes=3, embed_dim=12, depth=2,
                                  num_heads=2, mlp_ratio=1.5, qkv_bias=False)
    assert_shape(model.patch_embed.proj.weight, (12, 2, 2, 2),
                 what="patch_embed.proj.weight for patch_size=2, in_chans=2, embed_dim=12")
    assert_shape(model.pos_embed, (1, 37, 12), what="pos_embed for (12 // 2) ** 2 = 36 patches plus the class token")
    assert len(model.blocks) == 2, f"blocks should hold depth=2 blocks, not {len(model.blocks)}"
    names = set(model.state_dict())
    for i in range(2):
        heads = model.blocks[i].attn.num_heads
        assert heads == 2, f"blocks[{i}].attn.num_heads should be num_heads=2, but is {heads}"
        assert_shape(model.blocks[i].mlp.fc1.weight, (18, 12),
                     what=f"blocks[{i}].mlp.fc1.weight (int(12 * mlp_ratio 1.5) = 18 hidden units)")
        assert f"blocks.{i}.attn.qkv.bias" not in names, \
            f"VisionTransformer(qkv_bias=False) has blocks.{i}.attn.qkv.bias: pass qkv_bias on to the blocks"
    assert_shape(model.head.weight, (3, 12), what="head.weight for num_classes=3, embed_dim=12")
    assert_shape(model(randn(2, 2, 12, 12, seed=1)), (2, 3), what="logits for [2, 2, 12, 12] images")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_vit_starts_with_small_random_tokens(sub):
    """cls_token and pos_embed start as small random values (the notebook uses trunc_normal_ with std 0.02), not zeros."""
    model = sub.VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=2, embed_dim=16, depth=1,
                                  num_heads=2)
    for name in ("cls_token", "pos_embed"):
        p = getattr(model, name).double()
        # Any small random init passes (timm's std 1e-6 for the class token too); zeros (all equal) or
        # N(0, 1) (|values| of 2-3 among 272) do not.
        assert p.std().item() > 0 and p.abs().max().item() < 0.5, (
            f"{name} should start as small random values (nn.init.trunc_normal_(p, std=0.02)); yours has "
            f"standard deviation {p.std().item():.3g} and largest |value| {p.abs().max().item():.3g}")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_vit_features_from_its_parts(sub):
    """forward_features(x) = norm(blocks([cls_token; patch_embed(x)] + pos_embed)), computed from your model's own parts."""
    model = sub.VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=4, embed_dim=8, depth=2,
                                  num_heads=2, mlp_ratio=2.0)
    loaded = random_state(model, seed=8)  # cls_token and pos_embed of size ~1, so that they show
    model.load_state_dict(loaded)
    state = model.state_dict()
    shared = [name for name in loaded if not torch.equal(state[name], loaded[name])]
    assert not shared, (f"after load_state_dict, {shared[0]} does not hold the value loaded into it: do two names "
                        "share one parameter? Make `depth` separate Blocks (a new Block(...) for each), not one "
                        "block repeated")
    cls, pos = state["cls_token"], state["pos_embed"]
    x = randn(2, 1, 8, 8, seed=9)
    patches = model.patch_embed(x)
    assert_shape(patches, (2, 4, 8), what="patch_embed output")
    tokens = torch.cat([cls.expand(2, 1, 8), patches], dim=1)
    expected = model.norm(model.blocks(tokens + pos))
    features = model.forward_features(x)
    assert_shape(features, (2, 5, 8), what="forward_features output")
    # float32, the same operations: ~1e-6.
    without_slot_0 = model.norm(model.blocks(torch.cat([tokens[:, :1], tokens[:, 1:] + pos[:, 1:]], dim=1)))
    if largest_difference(features, without_slot_0) < 1e-5:
        raise AssertionError("pos_embed[:, 0] is never added: the class token has position slot 0, so add the "
                             "whole pos_embed after putting the class token in front of the patches")
    assert_close(features, expected, what="forward_features output compared with norm(blocks([cls_token; "
                 "patch_embed(x)] + pos_embed)) (class token first, then the patches)", atol=1e-5, rtol=1e-5)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_vit_logits_read_the_class_token(sub):
    """The logits are head(forward_features(x)[:, 0]): the classifier reads the class token."""
    model = sub.VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=8, depth=1,
                                  num_heads=2, mlp_ratio=2.0)
    model.load_state_dict(random_state(model, seed=10))
    state = model.state_dict()
    x = randn(3, 1, 8, 8, seed=11)
    features, logits = model.forward_features(x), model(x)
    assert_shape(logits, (3, 3), what="logits")

    def head(z):
        return z @ state["head.weight"].T + state["head.bias"]

    # float32, one small matrix product: ~1e-6.
    if largest_difference(logits, head(features.mean(dim=1))) < 1e-5:
        raise AssertionError("the logits come from the mean of all tokens; ViT's classifier reads the class "
                             "token only: head(forward_features(x)[:, 0])")
    assert_close(logits, head(features[:, 0]), what="logits compared with head(forward_features(x)[:, 0])",
                 atol=1e-5, rtol=1e-5)


# -- train ------------------------------------------------------------------------------------
class Recorder(nn.Module):
    """A linear classifier on flattened [n, 1, 2, 2] images, in float64, that records every batch it is
    trained on (each forward pass whose output a backward() reaches) and the mode it was in then."""

    def __init__(self, seed):
        super().__init__()
        self.linear = nn.Linear(4, 3, dtype=torch.float64)
        with torch.no_grad():  # weights of size ~1, so that weight decay moves them visibly
            self.linear.weight.copy_(randn(3, 4, seed=seed, dtype=torch.float64))
            self.linear.bias.copy_(randn(3, seed=seed + 1, dtype=torch.float64))
        self.calls = []

    def forward(self, x):
        out = self.linear(x.flatten(1).to(torch.float64))
        if out.requires_grad:  # a pass that may be trained on; the hook marks it when backward() reaches it
            call = {"x": x.detach().clone(), "training": self.training, "used": False}
            self.calls.append(call)
            out.register_hook(lambda grad, call=call: call.update(used=True))
        return out

    @property
    def trained_on(self):
        return [call for call in self.calls if call["used"]]


def recorder_data(n=12):
    images = randn(n, 1, 2, 2, seed=12, dtype=torch.float64)
    labels = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(13))
    return images, labels


def batch_indices(model, images, steps, batch_size):
    """Which examples each training step used, read from the recorder, checked against the contract."""
    calls = model.trained_on
    assert len(calls) == steps, (
        f"train_classifier(steps={steps}) called backward() through {len(calls)} forward passes of the model; "
        "expected one per step")
    sizes = [len(call["x"]) for call in calls]
    assert all(s == batch_size for s in sizes), \
        f"with batch_size={batch_size} every step should use {batch_size} examples; yours used {sizes}"
    assert all(call["training"] for call in calls), \
        "the model was in eval mode while training: call model.train() before the loop"
    indices = []
    for b in (call["x"] for call in calls):
        distance = (b.to(torch.float64)[:, None] - images[None]).flatten(2).abs().amax(-1)  # [batch, n]
        best = distance.min(dim=1)
        # Rows of `images` indexed out of it are copied exactly; 1e-6 allows a float32 round trip.
        assert bool((best.values < 1e-6).all()), "the model was called on images that are not rows of `images`"
        indices.append(best.indices)
    return indices


def check_returned_losses(losses, steps):
    count = len(losses) if isinstance(losses, (list, tuple)) else type(losses).__name__
    assert isinstance(losses, (list, tuple)) and len(losses) == steps, \
        f"train_classifier(steps={steps}) should return a list with one loss per step; yours returned {count}"
    assert all(isinstance(l, (float, int)) and math.isfinite(l) for l in losses), \
        "the returned losses should be finite Python floats (record loss.item())"


def adamw_by_hand(start, batches, lr, weight_decay, fresh_each_step=False, accumulate=False):
    """AdamW written out (betas 0.9, 0.999, eps 1e-8) on the recorder's linear layer: the weights after each
    (x, y) batch and each batch's loss before its step."""
    params = {name: p.clone().requires_grad_(True) for name, p in start.items()}
    m = {name: torch.zeros_like(p) for name, p in params.items()}
    v = {name: torch.zeros_like(p) for name, p in params.items()}
    grads = {name: torch.zeros_like(p) for name, p in params.items()}
    losses, t = [], 0
    for x, y in batches:
        loss = F.cross_entropy(x.flatten(1) @ params["weight"].T + params["bias"], y)
        g = torch.autograd.grad(loss, [params["weight"], params["bias"]])
        losses.append(loss.item())
        t = 1 if fresh_each_step else t + 1
        with torch.no_grad():
            for (name, p), g_p in zip(params.items(), g):
                grads[name] = grads[name] + g_p if accumulate else g_p
                if fresh_each_step:
                    m[name], v[name] = torch.zeros_like(p), torch.zeros_like(p)
                m[name] = 0.9 * m[name] + 0.1 * grads[name]
                v[name] = 0.999 * v[name] + 0.001 * grads[name] ** 2
                p.mul_(1 - lr * weight_decay)
                p.sub_(lr / (1 - 0.9 ** t) * m[name] / ((v[name] / (1 - 0.999 ** t)).sqrt() + 1e-8))
    return {name: p.detach() for name, p in params.items()}, losses


def check_first_loss(losses, expected):
    """The first returned loss depends only on the starting weights and the first batch."""
    assert abs(losses[0] - expected) <= 1e-9 * max(1.0, abs(expected)), (  # float64, same batch: ~1e-16
        f"the first returned loss {losses[0]:.6g} is not the mean cross-entropy of the first batch before the "
        f"step ({expected:.6g}): record loss.item() of the F.cross_entropy loss you differentiate")


def weights_of(model):
    return {"weight": model.linear.weight.detach().clone(), "bias": model.linear.bias.detach().clone()}


def largest_gap(a, b):
    return max((a[name] - b[name]).abs().max().item() for name in a)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_train_batches_follow_the_seed(sub):
    """train_classifier draws `steps` batches of `batch_size` examples from `seed`: the same seed gives the same batches, another seed others."""
    images, labels = recorder_data()
    runs = []
    for seed in (4, 4, 9):
        model = Recorder(seed=20).eval()  # train_classifier should switch it to train mode, and back
        losses = sub.train_classifier(model, images, labels, steps=5, lr=1e-3, batch_size=3, weight_decay=0.0,
                                      seed=seed)
        check_returned_losses(losses, 5)
        runs.append(torch.stack(batch_indices(model, images, steps=5, batch_size=3)))
        assert model.training is False, "train_classifier should leave the model in eval mode (call model.eval())"
    assert torch.equal(runs[0], runs[1]), (
        "two calls with seed=4 drew different batches: draw the batch indices from a torch.Generator seeded with "
        "`seed` (torch.Generator().manual_seed(seed), then generator=... in torch.randint), not from the global "
        "random state")
    assert not torch.equal(runs[0], runs[2]), \
        "seed=4 and seed=9 drew the same batches: seed the generator with the `seed` argument"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_train_one_step_is_adamw_with_decoupled_decay(sub):
    """One step moves each weight w to w * (1 - lr * weight_decay) - lr * g / (|g| + eps): AdamW's first step, with decoupled decay."""
    images, labels = recorder_data()
    lr, wd = 0.05, 2.0
    model = Recorder(seed=21)
    start = weights_of(model)
    losses = sub.train_classifier(model, images, labels, steps=1, lr=lr, batch_size=4, weight_decay=wd, seed=2)
    check_returned_losses(losses, 1)
    (idx,) = batch_indices(model, images, steps=1, batch_size=4)
    x, y = images[idx], labels[idx]
    params = {name: p.clone().requires_grad_(True) for name, p in start.items()}
    loss = F.cross_entropy(x.flatten(1) @ params["weight"].T + params["bias"], y)
    loss.backward()
    check_first_loss(losses, loss.item())
    after = weights_of(model)

    def step(decay, rate, l2=0.0):  # Adam's first step is rate * g / (|g| + eps), g the gradient it sees
        out = {}
        for name, p in params.items():
            g = p.grad + l2 * p.detach()
            out[name] = p.detach() * (1 - rate * decay) - rate * g / (g.abs() + 1e-8)
        return out

    # float64, the same arithmetic as torch.optim.AdamW: ~1e-16. Another lr or weight decay moves the
    # weights by > 1e-3 here.
    gap = largest_gap(after, step(wd, lr))
    if gap > 1e-9:
        hints = [("Adam with weight_decay as an L2 term (torch.optim.Adam): use torch.optim.AdamW, whose decay "
                  "is decoupled from the gradient", step(0.0, lr, l2=wd)),
                 ("no weight decay: pass weight_decay=weight_decay to AdamW", step(0.0, lr)),
                 ("weight_decay=0.05, the default, instead of the weight_decay argument", step(0.05, lr)),
                 ("lr=3e-3, the default, instead of the lr argument", step(wd, 3e-3))]
        found = [hint for hint, candidate in hints if largest_gap(after, candidate) < 1e-9]
        raise AssertionError(
            f"after one step the weights differ from AdamW's step w * (1 - lr * weight_decay) - lr * g / (|g| + "
            f"1e-8) by up to {gap:.3g}: " + (f"your step matches {found[0]}" if found else
                                             "make one torch.optim.AdamW over the model's parameters with "
                                             "the lr and weight_decay arguments, and take one step per step"))


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_train_four_steps_are_adamw_steps(sub):
    """Four steps are four AdamW steps of one optimizer on the batches your loop drew, and it returns each step's loss."""
    images, labels = recorder_data()
    lr, wd, steps = 0.02, 0.5, 4
    model = Recorder(seed=22)
    start = weights_of(model)
    losses = sub.train_classifier(model, images, labels, steps=steps, lr=lr, batch_size=6, weight_decay=wd, seed=3)
    check_returned_losses(losses, steps)
    batches = [(images[i], labels[i]) for i in batch_indices(model, images, steps=steps, batch_size=6)]
    expected, expected_losses = adamw_by_hand(start, batches, lr, wd)
    check_first_loss(losses, expected_losses[0])
    gap = largest_gap(weights_of(model), expected)
    # float64, the same arithmetic: ~1e-16; every bug of the loop this targets moves weights by ~lr.
    if gap > 1e-9:
        hints = [("gradients summed over the steps: call optimizer.zero_grad() before each backward()",
                  adamw_by_hand(start, batches, lr, wd, accumulate=True)[0]),
                 ("a new optimizer at every step, which forgets Adam's running averages: make it once, before "
                  "the loop", adamw_by_hand(start, batches, lr, wd, fresh_each_step=True)[0])]
        found = [hint for hint, candidate in hints if largest_gap(weights_of(model), candidate) < 1e-9]
        raise AssertionError(
            f"after {steps} steps the weights differ from {steps} AdamW steps on the batches your loop drew by up "
            f"to {gap:.3g}: " + (f"your steps match {found[0]}" if found else
                                 "each step should be zero_grad, backward, step with one AdamW optimizer"))
    assert_close(torch.tensor(losses, dtype=torch.float64), torch.tensor(expected_losses, dtype=torch.float64),
                 what="the returned losses (each step's cross-entropy before its update)",
                 atol=1e-9, rtol=1e-9)  # float64, same batches and weights: ~1e-16


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
