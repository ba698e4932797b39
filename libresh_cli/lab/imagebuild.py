"""Images for the lab's real node, built here: no container registry can be reached.

Each image has a folder in `images/` with its recipe (recipe.yaml: the reference it is imported
under, the Debian suite, mmdebstrap variant, apt options and packages, the users made before
the packages (so the packages keep the upstream image's ids), files of the folder put into the
image, commands run in it once the packages are in, its OCI config, and other references for
the same root filesystem with their own Env lines) and a README that says
which upstream image's contract it follows, which version really runs and what differs.
mmdebstrap makes the root filesystem from the Debian mirror this machine's apt uses (for a
suite it knows; else mmdebstrap's default); this module packs it as an OCI image archive (one
uncompressed layer, a config, a manifest and an index, as the OCI image-spec lays them out),
which the node's containerd imports (`ctr images import`).

Built once and cached by package versions: the cache keeps each build with the list of the
packages (and versions) it holds, and is built again when this machine's apt knows a newer
version of one of them (for a suite it knows), or when the recipe or one of its files changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import platform
import shlex
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from libresh_cli.errors import OperationFailedError, PrerequisiteError
from libresh_cli.progress import Reporter
from libresh_cli.settings import Paths

FORMAT = "1"  # bump when the archive layout written here changes
COMPLETE = "COMPLETE"
ARCHIVE = "image.tar"
PACKAGES = "packages.tsv"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"  # uncompressed: imported locally only
# As debuerreotype's slimify does for the official "-slim" Debian images: no documentation,
# manual pages or translations, but every package's copyright file.
SLIM_DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
# The pod sandbox image: the reference kubeadm pins for Kubernetes 1.34, so nothing anywhere
# would pull it; its content is the lab's own pause (gomod/pause/main.go).
PAUSE_REFERENCE = "registry.k8s.io/pause:3.10.1"


def oci_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


@dataclass(frozen=True)
class ImageUser:
    """A user (and its group, of the same name) written into /etc/passwd and /etc/group before
    the packages are installed: a package's maintainer script that makes its system user then
    finds it, so the image keeps the upstream image's ids (e.g. postgres 70 on Alpine)."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str = "/usr/sbin/nologin"


@dataclass(frozen=True)
class ImageFile:
    """A file of the recipe's folder, put into the image before the packages are installed."""

    source: str
    path: str
    mode: str = "0644"


