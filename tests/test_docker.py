"""docker/Dockerfile, .dockerignore and docker/README.md checked statically: no Docker needed.

Every checker takes file text and raises AssertionError naming what is wrong. `test_checker_passes` runs each
one on the real files; `test_checker_rejects` feeds each one a plausibly broken variant, so that no check
passes vacuously. Each variant is built from the real Dockerfile, and the edit must change the text.

scripts/docker_check.sh (build the image and smoke-run it) is checked statically here too; the `slow` test at
the end runs it for real where podman or a docker daemon is available (-m slow -k docker).
"""
from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
README = ROOT / "docker" / "README.md"
SCRIPT = ROOT / "scripts" / "docker_check.sh"

BUILD_CMD = "docker build -f docker/Dockerfile -t nws-bench ."
CHECK_CMD = "bash scripts/docker_check.sh"
CA_SECRET = "--secret id=ca_bundle,src="
RUN_CMD = ("docker run --gpus all --rm -v $PWD/results:/results -v nws-data:/data -e WANDB_API_KEY "
           "nws-bench -m sampler=uniform,nws seed=0,1,2 logger=online")
RUN_ARGS = shlex.split(RUN_CMD.split(" nws-bench ", 1)[1])  # what docker appends to the ENTRYPOINT
ENTRYPOINT = ["python", "-m", "bench.run"]
INSTALLS = re.compile(r"\b(pip|pip3|uv pip|apt-get|apt)\s+install\b")
PROJECT_INSTALL = re.compile(r"\bpip3?\s+install\b[^&;|]*?\s(?:-e\s+|--editable[= ])?(?:\.|/app)(?:\[[\w,-]+\])?(?=\s|$|;|&)")


# ---------------------------------------------------------------------------------------------- parsing

@dataclass(frozen=True)
class Instr:
    name: str  # upper case: FROM, RUN, ...
    args: str  # the rest, continuation lines joined with spaces


def parse(text: str) -> list[Instr]:
    """Split a Dockerfile into instructions: comments dropped, backslash-continued lines joined."""
    out: list[Instr] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # comments are skipped inside a continuation too
            continue
        if line.endswith("\\"):
            buf += line[:-1].rstrip() + " "
            continue
        buf += line
        name, _, args = buf.partition(" ")
        out.append(Instr(name.upper(), args.strip()))
        buf = ""
    if buf:
        name, _, args = buf.partition(" ")
        out.append(Instr(name.upper(), args.strip()))
    return out


def _exec_form(args: str, what: str) -> list[str]:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        raise AssertionError(f"{what} is not exec form (a JSON list): {args!r}") from None
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{what} is not a JSON list of strings: {args!r}"
    return value


def _last(instrs: list[Instr], name: str) -> tuple[int, Instr | None]:
    idx = [i for i, ins in enumerate(instrs) if ins.name == name]
    return (idx[-1], instrs[idx[-1]]) if idx else (-1, None)


def _env_pairs(ins: Instr) -> list[tuple[str, str]]:
    """The (key, value) pairs set by an ENV or ARG instruction (ARG without a default gives value None)."""
    tokens = shlex.split(ins.args)
    if ins.name == "ENV" and tokens and "=" not in tokens[0]:  # legacy `ENV KEY value with spaces`
        return [(tokens[0], " ".join(tokens[1:]))]
    return [(t.split("=", 1)[0], t.split("=", 1)[1]) if "=" in t else (t, None) for t in tokens]


def _env(instrs: list[Instr]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in instrs:
        if ins.name == "ENV":
            env.update(_env_pairs(ins))
    return env


def _copy_sources(ins: Instr) -> list[str]:
    if ins.args.startswith("["):
        parts = _exec_form(ins.args, ins.name)
    else:
        parts = [p for p in shlex.split(ins.args) if not p.startswith("--")]
    return parts[:-1]


# --------------------------------------------------------------------------------- Dockerfile checkers

def _global_args(instrs: list[Instr]) -> dict[str, str | None]:
    """The ARGs declared before the first FROM: the only ones a FROM line can use, with their defaults."""
    args: dict[str, str | None] = {}
    for ins in instrs:
        if ins.name == "FROM":
            break
        if ins.name == "ARG":
            args.update(_env_pairs(ins))
    return args


def _expand_from(word: str, args: dict[str, str | None]) -> str:
    """A FROM image with $NAME / ${NAME} replaced by the default of a global ARG (what a plain build uses)."""
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        value = args.get(name)
        assert value, f"FROM {word}: ${name} has no default in an ARG before the first FROM, so a plain build has no base"
        return value
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, word)


