#!/usr/bin/env python3
"""The lineage-regime table from result rows (docs/RESULTS.md §0.2): per one-pass experiment and sampler, medians over
seeds of the sampler's share of the clock, the median per-step time, time and steps to 0.99·T_u and to T_u, the ratio to
uniform's time to 0.99·T_u, and AUC and logloss at uniform's median clock.

    .venv/bin/python scripts/lineage_table.py RESULTS_DIR        # after python -m bench.run -m sweep=lineage
"""
import json, glob, math, statistics as st, collections, sys
from bench.report.protocol import first_reach, uniform_target, loose_target
rows = [json.load(open(f)) for f in glob.glob(sys.argv[1] + "/runs/*.json")]
def exp(r): return next(o.split("=", 1)[1] for o in r["overrides"] if o.startswith("experiment="))
g = collections.defaultdict(list)
for r in rows: g[(exp(r), r["sampler"])].append(r)
def med(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return st.median(xs) if xs else float("nan")
def at(curve, t, key):
    before = [p for p in curve if p.get("time_s") is not None and p["time_s"] <= t and p.get(key) is not None]
    return before[-1][key] if before else float("nan")
order = ["uniform", "static", "loss", "history", "infobatch", "nws", "nws_full", "stream_filter", "selective_backprop"]
for e in sorted({k[0] for k in g}):
    uni = g[(e, "uniform")]
    t_u = uniform_target([r["final_metric"] for r in uni]); loose = loose_target(t_u, True)
    t_eq = med([r["train_time_s"] - (r.get("setup_time_s") or 0) for r in uni])
    print(f"\n**{e}** (T_u = {t_u:.4f} AUC, uniform's median clock {t_eq:.1f} s, 3 seeds)\n")
    print("| sampler | share of the clock | ms/step (median interval) | to 0.99·T_u s (steps) | to T_u s (steps) | reached T_u | 0.99·T_u time vs uniform | AUC at uniform's time | logloss at uniform's time | final AUC |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = None
    for s in order:
        rs = g.get((e, s))
        if not rs: continue
        share = med([r["sampler_time_s"] / r["train_time_s"] for r in rs])
        ms = med([1e3 * (r.get("median_step_s") or float("nan")) for r in rs])
        l = [first_reach(r["curve"], "auc", loose) for r in rs]; f = [first_reach(r["curve"], "auc", t_u) for r in rs]
        lt, ls = med([x[0] for x in l]), med([x[1] for x in l]); ft, fs = med([x[0] for x in f]), med([x[1] for x in f])
        reached = sum(math.isfinite(x[0]) for x in f)
        if s == "uniform": base = lt
        auc = med([at(r["curve"], t_eq, "metric") for r in rs]); ll = med([at(r["curve"], t_eq, "test_logloss") for r in rs])
        fin = med([r["final_metric"] for r in rs])
        fmt = lambda t, n: "never" if not math.isfinite(t) else f"{t:.1f} ({int(n)})"
        ratio = (lt / base) if base and math.isfinite(lt) else float("inf")
        print(f"| {s} | {100*share:.1f} % | {ms:.0f} | {fmt(lt, ls)} | {fmt(ft, fs)} | {reached}/{len(rs)} | {ratio:.2f}x | {auc:.4f} | {ll:.4f} | {fin:.4f} |")
