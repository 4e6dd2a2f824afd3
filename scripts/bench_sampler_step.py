#!/usr/bin/env python3
"""Benchmark: what one NWS sampler step costs next to one training step, as N grows.

    .venv/bin/python scripts/bench_sampler_step.py                       # CPU, N = 1e4 .. 1e7, 2 threads
    .venv/bin/python scripts/bench_sampler_step.py --max-n 1e6 --repeats 50
    .venv/bin/python scripts/bench_sampler_step.py --device cuda --out results/bench_sampler_step_cuda.json

One sampler step is what a training loop pays per batch: draw a batch of B = 512 (`next(iter(sampler))`), its
weights (`sampler.weights(idx)`) and the feedback (`sampler.update(idx, losses)`). Variants, for each sketch
shape (depth x bits x width; default 32 x 12 x 4096 and the old default 16 x 4 x 1024):
  sketch       proposal="sketch": draw straight from the sketch's buckets (cost independent of N)
  sketch_k8    the same with refresh_every=8 (bucket masses recomputed every 8 steps)
  full         proposal="full": estimate all N from the sketch every step, multinomial draw over N
  full_pool    proposal="full", pool_size=2048: estimate a uniform pool of 2048 per step
  uniform      UniformSampler: the floor of the protocol itself (a permutation slice, a weight lookup, a no-op
               update), measured the same way
Next to them, in the same process and interleaved with every variant's repeats (so that load on a shared
machine hits both alike): one training step (forward + backward + SGD) of a 784-512-512-10 MLP at batch B.
Interleaving is what a training loop does, and it matters: after a model step the sampler's code and data
are out of the caches, so its ops run several times slower than back to back. The warm cost (the same
steps back to back, no model step in between) is recorded too, as `warm_ms`.
Reported: median ms (and min) over the repeats after a warm-up, the ratio of the medians to the MLP step timed
alongside (and the ratio of the minima, a steadier estimate of the intrinsic cost when other processes share
the cores; the 1-minute load average is recorded beside each row), and for the sketch variants the ratio of
the cost at N to the cost at N = 1e5.

Slots are synthetic (each item's bucket in each row uniform over the 2**bits codes, as SRP's direct layout
on spread-out keys gives): hashing 1e7 real inputs would only add setup time. Before timing, the sketch is
fed 64 batches of losses so that buckets are filled and the distribution is not uniform.

Targets checked (printed as met / missed): the native step is <= 2% of one MLP step at N = 1e6, and its cost
at N = 1e7 is within 1.5x of its cost at N = 1e5. On CUDA the clocks are read after torch.cuda.synchronize().
Writes JSON to --out (default results/bench_sampler_step_<device>.json) and prints a markdown table.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import torch

from sketch import NWSketch, SRPHash
from sketch.samplers import FeedbackSampler, NWSSampler, UniformSampler

ROOT = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, dict[str, Any]] = {
    "sketch": {"proposal": "sketch"},
    "sketch_k8": {"proposal": "sketch", "refresh_every": 8},
    "full": {"proposal": "full"},
    "full_pool": {"proposal": "full", "pool_size": 2048},
    "uniform": {},
}
NATIVE = ("sketch", "sketch_k8")
REFERENCE_N = 10**5
TARGET_SHARE = 0.02  # native step <= 2% of one MLP step at N = 1e6
TARGET_GROWTH = 1.5  # native cost at 1e7 <= 1.5x its cost at 1e5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--sizes", default="1e4,1e5,1e6,1e7", help="comma-separated N")
    p.add_argument("--max-n", type=float, default=None, help="skip sizes above this N")
    p.add_argument("--shapes", default="32x12x4096,16x4x1024", help="comma-separated depth x bits x width")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=60, help="timed steps per variant (fewer when a step is slow)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    p.add_argument("--budget-s", type=float, default=20.0, help="cap on the timed seconds per variant")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON path (default results/bench_sampler_step_<device>.json)")
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


def synthetic_slots(n: int, depth: int, bits: int, width: int, device: torch.device, seed: int) -> torch.Tensor:
    """int32 [n, depth]: bucket uniform over the 2**bits codes (<= width) in each row, plus row * width."""
    g = torch.Generator().manual_seed(seed)
    codes = min(2**bits, width)
    out = torch.empty(n, depth, dtype=torch.int32)
    for start in range(0, n, 1 << 20):  # chunks bound the int64 temporaries
        stop = min(n, start + (1 << 20))
        out[start:stop] = torch.randint(codes, (stop - start, depth), generator=g, dtype=torch.int32)
    out += torch.arange(depth, dtype=torch.int32) * width
    return out.to(device)


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
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    mlp = mlp_step_fn(args.batch_size, device, args.seed)
    rows = []
    for n in sizes:
        losses = torch.empty(n).exponential_(generator=torch.Generator().manual_seed(args.seed)).to(device)
        for depth, bits, width in shapes:
            slots = synthetic_slots(n, depth, bits, width, device, args.seed)
            for name in variants:
                start = time.perf_counter()
                sampler = build(name, slots, width, bits, args, device)
                build_s = time.perf_counter() - start
                feed = torch.Generator().manual_seed(args.seed + 1)
                for _ in range(64):  # fill buckets so the distribution is a learned one
                    idx = torch.randint(n, (args.batch_size,), generator=feed).to(device)
                    sampler.update(idx, losses.index_select(0, idx))
                row = {"n": n, "depth": depth, "bits": bits, "width": width, "variant": name, "build_s": build_s,
                       "memory_mb": sampler.memory_bytes() / 2**20 if isinstance(sampler, NWSSampler) else 0.0,
                       **measure(sampler_step_fn(sampler, losses), mlp, args, sync)}
                rows.append(row)
                print(f"N={n:>9,d} {depth}x{bits}x{width} {name:10s} {row['ms']:8.3f} ms  "
                      f"({100 * row['ratio_to_mlp']:.2f}% of MLP step {row['mlp_ms']:.2f} ms, {row['repeats']} repeats)",
                      flush=True)
                del sampler
                gc.collect()
            del slots
            gc.collect()
    add_growth(rows)
    return {"config": vars(args), "rows": rows, "targets": targets(rows), "environment": environment(device)}


def build(name: str, slots: torch.Tensor, width: int, bits: int, args: argparse.Namespace,
          device: torch.device) -> FeedbackSampler:
    """The sampler of variant `name` over `slots` (an empty sketch of that shape for the NWS variants)."""
    common = dict(seed=args.seed, device=device, steps_per_epoch=10**9)
    if name == "uniform":
        return UniformSampler(slots.shape[0], args.batch_size, **common)
    hash_ = SRPHash(dim=1, depth=slots.shape[1], bits=bits, seed=args.seed, device=device)
    return NWSSampler(NWSketch(hash_, width=width), slots, args.batch_size, mix=0.1, **common, **VARIANTS[name])


def add_growth(rows: list[dict[str, Any]]) -> None:
    """Add, to the native variants' rows, their cost relative to the same shape at N = 1e5."""
    reference = {(r["depth"], r["bits"], r["width"], r["variant"]): r["ms"] for r in rows if r["n"] == REFERENCE_N}
    for r in rows:
        base = reference.get((r["depth"], r["bits"], r["width"], r["variant"]))
        r["ratio_to_1e5"] = r["ms"] / base if base and r["variant"] in NATIVE else None


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two targets for every native variant and shape measured at the sizes they need."""
    out = []
    for r in rows:
        if r["variant"] not in NATIVE:
            continue
        shape = f"{r['depth']}x{r['bits']}x{r['width']} {r['variant']}"
        if r["n"] == 10**6:
            out.append({"target": f"step <= {TARGET_SHARE:.0%} of an MLP step at N=1e6", "shape": shape,
                        "value": r["ratio_to_mlp"], "met": r["ratio_to_mlp"] <= TARGET_SHARE})
        if r["n"] == 10**7 and r["ratio_to_1e5"] is not None:
            out.append({"target": f"cost at N=1e7 <= {TARGET_GROWTH}x cost at N=1e5", "shape": shape,
                        "value": r["ratio_to_1e5"], "met": r["ratio_to_1e5"] <= TARGET_GROWTH})
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
    lines = ["| N | depth x bits x width | variant | ms (median) | ms (min) | warm ms | MLP step ms (median) | "
             "% of MLP (medians) | % of MLP (minima) | vs N=1e5 | sampler MB | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        growth = "" if r["ratio_to_1e5"] is None else f"{r['ratio_to_1e5']:.2f}x"
        lines.append(f"| {r['n']:.0e} | {r['depth']}x{r['bits']}x{r['width']} | {r['variant']} | {r['ms']:.3f} | "
                     f"{r['ms_min']:.3f} | {r['warm_ms']:.3f} | {r['mlp_ms']:.2f} | {100 * r['ratio_to_mlp']:.2f}% | "
                     f"{100 * r['ratio_to_mlp_min']:.2f}% | {growth} | {r['memory_mb']:.0f} | {r['load_avg_1m']:.1f} |")
    lines.append("")
    for t in result["targets"]:
        value = f"{100 * t['value']:.2f}%" if "%" in t["target"] else f"{t['value']:.2f}x"
        lines.append(f"- {t['shape']}: {t['target']}: {value} -> {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out or f"results/bench_sampler_step_{torch.device(args.device).type}.json")
    result = run(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