@dataclass(frozen=True)
class ImageTag:
    """Another reference for the same root filesystem, with more environment in its config
    (e.g. the version a model image stands for): one build, one layer, several images."""

    reference: str
    env: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageRecipe:
    name: str
    reference: str
    suite: str
    variant: str
    packages: tuple[str, ...]
    config: dict[str, Any] = field(hash=False)
    digest: str = ""
    users: tuple[ImageUser, ...] = ()
    files: tuple[ImageFile, ...] = ()
    run: tuple[str, ...] = ()  # shell commands run in the image once the packages are in
    apt_options: tuple[str, ...] = ()  # apt.conf lines (mmdebstrap --aptopt)
    folder: Path = Path()
    also: tuple[ImageTag, ...] = ()  # more references for the same layer

    def tagged_configs(self, config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The recipe's reference with `config`, then each of `also` with its own Env lines
        in place of the recipe's lines of the same names (one line per name, so no runtime
        has to choose between two)."""
        tagged = [(self.reference, config)]
        for tag in self.also:
            names = {line.split("=", 1)[0] for line in tag.env}
            kept = [line for line in config.get("Env", []) if line.split("=", 1)[0] not in names]
            tagged.append((tag.reference, {**config, "Env": [*kept, *tag.env]}))
        return tagged

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]


@dataclass(frozen=True)
class BuiltImage:
    name: str
    reference: str
    archive: Path
    packages: dict[str, str]


def recipe_names() -> list[str]:
    root = resources.files(__package__).joinpath("images")
    return sorted(p.name for p in root.iterdir() if p.joinpath("recipe.yaml").is_file())


def load_recipe(name: str) -> ImageRecipe:
    folder = Path(str(resources.files(__package__).joinpath("images", name)))
    text = (folder / "recipe.yaml").read_bytes()
    data = yaml.safe_load(text)
    files = tuple(ImageFile(**entry) for entry in data.get("files") or ())
    # The cache key: the recipe, and every file it puts into the image.
    digest = hashlib.sha256(FORMAT.encode() + oci_arch().encode() + text)
    for entry in files:
        digest.update((folder / entry.source).read_bytes())
    return ImageRecipe(
        name=name,
        reference=str(data["reference"]),
        suite=str(data["suite"]),
        variant=str(data.get("variant", "minbase")),
        packages=tuple(str(p) for p in data.get("packages") or ()),
        config=dict(data.get("config") or {}),
        digest=digest.hexdigest()[:12],
        users=tuple(ImageUser(**entry) for entry in data.get("users") or ()),
        files=files,
        run=tuple(str(command) for command in data.get("run") or ()),
        apt_options=tuple(str(option) for option in data.get("apt_options") or ()),
        folder=folder,
        also=tuple(
            ImageTag(str(entry["reference"]), tuple(str(e) for e in entry.get("env") or ()))
            for entry in data.get("also") or ()
        ),
    )


def images_dir(paths: Paths) -> Path:
    return paths.cache / "lab" / "images"


# --- the cache -------------------------------------------------------------------------------


def ensure_image(paths: Paths, recipe: ImageRecipe, reporter: Reporter) -> BuiltImage:
    """The cached build of `recipe` when it is as new as what this machine's apt offers;
    otherwise a new build."""
    cached = _newest_build(paths, recipe)
    if cached is not None:
        # Only this machine's apt can say a package is newer, and only for the suites it knows
        # (a trixie image on a bookworm machine is kept until its recipe changes).
        stale = newer_candidates(cached.packages) if host_sources(recipe.suite) else {}
        if not stale:
            return cached
        shown = ", ".join(f"{name} {version}" for name, version in sorted(stale.items())[:3])
        reporter.step(f"Debian has newer packages for image {recipe.reference} ({shown}, …)")
    return build_image(paths, recipe, reporter)


def _newest_build(paths: Paths, recipe: ImageRecipe) -> BuiltImage | None:
    root = images_dir(paths) / recipe.name
    builds = sorted(
        (d for d in root.glob(f"{recipe.digest}-*") if (d / COMPLETE).exists()),
        key=lambda d: (d / COMPLETE).stat().st_mtime,
        reverse=True,
    )
    for directory in builds:
        with contextlib.suppress(OSError, ValueError):
            return BuiltImage(
                recipe.name,
                recipe.reference,
                directory / ARCHIVE,
                parse_packages((directory / PACKAGES).read_text()),
            )
    return None


def parse_packages(text: str) -> dict[str, str]:
    packages = {}
    for line in text.splitlines():
        name, _, version = line.partition("\t")
        if name and version:
            packages[name.strip()] = version.strip()
    return packages


def newer_candidates(installed: dict[str, str]) -> dict[str, str]:
    """Packages for which this machine's apt offers a newer version than the image holds
    (name -> that version). Empty when apt cannot tell (no apt, no package lists)."""
    if not installed or shutil.which("apt-cache") is None:
        return {}
    done = subprocess.run(
        ["apt-cache", "policy", *sorted(installed)],
        capture_output=True,
        text=True,
        check=False,
        env={"LC_ALL": "C", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
    )
    candidates = parse_policy(done.stdout)
    differing = {
        name: version
        for name, version in candidates.items()
        if name in installed and version != installed[name]
    }
    return {
        name: version
        for name, version in differing.items()
        if _version_greater(version, installed[name])
    }


def parse_policy(text: str) -> dict[str, str]:
    """`apt-cache policy A B …` output -> {package: candidate version} (known ones only)."""
    candidates: dict[str, str] = {}
    package = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            package = line[:-1].split(":", 1)[0]
        elif package and line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)":
                candidates[package] = version
    return candidates


def _version_greater(newer: str, older: str) -> bool:
    done = subprocess.run(
        ["dpkg", "--compare-versions", newer, "gt", older], capture_output=True, check=False
    )
    return done.returncode == 0


# --- building --------------------------------------------------------------------------------


def require_mmdebstrap() -> str:
    found = shutil.which("mmdebstrap")
    if found is None:
        raise PrerequisiteError(
            "mmdebstrap is not installed: the real node's images are built with it.",
            hint="Install Debian's package: apt-get install mmdebstrap",
        )
    return found


def host_sources(suite: str) -> list[str]:
    """The one-line apt sources this machine uses for `suite` and its -updates and -security,
    so that the image comes from the mirror apt reaches here."""
    lines: list[str] = []
    files: list[Path] = []
    for location in APT_SOURCES:
        if location.is_dir():
            files += sorted(location.glob("*.list")) + sorted(location.glob("*.sources"))
        elif location.is_file():
            files.append(location)
    for path in files:
        with contextlib.suppress(OSError):
            text = path.read_text()
            deb822 = path.suffix == ".sources"
            lines += _deb822_lines(text, suite) if deb822 else _list_lines(text, suite)
    return list(dict.fromkeys(lines))


def _wanted_suite(candidate: str, suite: str) -> bool:
    return candidate in (suite, f"{suite}-updates", f"{suite}-security")


def _list_lines(text: str, suite: str) -> list[str]:
    found = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        usable = len(words) >= 4 and words[0] == "deb" and not words[1].startswith("[")
        if usable and _wanted_suite(words[2], suite):
            found.append(f"deb {words[1]} {words[2]} main")
    return found


def _deb822_lines(text: str, suite: str) -> list[str]:
    found = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for raw in stanza.splitlines():
            if raw.startswith("#") or ":" not in raw:
                continue
            key, _, value = raw.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            for candidate in fields.get("suites", "").split():
                if _wanted_suite(candidate, suite):
                    found.append(f"deb {uri} {candidate} main")
    return found


def mmdebstrap_command(recipe: ImageRecipe, output: Path, packages_file: Path) -> list[str]:
    command = [
        require_mmdebstrap(),
        "--mode=root",
        f"--variant={recipe.variant}",
        f"--architectures={oci_arch()}",
        "--format=tar",
        *[f"--dpkgopt={option}" for option in SLIM_DPKG_OPTIONS],
        *[f"--aptopt={option}" for option in recipe.apt_options],
        *([f"--include={','.join(recipe.packages)}"] if recipe.packages else []),
        *[f"--essential-hook={hook}" for hook in before_packages_hooks(recipe)],
        *[f"--customize-hook={hook}" for hook in after_packages_hooks(recipe)],
        # What the image holds, for the cache: every package and its version.
        "--customize-hook=chroot \"$1\" dpkg-query -W -f='${Package}\\t${Version}\\n' > "
        f"{shlex.quote(str(packages_file))}",
        recipe.suite,
        str(output),
    ]
    # No mirror given: mmdebstrap picks its default. Given: the ones this machine's apt uses.
    return [*command, *host_sources(recipe.suite)]


def before_packages_hooks(recipe: ImageRecipe) -> list[str]:
    """mmdebstrap hooks ("$1": the root) run once the essential packages are in, before the
    others: the recipe's users and files."""
    hooks = []
    for user in recipe.users:
        passwd = f"{user.name}:x:{user.uid}:{user.gid}::{user.home}:{user.shell}"
        group = f"{user.name}:x:{user.gid}:"
        hooks.append(
            f'echo {shlex.quote(group)} >> "$1/etc/group" && '
            f'echo {shlex.quote(passwd)} >> "$1/etc/passwd"'
        )
    for entry in recipe.files:
        source = shlex.quote(str(recipe.folder / entry.source))
        target = shlex.quote(entry.path)
        hooks.append(f'install -D -m {entry.mode} {source} "$1"{target}')
    return hooks


