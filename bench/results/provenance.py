"""Where a number came from: the git commit and the device, recorded beside every result and benchmark.

    from bench.results.provenance import git_commit, device_name
    git_commit()            # '4da1575a1b2c' or '4da1575a1b2c+dirty'; $NWS_GIT_COMMIT wins (Docker images have no .git)
    device_name(device)     # 'NVIDIA H200' or the CPU model
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

__all__ = ["git_commit", "device_name"]

REPO = Path(__file__).resolve().parents[2]


def git_commit() -> str:
    """Return the repository's HEAD (12 hex, '+dirty' when tracked files changed), $NWS_GIT_COMMIT, or 'unknown'."""
    if os.environ.get("NWS_GIT_COMMIT"):
        return os.environ["NWS_GIT_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                               text=True, timeout=5)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device | str) -> str:
    """Return the GPU's name, or the CPU's model name (from /proc/cpuinfo where there is one)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
