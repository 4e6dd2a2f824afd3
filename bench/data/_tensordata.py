"""`TensorData`: a dataset held as whole tensors (train and test), the one type every loader returns."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

__all__ = ["TensorData", "TASKS"]

TASKS = ("binary", "multiclass", "regression")
_CHECK_ROWS = 1 << 20  # rows per block of the code-range check


@dataclass(repr=False)
class TensorData:
    """A dataset as tensors, validated on construction.

    - `x_num_*`: float32 `[N, ...]` dense features (`[N, d]` tables, `[N, C, H, W]` images); `[N, 0]` if none.
    - `x_cat_*`: int64 (or int32: the memory-mapped click logs) `[N, F]` categorical codes, column `j` in `[0, cardinalities[j])`; `[N, 0]` if none.
    - `y_*`: int64 class ids (multiclass), float32 0/1 (binary), float32 (regression); shape `[N]`.
    - `num_classes`: the number of classes for multiclass, 1 for binary and regression.
    """

    name: str
    task: str
    x_num_train: torch.Tensor
    x_cat_train: torch.Tensor
    y_train: torch.Tensor
    x_num_test: torch.Tensor
    x_cat_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    cardinalities: list[int]

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        self.cardinalities = [int(c) for c in self.cardinalities]
        if any(c < 1 for c in self.cardinalities):
            raise ValueError(f"cardinalities must be >= 1, got {self.cardinalities}")
        if self.task == "multiclass" and self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 for multiclass, got {self.num_classes}")
        if self.task != "multiclass" and self.num_classes != 1:
            raise ValueError(f"num_classes must be 1 for task {self.task!r}, got {self.num_classes}")
        for split in ("train", "test"):
            self._check_split(split)
        if self.x_num_train.shape[1:] != self.x_num_test.shape[1:]:
            raise ValueError(
                f"x_num_train and x_num_test differ per sample: {tuple(self.x_num_train.shape[1:])} "
                f"vs {tuple(self.x_num_test.shape[1:])}"
            )

    def _check_split(self, split: str) -> None:
        x_num, x_cat, y = (getattr(self, f"{k}_{split}") for k in ("x_num", "x_cat", "y"))
        n = y.shape[0]
        if y.dim() != 1:
            raise ValueError(f"y_{split} must be 1-D, got shape {tuple(y.shape)}")
        if x_num.dtype != torch.float32 or x_num.dim() < 2 or x_num.shape[0] != n:
            raise ValueError(f"x_num_{split} must be float32 [{n}, ...], got {x_num.dtype} {tuple(x_num.shape)}")
        fields = len(self.cardinalities)
        if x_cat.dtype not in (torch.int64, torch.int32) or tuple(x_cat.shape) != (n, fields):
            raise ValueError(
                f"x_cat_{split} must be int64 (or int32) [{n}, {fields}], got {x_cat.dtype} {tuple(x_cat.shape)}"
            )
        if fields and n:
            top = torch.tensor(self.cardinalities, device=x_cat.device)
            for start in range(0, n, _CHECK_ROWS):  # in blocks: a memory-mapped table is never copied whole
                block = x_cat[start : start + _CHECK_ROWS]
                if bool((block.amin(dim=0) < 0).any()) or bool((block.amax(dim=0) >= top).any()):
                    raise ValueError(f"x_cat_{split} has codes outside [0, cardinality) for {self.cardinalities}")
        want = torch.int64 if self.task == "multiclass" else torch.float32
        if y.dtype != want:
            raise ValueError(f"y_{split} must be {want} for task {self.task!r}, got {y.dtype}")
        if self.task == "multiclass" and n and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"y_{split} has labels outside [0, {self.num_classes})")

    @property
    def num_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.y_test.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape of `x_num` (`(d,)` for tables, `(C, H, W)` for images, `(0,)` if none)."""
        return tuple(self.x_num_train.shape[1:])

    @property
    def num_outputs(self) -> int:
        """Width of the model's output: `num_classes` for multiclass, else 1."""
        return self.num_classes if self.task == "multiclass" else 1

    def subset(self, n_train: int, n_test: int | None = None, seed: int = 0) -> TensorData:
        """A random subset of `n_train` train and `n_test` test rows (all test rows if None).

        Deterministic in `seed` (a local generator); not stratified. Sizes larger than a split are clipped to it.
        """
        if n_train < 1 or (n_test is not None and n_test < 1):
            raise ValueError(f"n_train and n_test must be >= 1, got {n_train}, {n_test}")
        gen = torch.Generator().manual_seed(seed)
        tr = torch.randperm(self.num_train, generator=gen)[: min(n_train, self.num_train)]
        te = torch.randperm(self.num_test, generator=gen)[: min(n_test or self.num_test, self.num_test)]
        tr, te = tr.sort().values, te.sort().values
        return replace(
            self,
            x_num_train=self.x_num_train[tr], x_cat_train=self.x_cat_train[tr], y_train=self.y_train[tr],
            x_num_test=self.x_num_test[te], x_cat_test=self.x_cat_test[te], y_test=self.y_test[te],
        )

    @staticmethod
    def check_label_noise(rate: float) -> float:
        """Return `rate` if it is an allowed label-noise fraction, a number in [0, 1); else raise ValueError."""
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"label_noise must be a number in [0, 1), got {rate!r}")
        return rate

    def with_label_noise(self, rate: float, seed: int = 0) -> TensorData:
        """A copy whose training labels carry symmetric noise; the test labels stay clean.

        Exactly `round(rate * num_train)` training items, drawn without replacement, get a wrong label: for
        multiclass one drawn uniformly from the other classes, for binary the flipped one. Deterministic in `seed`
        (a local generator): the same items and labels for every caller with the same seed. `rate` 0 returns
        `self`. Regression has no labels to corrupt (ValueError).
        """
        if TensorData.check_label_noise(rate) == 0:
            return self
        if self.task == "regression":
            raise ValueError(f"label_noise needs a binary or multiclass task, {self.name!r} is regression")
        gen = torch.Generator().manual_seed(seed)
        noisy = torch.randperm(self.num_train, generator=gen)[: round(rate * self.num_train)]
        y = self.y_train.clone()
        if self.task == "binary":
            y[noisy] = 1 - y[noisy]
        else:  # a shift by 1..C-1 classes: uniform over the other classes
            shift = torch.randint(1, self.num_classes, (len(noisy),), generator=gen).to(y.device)
            y[noisy] = (y[noisy] + shift) % self.num_classes
        return replace(self, y_train=y)

    def to(self, device: str | torch.device) -> TensorData:
        """A copy with every tensor on `device` (no copy for tensors already there)."""
        moved = {
            f"{k}_{s}": getattr(self, f"{k}_{s}").to(device)
            for k in ("x_num", "x_cat", "y") for s in ("train", "test")
        }
        return replace(self, **moved)

    def positive_rate(self, split: str = "train") -> float:
        """Fraction of positive labels (binary task only)."""
        if self.task != "binary":
            raise ValueError(f"positive_rate needs a binary task, {self.name!r} is {self.task}")
        return float(getattr(self, f"y_{split}").float().mean())

    def __repr__(self) -> str:
        return (
            f"TensorData(name={self.name!r}, task={self.task!r}, train={self.num_train}, test={self.num_test}, "
            f"input_shape={self.input_shape}, cat_fields={len(self.cardinalities)}, "
            f"num_classes={self.num_classes})"
        )
