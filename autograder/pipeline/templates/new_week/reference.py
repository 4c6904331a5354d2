# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # {{title}}
#
# Sources: {{sources}}.
#
# TODO(author): the lecture. What problem the papers solve, the idea in words, the equations,
# and the choices their code makes that the grader will hold students to. One idea per cell;
# a figure where a picture says more.

# %% [markdown] boilerplate="how_this_notebook_works"
# (the build writes this cell from autograder/pipeline/templates/how_this_notebook_works.md)

# %% [markdown]
# ## The contract with the grader
#
# TODO(author): every detail a correct solution must share with the trusted implementation
# (names, layouts, eps, which axis), one row each.
#
# | detail | what to do |
# | --- | --- |
# | `standardize` | biased variance over the last axis; `eps` inside the square root |

# %%
import torch
import torch.nn.functional as F
from torch import nn

# %% tags=["demo"]
from autograder.kit import setup
from autograder.selfcheck import check

setup(seed=0)

# %% [markdown]
# ## Part 1 — Standardize the last axis
#
# TODO(author): replace this placeholder part with the week's first idea. It shows the shape
# of a part: the math, the function with its solution between the markers, the self-check.
#
# $$y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad \mu, \sigma^2 \text{ over the last axis.}$$

# %%
def standardize(x, eps=1e-5):
    """Zero mean and unit variance over the last axis: [..., D] -> [..., D]."""
    ### BEGIN SOLUTION
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)
    ### END SOLUTION


# %% tags=["demo"]
check("{{week}}", "standardize")