def check_base_image(text: str) -> None:
    """Every external FROM pins an nvidia/cuda CUDA 12/13 *runtime* Ubuntu tag by tag and sha256 digest.

    A FROM may name the base through a global ARG (ARG BASE_IMAGE=<pinned> / FROM ${BASE_IMAGE}): the ARG's
    default is what is checked, since it is what `docker build` without --build-arg uses."""
    instrs = parse(text)
    froms = [ins for ins in instrs if ins.name == "FROM"]
    assert froms, "no FROM"
    args = _global_args(instrs)
    stages: set[str] = set()
    for ins in froms:
        words = [w for w in ins.args.split() if not w.startswith("--")]
        image = _expand_from(words[0], args)
        if image not in stages:
            assert re.fullmatch(r"(?:docker\.io/)?nvidia/cuda:1[23]\.\d+(?:\.\d+)?-(?:cudnn\d*-)?runtime-ubuntu2[24]\.04"
                                r"@sha256:[0-9a-f]{64}", image), \
                f"FROM {image if image == words[0] else f'{words[0]} (= {image})'} is not an nvidia/cuda 12.x/13.x " \
                "runtime-ubuntu tag pinned @sha256:<64 hex>"
        if len(words) >= 3 and words[1].lower() == "as":
            stages.add(words[2])


def check_non_root_user(text: str) -> None:
    """The final USER is nws or 1000 (not root or 0), created with uid 1000, and comes after every install step."""
    instrs = parse(text)
    i_user, user = _last(instrs, "USER")
    assert user is not None, "no USER: the container would run as root"
    name = user.args.split(":")[0].strip()
    assert name not in {"root", "0"}, f"the last USER is root: USER {user.args}"
    assert name in {"nws", "1000"}, f"the last USER is {name!r}, not nws (uid 1000)"
    installs = [i for i, ins in enumerate(instrs) if ins.name == "RUN" and INSTALLS.search(ins.args)]
    assert installs and max(installs) < i_user, "USER nws must come after the install steps (they need root)"
    assert any(ins.name == "RUN" and re.search(r"\buseradd\b", ins.args) and re.search(r"(--uid|-u)[ =]1000\b", ins.args)
               and re.search(r"\bnws\b", ins.args) for ins in instrs[:i_user]), "no `useradd --uid 1000 ... nws`"


def check_entrypoint(text: str) -> None:
    """ENTRYPOINT is exec form and starts with python -m bench.run (the venv's python, first on PATH)."""
    instrs = parse(text)
    _, ep = _last(instrs, "ENTRYPOINT")
    assert ep is not None, "no ENTRYPOINT"
    argv = _exec_form(ep.args, "ENTRYPOINT")
    assert argv[:3] == ENTRYPOINT, f"ENTRYPOINT {argv} does not start with {ENTRYPOINT}"
    assert "/opt/venv/bin" in _env(instrs).get("PATH", "").split(":")[0], "the venv's bin/ is not first on PATH"


def _hydra_args(text: str, user_args: list[str]) -> list[str]:
    """What `python -m bench.run` receives: ENTRYPOINT's extra words, then the user's args, or CMD when none."""
    instrs = parse(text)
    _, ep = _last(instrs, "ENTRYPOINT")
    _, cmd = _last(instrs, "CMD")
    extra = _exec_form(ep.args, "ENTRYPOINT")[3:] if ep else []
    default = _exec_form(cmd.args, "CMD") if cmd else []
    return extra + (user_args or default)


def check_cli_parses(text: str) -> None:
    """Hydra's own argument parser accepts the documented `docker run` args and the no-argument default."""
    from hydra._internal.utils import get_args_parser

    for user_args in (RUN_ARGS, []):
        argv = _hydra_args(text, user_args)
        with contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                ns = get_args_parser().parse_args(argv)
            except SystemExit:
                raise AssertionError(f"Hydra rejects the args {argv}: {err.getvalue().strip().splitlines()[-1]}") from None
        modes = [ns.run, ns.multirun, ns.cfg is not None, ns.info is not None, ns.shell_completion]
        assert sum(modes) <= 1, f"Hydra allows one of --run, --multirun, --cfg, --info: {argv}"
        if user_args:
            assert ns.multirun, f"`-m` was lost: {argv}"
            missing = [a for a in user_args if not a.startswith("-") and a not in ns.overrides]
            assert not missing, f"overrides {missing} were lost: {argv}"


