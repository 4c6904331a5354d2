"""The kit's offline data sets: shapes, determinism and the statistics weeks rely on."""

import math

import pytest
import torch

from autograder.kit import data
from autograder.kit.probes import knn_accuracy


def test_digits_split_is_the_module_1_split():
    split = data.digits()
    assert split.x_train.shape == (1297, 1, 8, 8) and split.x_test.shape == (500, 1, 8, 8)
    assert split.x_train.min() == 0 and split.x_train.max() == 1
    from sklearn.datasets import load_digits

    raw = load_digits()
    order = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    assert torch.equal(split.y_test, torch.tensor(raw.target)[order[-500:]])
    assert torch.equal(split.x_train[0, 0] * 16, torch.tensor(raw.images[int(order[0])], dtype=torch.float32))
    assert not torch.equal(data.digits(seed=1).y_test, split.y_test)


def test_shifted_digits_hold_each_digit_whole_somewhere_on_the_canvas():
    plain, shifted = data.digits(), data.shifted_digits(canvas=16)
    assert shifted.x_train.shape == (1297, 1, 16, 16) and torch.equal(shifted.y_train, plain.y_train)
    for i in range(0, 1297, 97):
        windows = shifted.x_train[i, 0].unfold(0, 8, 1).unfold(1, 8, 1)  # [9, 9, 8, 8]
        assert (windows == plain.x_train[i, 0]).flatten(2).all(2).any(), f"digit {i} is not whole on its canvas"
        assert shifted.x_train[i].sum() == pytest.approx(float(plain.x_train[i].sum()))
    assert 0.4 < knn_accuracy(shifted.x_train.flatten(1), shifted.y_train, shifted.x_test.flatten(1),
                              shifted.y_test) < 0.8


def test_shapes_boxes_are_mask_extents_and_objects_stay_apart():
    from torchvision.ops import masks_to_boxes

    batch = data.shapes(30, seed=3, kinds=("square", "disc", "triangle"), objects=(1, 4))
    assert batch.images.shape == (30, 3, 32, 32)
    for i in range(len(batch)):
        masks, boxes = batch.masks[i], batch.boxes[i]
        assert len(masks) == len(boxes) == len(batch.labels[i]) == len(batch.keypoints[i]) >= 1
        assert torch.equal(masks_to_boxes(masks) + torch.tensor([0, 0, 1, 1.0]), boxes)
        assert masks.sum(0).max() == 1, "masks overlap"
        area = masks.sum((1, 2)).float()
        box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        expected = torch.tensor([1.0, math.pi / 4, 0.5])[batch.labels[i]]  # square, disc, triangle in their box
        assert ((area / box_area - expected).abs() < 0.2).all(), "each mask fills its box as its shape should"
        lit = batch.images[i].amax(0) > 0
        assert torch.equal(lit, masks.any(0)), "pixels are lit exactly where an object is"
        kp = batch.keypoints[i]
        # a sharp corner may lie up to a pixel outside the pixels its mask covers
        assert (kp[..., 0] >= boxes[:, None, 0] - 1).all() and (kp[..., 0] <= boxes[:, None, 2] + 1).all()
        assert (kp[..., 1] >= boxes[:, None, 1] - 1).all() and (kp[..., 1] <= boxes[:, None, 3] + 1).all()
        cxcywh = batch.normalized_boxes(i)
        assert ((cxcywh > 0) & (cxcywh <= 1)).all()
    assert {int(l) for ls in batch.labels for l in ls} == {0, 1, 2}
    again = data.shapes(30, seed=3, kinds=("square", "disc", "triangle"), objects=(1, 4))
    assert torch.equal(again.images, batch.images)


def test_shapes_reject_what_does_not_fit():
    with pytest.raises(ValueError, match="kinds"):
        data.shapes(1, kinds=("hexagon",))
    with pytest.raises(ValueError, match="does not fit"):
        data.shapes(1, size=8, object_size=(6, 12))


def test_moving_objects_move_at_constant_speed_and_match_their_boxes():
    clips = data.moving_objects(12, seed=5, frames=6, objects=2)
    assert clips.video.shape == (12, 6, 1, 16, 16) and clips.boxes.shape == (12, 6, 2, 4)
    assert all(sorted(row.tolist()) == [0, 1] for row in clips.ids)
    b = clips.boxes
    size = b[..., 2] - b[..., 0]
    assert (size == size[:, :1]).all(), "objects keep their size"
    speed = (b[:, 1:, :, :2] - b[:, :-1, :, :2]).abs()
    assert (speed <= 2).all(), "at most 2 pixels a frame along each axis (less at a reflection)"
    assert (speed.sum((1, 3)) > 0).all(), "every object moves"
    for i in range(12):
        for t in range(6):
            top = int(clips.ids[i].argmax())
            x0, y0, x1, y1 = (int(v) for v in b[i, t, top])
            assert (clips.video[i, t, 0, y0:y1, x0:x1] > 0).all(), "the top object is drawn inside its box"
            lit = clips.video[i, t, 0] > 0
            inside = torch.zeros_like(lit)
            for j in range(2):
                x0, y0, x1, y1 = (int(v) for v in b[i, t, j])
                inside[y0:y1, x0:x1] = True
            assert torch.equal(lit, inside), "nothing is lit outside the boxes"


