"""Images of squares, discs and triangles, with what detection, segmentation and pose need:
a box, a class, a mask and three keypoints per object.

Objects never overlap (their boxes keep a pixel apart), so every mask is whole and every
keypoint visible. Boxes are pixel corners (x0, y0, x1, y1) with x1 and y1 exclusive, the
extent of the mask: `torchvision.ops.masks_to_boxes(mask) + [0, 0, 1, 1]`. Keypoints are
(x, y, visibility) in pixel coordinates, visibility 2 as in COCO:
square: top-left, top-right and bottom-right corners; disc: its top, right and bottom
points; triangle (apex up): apex, bottom-left and bottom-right corners.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from autograder.kit.seeding import generator

KINDS = ("square", "disc", "triangle")


@dataclass(frozen=True)
class Shapes:
    images: torch.Tensor            # [n, 3, size, size] in [0, 1]
    boxes: list[torch.Tensor]       # per image [k, 4] float32, (x0, y0, x1, y1) in pixels
    labels: list[torch.Tensor]      # per image [k] long, an index into `kinds`
    masks: list[torch.Tensor]       # per image [k, size, size] bool
    keypoints: list[torch.Tensor]   # per image [k, 3, 3] float32, (x, y, visibility)
    kinds: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    def normalized_boxes(self, i: int) -> torch.Tensor:
        """Image i's boxes as DETR predicts them: (cx, cy, w, h) divided by the image size."""
        b, size = self.boxes[i], self.images.shape[-1]
        return torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                            b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=1) / size


def shapes(n: int, seed: int = 0, size: int = 32, objects: tuple[int, int] = (1, 3),
           kinds: tuple[str, ...] = ("square", "disc"), object_size: tuple[int, int] = (6, 12),
           noise: float = 0.0) -> Shapes:
    """`n` images of `size` x `size` pixels with `objects[0]` to `objects[1]` objects each, of
    the given `kinds`, each `object_size` pixels across, in a random bright colour on black
    (plus Gaussian pixel noise of std `noise`, clipped to [0, 1])."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be taken from {KINDS}, not {kinds}")
    if not 1 <= object_size[0] <= object_size[1] < size:
        raise ValueError(f"object_size {object_size} does not fit a {size}-pixel image")
    g = generator(seed)
    images = torch.zeros(n, 3, size, size)
    out: dict[str, list[torch.Tensor]] = {"boxes": [], "labels": [], "masks": [], "keypoints": []}
    for i in range(n):
        count = int(torch.randint(objects[0], objects[1] + 1, (), generator=g))
        placed: list[tuple[int, int, int]] = []
        items = []
        for _ in range(100 * count):
            if len(placed) == count:
                break
            s = int(torch.randint(object_size[0], object_size[1] + 1, (), generator=g))
            x0, y0 = (int(v) for v in torch.randint(0, size - s + 1, (2,), generator=g))
            if any(x0 < px + ps + 1 and px < x0 + s + 1 and y0 < py + ps + 1 and py < y0 + s + 1
                   for px, py, ps in placed):
                continue
            label = int(torch.randint(len(kinds), (), generator=g))
            colour = 0.5 + 0.5 * torch.rand(3, generator=g)
            mask, points = _draw(kinds[label], x0, y0, s, size)
            images[i] = torch.where(mask, colour[:, None, None], images[i])
            placed.append((x0, y0, s))
            items.append((label, mask, points))
        masks = torch.stack([m for _, m, _ in items])
        out["masks"].append(masks)
        out["labels"].append(torch.tensor([label for label, _, _ in items], dtype=torch.long))
        out["keypoints"].append(torch.stack([p for _, _, p in items]))
        out["boxes"].append(torch.stack([_extent(m) for m in masks]))
    if noise > 0:
        images = (images + noise * torch.randn(images.shape, generator=g)).clamp(0, 1)
    return Shapes(images, kinds=tuple(kinds), **out)


def _draw(kind: str, x0: int, y0: int, s: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The object's mask (pixel centres inside it) and its three keypoints."""
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    visible = 2.0
    points: list[tuple[float, float]]
    if kind == "square":
        mask = (xs > x0) & (xs < x0 + s) & (ys > y0) & (ys < y0 + s)
        points = [(x0, y0), (x0 + s, y0), (x0 + s, y0 + s)]
    elif kind == "disc":
        cx, cy, r = x0 + s / 2, y0 + s / 2, s / 2
        mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
        points = [(cx, y0), (x0 + s, cy), (cx, y0 + s)]
    else:
        apex, left, right = (x0 + s / 2, y0), (x0, y0 + s), (x0 + s, y0 + s)
        mask = (ys < y0 + s) & (_side(apex, left, xs, ys) <= 0) & (_side(right, apex, xs, ys) <= 0)
        points = [apex, left, right]
    return mask, torch.tensor([[x, y, visible] for x, y in points], dtype=torch.float32)


def _side(a: tuple[float, float], b: tuple[float, float], xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Which side of the line from a to b each point is on: negative inside a triangle whose
    corners are listed clockwise on screen (y grows downwards)."""
    return (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0])


def _extent(mask: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