def check_results_volume(text: str) -> None:
    """VOLUME /results, and rows land there whatever the user passes: /app/results links to /results."""
    instrs = parse(text)
    vols: list[str] = []
    for ins in instrs:
        if ins.name == "VOLUME":
            vols += _exec_form(ins.args, "VOLUME") if ins.args.startswith("[") else ins.args.split()
    assert "/results" in [v.rstrip("/") for v in vols], f"no VOLUME /results (volumes: {vols})"
    _, workdir = _last(instrs, "WORKDIR")
    assert workdir is not None and workdir.args.rstrip("/") == "/app", "the final WORKDIR is not /app"
    linked = any(ins.name == "RUN" and re.search(r"\bln\s+-\w*s\w*\s+/results/?\s+(/app/)?results/?(\s|$)", ins.args)
                 for ins in instrs)
    assert linked, "nothing sends the harness's default results dir (./results in /app) to /results: no `ln -s /results /app/results`"


def check_no_wandb_key(text: str) -> None:
    """WANDB_API_KEY is never baked in: no ENV for it, no ARG with a default, no RUN that sets it."""
    for ins in parse(text):
        if ins.name in ("ENV", "ARG"):
            for key, value in _env_pairs(ins):
                if key == "WANDB_API_KEY":
                    assert ins.name == "ARG" and value is None, f"{ins.name} sets WANDB_API_KEY: the key would be in the image"
        if ins.name == "RUN":
            assert "WANDB_API_KEY=" not in ins.args and "wandb login" not in ins.args, "a RUN step uses a W&B key"


def check_layer_order(text: str) -> None:
    """COPY pyproject.toml, then a RUN that installs the dependencies, then the COPY of the source."""
    instrs = parse(text)
    copies = [(i, _copy_sources(ins)) for i, ins in enumerate(instrs) if ins.name in ("COPY", "ADD")]
    i_pyproject = next((i for i, src in copies if "pyproject.toml" in src), None)
    i_source = next((i for i, src in copies if {".", "./", "bench", "bench/", "sketch", "sketch/"} & set(src)), None)
    assert i_pyproject is not None, "pyproject.toml is never copied on its own"
    assert i_source is not None, "the source (COPY . or bench/, sketch/) is never copied"
    assert i_pyproject < i_source, "the source is copied before pyproject.toml: every edit would reinstall the dependencies"
    assert any(instrs[i].name == "RUN" and INSTALLS.search(instrs[i].args) for i in range(i_pyproject + 1, i_source)), \
        "no install step between COPY pyproject.toml and the source COPY: the dependency layer is not cached"


def check_installs_project(text: str) -> None:
    """After the source COPY a RUN pip-installs the project itself (`pip install -e .` or `pip install .`)."""
    instrs = parse(text)
    copies = [i for i, ins in enumerate(instrs) if ins.name in ("COPY", "ADD") and {".", "./"} & set(_copy_sources(ins))]
    assert copies, "no COPY of the source tree"
    assert any(ins.name == "RUN" and PROJECT_INSTALL.search(ins.args) for ins in instrs[copies[-1]:]), \
        "no `pip install -e .` (or `pip install .`) after the source COPY"


def check_env(text: str) -> None:
    """NWS_DATA=/data, WANDB_MODE=offline, and HF_HUB_OFFLINE not forced by the image."""
    env = _env(parse(text))
    assert env.get("NWS_DATA") == "/data", f"NWS_DATA is {env.get('NWS_DATA')!r}, not /data"
    assert env.get("WANDB_MODE") == "offline", f"WANDB_MODE is {env.get('WANDB_MODE')!r}, not offline"
    assert "HF_HUB_OFFLINE" not in env, "the image forces HF_HUB_OFFLINE"


