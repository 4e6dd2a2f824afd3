#!/usr/bin/env python3
"""Benchmark: what one NWS sampler step costs next to uniform's and next to one training step, as N grows.

    .venv/bin/python scripts/bench_sampler_step.py                       # CPU, N = 1e5 and 1e6, library defaults
    .venv/bin/python scripts/bench_sampler_step.py --sizes 1e5,1e6,1e7 --shapes default,16x4x1024 --repeats 50
    .venv/bin/python scripts/bench_sampler_step.py --device cuda --out docs/gpu/bench_sampler_step_cuda.json

One sampler step is what a training loop pays per batch: draw a batch of B = 512 (`next(iter(sampler))`), its
weights (`sampler.weights(idx)`) and the feedback (`sampler.update(idx, losses)`). Variants:
  nws          NWSSampler with its own defaults (the draw straight from the sketch's buckets, masses every 4
               steps, the 4 batches of one distribution drawn in one go; cost independent of N)
  nws_k1       the same with refresh_every=1 (a distribution per step)
  full         NWSFullSampler: estimate all N from the sketch every step, multinomial draw over N
  full_pool    NWSFullSampler, pool_size=2048: estimate a uniform pool of 2048 per step
  uniform      UniformSampler: the floor of the protocol itself (a permutation slice, a weight lookup, a no-op
               update), measured the same way
Shapes (--shapes): `default` builds `NWSSampler.from_features(features, B, labels=labels)` with the library's
own defaults (8 rows x 10 bits x 4096 buckets, one set of buckets per class) over random 16-dimensional
features and 10 random classes; `DEPTHxBITSxWIDTH` builds the same with that sketch shape.
Next to them, in the same process and interleaved with every variant's repeats (so that load on a shared
machine hits both alike): one training step (forward + backward + SGD) of a 784-512-512-10 MLP at batch B.
Interleaving is what a training loop does, and it matters: after a model step the sampler's code and data
are out of the caches, so its ops run several times slower than back to back. The warm cost (the same
steps back to back, no model step in between) is recorded too, as `warm_ms`.
Reported: median ms (and min) over the repeats after a warm-up, the ratio of the medians to the MLP step timed
alongside (and the ratio of the minima, a steadier estimate of the intrinsic cost when other processes share
the cores; the 1-minute load average is recorded beside each row), the ratio to uniform's step at the same N,
and for the NWS variants the ratio of the cost at N to the cost at N = 1e5.
Before timing, the sampler is fed 64 batches of losses so that buckets are filled and the distribution is
not uniform.

Targets checked (printed as met / missed), for the `default` shape: the nws step is <= 5% of one MLP step at
N = 1e6 (minima), and its cost at the largest N (1e6 by default) is within 1.5x of its cost at N = 1e5. On CUDA
the clocks are read after torch.cuda.synchronize(). Writes JSON to --out (default
docs/cpu/bench_sampler_step_<device>.json), a markdown table next to it (.md) and prints the table.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from sketch.samplers import FeedbackSampler, NWSBase, NWSFullSampler, NWSSampler, UniformSampler

ROOT = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, tuple[type, dict[str, Any]]] = {
    "nws": (NWSSampler, {}),
    "nws_k1": (NWSSampler, {"refresh_every": 1}),
    "full": (NWSFullSampler, {}),
    "full_pool": (NWSFullSampler, {"pool_size": 2048}),
    "uniform": (UniformSampler, {}),
}
NATIVE = ("nws", "nws_k1")
REFERENCE_N = 10**5
TARGET_SHARE = 0.05  # nws step <= 5% of one MLP step at N = 1e6
TARGET_GROWTH = 1.5  # nws cost at the largest N <= 1.5x its cost at 1e5
FEATURE_DIM, CLASSES = 16, 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--sizes", default="1e5,1e6", help="comma-separated N")
    p.add_argument("--max-n", type=float, default=None, help="skip sizes above this N")
    p.add_argument("--shapes", default="default", help="comma-separated: default (the library's) or DEPTHxBITSxWIDTH")
    p.add_argument("--variants", default="nws,nws_k1,full_pool,uniform", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=60, help="timed steps per variant (fewer when a step is slow)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    p.add_argument("--budget-s", type=float, default=20.0, help="cap on the timed seconds per variant")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON path (default docs/cpu/bench_sampler_step_<device>.json)")
    return p.parse_args(argv)


def synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def timed(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    """Seconds one call of `fn` takes, clocks read after synchronizing the device."""
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def mlp_step_fn(batch: int, device: torch.device, seed: int) -> Callable[[], None]:
    """One forward + backward + SGD step of a 784-512-512-10 MLP on a fixed random batch."""
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
                              torch.nn.Linear(512, 10)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.randn(batch, 784, generator=g).to(device)
    y = torch.randint(10, (batch,), generator=g).to(device)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def synthetic_inputs(n: int, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features [n, FEATURE_DIM] and class labels [n] (what `from_features` hashes and folds in)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, FEATURE_DIM, generator=g).to(device), torch.randint(CLASSES, (n,), generator=g).to(device)


def shape_options(shape: str) -> dict[str, int]:
    """`from_features` keywords of a --shapes entry: none for `default`, else depth, bits and width."""
    if shape == "default":
        return {}
    depth, bits, width = (int(v) for v in shape.split("x"))
    return {"depth": depth, "bits": bits, "width": width}


def sampler_step_fn(sampler: FeedbackSampler, losses: torch.Tensor) -> Callable[[], None]:
    """One sampler step: draw a batch, its weights, the feedback of its losses."""
    it = iter(sampler)

    def step() -> None:
        idx = next(it)
        sampler.weights(idx)
        sampler.update(idx, losses.index_select(0, idx))

    return step


def measure(step: Callable[[], None], mlp: Callable[[], None], args: argparse.Namespace, sync: Callable[[], None]) -> dict[str, Any]:
    """Interleave timed sampler steps with timed MLP steps; stop at `repeats` or when the budget is spent."""
    for _ in range(args.warmup):
        step()
        mlp()
    own, net, spent = [], [], 0.0
    while len(own) < args.repeats and (spent < args.budget_s or len(own) < 3):
        own.append(timed(step, sync))
        net.append(timed(mlp, sync))
        spent += own[-1] + net[-1]
    warm = [timed(step, sync) for _ in range(min(len(own), args.repeats))]  # back to back: caches stay warm
    ms, mlp_ms = 1e3 * statistics.median(own), 1e3 * statistics.median(net)
    return {"ms": ms, "warm_ms": 1e3 * statistics.median(warm), "ms_min": 1e3 * min(own), "mlp_ms": mlp_ms, "mlp_ms_min": 1e3 * min(net),
            "ratio_to_mlp": ms / mlp_ms, "ratio_to_mlp_min": min(own) / min(net), "repeats": len(own),
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = synchronizer(device)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    if args.max_n is not None:
        sizes = [n for n in sizes if n <= args.max_n]
    shapes = args.shapes.split(",")
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    mlp = mlp_step_fn(args.batch_size, device, args.seed)
    rows = []
    for n in sizes:
        losses = torch.empty(n).exponential_(generator=torch.Generator().manual_seed(args.seed)).to(device)
        features, labels = synthetic_inputs(n, device, args.seed)
        for shape in shapes:
            for name in variants:
                start = time.perf_counter()
                sampler = build(name, features, labels, shape, args, device)
                build_s = time.perf_counter() - start
                feed = torch.Generator().manual_seed(args.seed + 1)
                for _ in range(64):  # fill buckets so the distribution is a learned one
                    idx = torch.randint(n, (args.batch_size,), generator=feed).to(device)
                    sampler.update(idx, losses.index_select(0, idx))
                dims = sampler.sketch if isinstance(sampler, NWSBase) else None
                row = {"n": n, "shape": shape, "depth": dims.depth if dims else None, "width": dims.width if dims else None,
                       "variant": name, "build_s": build_s,
                       "memory_mb": sampler.memory_bytes() / 2**20 if isinstance(sampler, NWSBase) else 0.0,
                       **measure(sampler_step_fn(sampler, losses), mlp, args, sync)}
                rows.append(row)
                print(f"N={n:>9,d} {shape} {name:10s} {row['ms']:8.3f} ms (min {row['ms_min']:.3f}) "
                      f"({100 * row['ratio_to_mlp']:.2f}% of MLP step {row['mlp_ms']:.2f} ms, {row['repeats']} repeats)",
                      flush=True)
                del sampler
                gc.collect()
    add_growth(rows)
    add_uniform_ratio(rows)
    command = "scripts/bench_sampler_step.py " + " ".join(sys.argv[1:])
    return {"config": vars(args), "command": command, "rows": rows, "targets": targets(rows), "environment": environment(device)}


def build(name: str, features: torch.Tensor, labels: torch.Tensor, shape: str, args: argparse.Namespace,
          device: torch.device) -> FeedbackSampler:
    """The sampler of variant `name` (the NWS ones over `features` and `labels` with the sketch of `shape`)."""
    cls, options = VARIANTS[name]
    common = dict(seed=args.seed, device=device, steps_per_epoch=10**9)
    if cls is UniformSampler:
        return UniformSampler(features.shape[0], args.batch_size, **common)
    return cls.from_features(features, args.batch_size, labels=labels, **shape_options(shape), **options, **common)


def add_growth(rows: list[dict[str, Any]]) -> None:
    """Add, to the NWS variants' rows, their cost (minima) relative to the same shape at N = 1e5."""
    reference = {(r["shape"], r["variant"]): r["ms_min"] for r in rows if r["n"] == REFERENCE_N}
    for r in rows:
        base = reference.get((r["shape"], r["variant"]))
        r["ratio_to_1e5"] = r["ms_min"] / base if base and r["variant"] in NATIVE else None


