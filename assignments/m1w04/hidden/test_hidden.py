"""m1w04 hidden suite: attention maps, rollout, mass thresholding, attention metrics, frozen
features, a linear probe matched to scikit-learn and DINO's kNN probe.

Independent truths: timm's own ViT (attention read from `attn.attn_drop` hooks with the fused kernel
off, features from `forward_intermediates(norm=True)`) with the same weights; closed forms (uniform
rollout, entropies, hand-computed masks and votes); scikit-learn's `LogisticRegression` and
scipy's entropy; loops written here that follow DINO's code line by line. Values are compared in
float64 where possible, where valid implementations agree to ~1e-15; tolerances say why.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autograder.kit import assert_close, assert_shape, randn, randomize

F64 = {"atol": 1e-10, "rtol": 1e-8}  # float64: valid orders of operations differ by ~1e-15


# -- trusted-side helpers -------------------------------------------------------------------
def random_attention(*shape, seed, sharpness=1.5):
    """Row-stochastic [..., N, N] attention from random logits (no ties, not symmetric)."""
    return (sharpness * randn(*shape, seed=seed)).softmax(dim=-1)


def timm_model(m1w04_vit, cfg, seed=1, double=True):
    torch.manual_seed(seed)
    model = randomize(m1w04_vit(**cfg), seed).eval()
    return model.double() if double else model


def student_model(sub, cfg, state, double=True):
    """The notebook's ViT holding the trusted weights (a strict load: timm's names)."""
    model = sub.ViT(**cfg)
    model.load_state_dict(state, strict=True)
    if double:
        model.double()
    model.eval()
    return model


def timm_attention(model, x):
    """[L, B, H, N, N] from a timm ViT: the fused kernel off, a hook on each attn.attn_drop."""
    store, hooks = [], []
    for block in model.blocks:
        block.attn.fused_attn = False
        hooks.append(block.attn.attn_drop.register_forward_hook(lambda m, i, out: store.append(out)))
    try:
        model.forward_features(x)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(store)


def trusted_rollout(attentions):
    """Abnar & Zuidema's rollout, one layer at a time: R <- rownorm(mean_h A_l + I) @ R."""
    L, B, H, N, _ = attentions.shape
    result = torch.eye(N, dtype=attentions.dtype).repeat(B, 1, 1)
    for l in range(L):
        a = attentions[l].mean(dim=1) + torch.eye(N, dtype=attentions.dtype)
        a = a / a.sum(dim=-1, keepdim=True)
        result = torch.bmm(a, result)
    return result


def dino_mask(attn_map, mass):
    """The thresholding lines of facebookresearch/dino's visualize_attention.py, for [R, P] maps."""
    val, idx = torch.sort(attn_map)
    val = val / torch.sum(val, dim=1, keepdim=True)
    cumval = torch.cumsum(val, dim=1)
    th_attn = cumval > (1 - mass)
    idx2 = torch.argsort(idx)
    for row in range(attn_map.shape[0]):
        th_attn[row] = th_attn[row][idx2[row]]
    return th_attn


def knn_loop(train, train_labels, test, num_classes, k, temperature, exclude=None):
    """DINO's weighted kNN, one query at a time: cosine similarity, top k, votes exp(s / T)."""
    scores = torch.zeros(len(test), num_classes, dtype=torch.float64)
    for i, query in enumerate(test):
        sims = [(float(query @ t / (query.norm() * t.norm())), j) for j, t in enumerate(train)
                if exclude is None or exclude[i] != j]
        for s, j in sorted(sims, reverse=True)[:k]:
            scores[i, int(train_labels[j])] += math.exp(s / temperature)
    return scores


