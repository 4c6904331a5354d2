"""m2w02 hidden suite: multi-scale deformable attention (kernel and module), focal loss and LW-DETR's
IoU-aware BCE, Group DETR's attention mask, one-to-many matching and loss, and cost counts.

Independent truths: Hugging Face transformers' pure-PyTorch `MultiScaleDeformableAttention` and
`DeformableDetrMultiscaleDeformableAttention` given the same weights, transformers' LW-DETR loss code
(`LwDetrImageLoss.loss_labels`, `LwDetrHungarianMatcher` with `group_detr`, the whole criterion in
training mode), `torchvision.ops.sigmoid_focal_loss`, brute-force assignments, closed forms (a sample
at a pixel centre is that pixel) and hand-computed counts. Values are compared in float64, where
the trusted implementations and the answer key agree to 0 - 3e-16; tolerances say why they are what
they are.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from autograder.kit import assert_close, assert_shape, load_same_weights, randn, randomize
from autograder.kit.data import shapes as make_shapes
from autograder.kit.tolerances import Tolerance

# float64 against transformers or a trusted formula: measured differences 0 to 3e-16 for the answer
# key, so 1e-10 leaves room for any valid order of operations while every bug below moves results by
# more than 1e-4.
F64 = {"atol": 1e-10, "rtol": 1e-8}
F64_TOL = Tolerance(1e-10, 1e-8, "float64 against transformers: measured differences 0 to 3e-16")


# -- trusted-side helpers -------------------------------------------------------------------------------
def level_start_index(spatial_shapes):
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


def hf_core(hf, value, spatial_shapes, locations, weights):
    """transformers' pure-PyTorch kernel (the one its models run without the CUDA extension)."""
    return hf.core(value, spatial_shapes, [tuple(s) for s in spatial_shapes.tolist()],
                   level_start_index(spatial_shapes), locations, weights, 64)


def hf_module_forward(module, query, reference_points, value, spatial_shapes):
    out, _ = module(hidden_states=query, encoder_hidden_states=value, reference_points=reference_points,
                    spatial_shapes=spatial_shapes, spatial_shapes_list=[tuple(s) for s in spatial_shapes.tolist()],
                    level_start_index=level_start_index(spatial_shapes))
    return out


def core_inputs(B, Q, H, D, P, spatial_shapes, seed):
    """value [B, S, H, D], locations [B, Q, H, L, P, 2] in [-0.1, 1.1] (some outside the map), weights."""
    L = len(spatial_shapes)
    S = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
    g = torch.Generator().manual_seed(seed)
    value = torch.randn(B, S, H, D, generator=g, dtype=torch.float64)
    locations = 1.2 * torch.rand(B, Q, H, L, P, 2, generator=g, dtype=torch.float64) - 0.1
    weights = torch.rand(B, Q, H, L, P, generator=g, dtype=torch.float64)
    return value, locations, weights


CORE_CASES = {
    "3_levels_3_heads": dict(B=2, Q=5, H=3, D=4, P=2, shapes=[[4, 5], [2, 3], [1, 2]]),
    "1_level_tall_8_heads": dict(B=1, Q=7, H=8, D=2, P=3, shapes=[[6, 2]]),
}


def xyxy(boxes):
    from torchvision.ops import box_convert

    return box_convert(boxes, "cxcywh", "xyxy")


def random_boxes(n, g):
    """cxcywh boxes well inside the image: centres in [0.2, 0.8], sizes in [0.1, 0.4]."""
    return torch.cat([0.2 + 0.6 * torch.rand(n, 2, generator=g, dtype=torch.float64),
                      0.1 + 0.3 * torch.rand(n, 2, generator=g, dtype=torch.float64)], dim=-1)


def detection_problem(B, num_queries, C, seed, objects=(1, 2, 3)):
    """Logits [B, Q, C], predicted boxes [B, Q, 4], and per image labels [T_b] and boxes [T_b, 4]."""
    g = torch.Generator().manual_seed(seed)
    logits = 1.5 * torch.randn(B, num_queries, C, generator=g, dtype=torch.float64)
    boxes = random_boxes(B * num_queries, g).reshape(B, num_queries, 4)
    labels, targets = [], []
    for b in range(B):
        T = objects[b % len(objects)]
        labels.append(torch.randint(0, C, (T,), generator=g))
        targets.append(random_boxes(T, g))
    return logits, boxes, labels, targets


def ia_problem(seed, C=3):
    """A detection problem with a given matching; image 0's first matched box lies far from its target
    (IoU 0, so the target score is the clamp 0.01)."""
    logits, boxes, labels, targets = detection_problem(3, 5, C, seed)
    g = torch.Generator().manual_seed(seed + 100)
    indices = []
    for b in range(3):
        T = len(labels[b])
        queries = torch.randperm(5, generator=g)[:T].sort().values
        indices.append((queries, torch.randperm(T, generator=g)))
    q, t = indices[0][0][0], indices[0][1][0]
    targets[0][t] = torch.tensor([0.15, 0.15, 0.1, 0.1], dtype=torch.float64)
    boxes[0, q] = torch.tensor([0.85, 0.85, 0.1, 0.1], dtype=torch.float64)
    return logits, boxes, labels, targets, indices


def hf_targets(labels, targets):
    return [{"class_labels": l, "boxes": b} for l, b in zip(labels, targets)]


def hf_ia_bce(hf, logits, boxes, labels, targets, indices, num_boxes, alpha):
    """transformers' LwDetrImageLoss.loss_labels (gamma fixed at 2 there)."""
    loss = hf.ImageLoss(matcher=None, num_classes=logits.shape[-1], focal_alpha=alpha, losses=["labels"], group_detr=1)
    return loss.loss_labels({"logits": logits, "pred_boxes": boxes}, hf_targets(labels, targets), indices,
                            num_boxes)["loss_ce"]


