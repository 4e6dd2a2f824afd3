#!/usr/bin/env python3
"""What the NWS sampler costs at ImageNet-21k scale: the sketch and the sampler's step at N = 10^7 items.

    .venv/bin/python scripts/bench_scale.py                        # N = 1e7, L = 16, W = 1024, CPU: ~2-4 min, < 3 GB
    .venv/bin/python scripts/bench_scale.py --quick                # N = 1e6, fewer repeats (~30 s)
    .venv/bin/python scripts/bench_scale.py --device cuda --n 14.2e6   # ImageNet-21k's N on a GPU

Measured on --device for N items with --dim features (an SRP hash, --bits 4: 16 codes per row, so codes are
buckets with no second-level hash; the p-stable family adds one modular hash per slot to (a) only):

  memory      int32 slots of all N (4 L bytes per item), the [L*W, 2] float32 table (= the bytes one
              distributed step all-reduces), peak process RSS / peak CUDA memory;
  (a) hash    `slots` of all N inputs, HASH_CHUNK at a time (inputs are generated per chunk, off the clock);
  (b) estimate  `estimate_slots` over all N cached slots (one embedding_bag), --estimate-chunk at a time if set;
  (c) update  `update_slots(slots.index_select(0, idx), losses)` for a random batch of 512 and of 4096 (the
              gather of the batch's slots included); `delta` + `apply_delta`, the same update as a distributed
              step computes it (without the all-reduce itself); and the gather alone, by `slots[idx]` (what
              NWSSampler does) and by `index_select` (on a shared 2-thread CPU at N = 1e7 the first one
              runs a parallel loop that waits for a descheduled thread: 4-8 ms instead of microseconds);
  (d) sample  q = mix_probabilities(estimates) over N, then `draw_categorical(q, 512)`: what the sampler runs
              (CPU: torch.multinomial up to 2**24 categories, else an inverse CDF; CUDA: always the inverse
              CDF; the inverse CDF is timed too for comparison);
  comm        with --comm: all_reduce of the table-sized delta and all_gather of one rank's 512 (index, loss)
              pairs between 2 CPU processes (gloo over loopback): the per-step collectives of sketch.distributed;
  (e) sampler one NWSSampler step (next batch + weights + update, batch 512) with full re-estimation every
              step, with pool_size=4096, with refresh_every=10 and with both; mean over a multiple of 10
              steps (the amortized cost) and median (the typical step).

CPU caveats (measured, see docs/SCALE.md): at N = 1e7 every [N] float temporary is a fresh 40 MB mmap that
page-faults on first touch (glibc), which dominates elementwise work such as mix_probabilities; running with
`MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000` reuses heap memory instead. On a CPU shared with
other jobs, 2-thread parallel loops wait for descheduled threads (4 ms scheduler ticks): --threads 1 is steadier.

Timing: CUDA is synchronized around every timed call; each operation is warmed up once, then the median of
--repeats is reported (plus the min). Results go to results/bench_scale_<device>.json (device name, torch,
git commit, threads, load average, every number) and a markdown table is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import torch


from bench.results.provenance import device_name, git_commit
from bench.results.files import atomic_write_text
from bench.train.timing import timed

from sketch import NWSketch, SRPHash
from sketch.samplers import MULTINOMIAL_MAX_CATEGORIES, NWSFullSampler, draw_categorical, inverse_cdf_draw, mix_probabilities

ROOT = Path(__file__).resolve().parents[1]

HASH_CHUNK = 1 << 16  # inputs hashed per call (bounds the [chunk, dim] inputs and [chunk, L, bits] temporaries)
FILL_CHUNK = 1 << 18  # items per update when filling the table before estimating
MB = 2**20




def summary(times: list[float]) -> dict[str, float]:
    return {"ms": 1e3 * statistics.median(times), "ms_min": 1e3 * min(times), "ms_mean": 1e3 * statistics.fmean(times)}






def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def hash_all(sk: NWSketch, n: int, dim: int, device: torch.device, seed: int, sync) -> tuple[torch.Tensor, float]:
    """int32 [n, L] slots of n random inputs, generated HASH_CHUNK at a time; returns (slots, hashing seconds)."""
    out = torch.empty(n, sk.depth, dtype=torch.int32, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    sk.slots(torch.randn(HASH_CHUNK, dim, generator=g, device=device))  # warm-up
    seconds = 0.0
    for start in range(0, n, HASH_CHUNK):
        x = torch.randn(min(HASH_CHUNK, n - start), dim, generator=g, device=device)
        sync()
        t0 = time.perf_counter()
        out[start : start + x.shape[0]] = sk.slots(x)
        sync()
        seconds += time.perf_counter() - t0
    return out, seconds


def estimate_all(sk: NWSketch, slots: torch.Tensor, chunk: int | None) -> torch.Tensor:
    if chunk is None:
        return sk.estimate_slots(slots)
    return torch.cat([sk.estimate_slots(slots[i : i + chunk]) for i in range(0, slots.shape[0], chunk)])


def bench_sampler(sk: NWSketch, slots: torch.Tensor, steps: int, sync, seed: int, **opts) -> dict[str, float]:
    """Seconds per NWSFullSampler step (next batch + weights + update of 512 losses) for the options `opts`."""
    state = sk.state_dict()
    sampler = NWSFullSampler(sk, slots, 512, seed=seed, device=slots.device, mix=0.1, **opts)
    g = torch.Generator(device=slots.device).manual_seed(seed + 1)
    losses = torch.rand(steps + 1, 512, generator=g, device=slots.device)
    it = iter(sampler)
    count = iter(range(10**9))

    def step() -> None:
        idx = next(it)
        sampler.weights(idx)
        sampler.update(idx, losses[next(count)])

    out = summary(timed(step, repeats=steps, warmup=1, sync=sync))
    sk.load_state_dict(state)  # leave the sketch as found: every variant starts from the same tables
    return out


def _comm_worker(rank: int, world: int, path: str, table_numel: int, batch: int, repeats: int, out: str) -> None:
    """Time the per-step collectives of `sketch.distributed` between `world` CPU processes (gloo)."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    delta, packed = torch.rand(table_numel // 2, 2), torch.rand(batch, 2, dtype=torch.float64)
    parts = [torch.empty_like(packed) for _ in range(world)]
    barrier = dist.barrier
    res = {
        "allreduce_table": summary(timed(lambda: dist.all_reduce(delta), repeats=repeats, warmup=3, sync=barrier)),
        f"allgather_{batch}": summary(timed(lambda: dist.all_gather(parts, packed), repeats=repeats, warmup=3, sync=barrier)),
    }
    if rank == 0:
        Path(out).write_text(json.dumps(res))
    dist.destroy_process_group()