def check_torch_pins(text: str) -> None:
    """ARG TORCH_VERSION / TORCHVISION_VERSION are allowed by pyproject.toml's dependency ranges."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    args = {k: v for ins in parse(text) if ins.name == "ARG" for k, v in _env_pairs(ins)}
    deps = {r.name: r for r in map(Requirement, tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])}
    for arg, dist in (("TORCH_VERSION", "torch"), ("TORCHVISION_VERSION", "torchvision")):
        assert args.get(arg), f"no ARG {arg}=<version>"
        assert deps[dist].specifier.contains(args[arg]), f"{arg}={args[arg]} is outside pyproject's {dist}{deps[dist].specifier}"


CA_MOUNT = re.compile(r"--mount=type=secret,(?:[\w=/.-]+,)*?id=ca_bundle(?:,[\w=/.-]+)*")


def check_ca_secret(text: str) -> None:
    """Every RUN that pip-installs mounts the build secret ca_bundle and gives it to pip as PIP_CERT (for builds
    behind a TLS-intercepting proxy), and nothing stores a CA bundle in the image (no ENV/ARG PIP_CERT)."""
    instrs = parse(text)
    pip_runs = [ins for ins in instrs if ins.name == "RUN" and re.search(r"\bpip3?\s+install\b", ins.args)]
    assert pip_runs, "no RUN pip install"
    for ins in pip_runs:
        mount = CA_MOUNT.search(ins.args)
        assert mount, f"a pip step does not mount the build secret ca_bundle: RUN {ins.args[:80]}..."
        target = re.search(r"\btarget=([^,\s]+)", mount.group(0))
        path = target.group(1) if target else "/run/secrets/ca_bundle"
        assert f"PIP_CERT={path}" in ins.args, f"a pip step mounts ca_bundle but does not set PIP_CERT={path}"
    for ins in instrs:
        if ins.name in ("ENV", "ARG"):
            keys = {k for k, _ in _env_pairs(ins)}
            assert not keys & {"PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"}, \
                f"{ins.name} {ins.args}: the CA bundle setting would stay in the image; pass it as the build secret ca_bundle"
        if ins.name in ("COPY", "ADD"):
            assert not any(re.search(r"\.(pem|crt)$", s) for s in _copy_sources(ins)), f"{ins.name} copies a certificate into the image"


def check_labels(text: str) -> None:
    """OCI labels for the source and the description."""
    labels = " ".join(ins.args for ins in parse(text) if ins.name == "LABEL")
    for key in ("org.opencontainers.image.source", "org.opencontainers.image.description"):
        assert key + "=" in labels, f"no LABEL {key}"


# ------------------------------------------------------------------------------- .dockerignore, README

def _dockerignore_excludes(text: str, path: str) -> bool:
    """Whether .dockerignore rules leave `path` (relative, '/'-separated) out; the last matching rule wins."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]  # a dir's rule covers what is in it
    for raw in text.splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pat = rule.lstrip("!").strip().strip("/")
        if pat.startswith("**/"):
            pat = pat[3:]
            hit = any(fnmatch.fnmatchcase("/".join(c.split("/")[k:]), pat) for c in candidates for k in range(len(c.split("/"))))
        else:
            hit = any(fnmatch.fnmatchcase(c, pat) for c in candidates)
        if hit:
            excluded = not negate
    return excluded


def check_dockerignore(text: str) -> None:
    """.dockerignore leaves out .venv (and the other local state) but keeps what the build copies."""
    for path in (".venv", ".venv/bin/python", "results", "outputs", "multirun", "wandb", ".git", "bench/__pycache__"):
        assert _dockerignore_excludes(text, path), f".dockerignore does not exclude {path}"
    for path in ("pyproject.toml", "bench/run.py", "sketch/__init__.py", "conf/config.yaml"):
        assert not _dockerignore_excludes(text, path), f".dockerignore excludes {path}, which the image needs"


def check_readme(text: str) -> None:
    """docker/README.md gives the exact build and run commands, and the run's overrides name real configs; it
    documents the check script and the CA-bundle build secret."""
    assert BUILD_CMD in text, f"docker/README.md lacks `{BUILD_CMD}`"
    assert RUN_CMD in text, f"docker/README.md lacks `{RUN_CMD}`"
    assert CHECK_CMD in text, f"docker/README.md lacks `{CHECK_CMD}`"
    assert CA_SECRET in text, f"docker/README.md does not show the CA bundle build secret (`{CA_SECRET}...`)"
    for arg in RUN_ARGS:
        key, _, values = arg.partition("=")
        if (ROOT / "conf" / key).is_dir():
            for value in values.split(","):
                assert (ROOT / "conf" / key / f"{value}.yaml").is_file(), f"{arg}: no conf/{key}/{value}.yaml"


# ------------------------------------------------------------------------------------------------ tests

