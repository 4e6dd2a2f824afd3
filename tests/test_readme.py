"""The README's code blocks run as written (on tiny data), so the documented API stays true."""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from conftest import REPO


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_readme_sampler_loop_runs_and_trains():
    loop = next(b for b in python_blocks() if "NWSSampler" in b)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(2048, 1, 4, 4, generator=g)
    Y = (X.flatten(1).sum(1) > 0).long()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    scope = {"X": X, "Y": Y, "model": model, "opt": opt, "epochs": 6, "F": F}
    exec(loop, scope)
    sampler = scope["sampler"]
    assert sampler.sketch.n > 0  # the loop fed losses back into the sketch
    accuracy = (model(X).argmax(1) == Y).float().mean()
    assert accuracy > 0.8


def test_readme_sketch_block_runs():
    block = next(b for b in python_blocks() if "NWSketch(" in b and "NWSSampler" not in b)
    g = torch.Generator().manual_seed(1)
    d = 8
    x, q = torch.randn(100, d, generator=g), torch.randn(5, d, generator=g)
    y = torch.rand(100, generator=g)
    from sketch import NWSketch, SRPHash

    other = NWSketch(SRPHash(dim=d, depth=16, bits=4, seed=0), width=1024)
    scope = {"d": d, "x": x, "y": y, "q": q, "other": other}
    exec(block, scope)
    assert scope["sk"].n == 100
