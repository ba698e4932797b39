"""--airgap DIR: k3s' binary, images and install script fetched on the admin's machine, their
checksums verified against the release's checksum file, kept in DIR for the next host."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from libresh_cli.errors import BadInputError, ConflictError, UnreachableError
from libresh_cli.progress import Reporter

# Overridable for a mirror (and for tests, which serve a fake release on loopback).
RELEASES_ENV = "LIBRESH_K3S_RELEASES_URL"
SCRIPT_ENV = "LIBRESH_K3S_INSTALL_SCRIPT_URL"
RELEASES_URL = "https://github.com/k3s-io/k3s/releases/download"
# The script of the same tag: the release publishes no checksum for it, so it is pinned by tag.
SCRIPT_URL = "https://raw.githubusercontent.com/k3s-io/k3s/{version}/install.sh"
CHUNK = 1 << 20


@dataclass(frozen=True)
class AirgapFiles:
    binary: Path
    images: Path
    script: Path


def binary_name(arch: str) -> str:
    return "k3s" if arch == "amd64" else f"k3s-{arch}"


def images_name(arch: str) -> str:
    return f"k3s-airgap-images-{arch}.tar.zst"


def parse_checksums(text: str) -> dict[str, str]:
    """`sha256sum` output: "<hex>  <name>" (a '*' before the name in binary mode)."""
    sums = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def prepare(directory: Path, version: str, arch: str, reporter: Reporter) -> AirgapFiles:
    """Download what is missing into DIR/VERSION/ and verify every file, kept or new."""
    releases = os.environ.get(RELEASES_ENV, RELEASES_URL).rstrip("/")
    script_url = os.environ.get(SCRIPT_ENV, SCRIPT_URL).format(version=version)
    base = f"{releases}/{quote(version, safe='')}"
    target = directory / version
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInputError(f"--airgap {directory}: {error.strerror}.") from error
    with httpx.Client(timeout=httpx.Timeout(30.0, read=120.0), follow_redirects=True) as http:
        sums_name = f"sha256sum-{arch}.txt"
        _download(http, f"{base}/{sums_name}", target / sums_name, reporter, refresh=True)
        sums = parse_checksums((target / sums_name).read_text())
        files = AirgapFiles(
            target / binary_name(arch), target / images_name(arch), target / "install.sh"
        )
        for path in (files.binary, files.images):
            if not path.exists():
                _download(http, f"{base}/{path.name}", path, reporter)
            _verify(path, sums, base)
        if not files.script.exists():
            _download(http, script_url, files.script, reporter)
    return files


def _verify(path: Path, sums: dict[str, str], base: str) -> None:
    expected = sums.get(path.name)
    if expected is None:
        raise ConflictError(
            f"The release's checksum file ({base}/sha256sum-*.txt) lists no {path.name}.",
            hint="Check the version and architecture.",
        )
    actual = sha256_of(path)
    if actual != expected:
        path.unlink()
        raise ConflictError(
            f"{path.name} does not match the release's checksum (expected {expected[:16]}…, "
            f"got {actual[:16]}…); the file was deleted and nothing was sent to the host.",
            hint="Run again to download it anew. If it fails again, the download is being "
            "tampered with or the mirror is broken.",
        )


def _download(
    http: httpx.Client, url: str, path: Path, reporter: Reporter, *, refresh: bool = False
) -> None:
    if path.exists() and not refresh:
        return
    reporter.step(f"Downloading {url}")
    partial = path.with_name(path.name + ".part")
    try:
        with http.stream("GET", url) as response:
            if response.status_code != 200:
                raise UnreachableError(
                    f"Downloading {url} failed: HTTP {response.status_code}.",
                    hint="Check the k3s version (--k3s-version) and this machine's access to "
                    "GitHub (or the mirror in " + RELEASES_ENV + ").",
                )
            with partial.open("wb") as handle:
                for chunk in response.iter_bytes(CHUNK):
                    handle.write(chunk)
    except httpx.HTTPError as error:
        partial.unlink(missing_ok=True)
        raise UnreachableError(
            f"Downloading {url} failed: {error}.",
            hint="Check this machine's internet access; files already downloaded are kept.",
        ) from error
    partial.replace(path)
