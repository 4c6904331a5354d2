"""Offline data sets for notebooks and hidden suites alike: each is made by one generator,
deterministic from its seed, with nothing downloaded.

| generator | what it gives | used for |
| --- | --- | --- |
| `digits` | scikit-learn's 8x8 digits, a fixed train/test split | classifiers, probes, MIM |
| `shifted_digits` | the digits at random offsets on a larger canvas | translation-invariant SSL |
| `shapes` | squares, discs and triangles with boxes, classes, masks, keypoints | detection, segmentation, pose |
| `moving_objects` | squares moving over frames, with identities | tracking, video |
| `NuisanceGaussians` | class signal hidden among nuisance dimensions, two augmented views | SSL training tests |
| `gaussian_mixture` | clusters with known labels | clustering, prototypes |
| `correlated_gaussians` | pairs with known mutual information | MI estimators |
| `factors` | every combination of shape, scale, rotation and position | disentanglement |
| `corrupt` | CIFAR-10-C-style corruptions at severities 1-5 | robustness |
"""

from autograder.kit.data.corruptions import CORRUPTIONS, corrupt
from autograder.kit.data.digits import Split, digits, shifted_digits
from autograder.kit.data.factors import Factors, factors
from autograder.kit.data.gaussians import correlated_gaussians, gaussian_mi, gaussian_mixture
from autograder.kit.data.moving import MovingObjects, moving_objects
from autograder.kit.data.nuisance import NuisanceGaussians
from autograder.kit.data.shapes import Shapes, shapes

__all__ = ["CORRUPTIONS", "corrupt", "Split", "digits", "shifted_digits", "Factors", "factors",
           "correlated_gaussians", "gaussian_mi", "gaussian_mixture", "MovingObjects", "moving_objects",
           "NuisanceGaussians", "Shapes", "shapes"]