def add_uniform_ratio(rows: list[dict[str, Any]]) -> None:
    """Add every row's cost (minima) relative to uniform's step at the same N."""
    uniform = {r["n"]: r["ms_min"] for r in rows if r["variant"] == "uniform"}
    for r in rows:
        r["ratio_to_uniform"] = r["ms_min"] / uniform[r["n"]] if r["n"] in uniform else None


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two targets for the library-default nws variant, at the sizes they need."""
    out = []
    mine = [r for r in rows if r["variant"] == "nws" and r["shape"] == "default"]
    for r in mine:
        if r["n"] == 10**6:
            out.append({"target": f"nws step <= {TARGET_SHARE:.0%} of an MLP step at N=1e6 (minima)", "shape": r["shape"],
                        "value": r["ratio_to_mlp_min"], "met": r["ratio_to_mlp_min"] <= TARGET_SHARE})
    largest = max(mine, key=lambda r: r["n"], default=None)
    if largest is not None and largest["n"] > REFERENCE_N and largest["ratio_to_1e5"] is not None:
        out.append({"target": f"nws cost at N={largest['n']:.0e} <= {TARGET_GROWTH}x cost at N=1e5 (minima)",
                    "shape": largest["shape"], "value": largest["ratio_to_1e5"],
                    "met": largest["ratio_to_1e5"] <= TARGET_GROWTH})
    return out


def environment(device: torch.device) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"torch": torch.__version__, "device": str(device), "device_name": name, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "git_commit": commit}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| N | sketch | variant | ms (median) | ms (min) | warm ms | vs uniform (min) | MLP step ms (median) | "
             "% of MLP (medians) | % of MLP (minima) | vs N=1e5 (min) | sampler MB | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        growth = "" if r["ratio_to_1e5"] is None else f"{r['ratio_to_1e5']:.2f}x"
        versus = "" if r["ratio_to_uniform"] is None else f"{r['ratio_to_uniform']:.2f}x"
        sketch = "" if r["depth"] is None else f"{r['shape']} ({r['depth']} x {r['width']})"
        lines.append(f"| {r['n']:.0e} | {sketch} | {r['variant']} | {r['ms']:.3f} | {r['ms_min']:.3f} | {r['warm_ms']:.3f} | "
                     f"{versus} | {r['mlp_ms']:.2f} | {100 * r['ratio_to_mlp']:.2f}% | {100 * r['ratio_to_mlp_min']:.2f}% | "
                     f"{growth} | {r['memory_mb']:.0f} | {r['load_avg_1m']:.1f} |")
    lines.append("")
    for t in result["targets"]:
        value = f"{100 * t['value']:.2f}%" if "%" in t["target"] else f"{t['value']:.2f}x"
        lines.append(f"- {t['shape']}: {t['target']}: {value} -> {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out or f"docs/cpu/bench_sampler_step_{torch.device(args.device).type}.json")
    result = run(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    table = markdown(result)
    out.with_suffix(".md").write_text(f"# Sampler step vs uniform and vs an MLP step\n\n`{result['command']}`\n\n{table}\n")
    print(table)
    print(f"\nwrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
