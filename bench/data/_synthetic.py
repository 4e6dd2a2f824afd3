"""`synthetic`: clustered Gaussian data with rare hard clusters, for tests (generated in memory, never cached).

Each class owns `clusters_per_class` easy clusters (unit spread, centers far apart) and one hard cluster: it
sits between its class's first easy center and another class's one, with a wider spread, so its points lie
near the decision boundary. Hard clusters draw only `hard_fraction` of the samples, so a uniform sampler
rarely sees them: the situation adaptive samplers are meant for. Deterministic in `seed`.
"""
from __future__ import annotations

import torch

from ._tensordata import TASKS, TensorData
from ._spec import dataset

__all__ = ["synthetic"]


def _check(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@dataset("none", description="clustered Gaussians with rare hard clusters, generated in memory (tests)", cached=False)
def synthetic(n: int = 2000, d: int = 16, classes: int = 4, seed: int = 0, *, n_test: int | None = None,
              clusters_per_class: int = 2, hard_fraction: float = 0.1, spread: float = 1.0,
              cat_fields: int = 0, cardinality: int = 10, task: str = "multiclass") -> TensorData:
    """Generate `n` train and `n_test` (default `n // 4`) test rows of `d` dense features.

    `task`: "multiclass" (int64 labels in `[0, classes)`), "binary" (needs `classes=2`; float 0/1 labels) or
    "regression" (float targets: a per-cluster linear function of x plus noise). `cat_fields > 0` adds
    categorical fields of `cardinality` codes that agree with the cluster 70 % of the time.
    """
    _check("n", n, 1), _check("d", d, 1), _check("classes", classes, 2), _check("cat_fields", cat_fields, 0)
    _check("clusters_per_class", clusters_per_class, 1), _check("cardinality", cardinality, 1)
    n_test = n // 4 if n_test is None else _check("n_test", n_test, 1)
    if not 0.0 <= hard_fraction < 1.0:
        raise ValueError(f"hard_fraction must be in [0, 1), got {hard_fraction}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "binary" and classes != 2:
        raise ValueError(f"task='binary' needs classes=2, got classes={classes}")
    gen = torch.Generator().manual_seed(seed)
    easy = torch.randn(classes, clusters_per_class, d, generator=gen) * 3.0 * spread
    other = (torch.arange(classes) + 1) % classes
    hard = 0.5 * (easy[:, 0] + easy[other, 0]) + 0.3 * torch.randn(classes, d, generator=gen)
    centers = torch.cat([easy.reshape(-1, d), hard])  # easy clusters first, then one hard cluster per class
    stds = torch.cat([torch.full((classes * clusters_per_class,), spread), torch.full((classes,), 2.0 * spread)])
    labels = torch.cat([torch.arange(classes).repeat_interleave(clusters_per_class), torch.arange(classes)])
    n_easy = classes * clusters_per_class
    weights = torch.cat([torch.full((n_easy,), (1 - hard_fraction) / n_easy),
                         torch.full((classes,), hard_fraction / classes)])
    slopes = torch.randn(len(centers), d, generator=gen) / d**0.5

    total = n + n_test
    cluster = torch.multinomial(weights, total, replacement=True, generator=gen)
    x = centers[cluster] + stds[cluster, None] * torch.randn(total, d, generator=gen)
    if task == "regression":
        y = (x * slopes[cluster]).sum(1) + 0.1 * torch.randn(total, generator=gen)
    elif task == "binary":
        y = labels[cluster].float()
    else:
        y = labels[cluster]
    field_shift = torch.arange(cat_fields) * 7
    agree = torch.rand(total, cat_fields, generator=gen) < 0.7
    noise = torch.randint(0, cardinality, (total, cat_fields), generator=gen)
    x_cat = torch.where(agree, (cluster[:, None] + field_shift) % cardinality, noise)
    return TensorData(
        name="synthetic", task=task,
        x_num_train=x[:n].contiguous(), x_cat_train=x_cat[:n].contiguous(), y_train=y[:n].contiguous(),
        x_num_test=x[n:].contiguous(), x_cat_test=x_cat[n:].contiguous(), y_test=y[n:].contiguous(),
        num_classes=classes if task == "multiclass" else 1, cardinalities=[cardinality] * cat_fields,
    )