def probe_problem(n, d, num_classes, seed):
    """Separable-ish classes with unequal frequencies (so the intercepts matter), float64."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.linspace(2.0, 1.0, num_classes, dtype=torch.float64)
    labels = torch.multinomial(weights, n, replacement=True, generator=g)
    features = torch.randn(n, d, generator=g, dtype=torch.float64)
    features[:, :num_classes] += 1.5 * F.one_hot(labels, num_classes).double()
    return features, labels


def sklearn_probe(features, labels, C):
    from sklearn.linear_model import LogisticRegression

    # tol is L-BFGS's gradient tolerance on the mean-loss objective: 1e-10 pins the optimum to ~1e-9.
    model = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(features.numpy(), labels.numpy())
    return model


VIT_A = dict(img_size=16, patch_size=4, in_chans=3, num_classes=0, embed_dim=32, depth=3, num_heads=4,
             mlp_ratio=2.0)
VIT_B = dict(img_size=12, patch_size=3, in_chans=2, num_classes=5, embed_dim=24, depth=2, num_heads=1,
             mlp_ratio=2.5, qkv_bias=False)
VITS = {"3_blocks_4_heads": VIT_A, "1_head_no_qkv_bias": VIT_B}


# == attention ================================================================================
@pytest.mark.points(2)
@pytest.mark.kind("shape")
@pytest.mark.parametrize("size", ["3_blocks_4_heads", "1_head_no_qkv_bias"])
def test_attention_maps_shapes(sub, size):
    """attention_maps returns [L, B, H, N, N] (N = 1 + patches) in the input's dtype, for several sizes."""
    cfg = VITS[size]
    model = sub.ViT(**cfg)
    n = 1 + (cfg["img_size"] // cfg["patch_size"]) ** 2
    maps = sub.attention_maps(model, randn(2, cfg["in_chans"], cfg["img_size"], cfg["img_size"], seed=0,
                                           dtype=torch.float32))
    assert_shape(maps, (cfg["depth"], 2, cfg["num_heads"], n, n),
                 what=f"attention_maps for {cfg['depth']} blocks, 2 images, {cfg['num_heads']} heads, {n} tokens")
    assert maps.dtype == torch.float32, f"attention_maps should keep the input's dtype float32, not {maps.dtype}"


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("size", ["3_blocks_4_heads", "1_head_no_qkv_bias"])
def test_attention_maps_match_timm(sub, m1w04_vit, size):
    """attention_maps equals the attention timm's ViT computes (hooked at attn.attn_drop), same weights, float64."""
    cfg = VITS[size]
    trusted = timm_model(m1w04_vit, cfg)
    student = student_model(sub, cfg, trusted.state_dict())
    x = randn(2, cfg["in_chans"], cfg["img_size"], cfg["img_size"], seed=0)
    with torch.no_grad():
        expected = timm_attention(trusted, x)
    assert_close(sub.attention_maps(student, x), expected, what="attention maps of every layer", **F64)


@pytest.mark.points(3)
@pytest.mark.kind("grad")
def test_attention_maps_input_grad_matches_timm(sub, m1w04_vit):
    """The gradient of sum(maps * cotangent) with respect to the images equals timm's (float64, same weights)."""
    cfg = dict(img_size=8, patch_size=4, in_chans=2, num_classes=0, embed_dim=16, depth=2, num_heads=2,
               mlp_ratio=2.0)
    trusted = timm_model(m1w04_vit, cfg)
    student = student_model(sub, cfg, trusted.state_dict())
    x, cot = randn(2, 2, 8, 8, seed=0), randn(2, 2, 2, 5, 5, seed=1)
    xt = x.clone().requires_grad_(True)
    (timm_attention(trusted, xt) * cot).sum().backward()
    grads = sub.vjp(sub.attention_maps, student, x, cotangents=cot).inputs
    assert grads and grads[0] is not None, \
        "the attention maps do not depend on the images (keep them differentiable: no detach or no_grad)"
    assert_close(grads[0], xt.grad, what="gradient of the attention maps with respect to the images", **F64)


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_attention_cls_shapes(sub):
    """cls_attention keeps the leading dimensions and drops num_prefix_tokens columns: [..., N - prefix]."""
    maps = random_attention(3, 2, 4, 9, 9, seed=0)
    assert_shape(sub.cls_attention(maps), (3, 2, 4, 8), what="cls_attention of [3, 2, 4, 9, 9] maps")
    assert_shape(sub.cls_attention(maps[0, :, 0], num_prefix_tokens=5), (2, 4),
                 what="cls_attention of [2, 9, 9] maps with 5 prefix tokens (class token and 4 registers)")


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("prefix", [1, 3])
def test_attention_cls_reads_the_class_token_row(sub, prefix):
    """cls_attention is what the class token reads (row 0), over the patch columns after the prefix tokens."""
    maps = random_attention(2, 3, 7, 7, seed=prefix)
    assert_close(sub.cls_attention(maps, num_prefix_tokens=prefix), maps[..., 0, prefix:],
                 what=f"cls_attention with {prefix} prefix token(s)", atol=0, rtol=0)  # a selection: exact


# == rollout ==================================================================================
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_rollout_shape(sub):
    """attention_rollout maps [L, B, H, N, N] to [B, N, N] and keeps the dtype."""
    out = sub.attention_rollout(random_attention(3, 2, 4, 5, 5, seed=0).float())
    assert_shape(out, (2, 5, 5), what="rollout of [3, 2, 4, 5, 5] attention")
    assert out.dtype == torch.float32, f"the rollout should keep the dtype float32, not {out.dtype}"


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("layers", [1, 5])
def test_rollout_uniform_closed_form(sub, layers):
    """Uniform attention U in every layer rolls out to 2^-L I + (1 - 2^-L) U (residual identity, rows renormalised)."""
    n = 6
    attn = torch.full((layers, 2, 3, n, n), 1.0 / n, dtype=torch.float64)
    expected = 2.0 ** -layers * torch.eye(n, dtype=torch.float64) + (1 - 2.0 ** -layers) / n
    assert_close(sub.attention_rollout(attn), expected.expand(2, n, n),
                 what=f"rollout of uniform attention over {layers} layer(s)", **F64)


@pytest.mark.points(3)
@pytest.mark.kind("value")
def test_rollout_hand_computed_two_layers(sub):
    """Two layers of two tokens, worked out by hand: R = Â2 Â1 = [[0.5, 0.5], [0.125, 0.875]]."""
    layer1 = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)
    layer2 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    attn = torch.stack([layer1, layer2])[:, None]  # [L=2, B=1, H=2, 2, 2]
    # Â1 = rownorm(mean_h A1 + I) = [[.5, .5], [0, 1]];  Â2 = rownorm([[2, 0], [.5, 1.5]]) = [[1, 0], [.25, .75]]
    expected = torch.tensor([[[0.5, 0.5], [0.125, 0.875]]], dtype=torch.float64)
    assert_close(sub.attention_rollout(attn), expected, what="rollout of the two-layer example", **F64)


@pytest.mark.points(3)
@pytest.mark.kind("value")
def test_rollout_matches_layer_by_layer_product(sub):
    """On random attention (4 layers, 3 heads) the rollout equals rownorm(mean A_l + I) multiplied, later layers on the left."""
    attn = random_attention(4, 2, 3, 6, 6, seed=3)
    assert_close(sub.attention_rollout(attn), trusted_rollout(attn), what="rollout of random attention", **F64)