def trusted_ia_bce(logits, boxes, labels, targets, indices, num_boxes, alpha, gamma):
    """IA-BCE entry by entry, from the formula (any gamma); equal to transformers' at gamma = 2."""
    from torchvision.ops import box_iou

    p = logits.sigmoid()
    t = {}
    for b, (queries, matched) in enumerate(indices):
        ious = box_iou(xyxy(boxes[b, queries]), xyxy(targets[b][matched])).diag()
        for q, j, iou in zip(queries.tolist(), matched.tolist(), ious):
            c = int(labels[b][j])
            t[(b, q, c)] = torch.clamp(p[b, q, c] ** alpha * iou ** (1 - alpha), min=0.01).detach()
    total = torch.zeros((), dtype=logits.dtype)
    for b, q, c in itertools.product(*(range(n) for n in logits.shape)):
        pb = p[b, q, c]
        if (b, q, c) in t:
            total = total - t[(b, q, c)] * pb.log() - (1 - t[(b, q, c)]) * (1 - pb).log()
        else:
            total = total - pb ** gamma * (1 - pb).log()
    return total / num_boxes


def trusted_cost(logits, boxes, labels, targets, class_weight=2.0, l1_weight=5.0, giou_weight=2.0, alpha=0.25,
                 gamma=2.0):
    """LwDetrHungarianMatcher's cost matrix, line by line, with its constants as arguments."""
    from torchvision.ops import generalized_box_iou

    out_prob = logits.sigmoid()
    neg_cost_class = (1 - alpha) * (out_prob ** gamma) * (-(1 - out_prob + 1e-8).log())
    pos_cost_class = alpha * ((1 - out_prob) ** gamma) * (-(out_prob + 1e-8).log())
    class_cost = pos_cost_class[:, labels] - neg_cost_class[:, labels]
    bbox_cost = torch.cdist(boxes, targets, p=1)
    giou_cost = -generalized_box_iou(xyxy(boxes), xyxy(targets))
    return l1_weight * bbox_cost + class_weight * class_cost + giou_weight * giou_cost


def hf_criterion(hf, num_classes, num_groups):
    matcher = hf.Matcher(class_cost=2, bbox_cost=5, giou_cost=2)
    return hf.ImageLoss(matcher=matcher, num_classes=num_classes, focal_alpha=0.25, losses=["labels", "boxes"],
                        group_detr=num_groups).train()  # in eval mode it would use one group


LOSS_KEYS = ("loss_ce", "loss_bbox", "loss_giou")


def check_loss_dict(losses):
    assert isinstance(losses, dict) and set(losses) == set(LOSS_KEYS), \
        f"lw_detr_loss should return a dict with exactly the keys {list(LOSS_KEYS)}"


# == deformable_core ======================================================================================
@pytest.mark.points(1)
@pytest.mark.kind("shape")
@pytest.mark.parametrize("case", list(CORE_CASES))
def test_deformable_core_output_shapes(sub, case):
    """ms_deform_attn returns [B, Q, H*D] in the values' dtype, for several sizes."""
    c = CORE_CASES[case]
    spatial_shapes = torch.tensor(c["shapes"])
    value, loc, w = core_inputs(c["B"], c["Q"], c["H"], c["D"], c["P"], spatial_shapes, seed=0)
    out = sub.ms_deform_attn(value.float(), spatial_shapes, loc.float(), w.float())
    assert_shape(out, (c["B"], c["Q"], c["H"] * c["D"]),
                 what=f"ms_deform_attn for B={c['B']}, Q={c['Q']}, {c['H']} heads of {c['D']} channels")
    assert out.dtype == torch.float32, f"ms_deform_attn should keep the values' dtype float32, not {out.dtype}"


@pytest.mark.points(3)
@pytest.mark.kind("value")
@pytest.mark.parametrize("case", list(CORE_CASES))
def test_deformable_core_matches_transformers(sub, m2w02_hf, case):
    """ms_deform_attn equals transformers' multi-scale deformable attention kernel (float64), points inside
    and outside the maps, non-square levels."""
    c = CORE_CASES[case]
    spatial_shapes = torch.tensor(c["shapes"])
    value, loc, w = core_inputs(c["B"], c["Q"], c["H"], c["D"], c["P"], spatial_shapes, seed=1)
    expected = hf_core(m2w02_hf, value, spatial_shapes, loc, w)
    assert_close(sub.ms_deform_attn(value, spatial_shapes, loc, w), expected,
                 what="ms_deform_attn (check grid = 2*location - 1, x before y, align_corners=False, zero padding, "
                      "each level's (height, width), and head h in channels h*D...h*D+D-1)", **F64)


