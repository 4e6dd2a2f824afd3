#!/usr/bin/env python3
"""Benchmark of the Nadaraya-Watson sketch's own speed, next to the cost of one training step.

    .venv/bin/python scripts/bench_sketch.py                      # N = 1e4, 1e5, 1e6: 1-3 min on 2 CPU cores
    .venv/bin/python scripts/bench_sketch.py --quick              # N = 1e4, 1e5, fewer repeats: under 30 s
    .venv/bin/python scripts/bench_sketch.py --threads 1          # steadier on CPUs shared with other jobs
    .venv/bin/python scripts/bench_sketch.py --device cuda --sizes 1e4 1e5 1e6 1e7   # the scale figure (~15 s on an H200)

What it measures, for each N (--sizes), sketch shape (depth L, width W) (--configs) and hash family (SRP with
8 bits: direct layout, codes are buckets; p-stable with 4 bits: hashed layout, a universal hash maps codes to
buckets), on N random inputs of --dim features (a fixed embedding of the data, as hashed in training):

  (a) hash:      `slots` of all N inputs once (in chunks), stored as int32 [N, L] (the one-off cost per dataset);
  (b) update:    `update_slots(slots[idx], losses)` for a batch of 512 random indices (the gather of the
                 batch's cached slots included): the per-step feedback cost; items/s = 512 / time;
  (c) estimate:  `estimate_slots(slots)` over all N cached slots: the cost to score every item; items/s;
  (d) draw:      `torch.multinomial(p, 512, replacement=True)` over N (p from the estimates);

and, in the same run and on the same device, one forward + backward + SGD step of a 784-512-512-10 MLP
with batch 512 (cross-entropy), so that the sketch's overhead is reported as ratios: score-all-N / step,
update / step, draw / step (each against the step timed right after that row). Also recorded: memory of
the cached int32 slots and of the tables.

Timing: CUDA is synchronized before every clock read; each operation is warmed up, then timed over
repeats and the median reported, with the min beside it in brackets (the min is the better guide when
other processes share the CPUs; the 1-min load average at start and end is recorded); the one-off hash
pass is timed once after a warm-up chunk. Results go to results/bench_sketch_<device>.json (device name,
torch version, git commit, threads, every number) and a markdown table is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

import torch.nn as nn

from bench.results.provenance import device_name, git_commit
from bench.results.files import atomic_write_text
from bench.train.timing import timed

from sketch import NWSketch, PStableHash, SRPHash

ROOT = Path(__file__).resolve().parents[1]

BATCH = 512
HASH_CHUNK = 1 << 15  # inputs hashed per call when hashing all N (bounds the [chunk, L, bits] int64 temporaries)
MB = 2**20




def make_sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def make_train_step(device: torch.device, seed: int) -> Callable[[], None]:
    """One forward + backward + SGD step of a 784-512-512-10 MLP on a batch of 512 (cross-entropy)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    with torch.no_grad():  # initialize from the local generator, not the global RNG
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (p.shape[-1] ** -0.5))
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(BATCH, 784, generator=g).to(device)
    y = torch.randint(0, 10, (BATCH,), generator=g).to(device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def make_sketch(family: str, dim: int, depth: int, width: int, bits: int, device: torch.device, seed: int) -> NWSketch:
    if family == "srp":
        hash_ = SRPHash(dim=dim, rows=depth, bits=bits, seed=seed, device=device)
    elif family == "pstable":
        hash_ = PStableHash(dim=dim, rows=depth, bits=bits, bandwidth=4.0, seed=seed, device=device)
    else:
        raise ValueError(f"family must be 'srp' or 'pstable', got {family!r}")
    return NWSketch(hash_, width=width)


def hash_all(sk: NWSketch, x: torch.Tensor) -> torch.Tensor:
    """int32 [N, L] slots of every row of x, hashed HASH_CHUNK at a time."""
    out = torch.empty(x.shape[0], sk.depth, dtype=torch.int32, device=x.device)
    for start in range(0, x.shape[0], HASH_CHUNK):
        out[start : start + HASH_CHUNK] = sk.slots(x[start : start + HASH_CHUNK])
    return out


def bench_one(sk: NWSketch, x: torch.Tensor, sync, *, repeats: dict[str, int], seed: int) -> tuple[dict, torch.Tensor]:
    """Time (a) hash all, (b) update, (c) estimate all for one sketch; return the numbers and the estimates."""
    n = x.shape[0]
    device = x.device
    sk.slots(x[:HASH_CHUNK])  # warm-up
    sync()
    t0 = time.perf_counter()
    slots = hash_all(sk, x)
    sync()
    hash_s = time.perf_counter() - t0

    g = torch.Generator(device="cpu").manual_seed(seed)
    count = repeats["update"] + 5
    batches = torch.randint(0, n, (count, BATCH), generator=g).to(device)
    losses = torch.rand(count, BATCH, generator=g).to(device)
    it = iter(range(10**9))

    def update() -> None:
        i = next(it) % count
        sk.update_slots(slots[batches[i]], losses[i])

    update_t = timed(update, repeats=repeats["update"], warmup=5, sync=sync)
    # Fill the tables with every item once so the estimate reads a realistic (non-empty) table.
    fill = torch.rand(n, generator=g).to(device)
    for start in range(0, n, 1 << 18):  # in chunks: bounds the [chunk * L, 2] temporaries at N = 1e7
        sk.update_slots(slots[start : start + (1 << 18)], fill[start : start + (1 << 18)])
    estimates = sk.estimate_slots(slots)
    estimate_t = timed(lambda: sk.estimate_slots(slots), repeats=repeats["estimate"], warmup=1, sync=sync)
    row = {
        "hash_all_s": hash_s,
        "hash_items_per_s": n / hash_s,
        "update_ms": 1e3 * statistics.median(update_t),
        "update_ms_min": 1e3 * min(update_t),
        "update_items_per_s": BATCH / statistics.median(update_t),
        "score_all_ms": 1e3 * statistics.median(estimate_t),
        "score_all_ms_min": 1e3 * min(estimate_t),
        "estimate_items_per_s": n / statistics.median(estimate_t),
        "slots_mb": slots.numel() * slots.element_size() / MB,
        "table_mb": sk.memory_bytes() / MB,
    }
    return row, estimates


def bench_draw(estimates: torch.Tensor, sync, repeats: int, seed: int) -> list[float]:
    """Seconds of one multinomial draw of 512 indices over N, p = 0.9 * est / sum + 0.1 / N."""
    p = 0.9 * estimates.clamp_min(0) / estimates.clamp_min(0).sum() + 0.1 / estimates.numel()
    g = torch.Generator(device=estimates.device).manual_seed(seed)
    return timed(lambda: torch.multinomial(p, BATCH, replacement=True, generator=g), repeats=repeats, warmup=3, sync=sync)






def markdown(result: dict) -> str:
    step = result["train_step_ms"]
    lines = [
        f"device: {result['device_name']} ({result['device']}), torch {result['torch']}, threads {result['threads']}, "
        f"load {result['loadavg_start']:.1f}->{result['loadavg_end']:.1f}, "
        f"commit {result['git_commit'][:12]}; train step (784-512-512-10 MLP, batch 512, fwd+bwd+SGD): {step:.2f} ms "
        f"(median over the run; the ratios use the step timed next to each row). Cells: median of repeats [min].",
        "",
        "| N | family | L x W | hash all N (s) | update 512 (ms) [min] | update (items/s) | score all N (ms) [min] | "
        "estimate (items/s) | draw 512 (ms) | slots (MB) | tables (MB) | step (ms) [min] | score-all / step [min] | "
        "update / step [min] |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['n']:.0e} | {r['family']} | {r['depth']} x {r['width']} | {r['hash_all_s']:.3f} "
            f"| {r['update_ms']:.3f} [{r['update_ms_min']:.3f}] | {r['update_items_per_s']:.3g} "
            f"| {r['score_all_ms']:.2f} [{r['score_all_ms_min']:.2f}] | {r['estimate_items_per_s']:.3g} "
            f"| {r['draw_ms']:.3f} | {r['slots_mb']:.1f} | {r['table_mb']:.2f} "
            f"| {r['train_step_ms_local']:.2f} [{r['train_step_ms_local_min']:.2f}] "
            f"| {r['score_all_over_step']:.3f} [{r['score_all_over_step_min']:.3f}] "
            f"| {r['update_over_step']:.4f} [{r['update_over_step_min']:.4f}] |"
        )
    return "\n".join(lines)


def parse_config(text: str) -> tuple[int, int]:
    try:
        depth, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--configs entries must look like 16x1024 (depth x width), got {text!r}")
    return depth, width


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=None, help="N values (default 1e4 1e5 1e6; quick: 1e4 1e5)")
    parser.add_argument("--configs", type=parse_config, nargs="+", default=[(16, 1024), (64, 4096)],
                        help="sketch shapes depth x width (default: 16x1024 64x4096)")
    parser.add_argument("--families", nargs="+", choices=("srp", "pstable"), default=["srp", "pstable"])
    parser.add_argument("--srp-bits", type=int, default=8, help="bits per SRP row (8: 256 codes, direct layout)")
    parser.add_argument("--pstable-bits", type=int, default=4, help="bits per p-stable row (hashed layout)")
    parser.add_argument("--dim", type=int, default=64, help="features of the hashed inputs")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="auto: cuda if available")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="N = 1e4, 1e5 and fewer repeats (~30 s on 2 CPU cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/bench_sketch_<device>.json)")
    args = parser.parse_args(argv)

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device, 0) if args.device == "cuda" else torch.device("cpu")
    sync = make_sync(device)
    sizes = [int(s) for s in (args.sizes or ([1e4, 1e5] if args.quick else [1e4, 1e5, 1e6]))]
    repeats = {"update": 20, "estimate": 3, "draw": 20, "step": 10} if args.quick else \
              {"update": 50, "estimate": 5, "draw": 50, "step": 20}
    out_path = args.out or ROOT / "results" / f"bench_sketch_{device.type}.json"
    t_start = time.perf_counter()
    load_start = os.getloadavg()

    train_step = make_train_step(device, args.seed)
    step_t = timed(train_step, repeats=repeats["step"], warmup=5, sync=sync)
    rows = []
    for n in sizes:
        g = torch.Generator(device="cpu").manual_seed(args.seed + n)
        x = torch.randn(n, args.dim, generator=g).to(device)
        draw_ms = None
        for family in args.families:
            bits = args.srp_bits if family == "srp" else args.pstable_bits
            for depth, width in args.configs:
                sk = make_sketch(family, args.dim, depth, width, bits, device, args.seed)
                r = {"n": n, "family": family, "depth": depth, "width": width, "bits": bits,
                     "layout": "direct" if sk._direct else "hashed"}
                numbers, estimates = bench_one(sk, x, sync, repeats=repeats, seed=args.seed)
                r.update(numbers)
                # The step again right after, so each row's ratios compare numbers taken at the same moment.
                local = timed(train_step, repeats=5, warmup=1, sync=sync)
                r["train_step_ms_local"], r["train_step_ms_local_min"] = 1e3 * statistics.median(local), 1e3 * min(local)
                if draw_ms is None:  # (d) depends on N only: measure it once per N
                    draw_ms = 1e3 * statistics.median(bench_draw(estimates, sync, repeats["draw"], args.seed))
                r["draw_ms"] = draw_ms
                rows.append(r)
                print(f"  N={n:.0e} {family:7s} {depth}x{width}: hash {r['hash_all_s']:.3f} s, update {r['update_ms']:.3f} ms,"
                      f" score all {r['score_all_ms']:.2f} ms", flush=True)
                del sk, estimates
        del x
    # The step again at the end: report the median over both passes (guards against drift during the run).
    step_t += timed(train_step, repeats=repeats["step"], warmup=1, sync=sync)
    step_ms = 1e3 * statistics.median(step_t)
    for r in rows:  # ratios against the step timed next to the row (robust to drifting load on shared CPUs)
        r["score_all_over_step"] = r["score_all_ms"] / r["train_step_ms_local"]
        r["update_over_step"] = r["update_ms"] / r["train_step_ms_local"]
        r["draw_over_step"] = r["draw_ms"] / r["train_step_ms_local"]
        # min over repeats: closer to the uncontended cost when other processes share the CPUs
        r["score_all_over_step_min"] = r["score_all_ms_min"] / r["train_step_ms_local_min"]
        r["update_over_step_min"] = r["update_ms_min"] / r["train_step_ms_local_min"]

    result = {
        "device": device.type, "device_name": device_name(device), "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None, "git_commit": git_commit(),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick, "dim": args.dim, "batch": BATCH,
        "repeats": repeats, "statistic": "median", "train_step_ms": step_ms,
        "train_step_ms_min": 1e3 * min(step_t), "rows": rows, "wall_s": time.perf_counter() - t_start,
        # 1-min load average at start and end: other processes on the CPUs inflate CPU timings (notably
        # multi-threaded ops such as index_add_ on >= 32K indices); compare runs only at similar load.
        "loadavg_start": load_start[0], "loadavg_end": os.getloadavg()[0],
    }
    atomic_write_text(out_path, json.dumps(result, indent=1))
    print()
    print(markdown(result))
    print(f"\nwrote {out_path} ({result['wall_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
