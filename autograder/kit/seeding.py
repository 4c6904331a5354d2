"""Seeds and threads, set in one place for every suite, reference and notebook.

Tiny models on a 2-core CPU gain nothing from more threads, and more threads than cores
made one training test 5 to 8 times slower (6 s became 40-50 s) on a busy machine.
"""

from __future__ import annotations

import random

import torch

DEFAULT_THREADS = 1


def setup(seed: int = 0, threads: int = DEFAULT_THREADS) -> torch.Generator:
    """Seed Python's and torch's global generators, set torch's thread count, and return a
    fresh `torch.Generator` seeded with `seed` for code that takes one explicitly."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    random.seed(seed)
    torch.manual_seed(seed)
    return generator(seed)


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with `seed`: the same numbers on every machine."""
    return torch.Generator().manual_seed(int(seed))
