"""m2w03 hidden suite: query-pixel mask head, dice and focal losses, the mask-aware matching cost,
boxes from masks, a keypoint head with its L1 loss and COCO's OKS, and a tiny segmenter trained
by the notebook's loop.

Independent truths: the libraries' own code (DETR's dice and focal losses from transformers,
Mask2Former's pairwise losses, torchvision's masks_to_boxes and sigmoid_focal_loss, pycocotools'
computeOks; see conftest.py for how they are loaded without their import chains), trusted
modules written here with the notebook's parameter names (given the same weights), brute-force
matching over all permutations, per-pair loops, and closed forms. Values are compared in float64
wherever the computation allows, where valid orders of operations agree to ~1e-15.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autograder.kit import F64_VS_TRUSTED, assert_close, assert_shape, randn

F64 = F64_VS_TRUSTED.kwargs()  # float64 against trusted code: valid orders of operations differ by ~1e-15


def blobs(n, h, w, seed, p=0.35):
    """Random 0/1 masks [n, h, w] (float64) with blocky structure, none empty."""
    g = torch.Generator().manual_seed(seed)
    coarse = (torch.rand(n, 1, (h + 1) // 2, (w + 1) // 2, generator=g) < p).double()
    masks = F.interpolate(coarse, scale_factor=2, mode="nearest")[:, 0, :h, :w]
    masks[:, 0, 0] = 1.0
    return masks


def trusted_head(trusted_cls, seed, *args, **kwargs):
    """A trusted module with random non-trivial float64 weights (norm weights near 1)."""
    torch.manual_seed(seed)
    module = trusted_cls(*args, **kwargs).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif p.dim() >= 2:
                p.copy_(noise / math.sqrt(p.shape[1]))
            else:
                p.copy_(0.2 * noise)
    return module.eval()


def student_copy(sub, cls_name, trusted, *args, **kwargs):
    """The notebook's module with the trusted weights (a strict load: the notebook's names), float64."""
    model = getattr(sub, cls_name)(*args, **kwargs)
    model.double()                      # first, so that the float64 weights load without rounding
    model.load_state_dict({k: v.clone() for k, v in trusted.state_dict().items()}, strict=True)
    model.eval()
    return model


# == mask_head ================================================================================
HEADS = {"default_layers": dict(hidden_dim=16, num_classes=3, mask_dim=8),
         "two_layers": dict(hidden_dim=12, num_classes=1, mask_dim=6, num_layers=2)}


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_mask_head_logits_shapes(sub):
    """mask_logits maps [B, Q, C] and [B, C, H, W] to [B, Q, H, W], for several sizes (H != W)."""
    for b, q, c, h, w in [(2, 5, 8, 6, 7), (1, 3, 4, 9, 2)]:
        out = sub.mask_logits(randn(b, q, c, seed=0), randn(b, c, h, w, seed=1))
        assert_shape(out, (b, q, h, w), what=f"mask_logits of [{b}, {q}, {c}] queries and [{b}, {c}, {h}, {w}] pixels")


@pytest.mark.points(2)
@pytest.mark.kind("shape")
@pytest.mark.parametrize("cfg", list(HEADS))
def test_mask_head_shapes_and_names(sub, m2w03_trusted, cfg):
    """MaskHead has the contract's parameter names and shapes (num_layers Linear layers in mask_embed) and
    returns class logits [B, Q, num_classes + 1] and mask logits [B, Q, H, W]."""
    kwargs = HEADS[cfg]
    model = sub.MaskHead(**kwargs)
    expected = {k: tuple(v.shape) for k, v in m2w03_trusted.MaskHead(**kwargs).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected, (f"MaskHead({', '.join(f'{k}={v}' for k, v in kwargs.items())}) should hold exactly "
                             f"{sorted(expected)} with shapes {expected}; yours holds {got}")
    classes, masks = model(randn(2, 4, kwargs["hidden_dim"], seed=0, dtype=torch.float32),
                           randn(2, kwargs["mask_dim"], 5, 3, seed=1, dtype=torch.float32))
    assert_shape(classes, (2, 4, kwargs["num_classes"] + 1), what="MaskHead's class logits")
    assert_shape(masks, (2, 4, 5, 3), what="MaskHead's mask logits for 5 x 3 pixel embeddings")


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_mask_head_logits_dot_product(sub):
    """mask_logits is the dot product of each query's embedding with each pixel's (a loop over pixels, float64)."""
    m, e = randn(2, 3, 5, seed=2), randn(2, 5, 4, 6, seed=3)
    expected = torch.zeros(2, 3, 4, 6, dtype=torch.float64)
    for y in range(4):
        for x in range(6):
            expected[:, :, y, x] = (m * e[:, None, :, y, x]).sum(-1)
    assert_close(sub.mask_logits(m, e), expected, what="mask_logits (query-pixel dot products)", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("cfg", list(HEADS))
def test_mask_head_matches_trusted(sub, m2w03_trusted, cfg):
    """MaskHead equals a trusted head (LayerNorm, class Linear, MLP, batched matrix product) with the same weights."""
    kwargs = HEADS[cfg]
    trusted = trusted_head(m2w03_trusted.MaskHead, 5, **kwargs)
    model = student_copy(sub, "MaskHead", trusted, **kwargs)
    queries = randn(2, 4, kwargs["hidden_dim"], seed=6, scale=2.0) + 0.5
    pixels = randn(2, kwargs["mask_dim"], 5, 7, seed=7)
    with torch.no_grad():
        want_classes, want_masks = trusted(queries, pixels)
    classes, masks = model(queries, pixels)
    assert_close(classes, want_classes, what="MaskHead's class logits (decoder_norm before class_embed)", **F64)
    assert_close(masks, want_masks, what=f"MaskHead's mask logits ({cfg.replace('_', ' ')})", **F64)


@pytest.mark.points(3)
@pytest.mark.kind("grad")
def test_mask_head_grad_matches_trusted(sub, m2w03_trusted):
    """MaskHead's gradients for the queries, the pixel embeddings and every parameter equal the trusted head's."""
    kwargs = HEADS["default_layers"]
    trusted = trusted_head(m2w03_trusted.MaskHead, 8, **kwargs)
    model = student_copy(sub, "MaskHead", trusted, **kwargs)
    queries, pixels = randn(2, 3, 16, seed=9), randn(2, 8, 4, 5, seed=10)
    cot = [randn(2, 3, 4, seed=11), randn(2, 3, 4, 5, seed=12)]
    qt, pt = queries.clone().requires_grad_(True), pixels.clone().requires_grad_(True)
    trusted.zero_grad()
    classes, masks = trusted(qt, pt)
    ((classes * cot[0]).sum() + (masks * cot[1]).sum()).backward()
    result = sub.vjp(model, queries, pixels, cotangents=cot)
    assert result.inputs[0] is not None and result.inputs[1] is not None, \
        "MaskHead's outputs should depend on both the queries and the pixel embeddings (no detach)"
    assert_close(result.inputs[0], qt.grad, what="the gradient of MaskHead for the queries", **F64)
    assert_close(result.inputs[1], pt.grad, what="the gradient of MaskHead for the pixel embeddings", **F64)
    for name, p in trusted.named_parameters():
        assert result.params.get(name) is not None, f"parameter `{name}` of your MaskHead gets no gradient"
        assert_close(result.params[name], p.grad, what=f"the gradient of `{name}` in your MaskHead", **F64)


# == mask_losses ==============================================================================
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_mask_losses_shapes(sub):
    """dice_loss and sigmoid_focal_loss return scalars for [N, H, W] and [N, P] inputs."""
    for shape in [(3, 4, 5), (2, 7)]:
        logits, targets = randn(*shape, seed=0), (randn(*shape, seed=1) > 0).double()
        assert_shape(sub.dice_loss(logits, targets, 2), (), what=f"dice_loss of {list(shape)} masks")
        assert_shape(sub.sigmoid_focal_loss(logits, targets, 2), (), what=f"sigmoid_focal_loss of {list(shape)} masks")


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("layout", ["flat_float", "2d_bool"])
def test_mask_losses_dice_matches_detr(sub, m2w03_lib, layout):
    """dice_loss equals DETR's (transformers' copy), per mask then summed and divided by num_masks = 2.5."""
    logits = randn(4, 6, 5, seed=2, scale=2.0)
    targets = blobs(4, 6, 5, seed=3)
    expected = m2w03_lib.dice_loss(logits.flatten(1), targets.flatten(1), 2.5)
    if layout == "flat_float":
        got = sub.dice_loss(logits.flatten(1), targets.flatten(1), 2.5)
    else:
        got = sub.dice_loss(logits, targets.bool(), 2.5)
    assert_close(got, expected, what=f"dice_loss ({layout.replace('_', ' ')} targets, num_masks=2.5)", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_mask_losses_dice_closed_forms(sub):
    """Dice of a perfect prediction is 0; of an all-background prediction of an n-pixel mask n / (n + 1);
    of an empty target predicted empty 0 (the +1 smoothing)."""
    target = blobs(1, 5, 6, seed=4)
    n = float(target.sum())
    perfect = sub.dice_loss(80.0 * (2 * target - 1), target, 1)   # sigmoid(+-80) = 1 or 0 to 1e-35
    assert_close(perfect, torch.tensor(0.0, dtype=torch.float64), what="dice_loss of a perfect prediction",
                 atol=1e-12, rtol=0)
    background = sub.dice_loss(torch.full((1, 5, 6), -80.0, dtype=torch.float64), target, 1)
    assert_close(background, torch.tensor(n / (n + 1), dtype=torch.float64),
                 what=f"dice_loss of an all-background prediction of a {int(n)}-pixel mask", atol=1e-12, rtol=0)
    empty = sub.dice_loss(torch.full((2, 3, 3), -80.0, dtype=torch.float64), torch.zeros(2, 3, 3, dtype=torch.float64), 2)
    assert_close(empty, torch.tensor(0.0, dtype=torch.float64), what="dice_loss of empty masks predicted empty",
                 atol=1e-12, rtol=0)


FOCAL = {"default": {}, "alpha0.6_gamma1.5": dict(alpha=0.6, gamma=1.5), "bce": dict(alpha=-1, gamma=0.0)}


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("options", list(FOCAL))
def test_mask_losses_focal_matches_detr(sub, m2w03_lib, options):
    """sigmoid_focal_loss equals DETR's (transformers' copy) and torchvision's per-pixel loss averaged per mask,
    summed, / num_masks = 3 (default alpha and gamma, non-default ones, and alpha = -1 with gamma = 0: the BCE)."""
    kwargs = FOCAL[options]
    logits = randn(5, 4, 6, seed=5, scale=2.5)
    targets = blobs(5, 4, 6, seed=6)
    expected = m2w03_lib.focal_loss(logits.flatten(1), targets.flatten(1), 3, **kwargs)
    torchvision = m2w03_lib.tv_focal_loss(logits.flatten(1), targets.flatten(1), **kwargs).mean(1).sum() / 3
    assert_close(expected, torchvision, what="(the trusted libraries agree)", **F64)
    got = sub.sigmoid_focal_loss(logits, targets.bool(), 3, **kwargs)
    assert_close(got, expected, what=f"sigmoid_focal_loss({', '.join(f'{k}={v}' for k, v in kwargs.items()) or 'defaults'})",
                 **F64)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_mask_losses_focal_hand_computed(sub):
    """Two one-pixel-wide masks worked out by hand: logit 0 on a foreground pixel costs alpha (1/2)^gamma ln 2;
    a background pixel at logit ln 3 (p = 3/4) costs (1 - alpha) (3/4)^gamma ln 4."""
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), math.log(3.0)]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    alpha, gamma = 0.4, 3.0
    first = alpha * 0.5 ** gamma * math.log(2.0)
    second = (1 - alpha) * 0.75 ** gamma * math.log(4.0)
    got = sub.sigmoid_focal_loss(logits, targets, 4, alpha=alpha, gamma=gamma)
    assert_close(got, torch.tensor((first + second) / 4, dtype=torch.float64),
                 what="sigmoid_focal_loss of the hand-computed pair (alpha=0.4, gamma=3, num_masks=4)", **F64)


@pytest.mark.points(3)
@pytest.mark.kind("grad")
def test_mask_losses_grads_match_detr(sub, m2w03_lib):
    """The gradients of dice_loss and sigmoid_focal_loss for the logits equal DETR's (float64)."""
    logits, targets = randn(3, 5, 4, seed=7, scale=2.0), blobs(3, 5, 4, seed=8)
    for name, trusted, kwargs in (("dice_loss", m2w03_lib.dice_loss, {}),
                                  ("sigmoid_focal_loss", m2w03_lib.focal_loss, dict(alpha=0.3, gamma=1.5))):
        x = logits.clone().requires_grad_(True)
        (2.0 * trusted(x.flatten(1), targets.flatten(1), 2, **kwargs)).backward()
        grads = sub.vjp(getattr(sub, name), logits, targets, 2, cotangents=torch.tensor(2.0, dtype=torch.float64),
                        **kwargs).inputs
        assert grads and grads[0] is not None, f"{name} should be a differentiable function of the logits"
        assert_close(grads[0], x.grad, what=f"the gradient of {name} for the logits", **F64)