@pytest.mark.points(3)
@pytest.mark.kind("grad")
def test_rollout_grad_matches_trusted(sub):
    """attention_rollout's gradient for the attentions equals the trusted rollout's (float64, L=3, B=2, H=2, N=4)."""
    attn, cot = random_attention(3, 2, 2, 4, 4, seed=4), randn(2, 4, 4, seed=5)
    at = attn.clone().requires_grad_(True)
    (trusted_rollout(at) * cot).sum().backward()
    grads = sub.vjp(sub.attention_rollout, attn, cotangents=cot).inputs
    assert grads and grads[0] is not None, ("your attention_rollout does not depend on the attentions it is given: "
                                            "keep every step a differentiable tensor operation (no .detach(), "
                                            ".item(), numpy or in-place edits of the input)")
    # float64 products of 3 small stochastic matrices: valid orders of operations differ by ~1e-16.
    assert_close(grads[0], at.grad, what="gradient of the rollout with respect to the attentions", **F64)


# == threshold ================================================================================
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_threshold_shapes_and_dtype(sub):
    """mass_threshold returns a bool tensor of the input's shape, for any leading dimensions."""
    for shape in [(7,), (3, 7), (2, 3, 7)]:
        mask = sub.mass_threshold(random_attention(*shape, seed=0), mass=0.6)
        assert_shape(mask, shape, what=f"mass_threshold output for a {list(shape)} map")
        assert mask.dtype == torch.bool, f"mass_threshold should return a bool tensor, not {mask.dtype}"


@pytest.mark.points(3)
@pytest.mark.kind("value")
def test_threshold_hand_computed(sub):
    """Masks worked out by hand: the smallest set of largest entries whose share reaches the mass."""
    cases = [  # (map, mass, kept); no cumulative sum lands within 0.05 of the cut
        ([0.7, 0.1, 0.1, 0.05, 0.05], 0.6, [True, False, False, False, False]),  # one patch already holds 70%
        ([0.1, 0.3, 0.25, 0.2, 0.15], 0.6, [False, True, True, True, False]),   # 0.3 + 0.25 < 0.6 <= + 0.2
        ([0.1, 0.3, 0.25, 0.2, 0.15], 0.8, [False, True, True, True, True]),    # 0.75 < 0.8 <= 0.9
    ]
    for values, mass, kept in cases:
        got = sub.mass_threshold(torch.tensor(values, dtype=torch.float64), mass=mass)
        assert got.tolist() == kept, f"mass_threshold({values}, mass={mass}) should keep {kept}, got {got.tolist()}"
    batch = torch.tensor([cases[0][0], cases[1][0]], dtype=torch.float64)
    got = sub.mass_threshold(batch, mass=0.6)
    assert got.tolist() == [cases[0][2], cases[1][2]], f"a batch of the two maps gives {got.tolist()}"


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("mass", [0.6, 0.9])
def test_threshold_matches_dino_rule(sub, mass):
    """On random maps that do not sum to one, the mask equals the one DINO's visualize_attention.py computes."""
    maps = 0.8 * random_attention(4, 3, 20, seed=5, sharpness=2.0)  # a class-token row without its own column
    expected = dino_mask(maps.reshape(12, 20), mass).reshape(4, 3, 20)
    got = sub.mass_threshold(maps, mass=mass)
    assert_shape(got, (4, 3, 20), what="mass_threshold output")
    wrong = int((got != expected).sum())
    assert wrong == 0, (f"{wrong} of 240 mask entries differ from DINO's rule at mass={mass} "
                        f"(the first map: yours keeps {int(got[0, 0].sum())} patches, DINO's {int(expected[0, 0].sum())})")


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_threshold_scale_invariant(sub):
    """The mask depends on shares of the map's own total, so scaling the map changes nothing."""
    small = torch.tensor([0.15, 0.09, 0.03, 0.03], dtype=torch.float64)  # sums to 0.3: shares 0.5, 0.3, 0.1, 0.1
    got = sub.mass_threshold(small, mass=0.6)
    assert got.tolist() == [True, True, False, False], \
        f"a map summing to 0.3 with shares [0.5, 0.3, 0.1, 0.1] should keep its first two patches, got {got.tolist()}"
    maps = random_attention(5, 16, seed=6, sharpness=2.0)
    reference = sub.mass_threshold(maps, mass=0.6)
    for factor in (0.37, 5.0):
        scaled = sub.mass_threshold(factor * maps, mass=0.6)
        assert torch.equal(scaled, reference), f"multiplying the maps by {factor} changed the mask"


# == metrics ==================================================================================
@pytest.mark.points(2)
@pytest.mark.kind("shape")
def test_metrics_shapes(sub):
    """attention_entropy and mass_inside reduce the last axis; high_norm_tokens gives a bool [B, P]."""
    attn = random_attention(2, 3, 5, seed=0)
    assert_shape(sub.attention_entropy(attn), (2, 3), what="attention_entropy of [2, 3, 5]")
    assert_shape(sub.mass_inside(attn, torch.tensor([True, False, True, False, False])), (2, 3),
                 what="mass_inside of [2, 3, 5] with a [5] mask")
    flags = sub.high_norm_tokens(randn(2, 7, 4, seed=1), ratio=2.0)
    assert_shape(flags, (2, 7), what="high_norm_tokens of [2, 7, 4] tokens")
    assert flags.dtype == torch.bool, f"high_norm_tokens should return a bool tensor, not {flags.dtype}"


