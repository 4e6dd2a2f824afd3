"""Locality-sensitive hash families: each maps inputs to one integer code per row.

A family draws `depth` independent hash functions (the rows of the sketch), each the concatenation of `bits`
elementary hashes, and knows its own kernel in closed form: `collision_probability(x, y)` is P[one row's codes of x and y agree],
the kernel that the Nadaraya-Watson sketch approximates.

    from sketch import SRPHash
    h = SRPHash(dim=784, depth=16, bits=4, seed=0)
    codes = h.codes(x)                       # LongTensor [n, 16]
    k = h.collision_probability(x, x[:5])    # Tensor [n, 5], equals (1 - angle/pi) ** 4

Randomness comes from a local `torch.Generator` seeded with `seed` on the CPU, so the same seed gives the
same functions on every device.

`depth` was called `rows` before: `rows=` is still accepted (with a DeprecationWarning), and state dicts saved
with a "rows" key in their config still load.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from ._checks import check_positive_float, check_positive_int, check_same_device, check_tensor, renamed_keywords
from ._shape import SRP_MAX_BITS

__all__ = ["LSHFamily", "SRPHash", "PStableHash", "FAMILIES", "make_hash", "upgrade_config"]

# Odd 64-bit multipliers (in signed range) used to fold the `bits` integer hashes of a row into one code.
_FOLD_PRIME = 0x100000001B3  # FNV-1a 64-bit prime


def upgrade_config(config: Any) -> Any:
    """Return a hash `config()` dict with the names of this version: "rows" (before the rename) becomes "depth".

    Anything that is not a dict with "rows" is returned unchanged, so comparisons still fail loudly."""
    if isinstance(config, dict) and "rows" in config and "depth" not in config:
        config = {("depth" if k == "rows" else k): v for k, v in config.items()}
    return config


class LSHFamily:
    """Base class of the hash families: parameters, device handling and `state_dict`.

    Args:
        dim: input dimension d.
        depth: number of independent hash functions L, one per sketch row (formerly `rows`).
        bits: elementary hashes K concatenated per row (more: a narrower kernel).
        seed: seeds the local CPU generator the functions are drawn from.

    Subclasses set `self.params` (tensors drawn from the seed) and implement `_raw(x)` -> [n, depth, bits]
    integer hashes plus `collision_probability(x, y)`.
    """

    name: str = "lsh"

    @renamed_keywords(rows="depth")
    def __init__(self, dim: int, depth: int, bits: int, seed: int = 0) -> None:
        self.dim = check_positive_int("dim", dim)
        self.depth = check_positive_int("depth", depth)
        self.bits = check_positive_int("bits", bits)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self.params: dict[str, torch.Tensor] = {}

    # -- what subclasses provide -------------------------------------------------------------------
    def _raw(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def collision_probability(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @property
    def rows(self) -> int:
        """Deprecated name of `depth`."""
        warnings.warn("LSHFamily.rows is deprecated, use .depth (same value)", DeprecationWarning, stacklevel=2)
        return self.depth

    @property
    def num_codes(self) -> int | None:
        """Number of distinct codes one row can take, or None when unbounded."""
        return None

    # -- shared -----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def _generator(self) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.seed)

    def _check_input(self, name: str, x: torch.Tensor) -> torch.Tensor:
        check_tensor(name, x, ndim=2, floating=True, size={1: self.dim})
        check_same_device(name, x, self.device)
        return x

    def codes(self, x: torch.Tensor) -> torch.LongTensor:
        """Return the codes of `x` [n, dim]: a LongTensor [n, depth], one code per row."""
        raw = self._raw(self._check_input("x", x))
        return self._fold(raw)

    def _fold(self, raw: torch.Tensor) -> torch.Tensor:
        # raw: [n, depth, bits] int64. Fold the bits hashes of a row into one int64 (wrapping arithmetic).
        code = torch.zeros(raw.shape[:2], dtype=torch.int64, device=raw.device)
        for k in range(self.bits):  # bits is small (a handful): a loop over hash positions, not items
            code = code * _FOLD_PRIME + raw[:, :, k]
        return code

    def to(self, device: torch.device | str) -> "LSHFamily":
        """Move the family's parameters to `device` (in place) and return self."""
        self.params = {k: v.to(device) for k, v in self.params.items()}
        return self

    def config(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild the same family."""
        return {"family": self.name, "dim": self.dim, "depth": self.depth, "bits": self.bits, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config(), **{k: v.detach().cpu().clone() for k, v in self.params.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load the parameters saved by `state_dict` (older states that say "rows" for `depth` load too)."""
        config = upgrade_config(state.get("config"))
        if config != self.config():
            raise ValueError(f"state_dict is for hash {config}, this hash is {self.config()}")
        for k in self.params:
            self.params[k] = state[k].to(self.device)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LSHFamily)
            and self.config() == other.config()
            and all(torch.equal(v.cpu(), other.params[k].cpu()) for k, v in self.params.items())
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "family")
        return f"{type(self).__name__}({args})"


