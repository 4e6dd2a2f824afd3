"""Every script that the README or docs/ tell a user to run exists, is executable and says how to run it
(a shebang), so `scripts/NAME ...` works as written as well as `python scripts/NAME` / `bash scripts/NAME`."""
from __future__ import annotations

import os
import re

import pytest

from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "docker" / "README.md"]


def named_scripts() -> list[str]:
    """The `scripts/<name>` paths the README and docs/ mention."""
    text = "\n".join(p.read_text() for p in DOCS if p.is_file())
    return sorted(set(re.findall(r"\bscripts/([\w.-]+\.(?:py|sh))\b", text)))


def test_the_docs_name_scripts():
    assert {"reproduce.sh", "docker_check.sh"} <= set(named_scripts())


@pytest.mark.parametrize("name", named_scripts())
def test_each_script_the_docs_name_is_executable_with_a_shebang(name):
    path = REPO / "scripts" / name
    assert path.is_file(), f"the docs name scripts/{name}, which does not exist"
    assert os.access(path, os.X_OK), f"scripts/{name} is not executable (chmod +x)"
    assert path.read_text().startswith("#!"), f"scripts/{name} has no shebang line"
