"""The data set for self-supervised training tests: a class signal hidden among nuisance
dimensions, and an augmentation that changes the nuisance but never the class.

Each point is a class centre (drawn N(0, centre_scale² I)) in a `signal_dim`-dimensional space plus within-class noise,
concatenated with `nuisance_dim` coordinates of large Gaussian noise, and mixed by a fixed
random orthogonal matrix so that no coordinate of x is pure signal. A view resamples half
of the nuisance coordinates (a different half per point). Raw features are poor for kNN
(the nuisance dominates distances); a method that learns what two views share recovers the
class signal, and one that collapses does not.
"""

from __future__ import annotations

import torch

from autograder.kit.seeding import generator


class NuisanceGaussians:
    def __init__(self, seed: int = 0, classes: int = 10, signal_dim: int = 4, nuisance_dim: int = 28,
                 nuisance_std: float = 3.0, centre_scale: float = 2.0, class_std: float = 0.5):
        g = generator(seed)
        self.classes, self.signal_dim, self.nuisance_dim = classes, signal_dim, nuisance_dim
        self.nuisance_std, self.class_std = nuisance_std, class_std
        self.centres = centre_scale * torch.randn(classes, signal_dim, generator=g)
        self.mixing, _ = torch.linalg.qr(torch.randn(self.dim, self.dim, generator=g))

    @property
    def dim(self) -> int:
        return self.signal_dim + self.nuisance_dim

    def sample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` points [n, dim] (float32) and their classes [n]."""
        g = generator(seed)
        labels = torch.randint(self.classes, (n,), generator=g)
        signal = self.centres[labels] + self.class_std * torch.randn(n, self.signal_dim, generator=g)
        nuisance = self.nuisance_std * torch.randn(n, self.nuisance_dim, generator=g)
        return torch.cat([signal, nuisance], 1) @ self.mixing.T, labels

    def augment(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """A view of each point: half its nuisance coordinates drawn afresh, the signal kept."""
        latent = x @ self.mixing
        n, resampled = len(x), self.nuisance_dim // 2
        which = torch.rand(n, self.nuisance_dim, generator=g).argsort(1)[:, :resampled] + self.signal_dim
        fresh = self.nuisance_std * torch.randn(n, resampled, generator=g)
        latent = latent.scatter(1, which, fresh)
        return latent @ self.mixing.T

    def views(self, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent views of every point."""
        g = generator(seed)
        return self.augment(x, g), self.augment(x, g)

    def signal(self, x: torch.Tensor) -> torch.Tensor:
        """The class-signal coordinates of x (what an ideal encoder keeps)."""
        return (x @ self.mixing)[:, : self.signal_dim]
