"""GPU tests of the sketch: a sketch on CUDA agrees with the same sketch on the CPU.

Marked `gpu` (excluded by the default `-m 'not slow and not gpu'`) and skipped without CUDA:

    .venv/bin/python -m pytest -q -m gpu tests/test_gpu.py
"""
from __future__ import annotations

import pytest
import torch

from sketch import NWSketch, PStableHash, SRPHash

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DIM = 16


def _data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g)
    return x, torch.sin(2 * x[:, 0]) + x[:, 1] ** 2


def _make(family: str, device: str, **kw) -> NWSketch:
    if family == "srp":
        hash_ = SRPHash(dim=DIM, rows=32, bits=4, seed=3, device=device)
        width = 16  # direct layout
    else:
        hash_ = PStableHash(dim=DIM, rows=32, bits=2, bandwidth=2.0, seed=3, device=device)
        width = 512  # hashed layout
    return NWSketch(hash_, width=width, dtype=torch.float64, **kw)


@pytest.mark.parametrize("family", ["srp", "pstable"])
@pytest.mark.parametrize("decay", [1.0, 0.9])
def test_cuda_sketch_gives_the_cpu_estimates(family, decay):
    # The hash functions come from a CPU generator seeded with `seed`, so the same seed builds the same
    # functions on every device: the slots agree exactly (bar inputs on a projection's sign boundary, which
    # random data does not hit), and so do the tables and estimates, up to float summation order.
    x, y = _data(2000)
    q, _ = _data(300, seed=1)
    cpu, gpu = _make(family, "cpu", decay=decay), _make(family, "cuda", decay=decay)
    assert gpu.device.type == "cuda" and gpu.table.device.type == "cuda"
    slots_cpu, slots_gpu = cpu.slots(x), gpu.slots(x.cuda())
    assert float((slots_cpu == slots_gpu.cpu()).double().mean()) > 0.999
    for chunk in range(4):
        part = slice(500 * chunk, 500 * (chunk + 1))
        cpu.update(x[part], y[part])
        gpu.update(x[part].cuda(), y[part].cuda())
    assert gpu.n == pytest.approx(cpu.n, rel=1e-9)
    est_cpu, est_gpu = cpu.estimate(q), gpu.estimate(q.cuda())
    assert est_gpu.device.type == "cuda"
    close = (est_gpu.cpu() - est_cpu).abs() <= 1e-6 * (1 + est_cpu.abs())
    assert float(close.double().mean()) > 0.99
    # Through the cached-slot path with int32 slots, as the sampler runs it.
    assert torch.allclose(gpu.estimate_slots(gpu.slots(q.cuda()).int()).cpu(), est_gpu.cpu())


@pytest.mark.parametrize("family", ["srp", "pstable"])
def test_merge_on_cuda_equals_update_on_the_union(family):
    # Linearity on the device: two halves merged equal one sketch fed everything (the all-reduce case), and a
    # CPU sketch merges into a CUDA one (its table is moved).
    x, y = _data(1000)
    xc, yc = x.cuda(), y.cuda()
    left, right, whole = (_make(family, "cuda", decay=0.95) for _ in range(3))
    for step in range(4):
        part = slice(250 * step, 250 * (step + 1))
        left.update(xc[part][:100], yc[part][:100])
        right.update(xc[part][100:], yc[part][100:])
        whole.update(xc[part], yc[part])
    left.merge(right)
    assert torch.allclose(left.table * left._scale, whole.table * whole._scale)
    assert torch.allclose(left.estimate(xc), whole.estimate(xc))
    a, b = _make(family, "cuda"), _make(family, "cpu")
    a.update(xc[:500], yc[:500])
    b.update(x[500:], y[500:])
    a.merge(b)
    full = _make(family, "cuda")
    full.update(xc, yc)
    assert torch.allclose(a.estimate(xc), full.estimate(xc))


@pytest.mark.parametrize("family", ["srp", "pstable"])
def test_state_dict_moves_across_devices(family):
    # A state saved on CUDA is on the CPU (checkpoint-friendly); it loads into a CPU sketch, rebuilds on either
    # device with from_state_dict, and `to` moves a sketch back and forth: all give the same estimates.
    x, y = _data(800)
    q, _ = _data(200, seed=2)
    gpu = _make(family, "cuda", decay=0.9)
    gpu.update(x[:400].cuda(), y[:400].cuda())
    gpu.update(x[400:].cuda(), y[400:].cuda())
    state = gpu.state_dict()
    assert state["table"].device.type == "cpu"
    expected = gpu.estimate(q.cuda()).cpu()

    cpu = _make(family, "cpu")
    cpu.load_state_dict(state)
    on_cpu = NWSketch.from_state_dict(state)
    on_gpu = NWSketch.from_state_dict(state, device="cuda")
    assert on_gpu.device.type == "cuda" and on_cpu.device.type == "cpu"
    for sk in (cpu, on_cpu):
        assert torch.allclose(sk.estimate(q), expected, rtol=1e-6, atol=1e-9)
    assert torch.allclose(on_gpu.estimate(q.cuda()).cpu(), expected)

    moved = cpu.to("cuda")
    assert moved.device.type == "cuda" and moved.hash.device.type == "cuda"
    assert torch.allclose(moved.estimate(q.cuda()).cpu(), expected, rtol=1e-6, atol=1e-9)
    back = moved.to("cpu")
    back.update(x[:10], y[:10])  # keeps working after the round trip (decay 0.9 came with the state)
    assert back.n == pytest.approx(0.9 * gpu.n + 10)
    gpu.update(x[:10].cuda(), y[:10].cuda())
    assert torch.allclose(back.estimate(q), gpu.estimate(q.cuda()).cpu(), rtol=1e-6, atol=1e-9)


def test_wrong_device_input_is_named():
    # A CPU tensor given to a CUDA sketch fails with a one-line error naming the argument and both devices.
    sk = _make("srp", "cuda")
    x, y = _data(10)
    with pytest.raises(ValueError, match=r"^x is on cpu but"):
        sk.update(x, y.cuda())
    with pytest.raises(ValueError, match=r"^y is on cpu but"):
        sk.update(x.cuda(), y)
