"""Per-sample losses, evaluation metrics for the three tasks (binary, multiclass, regression), and the one
table of metrics: which direction is better, how each is displayed, which tasks it applies to.

    from bench.train.metrics import METRICS, per_sample_loss, evaluate, reaches
    loss = per_sample_loss(logits, y, task)             # [b], reduction="none"
    scores = evaluate(model, x_num, x_cat, y, task)      # {"accuracy": .., "auc": .., "logloss": .., "loss": ..}
    METRICS["auc"].higher_is_better; reaches("auc", 0.73, 0.72)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Metric", "METRICS", "per_sample_loss", "predict_logits", "evaluate", "roc_auc", "reaches", "improves",
           "metrics_for"]


@dataclass(frozen=True)
class Metric:
    """One evaluation metric: its name, direction, display name and the tasks it is computed for."""

    name: str
    higher_is_better: bool
    display: str
    tasks: tuple[str, ...]
    bounded: bool = False  # lies in [0, 1]

    @property
    def op(self) -> str:
        """The comparison that "reaches a target" means: >= or <=."""
        return ">=" if self.higher_is_better else "<="


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("accuracy", True, "accuracy", ("binary", "multiclass"), bounded=True),
    Metric("auc", True, "AUC", ("binary",), bounded=True),
    Metric("logloss", False, "log loss", ("binary", "multiclass")),
    Metric("mse", False, "MSE", ("regression",)),
]}


def metrics_for(task: str) -> tuple[str, ...]:
    """Return the names of the metrics computed for `task`."""
    return tuple(name for name, m in METRICS.items() if task in m.tasks)


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Return the unreduced training loss [b]: BCE with logits, cross-entropy or squared error."""
    if task == "binary":
        return F.binary_cross_entropy_with_logits(logits.view(-1), y.float(), reduction="none")
    if task == "multiclass":
        return F.cross_entropy(logits, y, reduction="none")
    if task == "regression":
        return (logits.view(-1) - y.float()).pow(2)
    raise ValueError(f"task must be one of binary, multiclass, regression, got {task!r}")


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Return the area under the ROC curve (Mann-Whitney U with average ranks for ties); nan if one class."""
    scores, labels = scores.double().view(-1), labels.view(-1) > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # average the ranks of tied scores
    uniq, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    if len(uniq) < len(scores):
        ends = torch.cumsum(counts, 0).double()
        avg = ends - (counts.double() - 1) / 2
        ranks[order] = avg[inverse]
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x_num: torch.Tensor, x_cat: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """Return the float logits of `model` on all rows, `batch` rows at a time, without gradients."""
    outs = []
    for i in range(0, x_num.shape[0], batch):
        outs.append(model(x_num[i : i + batch].to(device), x_cat[i : i + batch].to(device)).float())
    return torch.cat(outs)


def evaluate(
    model: torch.nn.Module,
    x_num: torch.Tensor,
    x_cat: torch.Tensor,
    y: torch.Tensor,
    task: str,
    batch: int = 4096,
) -> dict[str, float]:
    """Return the metrics of `model` on a split: loss and accuracy/auc/logloss (binary), accuracy/logloss
    (multiclass), mse (regression). The model is put in eval mode and restored."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits = predict_logits(model, x_num, x_cat, batch, device)
    model.train(was_training)
    y = y.to(device)
    loss = float(per_sample_loss(logits, y, task).mean())
    if task == "binary":
        p = torch.sigmoid(logits.view(-1))
        return {"loss": loss, "logloss": loss, "accuracy": float(((p > 0.5).float() == y.float()).float().mean()),
                "auc": roc_auc(logits.view(-1).cpu(), y.cpu())}
    if task == "multiclass":
        return {"loss": loss, "logloss": loss, "accuracy": float((logits.argmax(1) == y).float().mean())}
    return {"loss": loss, "mse": loss}


def reaches(metric: str, value: float | None, target: float | None) -> bool:
    """Return whether `value` reaches `target` for `metric` (>= when higher is better, else <=); a missing or
    NaN value never does, and neither does any value of a missing target."""
    if value is None or target is None or value != value:
        return False
    return value >= target if METRICS[metric].higher_is_better else value <= target


def improves(metric: str, value: float, best: float | None) -> bool:
    """Return whether `value` is strictly better than `best` (None: nothing yet) for `metric`; NaN never is."""
    if value != value:
        return False
    return best is None or (value > best if METRICS[metric].higher_is_better else value < best)