@pytest.mark.points(3)
@pytest.mark.kind("value")
def test_deformable_core_pixel_centres_are_exact(sub):
    """At a pixel centre the sample is that pixel; halfway between two centres, their mean (two levels, two heads)."""
    spatial_shapes = torch.tensor([[3, 4], [2, 2]])
    # pixel (i, j) of level l holds 100 l + 10 i + j in channel 0 and its negative in channel 1, head h adds h
    level0 = torch.tensor([[10 * i + j for j in range(4)] for i in range(3)], dtype=torch.float64).flatten()
    level1 = torch.tensor([[100 + 10 * i + j for j in range(2)] for i in range(2)], dtype=torch.float64).flatten()
    pixels = torch.cat([level0, level1])
    value = torch.stack([torch.stack([pixels + h, -(pixels + h)], -1) for h in range(2)], dim=1)[None]  # [1, 16, 2, 2]
    loc = torch.zeros(1, 2, 2, 2, 1, 2, dtype=torch.float64)
    w = torch.zeros(1, 2, 2, 2, 1, dtype=torch.float64)
    # query 0, head 0: centre of level 0's pixel (row 2, col 3), weight 1
    loc[0, 0, 0, 0, 0] = torch.tensor([3.5 / 4, 2.5 / 3], dtype=torch.float64)
    w[0, 0, 0, 0, 0] = 1.0
    # query 0, head 1: level 1's pixel (row 1, col 0) with weight 0.25 and level 0's (row 0, col 1) with 0.75
    loc[0, 0, 1, 1, 0] = torch.tensor([0.5 / 2, 1.5 / 2], dtype=torch.float64)
    w[0, 0, 1, 1, 0] = 0.25
    loc[0, 0, 1, 0, 0] = torch.tensor([1.5 / 4, 0.5 / 3], dtype=torch.float64)
    w[0, 0, 1, 0, 0] = 0.75
    # query 1, head 0: halfway between level 0's (row 1, col 1) and (row 1, col 2)
    loc[0, 1, 0, 0, 0] = torch.tensor([2.0 / 4, 1.5 / 3], dtype=torch.float64)
    w[0, 1, 0, 0, 0] = 1.0
    # query 1, head 1: halfway between level 1's (row 0, col 1) and (row 1, col 1)
    loc[0, 1, 1, 1, 0] = torch.tensor([1.5 / 2, 1.0 / 2], dtype=torch.float64)
    w[0, 1, 1, 1, 0] = 1.0
    expected = torch.tensor([[[23.0, -23.0, 0.25 * 111 + 0.75 * 2, -(0.25 * 111 + 0.75 * 2)],
                              [11.5, -11.5, 107.0, -107.0]]], dtype=torch.float64)
    assert_close(sub.ms_deform_attn(value, spatial_shapes, loc, w), expected,
                 what="samples at pixel centres and midpoints (check that (x, y) = ((col + 0.5)/W, (row + 0.5)/H) "
                      "lands on a pixel centre: grid = 2*location - 1 and align_corners=False; x before y)",
                 atol=1e-10, rtol=0)  # bilinear weights at a centre are 1, 0, 0, 0 up to float64 rounding (~1e-16 x 111)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_deformable_core_zero_padding_outside(sub):
    """Outside the map the value is zero: half a pixel beyond the left edge reads 0, the edge itself half the pixel."""
    spatial_shapes = torch.tensor([[2, 3]])
    value = torch.arange(1.0, 7.0, dtype=torch.float64).reshape(1, 6, 1, 1)   # pixel (i, j) holds 3 i + j + 1
    loc = torch.tensor([[-0.5 / 3, 0.5 / 2], [0.0, 1.5 / 2], [1.0, 0.5 / 2], [1.5 / 3, 1.5]],
                       dtype=torch.float64).reshape(1, 4, 1, 1, 1, 2)
    w = torch.ones(1, 4, 1, 1, 1, dtype=torch.float64)
    # x half a pixel left of column 0 -> 0; the left edge of row 1 -> half of 4; the right edge of row 0 -> half of 3;
    # y = 1.5 is a whole pixel below the last row's centre -> 0 (with padding_mode="border" they would read 1, 4, 3, 5)
    expected = torch.tensor([0.0, 0.5 * 4, 0.5 * 3, 0.0], dtype=torch.float64).reshape(1, 4, 1)
    assert_close(sub.ms_deform_attn(value, spatial_shapes, loc, w), expected,
                 what="samples at and beyond the edges of the map (grid_sample with padding_mode='zeros')",
                 atol=1e-10, rtol=0)  # bilinear weights 0 and 1/2 up to float64 rounding