@pytest.mark.points(3)
@pytest.mark.kind("value")
def test_metrics_entropy_closed_forms(sub):
    """Entropy in nats along the last axis: ln 5 for uniform rows, 0 for one-hot rows, the binary entropy of [p, 1-p]."""
    p = 0.3
    rows = torch.tensor([[0.2] * 5, [0.0, 0.0, 1.0, 0.0, 0.0], [p, 1 - p, 0.0, 0.0, 0.0]], dtype=torch.float64)
    expected = torch.tensor([math.log(5), 0.0, -p * math.log(p) - (1 - p) * math.log(1 - p)], dtype=torch.float64)
    assert_close(sub.attention_entropy(rows), expected, what="entropies of [uniform, one-hot, two-point] rows "
                 "(zeros count as 0 ln 0 = 0)", **F64)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_metrics_entropy_matches_scipy(sub):
    """attention_entropy equals scipy.stats.entropy (natural log) of every row of random attention maps."""
    from scipy.stats import entropy

    attn = random_attention(2, 3, 6, 6, seed=7, sharpness=2.5)
    expected = torch.from_numpy(entropy(attn.numpy(), axis=-1))
    assert_close(sub.attention_entropy(attn), expected, what="entropy of each attention row", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("grad")
def test_metrics_entropy_grad_closed_form(sub):
    """attention_entropy's gradient at positive rows is the closed form dH/da_j = -(ln a_j + 1) (float64)."""
    attn, cot = random_attention(3, 6, seed=8), randn(3, seed=9)
    grads = sub.vjp(sub.attention_entropy, attn, cotangents=cot).inputs
    assert grads and grads[0] is not None, ("your attention_entropy does not depend on the attention it is given: "
                                            "keep it a differentiable tensor operation")
    expected = -(attn.log() + 1) * cot.unsqueeze(-1)
    # float64, entries in (0.001, 1): the closed form and autograd's xlogy/log agree to ~1e-15.
    assert_close(grads[0], expected, what="gradient of the entropy with respect to the attention", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_metrics_mass_inside_values(sub):
    """mass_inside is the share of each map's own total inside the mask (maps need not sum to one)."""
    got = sub.mass_inside(torch.tensor([0.1, 0.2, 0.3, 0.0], dtype=torch.float64),
                          torch.tensor([True, False, True, False]))
    assert_close(got, torch.tensor(2 / 3, dtype=torch.float64), what="mass_inside([.1, .2, .3, 0], [T, F, T, F])",
                 **F64)
    maps = 0.7 * random_attention(2, 3, 9, seed=9)
    masks = randn(2, 3, 9, seed=10) > 0
    expected = (maps * masks).sum(-1) / maps.sum(-1)
    assert_close(sub.mass_inside(maps, masks), expected, what="mass_inside with one mask per map", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_metrics_high_norm_tokens_planted(sub):
    """Planted outliers are found exactly, per image (images have different scales), against the median norm."""
    g = torch.Generator().manual_seed(11)
    directions = F.normalize(torch.randn(3, 24, 8, generator=g, dtype=torch.float64), dim=-1)
    norms = 0.9 + 0.2 * torch.rand(3, 24, generator=g, dtype=torch.float64)  # typical norms in [0.9, 1.1]
    expected = torch.zeros(3, 24, dtype=torch.bool)
    expected[0, [3, 17]] = True
    norms[0, [3, 17]] = 5.0
    expected[1, :8] = True          # a third of the tokens: only the median ignores them (the mean would not)
    norms[1, :8] = 3.5
    norms[2] *= 10.0                # another image at ten times the scale, without outliers but with one at 1.6x
    norms[2, 5] = 16.0
    got = sub.high_norm_tokens(directions * norms.unsqueeze(-1), ratio=2.0)
    assert_shape(got, (3, 24), what="high_norm_tokens output")
    for b in range(3):
        assert got[b].tolist() == expected[b].tolist(), (
            f"image {b}: expected outliers at {expected[b].nonzero().flatten().tolist()}, "
            f"got {got[b].nonzero().flatten().tolist()}")
    # The ratio moves the cut. Measured norms over each image's median: outliers 4.9 (image 0), 3.3 (image 1) and
    # 1.57 (image 2); every other token at most 1.10, so ratio 4 keeps image 0's and ratio 1.3 all three.
    for ratio, found in ((4.0, {0: [3, 17], 1: [], 2: []}), (1.3, {0: [3, 17], 1: list(range(8)), 2: [5]})):
        got = sub.high_norm_tokens(directions * norms.unsqueeze(-1), ratio=ratio)
        for b in range(3):
            assert got[b].nonzero().flatten().tolist() == found[b], (
                f"image {b} with ratio={ratio}: expected outliers at {found[b]}, got "
                f"{got[b].nonzero().flatten().tolist()} (use the ratio argument: norm > ratio * median norm)")


def planted_maps():
    """A 7x7 patch grid with an object in the middle 3x3. A DINO-like class-token map on the object;
    a CLIP-like one diffuse plus two high-norm background tokens that take most of the attention.
    Both maps leave 10% on the class token itself, so neither sums to one."""
    g = torch.Generator().manual_seed(12)
    obj = torch.zeros(7, 7, dtype=torch.bool)
    obj[2:5, 2:5] = True
    obj = obj.flatten()
    artifacts = torch.tensor([0, 46])
    dino = 0.9 * (2.5 * obj + 0.3 * torch.randn(49, generator=g, dtype=torch.float64)).softmax(0)
    logits = 0.3 * torch.randn(49, generator=g, dtype=torch.float64)
    logits[artifacts] += 4.0
    clip = 0.9 * logits.softmax(0)
    dino_tokens = torch.randn(1, 49, 16, generator=g, dtype=torch.float64)
    clip_tokens = torch.randn(1, 49, 16, generator=g, dtype=torch.float64)
    clip_tokens[0, artifacts] *= 8.0
    return obj, artifacts, dino, clip, dino_tokens, clip_tokens


@pytest.mark.points(3)
@pytest.mark.kind("value")
def test_metrics_compare_planted_dino_and_clip(sub):
    """On planted DINO-like and CLIP-like maps the three metrics give the trusted values and tell the two apart."""
    obj, artifacts, dino, clip, dino_tokens, clip_tokens = planted_maps()
    baseline = obj.double().mean().item()  # 9/49: a map that ignores the image
    results = {}
    for name, amap, tokens in (("DINO-like", dino, dino_tokens), ("CLIP-like", clip, clip_tokens)):
        inside = sub.mass_inside(amap, obj)
        assert_close(inside, (amap * obj).sum() / amap.sum(), what=f"mass inside the object, {name} map", **F64)
        normalised = amap / amap.sum()
        entropy = sub.attention_entropy(normalised)
        assert_close(entropy, -(normalised * normalised.log()).sum(), what=f"entropy of the {name} map", **F64)
        outliers = sub.high_norm_tokens(tokens, ratio=3.0)
        assert_shape(outliers, (1, 49), what=f"high_norm_tokens of the {name} tokens")
        results[name] = (float(inside), float(entropy), outliers[0])
    assert results["DINO-like"][2].sum() == 0, "the DINO-like tokens have no outliers, but some were flagged"
    found = results["CLIP-like"][2].nonzero().flatten().tolist()
    assert found == artifacts.tolist(), f"the CLIP-like artifacts are tokens {artifacts.tolist()}, found {found}"
    on_artifacts = sub.mass_inside(clip, results["CLIP-like"][2])
    assert_close(on_artifacts, clip[artifacts].sum() / clip.sum(), what="the CLIP-like map's mass on its outliers",
                 **F64)
    assert results["DINO-like"][0] > 3 * baseline > results["CLIP-like"][0], (
        f"mass inside the object: DINO-like {results['DINO-like'][0]:.3f}, CLIP-like {results['CLIP-like'][0]:.3f}, "
        f"uniform {baseline:.3f}")


@pytest.mark.points(3)
@pytest.mark.kind("value")
def test_metrics_trained_vit_attends_to_object(sub, m1w04_vit, m1w04_object_vit):
    """A one-block ViT trained in the test to read a hidden object: your maps, rollout and metrics match the
    trusted ones, and after training the class token's attention sits on the object."""
    d = m1w04_object_vit
    summary = {}
    for stage in ("untrained", "trained"):
        trusted = m1w04_vit(**d["cfg"])
        trusted.load_state_dict(d[stage])
        trusted.eval()
        student = student_model(sub, d["cfg"], d[stage], double=False)
        with torch.no_grad():
            expected = timm_attention(trusted, d["x"])
        maps = sub.attention_maps(student, d["x"])
        # float32 with weights of size ~1: measured max difference ~1e-7; 1e-5 allows other summation orders.
        assert_close(maps, expected, what=f"attention maps of the {stage} model", atol=1e-5, rtol=1e-4)
        cls = sub.cls_attention(expected[-1])
        assert_close(cls, expected[-1][:, :, 0, 1:], what="the class token's maps", atol=0, rtol=0)
        amap = expected[-1][:, :, 0, 1:].mean(dim=1).double()  # [64, 16], the mean over heads
        inside = sub.mass_inside(amap, d["mask"])
        assert_close(inside, (amap * d["mask"]).sum(-1) / amap.sum(-1), what=f"mass inside the object ({stage})",
                     **F64)
        normalised = amap / amap.sum(-1, keepdim=True)
        entropy = sub.attention_entropy(normalised)
        assert_close(entropy, -torch.xlogy(normalised, normalised).sum(-1), what=f"entropy of the maps ({stage})",
                     **F64)
        rollout = sub.attention_rollout(expected.double())
        assert_close(rollout, trusted_rollout(expected.double()), what=f"rollout of the {stage} model", **F64)
        summary[stage] = (float(inside.mean()), float(entropy.mean()))
    # Measured over 8 training seeds: trained 0.95-1.00 inside (entropy < 0.3), untrained ~1/16 (entropy ~2.77).
    assert summary["trained"][0] > 0.8 and summary["untrained"][0] < 0.2, (
        f"mass inside the object: untrained {summary['untrained'][0]:.3f}, trained {summary['trained'][0]:.3f}")
    assert summary["trained"][1] < summary["untrained"][1] - 1.0, (
        f"entropy: untrained {summary['untrained'][1]:.3f}, trained {summary['trained'][1]:.3f}")


# == features =================================================================================
@pytest.mark.points(1)
@pytest.mark.kind("shape")
@pytest.mark.parametrize("case", ["cls_two_layers", "avg_last_layer"])
def test_features_shapes(sub, case):
    """extract_features gives [B, len(layers) * D] for class-token and average pooling."""
    layers, pool = {"cls_two_layers": ([0, 2], "cls"), "avg_last_layer": ([-1], "avg")}[case]
    model = sub.ViT(**VIT_A)
    out = sub.extract_features(model, randn(3, 3, 16, 16, seed=0, dtype=torch.float32), layers, pool)
    assert_shape(out, (3, 32 * len(layers)), what=f"extract_features(layers={layers}, pool={pool!r})")


def timm_features(model, x, layers, pool):
    """Frozen features from timm's forward_intermediates(norm=True), in the order the layers are given."""
    depth = len(model.blocks)
    with torch.no_grad():
        outputs = model.forward_intermediates(x, indices=list(range(depth)), norm=True, output_fmt="NLC",
                                              intermediates_only=True, return_prefix_tokens=True)
    picked = [outputs[i % depth] for i in layers]  # (patch tokens, prefix tokens) per block
    return torch.cat([prefix[:, 0] if pool == "cls" else patches.mean(dim=1) for patches, prefix in picked], dim=-1)


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("case", ["cls_last", "cls_blocks_0_1", "avg_block_1_and_last"])
def test_features_match_timm_intermediates(sub, m1w04_vit, case):
    """extract_features equals timm's forward_intermediates(norm=True) pooled the same way (float64, same weights)."""
    layers, pool = {"cls_last": ([-1], "cls"), "cls_blocks_0_1": ([0, 1], "cls"),
                    "avg_block_1_and_last": ([1, -1], "avg")}[case]
    cfg = dict(VIT_A, depth=4)
    trusted = timm_model(m1w04_vit, cfg)
    student = student_model(sub, cfg, trusted.state_dict())
    x = randn(3, 3, 16, 16, seed=0)
    assert_close(sub.extract_features(student, x, layers, pool), timm_features(trusted, x, layers, pool),
                 what=f"features for layers={layers}, pool={pool!r}", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("grad")
def test_features_carry_no_gradient(sub, m1w04_vit):
    """Frozen features: extract_features builds no graph, so no gradient reaches the images (and it still gives timm's values)."""
    cfg = dict(VIT_A, depth=2)
    trusted = timm_model(m1w04_vit, cfg)
    student = student_model(sub, cfg, trusted.state_dict())
    x = randn(2, 3, 16, 16, seed=0)
    assert_close(sub.extract_features(student, x, [0, -1], "cls"), timm_features(trusted, x, [0, -1], "cls"),
                 what="features for layers [0, -1]", **F64)
    grads = sub.vjp(sub.extract_features, student, x, [0, -1], "cls", cotangents=randn(2, 64, seed=1)).inputs
    assert not grads or grads[0] is None, ("a gradient flows from your features back to the images: compute "
                                           "frozen features under torch.no_grad()")


# == linear_probe =============================================================================
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_linear_probe_shapes(sub):
    """train_linear_probe returns weight [K, D] and bias [K] with K = num_classes, for several sizes."""
    for n, d, present, k in [(60, 5, 3, 3), (40, 6, 5, 5), (40, 6, 3, 5)]:
        features, labels = probe_problem(n, d, present, seed=k)
        weight, bias = sub.train_linear_probe(features, labels, k, C=1.0, max_iter=20)
        absent = f" (labels 0..{present - 1} only: use num_classes, not the labels)" if present < k else ""
        assert_shape(weight, (k, d), what=f"the probe's weight for num_classes={k} and {d} features{absent}")
        assert_shape(bias, (k,), what=f"the probe's bias for num_classes={k}{absent}")


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_linear_probe_loss_closed_forms(sub):
    """probe_loss: ln K at zero; ln(e + 1 + 1/e) on a hand-computed case; mean CE + |W|^2 / (2 C n) on random data."""
    features, labels = probe_problem(30, 4, 3, seed=0)
    zero = sub.probe_loss(torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), features,
                          labels, C=0.7)
    assert_close(zero, torch.tensor(math.log(3), dtype=torch.float64), what="probe_loss at zero (ln 3)", **F64)
    # Two samples, logits [1, 0, -1] (label 0) and [-1, 0, 1] (label 2): CE = ln(e + 1 + 1/e) - 1 each;
    # penalty |W|^2 / (2 C n) = 2 / (2 * 0.5 * 2) = 1.
    hand = sub.probe_loss(torch.tensor([[1.0], [0.0], [-1.0]], dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                          torch.tensor([[1.0], [-1.0]], dtype=torch.float64), torch.tensor([0, 2]), C=0.5)
    assert_close(hand, torch.tensor(math.log(math.e + 1 + 1 / math.e), dtype=torch.float64),
                 what="probe_loss on the hand-computed case", **F64)
    weight, bias = randn(3, 4, seed=1), randn(3, seed=2)
    expected = F.cross_entropy(features @ weight.T + bias, labels) + (weight ** 2).sum() / (2 * 0.7 * 30)
    assert_close(sub.probe_loss(weight, bias, features, labels, C=0.7), expected,
                 what="probe_loss with random weights (C = 0.7, n = 30)", **F64)
    # The value must be the objective train_linear_probe can minimise, a function of the weight and bias: at zero,
    # d/db = mean(softmax - onehot) = 1/K - the class frequencies (closed form; the penalty adds nothing there).
    grads = sub.vjp(sub.probe_loss, torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                    features, labels, 0.7, cotangents=torch.ones((), dtype=torch.float64)).inputs
    assert len(grads) >= 2 and grads[1] is not None, (
        "probe_loss returns a number that does not depend on the bias it is given: compute it with tensor "
        "operations on the weight and bias (no .item(), numpy or .detach())")
    frequencies = F.one_hot(labels, 3).double().mean(dim=0)
    assert_close(grads[1], 1 / 3 - frequencies, what="the derivative of probe_loss for the bias at zero", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("grad")
def test_linear_probe_loss_grad_closed_form(sub):
    """probe_loss's gradients for the weight and the bias equal their closed forms (float64, C = 0.5).

    dW = (P - Y)^T X / n + W / (C n) and db = mean(P - Y), with P the softmax probabilities and Y the one-hot labels."""
    features, labels = probe_problem(12, 3, 3, seed=3)
    weight, bias = randn(3, 3, seed=4), randn(3, seed=5)
    grads = sub.vjp(sub.probe_loss, weight, bias, features, labels, 0.5,
                    cotangents=torch.ones((), dtype=torch.float64)).inputs
    assert len(grads) >= 2 and grads[0] is not None and grads[1] is not None, \
        "probe_loss should depend on the weight and the bias (keep it a differentiable tensor operation)"
    residual = torch.softmax(features @ weight.T + bias, dim=-1) - F.one_hot(labels, 3).double()  # P - Y, [n, K]
    # float64 closed forms against autograd: they agree to ~1e-16.
    assert_close(grads[0], residual.T @ features / 12 + weight / (0.5 * 12),
                 what="the gradient of probe_loss for the weight (C = 0.5, n = 12)", **F64)
    assert_close(grads[1], residual.mean(dim=0), what="the gradient of probe_loss for the bias", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("grad")
def test_linear_probe_loss_stationary_at_sklearn_solution(sub):
    """The gradient of your probe_loss vanishes at scikit-learn's LogisticRegression(C=0.5) solution: same objective."""
    features, labels = probe_problem(150, 5, 3, seed=6)
    model = sklearn_probe(features, labels, C=0.5)
    weight, bias = torch.from_numpy(model.coef_).clone(), torch.from_numpy(model.intercept_).clone()
    grads = sub.vjp(sub.probe_loss, weight, bias, features, labels, 0.5,
                    cotangents=torch.ones((), dtype=torch.float64)).inputs
    assert len(grads) >= 2 and grads[0] is not None and grads[1] is not None, \
        "probe_loss should depend on the weight and the bias"
    # sklearn stops when its gradient (of the same mean-loss objective) is below 1e-10; 1e-7 leaves room. A penalty
    # off by the sample count leaves a gradient of ~|W| / C ~ 1 here; a penalised bias ~|b| / (C n) ~ 1e-3.
    assert_close(grads[0], torch.zeros_like(weight), what="the gradient for the weight at sklearn's optimum",
                 atol=1e-7, rtol=0)
    assert_close(grads[1], torch.zeros_like(bias), what="the gradient for the bias at sklearn's optimum",
                 atol=1e-7, rtol=0)


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("case", ["C0.05_3_classes", "C5_4_classes"])
def test_linear_probe_matches_sklearn(sub, case):
    """train_linear_probe finds scikit-learn's LogisticRegression(C) solution: same probabilities and weights."""
    n, d, k, C = {"C0.05_3_classes": (150, 5, 3, 0.05), "C5_4_classes": (200, 7, 4, 5.0)}[case]
    features, labels = probe_problem(n, d, k, seed=7)
    model = sklearn_probe(features, labels, C)
    weight, bias = sub.train_linear_probe(features, labels, k, C=C, max_iter=500)
    probabilities = torch.softmax(features @ weight.double().T + bias.double(), dim=-1)
    # Both optimise the same strictly convex objective: measured differences 1e-7 (the reference), 4e-5 (torch's
    # default L-BFGS tolerances), 1.2e-4 (a float32 probe). The bugs this targets move them by 2e-3 (a penalised
    # bias, C=5) to 0.66 (a penalty n times too strong).
    assert_close(probabilities, torch.from_numpy(model.predict_proba(features.numpy())),
                 what=f"the probe's class probabilities (C={C}, {k} classes)", atol=5e-4, rtol=0)
    assert_close(weight, torch.from_numpy(model.coef_), what="the probe's weight against sklearn's coef_",
                 atol=1e-3, rtol=1e-3)


def probe_objective(weight, bias, features, labels, C):
    """The trusted objective: mean cross-entropy + |W|^2 / (2 C n), in float64."""
    weight, bias = weight.double(), bias.double()
    return float(F.cross_entropy(features @ weight.T + bias, labels) + (weight ** 2).sum() / (2 * C * len(features)))


@pytest.mark.points(2)
@pytest.mark.kind("convergence")
def test_linear_probe_respects_max_iter(sub):
    """train_linear_probe runs max_iter L-BFGS iterations: 3 stay far from scikit-learn's optimum, 150 reach it.

    Features of very different scales (0.1 to 10), 4 classes, C = 0.5."""
    features, labels = probe_problem(120, 8, 4, seed=8)
    features = features * torch.logspace(-1, 1, 8, dtype=torch.float64)  # scales 0.1..10: slow for few iterations
    model = sklearn_probe(features, labels, C=0.5)
    optimum = probe_objective(torch.from_numpy(model.coef_), torch.from_numpy(model.intercept_), features, labels, 0.5)
    gaps = {}
    for max_iter in (3, 150):
        weight, bias = sub.train_linear_probe(features, labels, 4, C=0.5, max_iter=max_iter)
        gaps[max_iter] = probe_objective(weight, bias, features, labels, 0.5) - optimum
    # Measured over 10 problem seeds (0-9; this one is 8), for the reference and valid variants (no line search,
    # history 5 or 100, float32, a loop of max_iter steps of LBFGS(max_iter=1) without line search): after 3
    # iterations the objective is still 0.30-0.52 above the optimum (at zero it is 0.32-0.50 above); after 150, at
    # most 1.3e-6 above (float32; 3.4e-8 in float64). Code that ignores max_iter (100 iterations): ~1e-10 after "3".
    assert gaps[150] < 1e-4, (f"with max_iter=150 your probe's objective is {gaps[150]:.2e} above scikit-learn's "
                              "optimum: train_linear_probe should minimise probe_loss (C as given) to convergence")
    assert gaps[3] > 0.05, (f"with max_iter=3 your probe is already at the optimum (objective {gaps[3]:.2e} above "
                            "it): train_linear_probe should run at most max_iter L-BFGS iterations "
                            "(torch.optim.LBFGS(..., max_iter=max_iter), one optimizer.step)")


@pytest.mark.points(4)
@pytest.mark.kind("convergence")
@pytest.mark.timeout(60)
def test_linear_probe_digits_accuracy(sub, m1w04_digits, m1w04_random_backbone):
    """Your features and linear probe on a frozen random ViT: at least 65% of 500 held-out digits (C = 1)."""
    d, b = m1w04_digits, m1w04_random_backbone
    model = student_model(sub, b["cfg"], b["state"], double=False)
    # Detached here so that both transports hand the probe the same plain tensor (the wire always detaches).
    features = sub.extract_features(model, d["images"], [0, -1], "cls")
    assert_shape(features, (1797, 128), what="features of the digits (class token of blocks 0 and 2)")
    features = features.detach()
    train, test, labels = d["train"], d["test"], d["labels"]
    weight, bias = sub.train_linear_probe(features[train], labels[train], 10, C=1.0, max_iter=100)
    logits = features[test].double() @ weight.double().T + bias.double()
    accuracy = (logits.argmax(-1) == labels[test]).double().mean().item()
    # Measured with the reference over 10 random backbones (init seeds 0-9): 0.708-0.792, mean 0.749, sd 0.024
    # (0.792 for this one, seed 0); raw pixels reach 0.97, chance 0.10. 0.65 is 4 sd below the mean.
    assert accuracy >= 0.65, (f"the linear probe classifies {accuracy:.1%} of the held-out digits correctly; "
                              "at least 65% is expected (a correct probe reaches about 79% on these features)")


# == knn ======================================================================================
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_knn_shapes(sub):
    """knn_vote, knn_classify and knn_leave_one_out return [queries, num_classes] scores, absent classes included."""
    train, test = randn(30, 6, seed=0), randn(7, 6, seed=1)
    labels = torch.arange(30) % 4
    for classes in (4, 6):
        what = "" if classes == 4 else " with num_classes=6 and labels 0..3 (use num_classes, not the labels)"
        assert_shape(sub.knn_vote(test @ train.T, labels, classes, k=5, temperature=0.1), (7, classes),
                     what="knn_vote scores" + what)
        assert_shape(sub.knn_classify(train, labels, test, classes, k=5, temperature=0.1), (7, classes),
                     what="knn_classify scores" + what)
        assert_shape(sub.knn_leave_one_out(train, labels, classes, k=5, temperature=0.1), (30, classes),
                     what="knn_leave_one_out scores" + what)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_knn_vote_hand_computed(sub):
    """Votes worked out by hand (k=2, T=0.5, 4 classes): each of the two nearest adds exp(s / T) to its class."""
    similarity = torch.tensor([[0.9, 0.2, 0.8, 0.1], [0.0, 0.5, 0.4, 0.6]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 2])
    e = math.exp
    expected = torch.tensor([[e(1.8), e(1.6), 0.0, 0.0], [0.0, e(1.0), e(1.2), 0.0]], dtype=torch.float64)
    assert_close(sub.knn_vote(similarity, labels, 4, k=2, temperature=0.5), expected,
                 what="knn_vote scores (k=2, temperature=0.5, num_classes=4)", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_knn_classify_matches_dino_rule(sub):
    """knn_classify equals DINO's weighted kNN (cosine similarity, top 7, exp(s / 0.1)) on features of mixed scales."""
    train = randn(40, 6, seed=2) * (0.2 + 3 * torch.rand(40, 1, generator=torch.Generator().manual_seed(3),
                                                         dtype=torch.float64))
    test = randn(10, 6, seed=4) * 5.0
    labels = torch.randint(0, 4, (40,), generator=torch.Generator().manual_seed(5))
    expected = knn_loop(train, labels, test, 5, k=7, temperature=0.1)  # labels 0..3: class 4 scores 0
    assert_close(sub.knn_classify(train, labels, test, 5, k=7, temperature=0.1), expected,  # float64, scores <= e^10
                 what="knn_classify scores (k=7, temperature=0.1, num_classes=5)", atol=1e-9, rtol=1e-9)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_knn_leave_one_out_excludes_the_query(sub):
    """knn_leave_one_out scores each sample by its k nearest *other* samples (never itself)."""
    features = randn(30, 5, seed=6)
    labels = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(7))
    expected = knn_loop(features, labels, features, 4, k=5, temperature=0.2, exclude=list(range(30)))
    assert_close(sub.knn_leave_one_out(features, labels, 4, k=5, temperature=0.2), expected,
                 what="knn_leave_one_out scores (k=5, temperature=0.2, num_classes=4)", atol=1e-9,
                 rtol=1e-9)  # float64


@pytest.mark.points(4)
@pytest.mark.kind("convergence")
@pytest.mark.timeout(60)
def test_knn_digits_accuracy(sub, m1w04_digits, m1w04_random_backbone):
    """Your features and 20-NN probe (T = 0.07) on a frozen random ViT: at least 72% of 500 held-out digits."""
    d, b = m1w04_digits, m1w04_random_backbone
    model = student_model(sub, b["cfg"], b["state"], double=False)
    features = sub.extract_features(model, d["images"], [0, -1], "cls")
    assert_shape(features, (1797, 128), what="features of the digits (class token of blocks 0 and 2)")
    features = features.detach()  # as the wire does, so that both transports agree
    train, test, labels = d["train"], d["test"], d["labels"]
    scores = sub.knn_classify(features[train], labels[train], features[test], 10, k=20, temperature=0.07)
    assert_shape(scores, (500, 10), what="kNN scores of the held-out digits")
    accuracy = (scores.argmax(-1) == labels[test]).double().mean().item()
    # Measured with the reference over 10 random backbones (init seeds 0-9): 0.774-0.856, mean 0.816, sd 0.027
    # (0.856 for this one, seed 0); raw pixels 0.98, chance 0.10. 0.72 is 3.5 sd below the mean.
    assert accuracy >= 0.72, (f"the kNN probe classifies {accuracy:.1%} of the held-out digits correctly; "
                              "at least 72% is expected (a correct probe reaches about 85% on these features)")