DOCKERFILE_CHECKS: list[Callable[[str], None]] = [
    check_base_image, check_non_root_user, check_entrypoint, check_cli_parses, check_results_volume,
    check_no_wandb_key, check_layer_order, check_installs_project, check_env, check_torch_pins, check_labels,
    check_ca_secret,
]


@pytest.mark.parametrize("check", DOCKERFILE_CHECKS, ids=lambda f: f.__name__)
def test_checker_passes(check: Callable[[str], None]) -> None:
    check(DOCKERFILE.read_text())


def test_dockerignore_passes() -> None:
    check_dockerignore(DOCKERIGNORE.read_text())


def test_readme_passes() -> None:
    check_readme(README.read_text())


def _edit(old: str, new: str, regex: bool = False) -> Callable[[str], str]:
    """An edit of the Dockerfile's text (a regex is anchored per line); it fails if it changes nothing."""
    def apply(text: str) -> str:
        out = re.sub(old, new, text, count=1, flags=re.M) if regex else text.replace(old, new, 1)
        assert out != text, f"the broken variant did not apply: {old!r} is not in the Dockerfile"
        return out
    return apply


def _edits(*edits: Callable[[str], str]) -> Callable[[str], str]:
    def apply(text: str) -> str:
        for edit in edits:
            text = edit(text)
        return text
    return apply