@pytest.mark.points(4)
@pytest.mark.kind("grad")
def test_deformable_core_grads_match_transformers(sub, m2w02_hf):
    """The gradients of ms_deform_attn for value, locations and weights equal transformers' (float64)."""
    c = CORE_CASES["3_levels_3_heads"]
    spatial_shapes = torch.tensor(c["shapes"])
    value, loc, w = core_inputs(c["B"], c["Q"], c["H"], c["D"], c["P"], spatial_shapes, seed=2)
    cot = randn(c["B"], c["Q"], c["H"] * c["D"], seed=3)
    trusted = [t.clone().requires_grad_(True) for t in (value, loc, w)]
    (hf_core(m2w02_hf, trusted[0], spatial_shapes, trusted[1], trusted[2]) * cot).sum().backward()
    grads = sub.vjp(sub.ms_deform_attn, value, spatial_shapes, loc, w, cotangents=cot).inputs
    for name, got, want in zip(("value", "sampling_locations", "attention_weights"), grads, trusted):
        assert got is not None, f"the output of ms_deform_attn does not depend on {name} (no gradient reached it)"
        assert_close(got, want.grad, what=f"gradient of ms_deform_attn with respect to {name}", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("grad")
def test_deformable_core_gradcheck(sub, m2w02_hf):
    """ms_deform_attn's gradients match finite differences (float64, points away from pixel-grid kinks)."""
    spatial_shapes = torch.tensor([[3, 4], [2, 2]])
    value, loc, w = core_inputs(1, 3, 2, 2, 2, spatial_shapes, seed=4)
    attn = sub.differentiable(sub.ms_deform_attn)
    args = (value.requires_grad_(True), spatial_shapes, loc.requires_grad_(True), w.requires_grad_(True))
    # gradcheck proves gradients consistent with whatever function is computed: first make sure it is the right one
    assert_close(attn(*args), hf_core(m2w02_hf, value, spatial_shapes, loc, w).detach(),
                 what="ms_deform_attn (the function whose gradients are checked)", **F64)
    # fast_mode: a few random directions instead of one call per input entry; bilinear sampling is
    # piecewise smooth and eps = 1e-6 is far smaller than these random points' distance to a kink.
    ok = torch.autograd.gradcheck(attn, args, eps=1e-6, atol=1e-6, rtol=1e-4, raise_exception=False, fast_mode=True)
    assert ok, ("the gradients of ms_deform_attn do not match finite differences: keep every step a differentiable "
                "tensor operation (no .detach(), .item() or in-place edits of the inputs)")


# == deformable_module ====================================================================================
MODULE_CASES = {
    "3_levels_2_heads_3_points": (dict(d_model=24, n_levels=3, n_heads=2, n_points=3), [[4, 5], [2, 3], [1, 2]]),
    "1_level_1_head_1_point": (dict(d_model=8, n_levels=1, n_heads=1, n_points=1), [[3, 6]]),
    "defaults": (dict(), [[4, 3], [2, 2], [1, 1], [1, 1]]),
}
DEFAULTS = dict(d_model=256, n_levels=4, n_heads=8, n_points=4)


def module_inputs(cfg, spatial_shapes, B=2, Q=4, seed=0):
    d = cfg.get("d_model", 256)
    L = len(spatial_shapes)
    S = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(B, Q, d, generator=g, dtype=torch.float64)
    value = torch.randn(B, S, d, generator=g, dtype=torch.float64)
    ref = torch.rand(B, Q, L, 2, generator=g, dtype=torch.float64)
    return query, ref, value


def trusted_module(m2w02_hf, cfg, seed=1):
    full = {**DEFAULTS, **cfg}
    return randomize(m2w02_hf.module(**full), seed).double().eval()


@pytest.mark.points(1)
@pytest.mark.kind("shape")
@pytest.mark.parametrize("case", ["3_levels_2_heads_3_points", "defaults"])
def test_deformable_module_output_shapes(sub, case):
    """MSDeformAttn maps query [B, Q, d_model] to [B, Q, d_model], with its defaults and without."""
    cfg, levels = MODULE_CASES[case]
    spatial_shapes = torch.tensor(levels)
    query, ref, value = (t.float() for t in module_inputs(cfg, spatial_shapes))
    out = sub.MSDeformAttn(**cfg)(query, ref, value, spatial_shapes)
    d = cfg.get("d_model", 256)
    assert_shape(out, (2, 4, d), what=f"MSDeformAttn({', '.join(f'{k}={v}' for k, v in cfg.items())}) output")


@pytest.mark.points(2)
@pytest.mark.kind("shape")
@pytest.mark.parametrize("case", ["3_levels_2_heads_3_points", "defaults"])
def test_deformable_module_parameter_names(sub, m2w02_hf, case):
    """MSDeformAttn has transformers' parameter names and shapes (sampling_offsets, attention_weights,
    value_proj, output_proj)."""
    from autograder.kit import check_names

    cfg, _ = MODULE_CASES[case]
    check_names(sub.MSDeformAttn(**cfg).state_dict(), m2w02_hf.module(**{**DEFAULTS, **cfg}).state_dict(),
                "MSDeformAttn", against="transformers'")


@pytest.mark.points(3)
@pytest.mark.kind("value")
@pytest.mark.parametrize("case", list(MODULE_CASES))
def test_deformable_module_matches_transformers(sub, m2w02_hf, case):
    """MSDeformAttn equals transformers' DeformableDetrMultiscaleDeformableAttention given the same weights
    (float64): offsets in pixels of each level, softmax over levels and points, heads."""
    cfg, levels = MODULE_CASES[case]
    spatial_shapes = torch.tensor(levels)
    trusted = trusted_module(m2w02_hf, cfg)
    student = load_same_weights(sub.MSDeformAttn(**cfg), trusted, "MSDeformAttn", against="transformers'")
    query, ref, value = module_inputs(cfg, spatial_shapes, seed=2)
    with torch.no_grad():
        expected = hf_module_forward(trusted, query, ref, value, spatial_shapes)
    assert_close(student(query, ref, value, spatial_shapes), expected,
                 what="MSDeformAttn's output (check: offsets divided by each level's (width, height), softmax over "
                      "all n_levels * n_points weights of a head, value_proj before the split into heads)", **F64)


@pytest.mark.points(3)
@pytest.mark.kind("grad")
def test_deformable_module_parameter_grads_match_transformers(sub, m2w02_hf):
    """Every parameter of MSDeformAttn gets the same gradient as transformers' module (float64, same weights)."""
    from autograder.kit.gradients import assert_grads_close

    cfg, levels = MODULE_CASES["3_levels_2_heads_3_points"]
    spatial_shapes = torch.tensor(levels)
    trusted = trusted_module(m2w02_hf, cfg, seed=3)
    student = load_same_weights(sub.MSDeformAttn(**cfg), trusted, "MSDeformAttn", against="transformers'")
    query, ref, value = module_inputs(cfg, spatial_shapes, seed=4)
    cot = randn(2, 4, 24, seed=5)
    (hf_module_forward(trusted, query, ref, value, spatial_shapes) * cot).sum().backward()
    grads = sub.vjp(student, query, ref, value, spatial_shapes, cotangents=cot).params
    assert_grads_close(grads, {n: p.grad for n, p in trusted.named_parameters()}, "MSDeformAttn",
                       tol=F64_TOL)


@pytest.mark.points(2)
@pytest.mark.kind("grad")
def test_deformable_module_input_grads_match_transformers(sub, m2w02_hf):
    """The gradients of MSDeformAttn for query, reference points and value equal transformers' (float64)."""
    cfg, levels = MODULE_CASES["1_level_1_head_1_point"]
    spatial_shapes = torch.tensor(levels)
    trusted = trusted_module(m2w02_hf, cfg, seed=6)
    student = load_same_weights(sub.MSDeformAttn(**cfg), trusted, "MSDeformAttn", against="transformers'")
    inputs = module_inputs(cfg, spatial_shapes, Q=5, seed=7)
    cot = randn(2, 5, 8, seed=8)
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    (hf_module_forward(trusted, leaves[0], leaves[1], leaves[2], spatial_shapes) * cot).sum().backward()
    grads = sub.vjp(student, *inputs, spatial_shapes, cotangents=cot, params=False).inputs
    for name, got, want in zip(("query", "reference_points", "value"), grads, leaves):
        assert got is not None, f"MSDeformAttn's output does not depend on {name}"
        assert_close(got, want.grad, what=f"gradient of MSDeformAttn with respect to {name}", **F64)


# == ia_bce ===============================================================================================
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_ia_bce_losses_are_scalars(sub):
    """sigmoid_focal_loss and ia_bce_loss return scalar (0-dimensional) tensors."""
    logits, boxes, labels, targets, indices = ia_problem(seed=0)
    targets01 = (randn(3, 5, 3, seed=1) > 0.5).double()
    assert_shape(sub.sigmoid_focal_loss(logits, targets01, 4.0), (), what="sigmoid_focal_loss")
    assert_shape(sub.ia_bce_loss(logits, boxes, labels, targets, indices, 4.0), (), what="ia_bce_loss")


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("options", [dict(), dict(alpha=0.6, gamma=1.0)])
def test_ia_bce_focal_matches_torchvision(sub, options):
    """sigmoid_focal_loss equals torchvision.ops.sigmoid_focal_loss(reduction='sum') / num_boxes (float64)."""
    from torchvision.ops import sigmoid_focal_loss

    logits = 3.0 * randn(2, 6, 4, seed=2)
    targets = (randn(2, 6, 4, seed=3) > 0.8).double()
    expected = sigmoid_focal_loss(logits, targets, reduction="sum", **options) / 7.0
    assert_close(sub.sigmoid_focal_loss(logits, targets, 7.0, **options), expected,
                 what=f"sigmoid_focal_loss with num_boxes=7 and {options or 'the default alpha and gamma'} "
                      "(alpha weighs the positives, 1 - alpha the negatives; (1 - p_t)**gamma)", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("alpha", [0.25, 0.6])
def test_ia_bce_matches_transformers(sub, m2w02_hf, alpha):
    """ia_bce_loss equals LwDetrImageLoss.loss_labels of transformers (float64), including a matched box with IoU 0."""
    logits, boxes, labels, targets, indices = ia_problem(seed=4)
    expected = hf_ia_bce(m2w02_hf, logits, boxes, labels, targets, indices, 5.0, alpha)
    got = sub.ia_bce_loss(logits, boxes, labels, targets, indices, 5.0, **({} if alpha == 0.25 else {"alpha": alpha}))
    assert_close(got, expected, what=f"ia_bce_loss with num_boxes=5{'' if alpha == 0.25 else f' and alpha={alpha}'} "
                                     "(check t = max(p**alpha * IoU**(1 - alpha), 0.01) and the weight p**gamma of "
                                     "the negatives)", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_ia_bce_other_gamma(sub, m2w02_hf):
    """ia_bce_loss with gamma = 3 equals the formula entry by entry (the trusted loop equals transformers at gamma = 2)."""
    logits, boxes, labels, targets, indices = ia_problem(seed=5)
    # the trusted loop is itself checked against transformers, where gamma is fixed at 2
    assert_close(trusted_ia_bce(logits, boxes, labels, targets, indices, 2.0, 0.25, 2.0),
                 hf_ia_bce(m2w02_hf, logits, boxes, labels, targets, indices, 2.0, 0.25), what="(suite self-check)", **F64)
    expected = trusted_ia_bce(logits, boxes, labels, targets, indices, 2.0, 0.3, 3.0)
    assert_close(sub.ia_bce_loss(logits, boxes, labels, targets, indices, 2.0, alpha=0.3, gamma=3.0), expected,
                 what="ia_bce_loss with gamma=3 and alpha=0.3 (gamma is the power of p on the negatives)", **F64)


@pytest.mark.points(3)
@pytest.mark.kind("value")
def test_ia_bce_hand_computed(sub):
    """One image, two queries, one class: a matched query with p = 0.8 and IoU = 0.5, an unmatched one with p = 0.3."""
    p = torch.tensor([0.8, 0.3], dtype=torch.float64)
    logits = torch.log(p / (1 - p)).reshape(1, 2, 1)
    # a predicted box inside its target, half its width: IoU 0.5
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.2, 0.2, 0.1, 0.1]]], dtype=torch.float64)
    targets = [torch.tensor([[0.5, 0.5, 0.4, 0.4]], dtype=torch.float64)]
    labels = [torch.tensor([0])]
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    alpha, gamma = 0.5, 1.5
    t = math.sqrt(0.8) * math.sqrt(0.5)
    expected = (-t * math.log(0.8) - (1 - t) * math.log(0.2) - 0.3 ** gamma * math.log(0.7)) / 3.0
    got = sub.ia_bce_loss(logits, boxes, labels, targets, indices, 3.0, alpha=alpha, gamma=gamma)
    assert_close(got, torch.tensor(expected, dtype=torch.float64),
                 what="ia_bce_loss on a hand-computed case (alpha=0.5, gamma=1.5, num_boxes=3)", **F64)