# == mask_matching ============================================================================
def trusted_cost(m2w03_lib, class_logits, mask_logits, labels, masks, weights=(2.0, 5.0, 5.0)):
    inputs, targets = mask_logits.flatten(1), masks.flatten(1).double()
    cost_class = -class_logits.softmax(-1)[:, labels]
    return (weights[0] * cost_class + weights[1] * m2w03_lib.pair_wise_ce(inputs, targets)
            + weights[2] * m2w03_lib.pair_wise_dice(inputs, targets))


def matching_problem(q, t, h, w, classes, seed):
    g = torch.Generator().manual_seed(seed)
    class_logits = 2.0 * torch.randn(q, classes + 1, generator=g, dtype=torch.float64)
    masks = blobs(t, h, w, seed=seed + 1)
    mask_logits = 3.0 * torch.randn(q, h, w, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (t,), generator=g)
    return class_logits, mask_logits, labels, masks


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_mask_matching_shapes(sub):
    """pairwise_sigmoid_ce, pairwise_dice and mask_matching_cost return [Q, T]; match_masks min(Q, T) pairs."""
    class_logits, mask_logits, labels, masks = matching_problem(5, 3, 4, 6, 2, seed=0)
    assert_shape(sub.pairwise_sigmoid_ce(mask_logits.flatten(1), masks.flatten(1)), (5, 3), what="pairwise_sigmoid_ce")
    assert_shape(sub.pairwise_dice(mask_logits.flatten(1), masks.flatten(1)), (5, 3), what="pairwise_dice")
    assert_shape(sub.mask_matching_cost(class_logits, mask_logits, labels, masks), (5, 3), what="mask_matching_cost")
    q, t = sub.match_masks(class_logits, mask_logits, labels, masks)
    assert_shape(q, (3,), what="match_masks' query indices for 5 queries and 3 targets")
    assert_shape(t, (3,), what="match_masks' target indices")