BROKEN: list[tuple[str, Callable[[str], None], Callable[[str], str]]] = [
    ("from-tag-only", check_base_image, _edit(r"^(ARG BASE_IMAGE=\S+?)@sha256:[0-9a-f]{64}", r"\1", regex=True)),
    ("from-short-digest", check_base_image, _edit(r"^(ARG BASE_IMAGE=\S+@sha256:[0-9a-f]{63})[0-9a-f]", r"\1", regex=True)),
    ("from-devel-tag", check_base_image, _edit(r"^(ARG BASE_IMAGE=\S+)-cudnn-runtime-", r"\1-cudnn-devel-", regex=True)),
    ("from-other-image", check_base_image, _edit(r"^FROM \S+", "FROM python:3.12-slim@sha256:" + "a" * 64, regex=True)),
    ("from-other-default", check_base_image, _edit(r"^ARG BASE_IMAGE=\S+", "ARG BASE_IMAGE=debian:bookworm", regex=True)),
    ("from-arg-no-default", check_base_image, _edit(r"^ARG BASE_IMAGE=\S+", "ARG BASE_IMAGE", regex=True)),
    ("from-arg-after-from", check_base_image, _edits(_edit(r"^ARG BASE_IMAGE=\S+\n", "", regex=True),
                                                      _edit(r"^(FROM .*)$", r"\1\nARG BASE_IMAGE=nvidia/cuda:13.0.3-cudnn-runtime-ubuntu24.04@sha256:" + "a" * 64, regex=True))),
    ("from-extra-unpinned-stage", check_base_image, _edit(r"^FROM ", "FROM nvidia/cuda:13.0.3-cudnn-runtime-ubuntu24.04 AS x\nFROM ", regex=True)),
    ("user-missing", check_non_root_user, _edit(r"^USER .*\n", "", regex=True)),
    ("user-root-last", check_non_root_user, _edit(r"^(USER .*)$", r"\1\nUSER root", regex=True)),
    ("user-0-last", check_non_root_user, _edit(r"^(USER .*)$", r"\1\nUSER 0:0", regex=True)),
    ("user-other-name", check_non_root_user, _edit(r"^USER .*$", "USER 1001", regex=True)),
    ("user-before-installs", check_non_root_user, _edit(r"^(USER .*)$", r"\1\nRUN pip install numpy", regex=True)),
    ("entrypoint-shell-form", check_entrypoint, _edit(r"^ENTRYPOINT .*$", "ENTRYPOINT python -m bench.run", regex=True)),
    ("entrypoint-script", check_entrypoint, _edit(r"^ENTRYPOINT .*$", 'ENTRYPOINT ["python", "bench/run.py"]', regex=True)),
    ("entrypoint-missing", check_entrypoint, _edit(r"^ENTRYPOINT .*\n", "", regex=True)),
    ("entrypoint-system-python", check_entrypoint, _edit("PATH=/opt/venv/bin:$PATH", "PATH=$PATH:/opt/venv/bin")),
    ("entrypoint-override-breaks-m", check_cli_parses,
     _edit(r"^ENTRYPOINT .*$", 'ENTRYPOINT ["python", "-m", "bench.run", "paths.results_dir=/results"]', regex=True)),
    ("entrypoint-cfg-with-m", check_cli_parses,
     _edit(r"^ENTRYPOINT .*$", 'ENTRYPOINT ["python", "-m", "bench.run", "--cfg", "job"]', regex=True)),
    ("volume-missing", check_results_volume, _edit('VOLUME ["/results", "/data"]', 'VOLUME ["/data"]')),
    ("results-not-linked", check_results_volume, _edit(" \\\n    && ln -sfn /results /app/results", "")),
    ("results-linked-elsewhere", check_results_volume, _edit("ln -sfn /results /app/results", "ln -sfn /results /srv/results")),
    ("wandb-env", check_no_wandb_key, _edit(r"^(USER .*)$", r"ENV WANDB_API_KEY=0123abcd\n\1", regex=True)),
    ("wandb-env-multi", check_no_wandb_key, _edit(r"^    WANDB_MODE=offline$", "    WANDB_MODE=offline \\\n    WANDB_API_KEY=", regex=True)),
    ("wandb-arg-default", check_no_wandb_key, _edit(r"^ARG TORCH_INDEX=$", "ARG TORCH_INDEX=\nARG WANDB_API_KEY=0123abcd", regex=True)),
    ("wandb-run", check_no_wandb_key, _edit("pip install --no-deps -e .", "pip install --no-deps -e . && WANDB_API_KEY=x wandb login")),
    ("source-before-pyproject", check_layer_order, _edit(r"^COPY pyproject.toml \./$", "COPY . .\nCOPY pyproject.toml ./", regex=True)),
    ("no-pyproject-copy", check_layer_order, _edit(r"^COPY pyproject.toml \./$", "COPY requirements.txt ./", regex=True)),
    ("deps-after-source", check_layer_order, _edit(r"^COPY pyproject.toml \./$", "COPY pyproject.toml ./\nCOPY . .", regex=True)),
    ("project-not-installed", check_installs_project, _edit("pip install --no-deps -e .", "pip install --no-deps timm")),
    ("project-installed-before-copy", check_installs_project, _edits(
        _edit("pip install --no-deps -e .", "pip install --no-deps timm"), _edit(r"^COPY \. \.$", "RUN pip install -e .\nCOPY . .", regex=True))),
    ("nws-data-elsewhere", check_env, _edit(r"^ENV NWS_DATA=/data", "ENV NWS_DATA=/tmp/data", regex=True)),
    ("wandb-mode-online", check_env, _edit(r"^    WANDB_MODE=offline$", "    WANDB_MODE=online", regex=True)),
    ("hf-offline-forced", check_env, _edit(r"^    WANDB_MODE=offline$", "    WANDB_MODE=offline HF_HUB_OFFLINE=1", regex=True)),
    ("torch-outside-pyproject", check_torch_pins, _edit(r"^ARG TORCH_VERSION=.*$", "ARG TORCH_VERSION=2.99.0", regex=True)),
    ("torchvision-unpinned", check_torch_pins, _edit(r"^ARG TORCHVISION_VERSION=.*$", "ARG TORCHVISION_VERSION=", regex=True)),
    ("no-source-label", check_labels, _edit("org.opencontainers.image.source=", "org.opencontainers.image.url=")),
    ("ca-not-mounted-for-deps", check_ca_secret, _edit("RUN --mount=type=secret,id=ca_bundle \\\n    if", "RUN if")),
    ("ca-not-mounted-for-project", check_ca_secret, _edit(r"^RUN --mount=type=secret,id=ca_bundle \\\n(.*\n)(    && pip install --no-deps)",
                                                          r"RUN \\\n\1\2", regex=True)),
    ("ca-mounted-unused", check_ca_secret, _edit("then export PIP_CERT=/run/secrets/ca_bundle; fi", "then :; fi")),
    ("ca-other-target", check_ca_secret, _edit("--mount=type=secret,id=ca_bundle ", "--mount=type=secret,id=ca_bundle,target=/ca.pem ")),
    ("ca-in-env", check_ca_secret, _edit(r"^(USER .*)$", r"ENV PIP_CERT=/etc/ssl/certs/proxy.pem\n\1", regex=True)),
    ("ca-copied", check_ca_secret, _edit(r"^COPY pyproject.toml \./$", "COPY proxy-ca.crt /usr/local/share/ca-certificates/\nCOPY pyproject.toml ./", regex=True)),
]