def bench_comm(table_numel: int, batch: int, repeats: int, world: int = 2) -> dict:
    """Per-step communication on this machine: all_reduce of the sketch delta (NWS) vs all_gather of
    (indices, losses) of one rank's batch (history, infobatch), `world` gloo processes over loopback."""
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "comm.json"
        mp.spawn(_comm_worker, args=(world, str(Path(tmp) / "rdv"), table_numel, batch, repeats, str(out)), nprocs=world)
        return {"backend": "gloo", "world_size": world, "batch_per_rank": batch, **json.loads(out.read_text())}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=float, default=None, help="items N (default 1e7; --quick: 1e6)")
    parser.add_argument("--rows", type=int, default=16, help="sketch depth L")
    parser.add_argument("--width", type=int, default=1024, help="buckets per row W")
    parser.add_argument("--bits", type=int, default=4, help="SRP bits per row")
    parser.add_argument("--dim", type=int, default=64, help="features of the hashed inputs")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="auto: cuda if available")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--estimate-chunk", type=int, default=None, help="items per estimate call (default: all N at once)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per operation (default 5; quick 3)")
    parser.add_argument("--quick", action="store_true", help="N = 1e6 and fewer repeats (~30 s on 2 CPU cores)")
    parser.add_argument("--comm", action="store_true", help="also time gloo all_reduce / all_gather between 2 CPU processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/bench_scale_<device>.json)")
    args = parser.parse_args(argv)

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device, 0) if args.device == "cuda" else torch.device("cpu")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    n = int(args.n if args.n is not None else (1e6 if args.quick else 1e7))
    repeats = args.repeats or (3 if args.quick else 5)
    L, W = args.rows, args.width
    out_path = args.out or ROOT / "results" / f"bench_scale_{device.type}.json"
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    if device.type == "cuda":
        torch.zeros(1, device=device)  # create the context first: resetting stats before it fails on torch 2.11
        torch.cuda.reset_peak_memory_stats(device)

    sk = NWSketch(SRPHash(dim=args.dim, rows=L, bits=args.bits, seed=args.seed, device=device), width=W)
    slots, hash_s = hash_all(sk, n, args.dim, device, args.seed, sync)
    print(f"hash: {n:.3g} items in {hash_s:.2f} s", flush=True)
    r: dict = {"hash_all_s": hash_s, "hash_items_per_s": n / hash_s}

    # (c) updates on the empty sketch, then fill the tables with every item once (so estimates read real cells)
    g = torch.Generator(device=device).manual_seed(args.seed + 2)
    for b in (512, 4096):
        idx = torch.randint(0, n, (repeats + 1, b), generator=g, device=device)
        val = torch.rand(repeats + 1, b, generator=g, device=device)
        k = iter(range(10**9))
        pick = lambda: slots.index_select(0, idx[next(k) % (repeats + 1)])  # noqa: E731
        r[f"update_{b}"] = summary(timed(lambda: sk.update_slots(pick(), val[0]), repeats=repeats * 4, warmup=1, sync=sync))
        r[f"delta_apply_{b}"] = summary(timed(lambda: sk.apply_delta(sk.delta(pick(), val[0])),
                                              repeats=repeats * 4, warmup=1, sync=sync))
        r[f"gather_getitem_{b}"] = summary(timed(lambda: slots[idx[next(k) % (repeats + 1)]], repeats=repeats * 4, warmup=1, sync=sync))
        r[f"gather_index_select_{b}"] = summary(timed(pick, repeats=repeats * 4, warmup=1, sync=sync))
        r[f"update_{b}"]["items_per_s"] = b / (r[f"update_{b}"]["ms"] / 1e3)
    for start in range(0, n, FILL_CHUNK):
        stop = min(n, start + FILL_CHUNK)
        sk.update_slots(slots[start:stop], torch.rand(stop - start, generator=g, device=device))
    print(f"update 512: {r['update_512']['ms']:.3f} ms", flush=True)

    # (b) estimate all N
    est = estimate_all(sk, slots, args.estimate_chunk)
    r["estimate_all"] = summary(timed(lambda: estimate_all(sk, slots, args.estimate_chunk), repeats=repeats, warmup=1, sync=sync))
    r["estimate_all"]["items_per_s"] = n / (r["estimate_all"]["ms"] / 1e3)
    print(f"estimate all: {r['estimate_all']['ms']:.1f} ms", flush=True)

    # (d) sampling over N: the mixed distribution, then the sampler's categorical draw (and the alternative)
    r["mix_probabilities"] = summary(timed(lambda: mix_probabilities(est, 0.1), repeats=repeats, warmup=1, sync=sync))
    q = mix_probabilities(est, 0.1)
    dg = torch.Generator(device=device).manual_seed(args.seed + 3)
    r["draw_512"] = summary(timed(lambda: draw_categorical(q, 512, dg), repeats=repeats * 4, warmup=1, sync=sync))
    r["draw_512"]["method"] = "multinomial" if device.type == "cpu" and n <= MULTINOMIAL_MAX_CATEGORIES else "inverse_cdf"
    r["inverse_cdf_512"] = summary(timed(lambda: inverse_cdf_draw(q, 512, dg), repeats=repeats * 4, warmup=1, sync=sync))
    del q, est
    print(f"draw 512: {r['draw_512']['ms']:.2f} ms ({r['draw_512']['method']})", flush=True)

    # (e) the sampler's step, per proposal variant (steps: a multiple of refresh_every, so the mean amortizes it)
    variants = {"full": {}, "pool_4096": {"pool_size": 4096}, "refresh_10": {"refresh_every": 10},
                "pool_4096_refresh_10": {"pool_size": 4096, "refresh_every": 10}}
    r["sampler_step"] = {}
    for name, opts in variants.items():
        steps = 10 if name == "full" else 40
        r["sampler_step"][name] = {**bench_sampler(sk, slots, steps, sync, args.seed, **opts), "options": opts, "steps": steps}
        print(f"sampler step {name}: mean {r['sampler_step'][name]['ms_mean']:.2f} ms", flush=True)

    table_bytes = sk.memory_bytes()
    if args.comm:
        r["comm"] = bench_comm(sk.table.numel(), 512, repeats * 20)
        print(f"comm: all_reduce {r['comm']['allreduce_table']['ms']:.3f} ms", flush=True)
    result = {
        "device": device.type, "device_name": device_name(device), "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None, "git_commit": git_commit(),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "OMP_", "MKL_"))},
        "n": n, "rows": L, "width": W, "bits": args.bits, "dim": args.dim, "family": "srp", "repeats": repeats,
        "statistic": "median (ms), min (ms_min), mean (ms_mean)", "estimate_chunk": args.estimate_chunk,
        "memory": {
            "slots_bytes_per_item": slots.element_size() * L, "slots_mb": slots.numel() * slots.element_size() / MB,
            "table_bytes": table_bytes, "allreduce_bytes_per_step": table_bytes,
            "peak_rss_mb": peak_rss_mb(),
            "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / MB if device.type == "cuda" else None,
        },
        **r,
        "wall_s": time.perf_counter() - t_start, "loadavg_start": load_start, "loadavg_end": os.getloadavg()[0],
    }
    atomic_write_text(out_path, json.dumps(result, indent=1))
    print()
    print(markdown(result))
    print(f"\nwrote {out_path} ({result['wall_s']:.0f} s)")
    return result