def after_packages_hooks(recipe: ImageRecipe) -> list[str]:
    """The recipe's commands, each run by sh inside the image once every package is in."""
    return [f'chroot "$1" sh -ec {shlex.quote(command)}' for command in recipe.run]


def build_image(paths: Paths, recipe: ImageRecipe, reporter: Reporter) -> BuiltImage:
    work = images_dir(paths) / recipe.name / f"{recipe.digest}-building"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rootfs, packages_file = work / "rootfs.tar", work / PACKAGES
    reporter.step(
        f"Building image {recipe.reference} from Debian {recipe.suite} packages (once; about 30 s)"
    )
    started = time.monotonic()
    done = subprocess.run(
        mmdebstrap_command(recipe, rootfs, packages_file),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise OperationFailedError(
            f"mmdebstrap could not build image {recipe.reference} (exit {done.returncode}).",
            hint=tail or None,
        )
    packages = parse_packages(packages_file.read_text())
    config = {
        **recipe.config,
        "Labels": {
            **recipe.config.get("Labels", {}),
            "dev.libresh.lab.recipe": recipe.name,
            "dev.libresh.lab.built-from": f"Debian {recipe.suite} ({len(packages)} packages)",
        },
    }
    tagged = recipe.tagged_configs(config)
    write_oci_archive(work / ARCHIVE, recipe.reference, config, rootfs, more=tagged[1:])
    rootfs.unlink()
    listing = "".join(f"{name}\t{version}\n" for name, version in sorted(packages.items()))
    packages_file.write_text(listing)
    key = hashlib.sha256(listing.encode()).hexdigest()[:12]
    final = work.parent / f"{recipe.digest}-{key}"
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    (final / COMPLETE).write_text(json.dumps({"reference": recipe.reference}) + "\n")
    reporter.done(
        f"Built {recipe.reference} ({len(packages)} packages, {time.monotonic() - started:.0f} s)"
    )
    return BuiltImage(recipe.name, recipe.reference, final / ARCHIVE, packages)


def ensure_pause_image(paths: Paths, pause_binary: Path) -> BuiltImage:
    """The pod sandbox image: the lab's pause binary alone, cached by the binary's hash."""
    digest = _file_digest(pause_binary)[:12]
    directory = images_dir(paths) / "pause" / digest
    archive = directory / ARCHIVE
    if not (directory / COMPLETE).exists():
        directory.mkdir(parents=True, exist_ok=True)
        layer = directory / "layer.tar"
        with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tar.gettarinfo(str(pause_binary), arcname="pause")
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755
            info.mtime = 0
            with pause_binary.open("rb") as source:
                tar.addfile(info, source)
        config = {"Entrypoint": ["/pause"], "User": "65535:65535"}
        write_oci_archive(archive, PAUSE_REFERENCE, config, layer)
        layer.unlink()
        (directory / COMPLETE).write_text("{}\n")
    return BuiltImage("pause", PAUSE_REFERENCE, archive, {})


# --- the OCI image archive -------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_blob(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def oci_documents(
    reference: str, image_config: dict[str, Any], layer_digest: str, layer_size: int
) -> tuple[bytes, bytes, bytes]:
    """The image's config, manifest and index (image-spec config.md, manifest.md,
    image-index.md), for one uncompressed layer."""
    config = _json_blob(
        {
            "architecture": oci_arch(),
            "os": "linux",
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
            "history": [{"created_by": "libresh lab (mmdebstrap)"}],
        }
    )
    manifest = _json_blob(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": f"sha256:{hashlib.sha256(config).hexdigest()}",
                "size": len(config),
            },
            "layers": [
                {"mediaType": OCI_LAYER, "digest": f"sha256:{layer_digest}", "size": layer_size}
            ],
        }
    )
    index = _json_blob(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": f"sha256:{hashlib.sha256(manifest).hexdigest()}",
                    "size": len(manifest),
                    "platform": {"architecture": oci_arch(), "os": "linux"},
                    "annotations": {
                        # containerd takes the full name from its own annotation, other tools
                        # the tag from the OCI one.
                        "io.containerd.image.name": reference,
                        "org.opencontainers.image.ref.name": reference.rsplit(":", 1)[1],
                    },
                }
            ],
        }
    )
    return config, manifest, index