@pytest.mark.parametrize("check, breaks", [pytest.param(c, b, id=name) for name, c, b in BROKEN])
def test_checker_rejects(check: Callable[[str], None], breaks: Callable[[str], str]) -> None:
    broken = breaks(DOCKERFILE.read_text())
    with pytest.raises(AssertionError):
        check(broken)


@pytest.mark.parametrize("text", [
    pytest.param("results\noutputs\nmultirun\nwandb\n.git\n**/__pycache__\n", id="no-venv"),
    pytest.param(".venv/\nresults\noutputs\nmultirun\nwandb\n.git\n**/__pycache__\n!.venv\n", id="venv-re-included"),
    pytest.param("*\n", id="excludes-everything"),
    pytest.param(".venv\nresults\noutputs\nmultirun\nwandb\n.git\n**/__pycache__\nconf\n", id="excludes-conf"),
])
def test_dockerignore_rejects(text: str) -> None:
    with pytest.raises(AssertionError):
        check_dockerignore(text)


def test_readme_rejects_drift() -> None:
    text = README.read_text()
    with pytest.raises(AssertionError):
        check_readme(text.replace("-v nws-data:/data", "-v nws-data:/cache"))
    with pytest.raises(AssertionError):
        check_readme(text.replace(BUILD_CMD, "docker build -t nws-bench docker"))
    with pytest.raises(AssertionError):
        check_readme(text.replace(CHECK_CMD, "scripts/check.sh"))
    with pytest.raises(AssertionError):
        check_readme(text.replace(CA_SECRET, "--build-arg PIP_CERT="))


# ------------------------------------------------------------------------------------- scripts/docker_check.sh

def _script(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def test_check_script_parses() -> None:
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_check_script_reads_the_pinned_base() -> None:
    """The script's default base is the Dockerfile's: the same text check_base_image accepts."""
    proc = _script("--print-base")
    assert proc.returncode == 0, proc.stderr
    pinned = proc.stdout.strip()
    check_base_image(f"ARG BASE_IMAGE={pinned}\nFROM ${{BASE_IMAGE}}\n")
    assert _global_args(parse(DOCKERFILE.read_text()))["BASE_IMAGE"] == pinned


def test_check_script_fails_in_one_line() -> None:
    for args in (["--no-such-option"], ["--engine", "lxc"], ["--project", "/nonexistent"]):
        proc = _script(*args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("docker_check: FAILED: "), (args, proc.stderr)


def test_check_script_help() -> None:
    proc = _script("--help")
    assert proc.returncode == 0 and "--keep-image" in proc.stdout and "--project" in proc.stdout, proc.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_check_script_shellcheck() -> None:
    proc = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout


def _engine() -> tuple[str | None, str]:
    """The engine scripts/docker_check.sh would use here, or None and why not."""
    if shutil.which("docker"):
        try:
            if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0:
                return "docker", ""
        except subprocess.TimeoutExpired:
            pass
    if shutil.which("podman"):
        return "podman", ""
    return None, ("neither podman nor a running docker daemon here: the image build and smoke run were not tried "
                  "(as root, `bash scripts/docker_check.sh` installs podman itself)")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_docker_check_builds_and_smoke_runs(tmp_path: Path) -> None:
    """scripts/docker_check.sh end to end: the image builds and its smoke job writes a row and an offline W&B run.

    Minutes and several GB of downloads (torch with its CUDA libraries); the image is removed afterwards."""
    engine, why = _engine()
    if engine is None:
        pytest.skip(why)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), "--engine", engine, "--out", str(out)],
                          capture_output=True, text=True, timeout=3500, env={**os.environ, "LC_ALL": "C"})
    print(proc.stdout)
    assert proc.returncode == 0, f"{proc.stderr.strip()[-3000:]}\n{proc.stdout[-3000:]}"
    rows = list((out / "results" / "runs").glob("*.json"))
    assert rows, proc.stdout
    row = json.loads(rows[0].read_text())
    assert (row["status"], row["dataset"], row["sampler"]) == ("done", "digits", "nws"), row
    assert list((out / "outputs").glob("*/*/wandb/offline-run-*/*.wandb")), proc.stdout
    assert "== verified" in proc.stdout and "== not verified" in proc.stdout
