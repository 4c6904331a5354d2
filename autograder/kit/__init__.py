"""The week kit: what two weeks share, written once.

Hidden suites, public self-checks, references and student notebooks import from here:

- `compare`: `assert_close` and `assert_shape`, whose failure messages teach;
- `seeding`: `setup(seed, threads)`, the one place that sets torch's seed and thread count;
- `tensors`: seeded random tensors (`randn`);
- `tolerances`: named tolerances, each with the reason for its size;
- `weights`: trusted modules with random, non-trivial weights (`randomize`), and strict
  weight loading with the names and shapes in the message (`check_names`, `load_same_weights`);
- `probes`: trusted evaluation of features (DINO-style weighted kNN, a linear probe that
  matches scikit-learn's `LogisticRegression`);
- `data`: offline data sets, each deterministic from a seed (see `autograder.kit.data`).

Nothing here imports timm, torchvision or scikit-learn at import time: a worker or a
notebook pays only for what it uses.
"""

from autograder.kit.compare import assert_close, assert_shape
from autograder.kit.seeding import setup
from autograder.kit.tensors import randn
from autograder.kit.tolerances import F32_VS_TRUSTED, F64_VS_TRUSTED, Tolerance
from autograder.kit.weights import check_names, load_same_weights, randomize

__all__ = ["assert_close", "assert_shape", "setup", "randn", "Tolerance", "F32_VS_TRUSTED", "F64_VS_TRUSTED",
           "check_names", "load_same_weights", "randomize"]