class SRPHash(LSHFamily):
    """Sign random projections (Charikar 2002): the angular kernel.

    Each elementary hash is the sign of a Gaussian projection; a row concatenates `bits` of them into a
    code in [0, 2**bits). Two inputs at angle theta agree on one bit with probability 1 - theta/pi, so
    `collision_probability(x, y) = (1 - theta/pi) ** bits`. More bits narrow the kernel.
    """

    name = "srp"

    @renamed_keywords(rows="depth")
    def __init__(self, dim: int, depth: int, bits: int, seed: int = 0, device: torch.device | str | None = None) -> None:
        super().__init__(dim, depth, bits, seed)
        if self.bits > SRP_MAX_BITS:
            raise ValueError(f"bits must be <= {SRP_MAX_BITS} for SRPHash, got {bits}")
        proj = torch.randn(dim, depth * bits, generator=self._generator())
        self.params = {"projection": proj.to(device) if device is not None else proj}
        self._powers = 2 ** torch.arange(self.bits, dtype=torch.int64)

    @property
    def num_codes(self) -> int:
        return 2**self.bits

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        signs = (x.to(self.params["projection"].dtype) @ self.params["projection"]) > 0
        return signs.view(x.shape[0], self.depth, self.bits).to(torch.int64)

    def _fold(self, raw: torch.Tensor) -> torch.Tensor:
        # Bits pack exactly into [0, 2**bits): no folding collisions.
        return (raw * self._powers.to(raw.device)).sum(-1)

    def collision_probability(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return [n, m]: (1 - angle(x_i, y_j)/pi) ** bits; a zero vector counts as angle pi/2."""
        self._check_input("x", x)
        self._check_input("y", y)
        xn = torch.nn.functional.normalize(x.double(), dim=1)
        yn = torch.nn.functional.normalize(y.double(), dim=1)
        cos = (xn @ yn.T).clamp(-1.0, 1.0)
        return ((1.0 - torch.arccos(cos) / math.pi) ** self.bits).to(x.dtype)


class PStableHash(LSHFamily):
    """p-stable (Gaussian) L2 hashing (Datar et al. 2004) with bucket width `bandwidth`.

    Each elementary hash is floor((a.x + b) / r) with a ~ N(0, I), b ~ U[0, r). For inputs at distance c
    one hash agrees with probability p(c) = 1 - 2 Phi(-r/c) - 2 / (sqrt(2 pi) r/c) (1 - exp(-(r/c)^2 / 2)),
    and `collision_probability = p(c) ** bits`. A wider `bandwidth` r widens the kernel; more bits narrow it.
    """

    name = "pstable"

    @renamed_keywords(rows="depth")
    def __init__(self, dim: int, depth: int, bits: int, bandwidth: float = 1.0, seed: int = 0,
                 device: torch.device | str | None = None) -> None:
        super().__init__(dim, depth, bits, seed)
        self.bandwidth = check_positive_float("bandwidth", bandwidth)
        g = self._generator()
        a = torch.randn(dim, depth * bits, generator=g)
        b = torch.rand(depth * bits, generator=g) * self.bandwidth
        self.params = {"projection": a, "offset": b}
        if device is not None:
            self.to(device)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "bandwidth": self.bandwidth}

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        proj = x.to(self.params["projection"].dtype) @ self.params["projection"] + self.params["offset"]
        return torch.floor(proj / self.bandwidth).to(torch.int64).view(x.shape[0], self.depth, self.bits)

    def collision_probability(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return [n, m]: p(||x_i - y_j||) ** bits, the closed form of Datar et al. (1 at distance 0)."""
        self._check_input("x", x)
        self._check_input("y", y)
        c = torch.cdist(x.double(), y.double())
        s = self.bandwidth / c.clamp_min(1e-300)  # r / c
        normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64, device=c.device), 1.0)
        p = 1.0 - 2.0 * normal.cdf(-s) - 2.0 / (math.sqrt(2.0 * math.pi) * s) * (1.0 - torch.exp(-(s**2) / 2.0))
        p = torch.where(c == 0, torch.ones_like(p), p.clamp(0.0, 1.0))
        return (p**self.bits).to(x.dtype)


FAMILIES = {"srp": SRPHash, "pstable": PStableHash}


@renamed_keywords(rows="depth")
def make_hash(family: str, dim: int, depth: int, bits: int, bandwidth: float = 1.0, seed: int = 0,
              device: torch.device | str | None = None) -> LSHFamily:
    """Return the hash family named `family` ("srp" or "pstable"; `bandwidth` is used by pstable only) with
    `depth` rows of `bits` concatenated hashes over `dim`-dimensional inputs."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(repr(f) for f in FAMILIES)}, got {family!r}")
    extra = {"bandwidth": bandwidth} if family == "pstable" else {}
    return FAMILIES[family](dim=dim, depth=depth, bits=bits, seed=seed, device=device, **extra)