def test_nuisance_views_keep_the_class_signal_and_hide_it_from_raw_knn():
    ds = data.NuisanceGaussians(seed=0)
    x, y = ds.sample(2000, seed=1)
    xt, yt = ds.sample(1000, seed=2)
    v1, v2 = ds.views(x, seed=3)
    assert x.shape == (2000, 32) and torch.allclose(ds.signal(v1), ds.signal(x), atol=1e-4)
    changed = ((v1 - v2) @ ds.mixing).abs() > 1e-4
    assert (changed.sum(1) <= 28 // 2 * 2).all() and changed.any(1).all(), "views differ in nuisance only"
    # raw kNN (measured 0.38) and kNN on the signal coordinates (0.92): the gap a method must close
    assert 0.3 < knn_accuracy(x, y, xt, yt) < 0.46
    assert knn_accuracy(ds.signal(x), y, ds.signal(xt), yt) > 0.88
    assert torch.equal(data.NuisanceGaussians(seed=0).mixing, ds.mixing)
    assert torch.allclose(ds.mixing @ ds.mixing.T, torch.eye(32), atol=1e-5)


def test_gaussian_mixture_points_gather_around_their_centres():
    x, labels, centres = data.gaussian_mixture(5000, seed=1, clusters=4, dim=3)
    for k in range(4):
        mean = x[labels == k].mean(0)
        assert (mean - centres[k]).norm() < 0.15  # 1250 unit-variance points: the mean's std is ~0.05
    assert x.shape == (5000, 3) and labels.unique().tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("rho, dim", [(0.9, 1), (0.5, 4)])
def test_correlated_gaussians_have_the_stated_correlation_and_mutual_information(rho, dim):
    x, y = data.correlated_gaussians(40_000, dim, rho, seed=2)
    corr = ((x - x.mean(0)) * (y - y.mean(0))).mean(0) / (x.std(0) * y.std(0))
    assert torch.allclose(corr, torch.full((dim,), rho, dtype=torch.float64), atol=0.02)  # ~5 std of the estimate
    joint = torch.cov(torch.cat([x, y], 1).T)
    empirical = 0.5 * float(torch.logdet(joint[:dim, :dim]) + torch.logdet(joint[dim:, dim:]) - torch.logdet(joint))
    assert data.gaussian_mi(dim, rho) == pytest.approx(-dim / 2 * math.log(1 - rho ** 2))
    assert empirical == pytest.approx(data.gaussian_mi(dim, rho), rel=0.05)


def test_factors_are_full_factorial_and_every_image_is_distinct():
    f = data.factors()
    assert f.images.shape == (360, 1, 32, 32) and f.sizes == (3, 6, 5, 4)
    assert len({tuple(row) for row in f.factors.tolist()}) == 360
    flat = f.images.flatten(1)
    assert (flat.sum(1) >= 5).all(), "every shape is visible"
    assert ((flat >= 0) & (flat <= 1)).all()
    assert len(torch.unique(flat, dim=0)) == 360, "no two images are the same"
    border = f.images[..., 0, :].sum() + f.images[..., -1, :].sum() + f.images[..., :, 0].sum() + f.images[..., :, -1].sum()
    assert border == 0, "every shape fits inside the image"
    scale = f.factors[:, 1]
    assert flat[scale == 5].sum(1).mean() > flat[scale == 0].sum(1).mean(), "larger scales cover more pixels"


def test_corruptions_follow_their_closed_forms_and_grow_with_severity():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, 16, 16, generator=g)
    grey = images[:, :1].expand(8, 3, 16, 16)
    assert torch.allclose(data.corrupt(grey, "brightness", 3), (grey + 0.15).clamp(0, 1))
    colour = torch.tensor([0.2, 0.4, 0.5]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(data.corrupt(colour, "brightness", 5), colour * 0.8 / 0.5)  # V 0.5 -> 0.8, hue kept
    means = images.mean((-2, -1), keepdim=True)
    assert torch.allclose(data.corrupt(images, "contrast", 5), (images - means) * 0.15 + means)
    hit = (data.corrupt(images, "impulse_noise", 5, seed=1) != images).double().mean()
    assert float(hit) == pytest.approx(0.07, abs=0.01)
    for name in data.CORRUPTIONS:
        change = [float((data.corrupt(images, name, s) - images).abs().mean()) for s in range(1, 6)]
        assert change == sorted(change), f"{name} does not grow with severity: {change}"
        assert torch.equal(data.corrupt(images, name, 2, seed=4), data.corrupt(images, name, 2, seed=4))
    with pytest.raises(ValueError, match="severity"):
        data.corrupt(images, "contrast", 6)
    with pytest.raises(ValueError, match="unknown corruption"):
        data.corrupt(images, "fog", 1)