@pytest.mark.points(2)
@pytest.mark.kind("grad")
def test_ia_bce_focal_grad_matches_torchvision(sub):
    """The gradient of sigmoid_focal_loss with respect to the logits equals torchvision's (float64)."""
    from torchvision.ops import sigmoid_focal_loss

    logits = 2.0 * randn(3, 5, 2, seed=6)
    targets = (randn(3, 5, 2, seed=7) > 0.5).double()
    leaf = logits.clone().requires_grad_(True)
    (sigmoid_focal_loss(leaf, targets, alpha=0.4, gamma=1.5, reduction="sum") / 3.0).backward()
    got = sub.vjp(sub.sigmoid_focal_loss, logits, targets, 3.0, alpha=0.4, gamma=1.5,
                  cotangents=torch.tensor(1.0, dtype=torch.float64)).inputs[0]
    assert got is not None, "sigmoid_focal_loss does not depend on the logits"
    assert_close(got, leaf.grad, what="gradient of sigmoid_focal_loss with respect to the logits", **F64)


@pytest.mark.points(3)
@pytest.mark.kind("grad")
def test_ia_bce_grads_match_transformers(sub, m2w02_hf):
    """The gradient of ia_bce_loss equals transformers' (t detached, p**gamma not), and none reaches the boxes."""
    logits, boxes, labels, targets, indices = ia_problem(seed=8)
    leaf = logits.clone().requires_grad_(True)
    hf_ia_bce(m2w02_hf, leaf, boxes, labels, targets, indices, 4.0, 0.25).backward()
    grads = sub.vjp(sub.ia_bce_loss, logits, boxes, labels, targets, indices, 4.0,
                    cotangents=torch.tensor(1.0, dtype=torch.float64)).inputs
    assert grads[0] is not None, "ia_bce_loss does not depend on the logits"
    assert_close(grads[0], leaf.grad, what="gradient of ia_bce_loss with respect to the logits (t is detached, "
                                           "the negatives' weight p**gamma is not)", **F64)
    assert grads[1] is None or float(grads[1].abs().max()) == 0.0, \
        "ia_bce_loss passes gradients to pred_boxes: the IoU inside the target t must be computed from detached boxes"


