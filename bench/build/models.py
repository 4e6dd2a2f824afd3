"""Models for the benchmark: every one maps `(x_num, x_cat)` to logits `[b, num_outputs]`.

Every model also has `embed(x_num, x_cat)`: its penultimate features (what NWS may hash, `sketch.key.input=model`).

Constructors take the dataset's `input_shape`, `cardinalities` and `num_outputs` first, then their own
hyperparameters with defaults, so Hydra can build any of them the same way:

    model = hydra.utils.instantiate(cfg.model, input_shape=ds.input_shape, cardinalities=ds.cardinalities,
                                    num_outputs=ds.num_outputs)
    logits = model(x_num, x_cat)

- `MLP`: flattened dense features + one embedding per categorical field, concatenated, into ReLU layers.
- `EmbeddingMLP`: the CTR model of the paper's lineage (per-field embeddings of 16 into a 4x800 ReLU MLP).
- `TimmNet`: any `timm` image model (ignores `x_cat`); `name="test_resnet"` is the one to use on 28x28 on CPU.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "EmbeddingMLP", "TimmNet", "MODELS"]


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _dropout(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _layers(name: str, values) -> tuple[int, ...]:
    return _int_tuple(name, values, 1)


def _bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _text(name: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


class Configurable:
    """Models whose hyperparameters a config may set declare them in `option_checks` (name -> check(name, value));
    the constructor applies those checks and `check_options` applies them without building (before any data)."""

    option_checks: dict = {}

    @classmethod
    def check_options(cls, **options) -> dict:
        """Return `options` checked (names without a check pass unchanged); the first bad one raises ValueError."""
        return {k: cls.option_checks[k](k, v) if k in cls.option_checks else v for k, v in options.items()}


def _int_tuple(name: str, values, minimum: int) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) and not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a sequence of integers, got {values!r}")
    values = tuple(values)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{name} must hold integers >= {minimum}, got {list(values)}")
    return tuple(int(v) for v in values)


class FeatureEncoder(nn.Module):
    """Flatten `x_num` and embed each categorical field (one shared table with per-field offsets); concatenate."""

    def __init__(self, input_shape: Sequence[int], cardinalities: Sequence[int], embed_dim: int) -> None:
        super().__init__()
        self.input_shape = _int_tuple("input_shape", input_shape, 0)
        cards = _int_tuple("cardinalities", cardinalities, 1)
        self.num_dense = int(torch.Size(self.input_shape).numel()) if self.input_shape else 0
        self.num_fields = len(cards)
        self.embedding = None
        if cards:
            embed_dim = _positive_int("embed_dim", embed_dim)
            self.embedding = nn.Embedding(sum(cards), embed_dim)
            self.register_buffer("offsets", torch.tensor([0, *cards[:-1]]).cumsum(0), persistent=False)
        self.out_dim = self.num_dense + self.num_fields * (embed_dim if cards else 0)
        if self.out_dim == 0:
            raise ValueError(f"no features: input_shape={self.input_shape} and cardinalities={list(cards)}")

    def forward(self, x_num: torch.Tensor | None, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        parts = []
        if self.num_dense:
            parts.append(x_num.flatten(1).float())
        if self.embedding is not None:
            parts.append(self.embedding(x_cat + self.offsets).flatten(1))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class MLP(Configurable, nn.Module):
    """Dense + embedded categorical inputs into `hidden` ReLU layers (optional dropout) and a linear head.

    `hidden=()` gives a linear model on the encoded inputs (a logistic/softmax regression baseline).
    """

    def __init__(self, input_shape: Sequence[int], cardinalities: Sequence[int], num_outputs: int,
                 hidden: Sequence[int] = (512, 512), dropout: float = 0.0, embed_dim: int = 8) -> None:
        super().__init__()
        hidden, dropout, embed_dim = self.check_options(hidden=hidden, dropout=dropout, embed_dim=embed_dim).values()
        num_outputs = _positive_int("num_outputs", num_outputs)
        self.encoder = FeatureEncoder(input_shape, cardinalities, embed_dim)
        layers: list[nn.Module] = []
        width = self.encoder.out_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    option_checks = {"hidden": _layers, "dropout": _dropout, "embed_dim": _positive_int}

    def forward(self, x_num: torch.Tensor | None, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.encoder(x_num, x_cat))

    def embed(self, x_num: torch.Tensor | None, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        """The penultimate features: the input of the linear head (the encoded inputs for a linear model)."""
        return self.net[:-1](self.encoder(x_num, x_cat))


class EmbeddingMLP(MLP):
    """The CTR model of the paper's lineage: per-field embeddings (16) into a 4x800 ReLU MLP (+ dense features)."""

    def __init__(self, input_shape: Sequence[int], cardinalities: Sequence[int], num_outputs: int,
                 embed_dim: int = 16, hidden: Sequence[int] = (800, 800, 800, 800), dropout: float = 0.0) -> None:
        super().__init__(input_shape, cardinalities, num_outputs, hidden=hidden, dropout=dropout,
                         embed_dim=embed_dim)


class TimmNet(Configurable, nn.Module):
    """A `timm` image classifier on `x_num` `[b, C, H, W]` (`x_cat` is ignored).

    `name` is any `timm.list_models()` entry; extra keyword arguments go to `timm.create_model` (e.g.
    `drop_rate`). Small ones for 28x28 on CPU: `test_resnet` (0.37M parameters), `test_efficientnet_gn` (0.1M);
    `resnet18` (11M) is the classic but ~6x slower per step. `pretrained=True` downloads ImageNet weights from
    the Hugging Face Hub (needs a network; refused when `HF_HUB_OFFLINE=1`).
    """

    def __init__(self, input_shape: Sequence[int], cardinalities: Sequence[int], num_outputs: int,
                 name: str = "resnet18", pretrained: bool = False, **kwargs) -> None:
        super().__init__()
        import timm

        self.check_options(name=name, pretrained=pretrained)
        self.input_shape = _int_tuple("input_shape", input_shape, 1)
        if len(self.input_shape) != 3:
            raise ValueError(f"input_shape must be an image shape (C, H, W) for TimmNet, got {self.input_shape}")
        num_outputs = _positive_int("num_outputs", num_outputs)
        if not timm.is_model(name):
            raise ValueError(f"name={name!r} is not a timm model; see timm.list_models()")
        if pretrained and os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
            raise ValueError("pretrained=True downloads weights from the Hugging Face Hub, but HF_HUB_OFFLINE=1")
        self.name = name
        self.model = timm.create_model(name, pretrained=bool(pretrained), num_classes=num_outputs,
                                       in_chans=self.input_shape[0], **kwargs)

    option_checks = {"name": _text, "pretrained": _bool}

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x_num)

    def embed(self, x_num: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        """The penultimate features: the pooled features before the classifier."""
        return self.model.forward_head(self.model.forward_features(x_num), pre_logits=True)


MODELS = {"mlp": MLP, "embedding_mlp": EmbeddingMLP, "timm": TimmNet}
