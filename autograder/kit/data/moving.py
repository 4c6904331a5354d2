"""Short videos of squares that move and bounce off the borders, each keeping its identity:
data for tracking (who is where in every frame) and for video models."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from autograder.kit.seeding import generator


@dataclass(frozen=True)
class MovingObjects:
    video: torch.Tensor   # [n, frames, 1, size, size] in [0, 1]
    boxes: torch.Tensor   # [n, frames, objects, 4] float32, (x0, y0, x1, y1) in pixels, x1 and y1 exclusive
    ids: torch.Tensor     # [n, objects] long: object j of every frame is the same object, with identity ids[:, j]

    def __len__(self) -> int:
        return len(self.video)


def moving_objects(n: int, seed: int = 0, frames: int = 4, size: int = 16, objects: int = 2,
                   object_size: tuple[int, int] = (3, 5), max_speed: int = 2) -> MovingObjects:
    """`n` videos of `frames` frames: `objects` squares of `object_size` pixels, each with its own
    brightness in [0.4, 1] and a constant integer velocity of at most `max_speed` pixels per
    frame along each axis (never standing still), reflected at the borders. Where two squares
    cross, the one with the higher identity is drawn on top; boxes are the whole squares."""
    if not 1 <= object_size[0] <= object_size[1] < size:
        raise ValueError(f"object_size {object_size} does not fit a {size}-pixel frame")
    g = generator(seed)
    video = torch.zeros(n, frames, 1, size, size)
    boxes = torch.zeros(n, frames, objects, 4)
    ids = torch.stack([torch.randperm(objects, generator=g) for _ in range(n)]) if n else torch.zeros(0, objects)
    for i in range(n):
        for j in sorted(range(objects), key=lambda j: int(ids[i, j])):
            s = int(torch.randint(object_size[0], object_size[1] + 1, (), generator=g))
            pos = torch.randint(0, size - s + 1, (2,), generator=g)
            velocity = torch.zeros(2, dtype=torch.long)
            while not velocity.any():
                velocity = torch.randint(-max_speed, max_speed + 1, (2,), generator=g)
            brightness = float(0.4 + 0.6 * torch.rand((), generator=g))
            for t in range(frames):
                x, y = int(pos[0]), int(pos[1])
                video[i, t, 0, y:y + s, x:x + s] = brightness
                boxes[i, t, j] = torch.tensor([x, y, x + s, y + s], dtype=torch.float32)
                pos, velocity = _step(pos, velocity, size - s)
    return MovingObjects(video, boxes, ids.long())


def _step(pos: torch.Tensor, velocity: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame of motion, reflecting off 0 and `limit` on each axis."""
    pos, velocity = pos + velocity, velocity.clone()
    for axis in range(2):
        if pos[axis] < 0:
            pos[axis], velocity[axis] = -pos[axis], -velocity[axis]
        elif pos[axis] > limit:
            pos[axis], velocity[axis] = 2 * limit - pos[axis], -velocity[axis]
    return pos.clamp(0, limit), velocity