# == group_detr ===========================================================================================
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_group_detr_shapes(sub):
    """The mask is [G*Q, G*Q] bool, the cost [Q, T], the matching G * min(Q, T) pairs."""
    mask = sub.group_attention_mask(3, 4)
    assert_shape(mask, (12, 12), what="group_attention_mask(num_queries=3, num_groups=4)")
    assert mask.dtype == torch.bool, f"group_attention_mask should be a bool tensor, not {mask.dtype}"
    logits, boxes, labels, targets = detection_problem(1, 6, 3, seed=0, objects=(2,))
    cost = sub.lw_detr_matching_cost(logits[0], boxes[0], labels[0], targets[0])
    assert_shape(cost, (6, 2), what="lw_detr_matching_cost for 6 queries and 2 targets")
    q, t = sub.group_hungarian_match(cost, 3)
    assert_shape(q, (6,), what="the query indices of group_hungarian_match (3 groups of 2 queries, 2 targets)")
    assert_shape(t, (6,), what="the target indices of group_hungarian_match")


@pytest.mark.points(3)
@pytest.mark.kind("value")
@pytest.mark.parametrize("queries, groups", [(3, 4), (1, 5)])
def test_group_detr_mask_blocks_other_groups(sub, queries, groups):
    """True exactly where two queries are in different groups (query i is in group i // num_queries): with
    nn.MultiheadAttention's convention, each group then attends only to itself."""
    mask = sub.group_attention_mask(queries, groups)
    group = torch.arange(queries * groups) // queries
    expected = group[:, None] != group[None, :]
    assert mask.dtype == torch.bool and torch.equal(mask, expected), \
        (f"group_attention_mask({queries}, {groups}) is wrong: query i is in group i // num_queries and "
         "True must mean 'may NOT attend' (nn.MultiheadAttention's convention), so the mask is True off the diagonal blocks")


@pytest.mark.points(2)
@pytest.mark.kind("value")
@pytest.mark.parametrize("options", [dict(), dict(class_weight=1.5, l1_weight=3.0, giou_weight=0.5, alpha=0.4,
                                                  gamma=1.0)])
def test_group_detr_matching_cost_matches_lw_detr(sub, options):
    """lw_detr_matching_cost equals LW-DETR's matcher's cost (focal class cost, L1, -GIoU), float64."""
    logits, boxes, labels, targets = detection_problem(1, 7, 4, seed=9, objects=(3,))
    expected = trusted_cost(logits[0], boxes[0], labels[0], targets[0], **options)
    assert_close(sub.lw_detr_matching_cost(logits[0], boxes[0], labels[0], targets[0], **options), expected,
                 what=f"lw_detr_matching_cost with {options or 'its defaults'}", **F64)


@pytest.mark.points(3)
@pytest.mark.kind("value")
def test_group_detr_match_matches_transformers(sub, m2w02_hf):
    """group_hungarian_match gives the same pairs as transformers' LwDetrHungarianMatcher(group_detr=3)."""
    G, Q = 3, 4
    logits, boxes, labels, targets = detection_problem(3, G * Q, 3, seed=10)
    expected = m2w02_hf.Matcher(class_cost=2, bbox_cost=5, giou_cost=2)(
        {"logits": logits, "pred_boxes": boxes}, hf_targets(labels, targets), G)
    for b in range(3):
        cost = trusted_cost(logits[b], boxes[b], labels[b], targets[b])
        q, t = sub.group_hungarian_match(cost, G)
        assert torch.equal(torch.as_tensor(q).long(), expected[b][0]) and torch.equal(torch.as_tensor(t).long(),
                                                                                   expected[b][1]), \
            (f"group_hungarian_match with {G} groups of {Q} queries and {len(labels[b])} targets gave queries "
             f"{torch.as_tensor(q).tolist()}; each group is matched on its own rows, its query indices shifted by "
             "group * num_queries, groups concatenated in order")


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_group_detr_match_brute_force(sub):
    """Each group's pairs are that group's optimal one-to-one assignment (brute force, 2 groups of 3 queries)."""
    G, Q, T = 2, 3, 2
    cost = randn(G * Q, T, seed=11)
    q, t = (torch.as_tensor(v).long() for v in sub.group_hungarian_match(cost, G))
    for g in range(G):
        block = cost[g * Q:(g + 1) * Q]
        best = min(itertools.permutations(range(Q), T), key=lambda rows: sum(float(block[r, c]) for c, r in enumerate(rows)))
        want = sorted((g * Q + r, c) for c, r in enumerate(best))
        got = sorted((int(a), int(b)) for a, b in zip(q, t) if g * Q <= int(a) < (g + 1) * Q)
        assert got == want, (f"group {g}: the pairs {got} are not the least-cost assignment {want} of that group's "
                             "rows (query indices count from the first query of group 0)")