def markdown(res: dict) -> str:
    m, n = res["memory"], res["n"]
    cell = lambda d: f"{d['ms']:.3f} [{d['ms_min']:.3f}]"  # noqa: E731
    rows = [
        ("int32 slots, all N", f"{m['slots_mb']:.0f} MB ({m['slots_bytes_per_item']} B/item)"),
        ("table [L*W, 2] float32 = all-reduce per step", f"{m['table_bytes'] / 1024:.0f} KiB"),
        ("peak memory", f"RSS {m['peak_rss_mb']:.0f} MB" + (f", CUDA {m['peak_cuda_mb']:.0f} MB" if m["peak_cuda_mb"] else "")),
        ("(a) hash all N (one-off)", f"{res['hash_all_s']:.2f} s ({res['hash_items_per_s']:.3g} items/s)"),
        ("(b) estimate all N, ms", f"{cell(res['estimate_all'])} ({res['estimate_all']['items_per_s']:.3g} items/s)"),
        ("(c) update, batch 512, ms", cell(res["update_512"])),
        ("(c) update, batch 4096, ms", cell(res["update_4096"])),
        ("(c) delta + apply_delta, batch 512, ms", cell(res["delta_apply_512"])),
        ("(c) delta + apply_delta, batch 4096, ms", cell(res["delta_apply_4096"])),
        ("(c) gather slots of 512: `slots[idx]` / `index_select`, ms",
         f"{cell(res['gather_getitem_512'])} / {cell(res['gather_index_select_512'])}"),
        ("(d) mix_probabilities over N, ms", cell(res["mix_probabilities"])),
        (f"(d) draw 512 over N ({res['draw_512']['method']}), ms", cell(res["draw_512"])),
        ("(d) draw 512 by inverse CDF, ms", cell(res["inverse_cdf_512"])),
    ]
    if "comm" in res:
        c = res["comm"]
        rows.append((f"all_reduce of the table, {c['world_size']} CPU ranks (gloo), ms", cell(c["allreduce_table"])))
        rows.append((f"all_gather of {c['batch_per_rank']} (index, loss) per rank, {c['world_size']} CPU ranks (gloo), ms",
                     cell(c[f"allgather_{c['batch_per_rank']}"])))
    for name, d in res["sampler_step"].items():
        rows.append((f"(e) sampler step, {name} (mean over {d['steps']}), ms", f"{d['ms_mean']:.3f} (median {d['ms']:.3f})"))
    head = (f"N = {n:.3g}, L = {res['rows']}, W = {res['width']}, SRP {res['bits']} bits, dim {res['dim']}; "
            f"{res['device_name']} ({res['device']}), torch {res['torch']}, threads {res['threads']}, "
            f"load {res['loadavg_start']:.1f}->{res['loadavg_end']:.1f}, commit {res['git_commit'][:12]}. "
            f"Cells: median [min] of repeats.")
    return "\n".join([head, "", "| what | value |", "|---|---:|", *[f"| {k} | {v} |" for k, v in rows]])


if __name__ == "__main__":
    main()