@pytest.mark.points(3)
@pytest.mark.kind("value")
def test_mask_matching_pairwise_match_mask2former(sub, m2w03_lib):
    """pairwise_sigmoid_ce and pairwise_dice equal Mask2Former's pair_wise losses (transformers), float64."""
    _, mask_logits, _, masks = matching_problem(6, 4, 5, 7, 2, seed=1)
    inputs, targets = mask_logits.flatten(1), masks.flatten(1)
    assert_close(sub.pairwise_sigmoid_ce(inputs, targets), m2w03_lib.pair_wise_ce(inputs, targets),
                 what="pairwise_sigmoid_ce (mean BCE over the pixels of every pair)", **F64)
    assert_close(sub.pairwise_dice(inputs, targets), m2w03_lib.pair_wise_dice(inputs, targets),
                 what="pairwise_dice", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_mask_matching_pairwise_equal_per_pair_losses(sub):
    """Entry (q, j) of the pairwise losses is the loss of query q against target j alone (a loop, bool targets)."""
    _, mask_logits, _, masks = matching_problem(3, 4, 4, 4, 2, seed=2)
    inputs, targets = mask_logits.flatten(1), masks.flatten(1)
    ce, dice = torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3, 4, dtype=torch.float64)
    for q in range(3):
        for j in range(4):
            ce[q, j] = F.binary_cross_entropy_with_logits(inputs[q], targets[j])
            p = inputs[q].sigmoid()
            dice[q, j] = 1 - (2 * (p * targets[j]).sum() + 1) / (p.sum() + targets[j].sum() + 1)
    assert_close(sub.pairwise_sigmoid_ce(inputs, targets.bool()), ce, what="pairwise_sigmoid_ce with bool targets",
                 **F64)
    assert_close(sub.pairwise_dice(inputs, targets.bool()), dice, what="pairwise_dice with bool targets", **F64)