@pytest.mark.points(3)
@pytest.mark.kind("value")
@pytest.mark.parametrize("groups", [1, 3])
def test_group_detr_loss_matches_transformers(sub, m2w02_hf, groups):
    """lw_detr_loss equals transformers' LwDetrImageLoss in training mode (group_detr = G), float64."""
    logits, boxes, labels, targets = detection_problem(3, 4 * groups, 3, seed=12 + groups)
    expected = hf_criterion(m2w02_hf, 3, groups)({"logits": logits, "pred_boxes": boxes}, hf_targets(labels, targets))
    losses = sub.lw_detr_loss(logits, boxes, labels, targets, **({} if groups == 1 else {"num_groups": groups}))
    check_loss_dict(losses)
    for key in LOSS_KEYS:
        assert_close(losses[key], expected[key],
                     what=f"lw_detr_loss()['{key}'] with {groups} group(s) (one-to-one matching inside each group; "
                          "num_boxes = groups * objects in the batch)", **F64)


@pytest.mark.points(3)
@pytest.mark.kind("grad")
def test_group_detr_loss_grads_match_transformers(sub, m2w02_hf):
    """The gradients of lw_detr_loss's three terms for the logits and the boxes equal transformers' (2 groups)."""
    G = 2
    logits, boxes, labels, targets = detection_problem(2, 5 * G, 3, seed=20)
    weights = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    leaves = [logits.clone().requires_grad_(True), boxes.clone().requires_grad_(True)]
    expected = hf_criterion(m2w02_hf, 3, G)({"logits": leaves[0], "pred_boxes": leaves[1]}, hf_targets(labels, targets))
    sum(w * expected[k] for k, w in weights.items()).backward()
    order = sub.lw_detr_loss(logits, boxes, labels, targets, num_groups=G)
    check_loss_dict(order)
    cot = [torch.tensor(weights[k], dtype=torch.float64) for k in order]
    grads = sub.vjp(sub.lw_detr_loss, logits, boxes, labels, targets, num_groups=G, cotangents=cot).inputs
    for name, got, want in zip(("logits", "pred_boxes"), grads, leaves):
        assert got is not None, f"lw_detr_loss does not depend on {name}"
        assert_close(got, want.grad, what=f"gradient of lw_detr_loss with respect to {name}", **F64)


# -- convergence: a Group DETR fit ------------------------------------------------------------------------
FIT_WEIGHTS = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}   # LW-DETR's loss coefficients


def group_detr_fit(sub, num_groups, queries=4, images=4, steps=120, lr=0.05, seed=0, data_seed=11):
    """The trusted side trains free logits [n, G*Q, 2] (starting near 0: every score near 0.5, so the negatives'
    term must push the unmatched queries down) and box parameters (boxes = sigmoid) with Adam on the
    weighted sum of the notebook's lw_detr_loss terms, whose gradients it asks the worker for; it returns the
    trained scores, boxes and the objects."""
    data = make_shapes(images, seed=data_seed, size=32, objects=(1, 3))
    labels = list(data.labels)
    targets = [data.normalized_boxes(i).double() for i in range(images)]
    g = torch.Generator().manual_seed(seed)
    logits = 0.1 * torch.randn(images, num_groups * queries, 2, generator=g, dtype=torch.float64)  # scores near 0.5
    raw = 0.5 * torch.randn(images, num_groups * queries, 4, generator=g, dtype=torch.float64)
    logits.requires_grad_(True)
    raw.requires_grad_(True)
    optimizer = torch.optim.Adam([logits, raw], lr=lr)
    order = None
    for _ in range(steps):
        boxes = raw.sigmoid()
        if order is None:
            order = sub.lw_detr_loss(logits.detach(), boxes.detach(), labels, targets, num_groups=num_groups)
            check_loss_dict(order)
        cot = [torch.tensor(FIT_WEIGHTS[k], dtype=torch.float64) for k in order]
        grads = sub.vjp(sub.lw_detr_loss, logits.detach(), boxes.detach(), labels, targets, num_groups=num_groups,
                        cotangents=cot).inputs
        assert grads[0] is not None and grads[1] is not None, "lw_detr_loss must depend on both the logits and the boxes"
        optimizer.zero_grad()
        logits.grad = torch.as_tensor(grads[0]).to(torch.float64).clone()
        boxes.backward(torch.as_tensor(grads[1]).to(torch.float64))
        optimizer.step()
    return logits.detach().sigmoid(), raw.detach().sigmoid(), labels, targets


def per_group_recall(scores, boxes, labels, targets, num_groups, queries):
    """Trusted metric: over (image, group, object), the share of objects that some confident query
    (max class score > 0.5) of that group detects with the right class and IoU >= 0.7; and the share of
    confident queries that detect an object."""
    from torchvision.ops import box_iou

    found = total = confident = useful = 0
    for b in range(len(labels)):
        for g in range(num_groups):
            s, cls = scores[b, g * queries:(g + 1) * queries].max(-1)
            keep = s > 0.5
            iou = box_iou(xyxy(boxes[b, g * queries:(g + 1) * queries][keep]), xyxy(targets[b]))
            hit = (iou >= 0.7) & (cls[keep][:, None] == labels[b][None, :])
            found += int(hit.any(0).sum())
            total += len(targets[b])
            confident += int(keep.sum())
            useful += int(hit.any(1).sum())
    return found / total, useful / max(confident, 1)