def write_oci_archive(
    output: Path,
    reference: str,
    image_config: dict[str, Any],
    layer: Path,
    more: list[tuple[str, dict[str, Any]]] | None = None,
) -> None:
    """An OCI image layout (oci-layout, index.json, blobs/sha256/…) in one tar file; `more`:
    other references (with their configs) for the same layer, in the same index, which
    containerd imports as one image each (by io.containerd.image.name)."""
    layer_digest = _file_digest(layer)
    config, manifest, index = oci_documents(
        reference, image_config, layer_digest, layer.stat().st_size
    )
    entries = list(_small_entries(config, manifest, index))
    if more:
        manifests = json.loads(index)["manifests"]
        for other_reference, other_config in more:
            config, manifest, other_index = oci_documents(
                other_reference, other_config, layer_digest, layer.stat().st_size
            )
            manifests.extend(json.loads(other_index)["manifests"])
            entries.extend(list(_small_entries(config, manifest, b""))[2:])
        entries[1] = ("index.json", _json_blob({**json.loads(index), "manifests": manifests}))
    partial = output.with_name(output.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(f"blobs/sha256/{layer_digest}")
        info.size, info.mode = layer.stat().st_size, 0o644
        with layer.open("rb") as source:
            tar.addfile(info, source)
    partial.rename(output)


def _small_entries(config: bytes, manifest: bytes, index: bytes) -> Iterator[tuple[str, bytes]]:
    yield "oci-layout", _json_blob({"imageLayoutVersion": "1.0.0"})
    yield "index.json", index
    for blob in (config, manifest):
        yield f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}", blob