WEIGHTS = {"defaults": None, "class1_mask2_dice0.5": (1.0, 2.0, 0.5), "class3_mask0.5_dice4": (3.0, 0.5, 4.0)}


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("weights", list(WEIGHTS))
def test_mask_matching_cost_matches_trusted(sub, m2w03_lib, weights):
    """mask_matching_cost = class_weight (-softmax prob) + mask_weight pairwise BCE + dice_weight pairwise dice."""
    class_logits, mask_logits, labels, masks = matching_problem(6, 3, 5, 4, 3, seed=3)
    w = WEIGHTS[weights]
    kwargs = {} if w is None else dict(class_weight=w[0], mask_weight=w[1], dice_weight=w[2])
    expected = trusted_cost(m2w03_lib, class_logits, mask_logits, labels, masks, w or (2.0, 5.0, 5.0))
    got = sub.mask_matching_cost(class_logits, mask_logits, labels, masks.bool(), **kwargs)
    assert_close(got, expected, what=f"mask_matching_cost with {kwargs or 'the default weights'}", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("weights", ["defaults", "class3_mask0.5_dice4"])
def test_mask_matching_brute_force(sub, m2w03_lib, weights):
    """match_masks finds the assignment of least total cost, checked over every permutation (6 queries, 3 targets)."""
    w = WEIGHTS[weights]
    kwargs = {} if w is None else dict(class_weight=w[0], mask_weight=w[1], dice_weight=w[2])
    for seed in (4, 5):
        class_logits, mask_logits, labels, masks = matching_problem(6, 3, 4, 5, 2, seed=seed)
        cost = trusted_cost(m2w03_lib, class_logits, mask_logits, labels, masks, w or (2.0, 5.0, 5.0))
        best = min(itertools.permutations(range(6), 3), key=lambda qs: sum(float(cost[q, j]) for j, q in enumerate(qs)))
        expected = sorted(zip(best, range(3)))
        q, t = sub.match_masks(class_logits, mask_logits, labels, masks, **kwargs)
        got = sorted(zip(torch.as_tensor(q).tolist(), torch.as_tensor(t).tolist()))
        assert got == expected, (f"match_masks with {kwargs or 'the default weights'} paired (query, target) "
                                 f"{got}; the least total cost pairs {expected}")


@pytest.mark.points(2)
@pytest.mark.kind("grad")
def test_mask_matching_cost_grad_matches_trusted(sub, m2w03_lib):
    """mask_matching_cost's gradients for the class and mask logits equal the trusted cost's (weights 1, 2, 0.5)."""
    class_logits, mask_logits, labels, masks = matching_problem(4, 3, 3, 4, 2, seed=6)
    cot = randn(4, 3, seed=7)
    c, m = class_logits.clone().requires_grad_(True), mask_logits.clone().requires_grad_(True)
    (trusted_cost(m2w03_lib, c, m, labels, masks, (1.0, 2.0, 0.5)) * cot).sum().backward()
    grads = sub.vjp(sub.mask_matching_cost, class_logits, mask_logits, labels, masks, cotangents=cot,
                    class_weight=1.0, mask_weight=2.0, dice_weight=0.5).inputs
    assert len(grads) >= 2 and grads[0] is not None and grads[1] is not None, \
        "mask_matching_cost should be a differentiable function of the class and mask logits"
    assert_close(grads[0], c.grad, what="the gradient of the cost for the class logits", **F64)
    assert_close(grads[1], m.grad, what="the gradient of the cost for the mask logits", **F64)


# == boxes_from_masks =========================================================================
def box_masks(seed):
    """Masks [7, 9, 13] (non-square): random blobs, a single pixel, a full mask, a corner, an empty one."""
    masks = blobs(7, 9, 13, seed=seed, p=0.15).bool()
    masks[3] = False
    masks[3, 4, 11] = True            # one pixel: row 4, column 11
    masks[4] = True                   # the whole image
    masks[5] = False
    masks[5, 7:, 10:] = True          # the bottom-right corner
    masks[6] = False                  # empty
    return masks


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_boxes_from_masks_shapes(sub):
    """masks_to_boxes and masks_to_normalized_boxes return float32 [N, 4] for [N, H, W] masks."""
    masks = box_masks(0)
    for name in ("masks_to_boxes", "masks_to_normalized_boxes"):
        out = getattr(sub, name)(masks)
        assert_shape(out, (7, 4), what=f"{name} of [7, 9, 13] masks")
        assert out.dtype == torch.float32, f"{name} should return float32, not {out.dtype}"


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("dtype", ["bool", "uint8"])
def test_boxes_from_masks_match_torchvision(sub, m2w03_lib, dtype):
    """masks_to_boxes equals torchvision.ops.masks_to_boxes (inclusive pixel indices; empty masks give zeros)."""
    for seed in (1, 2):
        masks = box_masks(seed)
        expected = m2w03_lib.masks_to_boxes(masks)
        got = sub.masks_to_boxes(masks.to(getattr(torch, dtype)))
        assert_close(got, expected, what=f"masks_to_boxes of {dtype} masks (9 x 13 images; mask 3 is one pixel, "
                     "mask 6 empty)", atol=0, rtol=0)  # integer coordinates: exact


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_boxes_from_masks_normalized(sub, m2w03_lib):
    """masks_to_normalized_boxes is (cx, cy, w, h) of the pixel extent / (W, H, W, H): torchvision's box plus one
    pixel at the far edges on 9 x 13 masks, and the kit's shapes' own boxes."""
    masks = box_masks(3)
    x0, y0, x1, y1 = m2w03_lib.masks_to_boxes(masks).double().unbind(-1)
    expected = torch.stack([(x0 + x1 + 1) / 2 / 13, (y0 + y1 + 1) / 2 / 9, (x1 + 1 - x0) / 13, (y1 + 1 - y0) / 9], -1)
    expected[6] = 0.0                                                   # the empty mask
    # float32 output: entries of size ~1 round at ~6e-8.
    assert_close(sub.masks_to_normalized_boxes(masks), expected, what="masks_to_normalized_boxes of 9 x 13 masks",
                 atol=1e-6, rtol=0)
    from autograder.kit.data import shapes

    data = shapes(4, seed=11, size=20, object_size=(3, 8), kinds=("square", "disc", "triangle"))
    for i in range(4):
        assert_close(sub.masks_to_normalized_boxes(data.masks[i]), data.normalized_boxes(i),
                     what=f"masks_to_normalized_boxes of the shapes of image {i}", atol=1e-6, rtol=0)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_boxes_from_masks_hand_computed(sub):
    """A one-pixel mask at row 2, column 5 of a 4 x 8 image: (5, 2, 5, 2) inclusive; (5.5/8, 2.5/4, 1/8, 1/4)."""
    masks = torch.zeros(2, 4, 8, dtype=torch.bool)
    masks[0, 2, 5] = True
    masks[1, 1:3, 0:7] = True                                           # rows 1-2, columns 0-6
    assert_close(sub.masks_to_boxes(masks), torch.tensor([[5.0, 2, 5, 2], [0, 1, 6, 2]]),
                 what="masks_to_boxes of the hand-made masks", atol=0, rtol=0)
    assert_close(sub.masks_to_normalized_boxes(masks),
                 torch.tensor([[5.5 / 8, 2.5 / 4, 1 / 8, 1 / 4], [3.5 / 8, 2 / 4, 7 / 8, 2 / 4]]),
                 what="masks_to_normalized_boxes of the hand-made masks", atol=1e-6, rtol=0)


# == pose =====================================================================================
KPT_HEADS = {"default_layers": dict(hidden_dim=16, num_keypoints=3),
             "two_layers": dict(hidden_dim=10, num_keypoints=5, num_layers=2)}


@pytest.mark.points(2)
@pytest.mark.kind("shape")
@pytest.mark.parametrize("cfg", list(KPT_HEADS))
def test_pose_shapes_and_names(sub, m2w03_trusted, cfg):
    """KeypointHead has the contract's names and shapes and returns [B, Q, K, 2]; keypoint_oks returns [N, M]."""
    kwargs = KPT_HEADS[cfg]
    model = sub.KeypointHead(**kwargs)
    expected = {k: tuple(v.shape) for k, v in m2w03_trusted.KeypointHead(**kwargs).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected, f"KeypointHead({kwargs}) should hold {expected}; yours holds {got}"
    k = kwargs["num_keypoints"]
    assert_shape(model(randn(2, 3, kwargs["hidden_dim"], seed=0, dtype=torch.float32)), (2, 3, k, 2),
                 what="KeypointHead's output")
    target = torch.cat([randn(4, k, 2, seed=1), torch.full((4, k, 1), 2.0, dtype=torch.float64)], -1)
    assert_shape(sub.keypoint_oks(randn(3, k, 2, seed=2), target, torch.ones(4, dtype=torch.float64),
                                  torch.full((k,), 0.1, dtype=torch.float64)), (3, 4),
                 what="keypoint_oks of 3 predictions against 4 ground truths")
    assert_shape(sub.keypoint_l1_loss(randn(4, k, 2, seed=3), target, 4), (), what="keypoint_l1_loss")


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("cfg", list(KPT_HEADS))
def test_pose_head_matches_trusted(sub, m2w03_trusted, cfg):
    """KeypointHead equals a trusted head with the same weights: sigmoid of the MLP, outputs (2k, 2k + 1) = (x, y)."""
    kwargs = KPT_HEADS[cfg]
    trusted = trusted_head(m2w03_trusted.KeypointHead, 13, **kwargs)
    model = student_copy(sub, "KeypointHead", trusted, **kwargs)
    queries = randn(2, 4, kwargs["hidden_dim"], seed=14, scale=1.5)
    with torch.no_grad():
        expected = trusted(queries)
    assert_close(model(queries), expected, what=f"KeypointHead's keypoints ({cfg.replace('_', ' ')})", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("grad")
def test_pose_head_grad_matches_trusted(sub, m2w03_trusted):
    """KeypointHead's gradients for the queries and its parameters equal the trusted head's (float64)."""
    kwargs = KPT_HEADS["two_layers"]
    trusted = trusted_head(m2w03_trusted.KeypointHead, 15, **kwargs)
    model = student_copy(sub, "KeypointHead", trusted, **kwargs)
    queries, cot = randn(2, 3, 10, seed=16), randn(2, 3, 5, 2, seed=17)
    qt = queries.clone().requires_grad_(True)
    trusted.zero_grad()
    (trusted(qt) * cot).sum().backward()
    result = sub.vjp(model, queries, cotangents=cot)
    assert result.inputs and result.inputs[0] is not None, "KeypointHead's output should depend on the queries"
    assert_close(result.inputs[0], qt.grad, what="the gradient of KeypointHead for the queries", **F64)
    for name, p in trusted.named_parameters():
        assert result.params.get(name) is not None, f"parameter `{name}` of your KeypointHead gets no gradient"
        assert_close(result.params[name], p.grad, what=f"the gradient of `{name}` in your KeypointHead", **F64)


def coco_oks(pred, target, areas, sigmas):
    """pycocotools' COCOeval.computeOks on one image: predictions [N, K, 2] (scores decreasing, so COCO keeps
    their order), ground truths [M, K, 3] with their areas; returns [N, M]."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "object"}], "annotations": [
        {"id": j + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": float(areas[j]),
         "bbox": [0.0, 0.0, 1.0, 1.0], "keypoints": target[j].flatten().tolist(),
         "num_keypoints": int((target[j, :, 2] > 0).sum())} for j in range(len(target))]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([{"image_id": 1, "category_id": 1, "score": 1.0 - 0.01 * i,
                          "keypoints": torch.cat([pred[i], torch.ones(len(pred[i]), 1, dtype=pred.dtype)], -1)
                          .flatten().tolist()} for i in range(len(pred))])
        evaluator = COCOeval(gt, dt, "keypoints")
    evaluator.params.kpt_oks_sigmas = np.asarray(sigmas.tolist())
    evaluator.params.imgIds = [1]
    evaluator._prepare()
    return torch.from_numpy(np.asarray(evaluator.computeOks(1, 1), dtype=np.float64))


def pose_problem(n, m, k, seed):
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros(m, k, 3, dtype=torch.float64)
    target[..., :2] = 10 + 30 * torch.rand(m, k, 2, generator=g, dtype=torch.float64)
    target[..., 2] = torch.randint(0, 3, (m, k), generator=g).double()
    target[:, 0, 2] = 2.0                                               # at least one labelled keypoint each
    pred = target[torch.randint(0, m, (n,), generator=g), :, :2] + 3 * torch.randn(n, k, 2, generator=g,
                                                                                    dtype=torch.float64)
    areas = 100 + 400 * torch.rand(m, generator=g, dtype=torch.float64)
    sigmas = 0.03 + 0.1 * torch.rand(k, generator=g, dtype=torch.float64)
    return pred, target, areas, sigmas


@pytest.mark.points(3)
@pytest.mark.kind("value")
def test_pose_oks_matches_pycocotools(sub):
    """keypoint_oks equals pycocotools' computeOks (COCO's OKS) for every prediction-truth pair, with unlabelled
    (v = 0) and occluded (v = 1) keypoints, per-keypoint sigmas and different areas."""
    for seed in (0, 1):
        pred, target, areas, sigmas = pose_problem(5, 4, 6, seed)
        expected = coco_oks(pred, target, areas, sigmas)
        # float64; COCO adds np.spacing(1) ~ 2e-16 to the areas (~100): a relative change of 2e-18.
        assert_close(sub.keypoint_oks(pred, target, areas, sigmas), expected,
                     what="keypoint_oks against pycocotools (5 predictions, 4 ground truths, 6 keypoints)", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_pose_oks_closed_forms(sub):
    """A prediction on the truth scores 1; one moved by d on a single labelled keypoint scores exp(-d^2/(8 s^2 sigma^2))
    on that keypoint; an unlabelled keypoint does not count, however far off."""
    target = torch.tensor([[[10.0, 10.0, 2.0], [20.0, 15.0, 1.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    area, sigmas = 50.0, torch.tensor([0.05, 0.1, 0.2], dtype=torch.float64)
    pred = target[:, :, :2].repeat(3, 1, 1)
    pred[0, 2] = torch.tensor([500.0, 500.0])                            # unlabelled: ignored
    pred[1, 1] += torch.tensor([3.0, 4.0])                              # d = 5 on keypoint 1 (sigma 0.1)
    pred[2, 0] += torch.tensor([0.0, 2.0])                              # d = 2 on keypoint 0 (sigma 0.05)
    expected = torch.tensor([[1.0], [(1 + math.exp(-25 / (8 * area * 0.01))) / 2],
                             [(math.exp(-4 / (8 * area * 0.0025)) + 1) / 2]], dtype=torch.float64)
    assert_close(sub.keypoint_oks(pred, target, torch.tensor([area], dtype=torch.float64), sigmas), expected,
                 what="keypoint_oks of the hand-computed predictions (area 50, two labelled keypoints)", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_pose_l1_loss_hand_computed(sub):
    """keypoint_l1_loss sums |dx| + |dy| over the labelled keypoints (v > 0) and divides by num_objects."""
    target = torch.tensor([[[0.5, 0.5, 2.0], [0.2, 0.4, 0.0]], [[0.1, 0.9, 1.0], [0.3, 0.3, 2.0]]],
                          dtype=torch.float64)
    pred = torch.tensor([[[0.6, 0.3, ], [0.9, 0.9]], [[0.1, 0.8], [0.0, 0.0]]], dtype=torch.float64)
    # labelled: (0, 0): 0.1 + 0.2; (1, 0): 0 + 0.1; (1, 1): 0.3 + 0.3  -> 1.0; unlabelled (0, 1) would add 1.2
    assert_close(sub.keypoint_l1_loss(pred, target, 2.5), torch.tensor(1.0 / 2.5, dtype=torch.float64),
                 what="keypoint_l1_loss of the hand-computed pair (num_objects = 2.5)", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("grad")
def test_pose_oks_and_l1_grads(sub):
    """The gradients of keypoint_oks and keypoint_l1_loss for the predictions equal the closed-form formulas' (autograd)."""
    pred, target, areas, sigmas = pose_problem(3, 2, 4, seed=3)
    cot = randn(3, 2, seed=4)
    p = pred.clone().requires_grad_(True)
    d2 = ((p[:, None] - target[None, :, :, :2]) ** 2).sum(-1)
    labelled = (target[..., 2] > 0).double()
    oks = (torch.exp(-d2 / (2 * areas[:, None] * (2 * sigmas) ** 2)) * labelled).sum(-1) / labelled.sum(-1)
    (oks * cot).sum().backward()
    grads = sub.vjp(sub.keypoint_oks, pred, target, areas, sigmas, cotangents=cot).inputs
    assert grads and grads[0] is not None, "keypoint_oks should be a differentiable function of the predictions"
    assert_close(grads[0], p.grad, what="the gradient of keypoint_oks for the predictions", **F64)
    p2 = (pred[:2] / 50).clone().requires_grad_(True)
    loss = ((p2 - target[..., :2] / 50).abs().sum(-1) * labelled).sum() / 3
    loss.backward()
    grads = sub.vjp(sub.keypoint_l1_loss, pred[:2] / 50, target / torch.tensor([50.0, 50.0, 1.0], dtype=torch.float64),
                    3, cotangents=torch.tensor(1.0, dtype=torch.float64)).inputs
    assert grads and grads[0] is not None, "keypoint_l1_loss should be a differentiable function of the predictions"
    assert_close(grads[0], p2.grad, what="the gradient of keypoint_l1_loss for the predictions", **F64)


# == segmenter ================================================================================
def initial_segmenter(sub, m2w03_trusted, seed):
    """The notebook's TinySegmenter holding the trusted model's initial weights (PyTorch's default init, seed)."""
    torch.manual_seed(seed)
    trusted = m2w03_trusted.Segmenter()
    model = sub.TinySegmenter()
    model.load_state_dict({k: v.clone() for k, v in trusted.state_dict().items()}, strict=True)
    return trusted, model


def trusted_training_loss(m2w03_lib, class_logits, mask_logits, labels, masks):
    """The loss of the notebook's recipe, computed here: Mask2Former matching, DETR's class weights, focal and dice."""
    num_classes = class_logits.shape[-1] - 1
    targets = torch.full(class_logits.shape[:2], num_classes, dtype=torch.long)
    preds, trues = [], []
    for b in range(len(labels)):
        cost = trusted_cost(m2w03_lib, class_logits[b].double(), mask_logits[b].double(), labels[b], masks[b])
        from scipy.optimize import linear_sum_assignment

        q, t = (torch.as_tensor(a) for a in linear_sum_assignment(cost.numpy()))
        targets[b, q] = labels[b][t]
        preds.append(mask_logits[b, q].double())
        trues.append(masks[b][t].double())
    weight = torch.ones(num_classes + 1, dtype=torch.float64)
    weight[-1] = 0.1
    n = sum(len(l) for l in labels)
    pred, true = torch.cat(preds).flatten(1), torch.cat(trues).flatten(1)
    return (2 * F.cross_entropy(class_logits.double().flatten(0, 1), targets.flatten(), weight=weight)
            + 100 * m2w03_lib.focal_loss(pred, true, n) + 5 * m2w03_lib.dice_loss(pred, true, n))


@pytest.mark.points(3)
@pytest.mark.kind("value")
def test_segmenter_loss_at_lr_zero(sub, m2w03_trusted, m2w03_lib, m2w03_shapes):
    """With lr = 0, train_segmenter leaves the weights unchanged and returns `steps` losses, each equal to the
    recipe's loss (matching, class weights, focal and dice with their factors) computed here from the model's outputs."""
    data = m2w03_shapes
    images, labels, masks = data.images[:4], data.labels[:4], data.masks[:4]
    trusted, model = initial_segmenter(sub, m2w03_trusted, seed=100)
    losses = sub.train_segmenter(model, images, labels, masks, 3, 0.0)
    assert isinstance(losses, (list, tuple)) and len(losses) == 3, \
        f"train_segmenter(steps=3) should return a list of 3 losses, got {losses!r:.80}"
    state = model.state_dict()
    for name, value in trusted.state_dict().items():
        assert_close(state[name], value, what=f"`{name}` after training with lr=0", atol=0, rtol=0)
    with torch.no_grad():
        class_logits, mask_logits = trusted(images)
    expected = float(trusted_training_loss(m2w03_lib, class_logits, mask_logits, labels, masks))
    # float32 model outputs: the loss (~15) is reproduced to ~1e-6 relative; 1e-4 allows any summation order.
    assert_close(torch.tensor([float(v) for v in losses]), torch.full((3,), expected), atol=1e-4, rtol=1e-4,
                 what="the losses train_segmenter returns at lr=0 (2 class + 100 focal + 5 dice, eos_coef 0.1, "
                      "num_masks = the objects in the batch)")


@pytest.mark.points(8)
@pytest.mark.kind("convergence")
@pytest.mark.timeout(120)
def test_segmenter_fits_training_shapes(sub, m2w03_trusted, m2w03_shapes):
    """Your train_segmenter (120 steps, lr 3e-3) fits a TinySegmenter to 12 images of shapes: the grader runs the
    trained model and pairs each object with a query: mean mask IoU >= 0.8 and >= 90% of the classes right."""
    data = m2w03_shapes
    _, model = initial_segmenter(sub, m2w03_trusted, seed=0)
    losses = sub.train_segmenter(model, data.images, data.labels, data.masks, 120, 3e-3)
    assert len(losses) == 120, f"train_segmenter(steps=120) should return 120 losses, got {len(losses)}"
    class_logits, mask_logits = model(data.images)
    miou, accuracy = m2w03_trusted.scores(class_logits, mask_logits, data.labels, data.masks)
    # Measured (CPU, 1 thread, 3.5-4.5 s a run) over 10 initial weights (seeds 0-9; this is seed 0): the reference
    # and a loop that matches on non-detached logits (a valid variant) reach mean IoU 1.000 and 100% classes on
    # all 10 (at 80 steps the reference's minimum was 0.72, hence 120). Broken loops over seeds 0-4 (mIoU):
    # untrained 0.00-0.12, only the MaskHead's parameters optimised 0.16-0.46, lr ignored (1e-4) 0.05-0.43,
    # gradients never zeroed 0.00-0.27, SGD instead of AdamW 0.01-0.25. A loop with a fixed query-object
    # assignment instead of the matching also fits this fixed set (0.74-1.0): test_segmenter_loss_at_lr_zero
    # catches that, and every other change to the loss.
    assert miou >= 0.8 and accuracy >= 0.9, (
        f"after training, the queries paired with the {sum(len(l) for l in data.labels)} objects reach a mean "
        f"mask IoU of {miou:.3f} (at least 0.8 expected; a correct loop reaches 1.0) and {accuracy:.0%} correct "
        "classes (at least 90% expected). Look at train_segmenter: AdamW over all of model.parameters() with the "
        "given lr, zero_grad, backward and step in every step, and the losses of part 2 on the matched pairs")


# == pose_training ============================================================================
def initial_pose_net(sub, m2w03_trusted, seed):
    """The notebook's TinyPoseNet holding the trusted model's initial weights (PyTorch's default init, seed)."""
    torch.manual_seed(seed)
    trusted = m2w03_trusted.PoseNet()
    model = sub.TinyPoseNet()
    model.load_state_dict({k: v.clone() for k, v in trusted.state_dict().items()}, strict=True)
    return trusted, model


def trusted_pose_loss(class_logits, points, keypoints):
    """The loss of the notebook's pose recipe, computed here in float64 with scipy's matcher."""
    from scipy.optimize import linear_sum_assignment

    class_logits, points = class_logits.double(), points.double()
    targets = torch.ones(class_logits.shape[:2], dtype=torch.long)
    total, count = 0.0, 0
    for b, target in enumerate(keypoints):
        target = target.double()
        labelled = (target[:, :, 2] > 0).double()
        cost = torch.zeros(points.shape[1], len(target), dtype=torch.float64)
        for q in range(points.shape[1]):
            for j in range(len(target)):
                l1 = ((points[b, q] - target[j, :, :2]).abs().sum(-1) * labelled[j]).sum()
                cost[q, j] = -class_logits[b, q].softmax(-1)[0] + 5 * l1
        rows, cols = linear_sum_assignment(cost.numpy())
        for q, j in zip(rows, cols):
            targets[b, q] = 0
            total = total + ((points[b, q] - target[j, :, :2]).abs().sum(-1) * labelled[j]).sum()
        count += len(target)
    class_loss = F.cross_entropy(class_logits.flatten(0, 1), targets.flatten(),
                                 weight=torch.tensor([1.0, 0.1], dtype=torch.float64))
    return 2 * class_loss + 5 * total / count


@pytest.mark.points(4)
@pytest.mark.kind("value")
def test_pose_training_loss_at_lr_zero(sub, m2w03_trusted, m2w03_triangles):
    """With lr = 0, train_pose leaves the weights unchanged and returns `steps` losses, each equal to the recipe's
    loss (matching on class probability and keypoint L1, class weights [1, 0.1], 2 class + 5 keypoint L1)."""
    data = m2w03_triangles
    images = data.images[:5]
    keypoints = [k.clone() for k in data.keypoints[:5]]
    keypoints[1][0, 2, 2] = 0.0                                        # one unlabelled keypoint: it must not count
    trusted, model = initial_pose_net(sub, m2w03_trusted, seed=200)
    losses = sub.train_pose(model, images, keypoints, 2, 0.0)
    assert isinstance(losses, (list, tuple)) and len(losses) == 2, \
        f"train_pose(steps=2) should return a list of 2 losses, got {losses!r:.80}"
    state = model.state_dict()
    for name, value in trusted.state_dict().items():
        assert_close(state[name], value, what=f"`{name}` after train_pose with lr=0", atol=0, rtol=0)
    with torch.no_grad():
        expected = float(trusted_pose_loss(*trusted(images), keypoints))
    # float32 model outputs: the loss (~4) is reproduced to ~1e-6 relative; 1e-4 allows any summation order.
    assert_close(torch.tensor([float(v) for v in losses]), torch.full((2,), expected), atol=1e-4, rtol=1e-4,
                 what="the losses train_pose returns at lr=0 (2 class + 5 keypoint L1 over labelled keypoints, "
                      "class weights [1, 0.1], num_objects = the objects in the batch)")


@pytest.mark.points(7)
@pytest.mark.kind("convergence")
@pytest.mark.timeout(120)
def test_pose_training_fits_triangles(sub, m2w03_trusted, m2w03_triangles):
    """Your train_pose (200 steps, lr 3e-3) fits a TinyPoseNet to the corners of 12 triangles: the grader runs the
    trained model, takes each image's most confident query and scores it with OKS (sigma 0.1): mean >= 0.75."""
    data = m2w03_triangles
    _, model = initial_pose_net(sub, m2w03_trusted, seed=0)
    losses = sub.train_pose(model, data.images, data.keypoints, 200, 3e-3)
    assert len(losses) == 200, f"train_pose(steps=200) should return 200 losses, got {len(losses)}"
    class_logits, points = model(data.images)
    n = len(data.images)
    best = class_logits.double().softmax(-1)[..., 0].argmax(-1)
    pred = points.double()[torch.arange(n), best] * 24.0              # pixels
    truth = torch.stack([k[0] for k in data.pixels]).double()          # [n, 3, 3]
    d2 = ((pred - truth[..., :2]) ** 2).sum(-1)
    oks = torch.exp(-d2 / (2 * data.areas[:, None] * (2 * 0.1) ** 2)).mean(-1)   # COCO's OKS, all labelled
    score = float(oks.mean())
    # Measured (CPU, 1 thread, 4.5-6.5 s a run) over 10 initial weights (seeds 0-9; this is seed 0): the reference
    # 0.903 / 0.973 / 0.987 (min / median / max), and the same for a loop that matches on non-detached outputs (a
    # valid variant). At 120 steps the reference ranged 0.28-0.97, hence 200. Broken loops over seeds 0-4: lr
    # ignored (1e-4) 0.32-0.53, only the KeypointHead optimised 0.07-0.20, untrained 0.06-0.10.
    assert score >= 0.75, (
        f"after training, the most confident query of each image scores a mean OKS of {score:.3f} against the "
        "triangles' corners (at least 0.75 expected). Look at train_pose: AdamW over all of model.parameters() "
        "with the given lr, the matching per image, the class targets (0 matched, 1 the others) and the "
        "keypoint loss on the matched pairs")