@pytest.mark.points(8)
@pytest.mark.kind("convergence")
def test_group_detr_fit_every_group_finds_every_object(sub):
    """Trained with your lw_detr_loss (3 groups of 4 queries, 4 shapes images, 120 Adam steps), every group on its
    own detects every object: per-group recall at IoU 0.7 with the right class, and few spurious detections."""
    G, Q = 3, 4
    scores, boxes, labels, targets = group_detr_fit(sub, G, Q)
    recall, precision = per_group_recall(scores, boxes, labels, targets, G, Q)
    # Calibrated (this setting: 120 steps, logits from 0) over 10 init seeds x 2 shapes data sets (data seeds 11
    # and 12), 20 runs each, recall and precision as min / median / max:
    #   answer key                                     recall 1.00 / 1.00 / 1.00, precision 1.00 / 1.00 / 1.00
    #   IA-BCE written with BCE-with-logits/logsigmoid recall 1.00 / 1.00 / 1.00, precision 1.00 / 1.00 / 1.00
    #   boxes initialised uniformly in logit space     recall 1.00 / 1.00 / 1.00, precision 1.00 / 1.00 / 1.00
    #   broken, num_groups ignored (one-to-one over all G*Q queries): recall 0.333 in all 20 runs (one group
    #     learns each object), precision 1.00
    #   broken, IA-BCE without the negatives' term: recall 1.00, precision 0.43 / 0.57 / 0.68
    #   broken, t not detached: still fits (1.00 / 1.00), the gradient tests catch it.
    # The gates (recall 0.9, precision 0.8) sit well between the valid runs and the broken ones.
    assert recall >= 0.9, (f"after training with your lw_detr_loss, each group of queries detects only {recall:.0%} of "
                           "the objects on its own (expected at least 90%): with Group DETR every group is matched "
                           "one-to-one to all objects (Hungarian per group), so every group learns a full set")
    assert precision >= 0.8, (f"only {precision:.0%} of the confident queries detect an object: unmatched queries "
                              "should be pushed towards score 0 by the negatives' term of ia_bce_loss")


# == speed ================================================================================================
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_speed_counts_are_ints(sub):
    """pyramid_tokens, dense_attention_macs and deformable_attention_macs return Python ints."""
    for name, value in (("pyramid_tokens", sub.pyramid_tokens(64, 48)),
                        ("dense_attention_macs", sub.dense_attention_macs(10, 20, 8)),
                        ("deformable_attention_macs", sub.deformable_attention_macs(10, 20, 8))):
        assert isinstance(value, int) and not isinstance(value, bool), \
            f"{name} should return a Python int, not {type(value).__name__}"


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_speed_pyramid_tokens_hand_computed(sub):
    """Pixels of a pyramid, rounding up, with the default strides and with others."""
    # 100 x 60: ceil -> 13*8 + 7*4 + 4*2 + 2*1 = 104 + 28 + 8 + 2
    assert sub.pyramid_tokens(100, 60) == 142, \
        "pyramid_tokens(100, 60) with strides (8, 16, 32, 64): each level has ceil(h/s) * ceil(w/s) pixels"
    # strides (4, 8): 25*15 + 13*8
    assert sub.pyramid_tokens(100, 60, strides=(4, 8)) == 479, "pyramid_tokens should use the strides it is given"


@pytest.mark.points(2)
@pytest.mark.kind("value")
def test_speed_dense_macs_hand_computed(sub):
    """Dense attention: 2 Nq d^2 + 2 Nk d^2 + 2 Nq Nk d, for self- and cross-attention."""
    # 300 queries, 1000 keys, d = 64: 2*300*4096 + 2*1000*4096 + 2*300*1000*64
    assert sub.dense_attention_macs(300, 1000, 64) == 49_049_600, \
        "dense_attention_macs(300, 1000, 64): projections (2 Nq d^2 + 2 Nk d^2) and the two products (2 Nq Nk d)"
    # self-attention, N = 50, d = 16: 4*50*256 + 2*2500*16
    assert sub.dense_attention_macs(50, 50, 16) == 131_200, "dense_attention_macs(50, 50, 16) (self-attention)"


@pytest.mark.points(4)
@pytest.mark.kind("value")
def test_speed_deformable_macs_hand_computed(sub):
    """Deformable attention: Nv d^2 + Nq d^2 + 3 Nq d H L P + 5 Nq L P d, defaults and others."""
    # defaults (8 heads, 4 levels, 4 points), 100 queries and values, d = 32: 2*100*1024 + 3*100*32*128 + 5*100*16*32
    assert sub.deformable_attention_macs(100, 100, 32) == 1_689_600, \
        "deformable_attention_macs(100, 100, 32) with the default 8 heads, 4 levels and 4 points"
    # 300 queries, 1000 values, d = 64, 2 heads, 3 levels, 5 points:
    # 1000*4096 + 300*4096 + 3*300*64*30 + 5*300*15*64 = 4_096_000 + 1_228_800 + 1_728_000 + 1_440_000
    assert sub.deformable_attention_macs(300, 1000, 64, n_heads=2, n_levels=3, n_points=5) == 8_492_800, \
        ("deformable_attention_macs(300, 1000, 64, n_heads=2, n_levels=3, n_points=5): value_proj on the values, "
         "output_proj on the queries, 3 numbers per point from each query, 5 multiply-adds per sampled channel")

