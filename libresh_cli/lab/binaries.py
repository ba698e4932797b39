"""The lab's binaries: found in the cache, or built from Go modules and cached by version.

Nothing ships kube-apiserver as a package, so the lab builds it: `gomod/` holds a Go module
that requires k8s.io/kubernetes (with its staging modules replaced by their published
versions, and a go.sum pinning every checksum) and compiles etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, and the real node's kubelet and kube-proxy into one
multi-call binary, and the real node's pod sandbox process (`pause`) into a tiny static one.
kwok is installed
from its own module, and its shipped Stage files (the simulated lifecycles of nodes, pods and
volumes) are taken from that same module version.

The real node's add-ons are built apart, into their own cache directory: `gomod/addons/` is a
second module (CoreDNS with the lab's plugins, and a `whoami` probe for pods), because CoreDNS
pins its own versions of modules the control plane shares; rancher's local-path-provisioner is
installed from its module, as kwok is. Changing them never invalidates the control plane's
cache, and a lab without a real node never builds them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from libresh_cli.errors import OperationFailedError, PrerequisiteError
from libresh_cli.progress import Reporter
from libresh_cli.settings import Paths

KUBERNETES_VERSION = "1.34.4"
KWOK_VERSION = "0.8.0"
MINIMUM_GO = (1, 24)
CONTROLPLANE = "lab-controlplane"
PAUSE = "lab-pause"
KWOK = "kwok"
BIN_DIR_VARIABLE = "LIBRESH_LAB_BIN_DIR"

# kwok's own Stage files, by their path in the kwok module: nodes become Ready and keep
# heartbeating, pods become Ready, Job pods complete, deleted pods go away, and PVCs of the
# `kwok-volume` StorageClass get a bound PV.
KWOK_STAGE_FILES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat/node-heartbeat.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
    "kustomize/stage/volume/fast/pvc-provision.yaml",
    "kustomize/stage/volume/fast/pvc-delete.yaml",
    "kustomize/stage/volume/fast/pv-bind.yaml",
    "kustomize/stage/volume/fast/pv-delete.yaml",
)
COMPLETE_MARKER = "COMPLETE"
GO_MODULE_FILES = ("go.mod", "go.sum", "main.go", "pause/main.go")

# The real node's add-ons. CoreDNS v1.14.0 is the newest whose module needs no newer Go than
# MINIMUM_GO and requires the same k8s.io/client-go minor (v0.34) as the control plane
# (its go.mod); local-path-provisioner v0.0.30 is its newest release on the Go proxy.
COREDNS_VERSION = "1.14.0"
LOCAL_PATH_VERSION = "0.0.30"
ADDONS = "lab-addons"
LOCAL_PATH = "local-path-provisioner"
ADDON_MODULE_FILES = ("addons/go.mod", "addons/go.sum", "addons/main.go")


@dataclass(frozen=True)
class LabBinaries:
    """A directory holding the lab's binaries and the kwok stages they run with."""

    root: Path

    @property
    def controlplane(self) -> Path:
        return self.root / "bin" / CONTROLPLANE

    @property
    def kwok(self) -> Path:
        return self.root / "bin" / KWOK

    @property
    def pause(self) -> Path:
        return self.root / "bin" / PAUSE

    @property
    def stages(self) -> Path:
        return self.root / "stages"

    def is_complete(self) -> bool:
        return (
            os.access(self.controlplane, os.X_OK)
            and os.access(self.kwok, os.X_OK)
            and os.access(self.pause, os.X_OK)
            and any(self.stages.glob("*.yaml"))
        )


@dataclass(frozen=True)
class AddonBinaries:
    """A directory holding the real node's add-ons: CoreDNS (with the `whoami` probe) and
    local-path-provisioner, both static so a pod can run `whoami` from a hostPath."""

    root: Path

    @property
    def addons(self) -> Path:
        return self.root / "bin" / ADDONS

    @property
    def local_path(self) -> Path:
        return self.root / "bin" / LOCAL_PATH

    def is_complete(self) -> bool:
        return os.access(self.addons, os.X_OK) and os.access(self.local_path, os.X_OK)


def recipe_digest() -> str:
    """Changes whenever the Go module or the pinned versions change, so the cache follows."""
    digest = hashlib.sha256(f"{KUBERNETES_VERSION}/{KWOK_VERSION}".encode())
    for name in GO_MODULE_FILES:
        digest.update(resources.files(__package__).joinpath("gomod", name).read_bytes())
    return digest.hexdigest()[:12]


def cache_dir(paths: Paths) -> Path:
    arch = platform.machine().lower()
    key = f"k8s-v{KUBERNETES_VERSION}-kwok-v{KWOK_VERSION}-{arch}-{recipe_digest()}"
    return paths.cache / "lab" / key


def addons_digest() -> str:
    digest = hashlib.sha256(f"{COREDNS_VERSION}/{LOCAL_PATH_VERSION}".encode())
    for name in ADDON_MODULE_FILES:
        digest.update(resources.files(__package__).joinpath("gomod", name).read_bytes())
    return digest.hexdigest()[:12]


def addons_cache_dir(paths: Paths) -> Path:
    arch = platform.machine().lower()
    key = (
        f"addons-coredns-v{COREDNS_VERSION}-local-path-v{LOCAL_PATH_VERSION}-{arch}-"
        f"{addons_digest()}"
    )
    return paths.cache / "lab" / key


def find_addons(paths: Paths) -> AddonBinaries | None:
    cached = AddonBinaries(addons_cache_dir(paths))
    if (cached.root / COMPLETE_MARKER).exists() and cached.is_complete():
        return cached
    return None


def ensure_addons(paths: Paths, reporter: Reporter) -> AddonBinaries:
    found = find_addons(paths)
    if found is not None:
        return found
    with one_build_at_a_time(paths):
        return find_addons(paths) or build_addons(paths, reporter)


def build_addons(paths: Paths, reporter: Reporter) -> AddonBinaries:
    """CoreDNS (our module: only the plugins the lab uses) and local-path-provisioner, static
    (no cgo): `whoami` runs inside the pods' images."""
    go = require_go()
    target = AddonBinaries(addons_cache_dir(paths))
    (target.root / COMPLETE_MARKER).unlink(missing_ok=True)
    work = paths.cache / "lab" / "build-addons"
    _write_go_module(work, ADDON_MODULE_FILES)
    static = {**os.environ, "CGO_ENABLED": "0"}
    started = time.monotonic()
    reporter.step(
        f"Building the real node's add-ons: CoreDNS v{COREDNS_VERSION} (once; a few minutes)"
    )
    target.addons.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(target.addons), "."],
        what=f"build {ADDONS}",
        cwd=work / "addons",
        env=static,
    )
    reporter.step(f"Building local-path-provisioner v{LOCAL_PATH_VERSION}")
    _run(
        [
            go,
            "install",
            "-trimpath",
            "-ldflags",
            "-s -w",
            f"github.com/rancher/local-path-provisioner@v{LOCAL_PATH_VERSION}",
        ],
        what=f"build {LOCAL_PATH}",
        env={**static, "GOBIN": str(target.local_path.parent)},
    )
    reporter.done(
        f"Built CoreDNS v{COREDNS_VERSION} and local-path-provisioner v{LOCAL_PATH_VERSION} "
        f"in {elapsed(started)}"
    )
    info = {"coredns": COREDNS_VERSION, "local-path": LOCAL_PATH_VERSION, "recipe": addons_digest()}
    (target.root / COMPLETE_MARKER).write_text(json.dumps(info) + "\n")
    return target


def find_binaries(paths: Paths, env: dict[str, str] | None = None) -> LabBinaries | None:
    """Binaries from $LIBRESH_LAB_BIN_DIR, or from the cache when a build completed there."""
    env = dict(os.environ) if env is None else env
    if env.get(BIN_DIR_VARIABLE):
        given = LabBinaries(Path(env[BIN_DIR_VARIABLE]))
        if not given.is_complete():
            raise PrerequisiteError(
                f"{BIN_DIR_VARIABLE}={given.root} does not hold the lab binaries.",
                hint=f"Expected bin/{CONTROLPLANE}, bin/{PAUSE}, bin/{KWOK} and stages/*.yaml "
                "there (the layout `libresh lab build` writes); unset the variable to use the "
                "cache.",
            )
        return given
    cached = LabBinaries(cache_dir(paths))
    if (cached.root / COMPLETE_MARKER).exists() and cached.is_complete():
        return cached
    return None


def ensure_binaries(paths: Paths, reporter: Reporter) -> LabBinaries:
    found = find_binaries(paths)
    if found is not None:
        return found
    with one_build_at_a_time(paths):
        # Another process may have built them while this one waited.
        return find_binaries(paths) or build_binaries(paths, reporter)


@contextlib.contextmanager
def one_build_at_a_time(paths: Paths) -> Iterator[None]:
    """Held while the lab's binaries are built: two builds (two `lab up` at once on a fresh
    machine, or test workers) would write the same build directory and cache."""
    lock_path = paths.cache / "lab" / "build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def go_version(go: str) -> tuple[int, int]:
    text = _run([go, "env", "GOVERSION"], what="ask Go for its version").strip()
    return parse_go_version(text)


def parse_go_version(text: str) -> tuple[int, int]:
    match = re.match(r"go(\d+)\.(\d+)", text.strip())
    if not match:
        raise PrerequisiteError(f"Could not read the Go version from {text!r}.")
    return int(match.group(1)), int(match.group(2))


def require_go() -> str:
    go = shutil.which("go")
    wanted = ".".join(map(str, MINIMUM_GO))
    how = (
        f"The lab builds kube-apiserver and kwok from Go modules once, then caches them. "
        f"Install Go {wanted} or newer (Debian 13's golang-go, or the official Go tarball) "
        f"and run `libresh lab build`, or point {BIN_DIR_VARIABLE} at a directory of "
        "binaries built elsewhere."
    )
    if go is None:
        raise PrerequisiteError("No lab binaries are cached and Go is not installed.", hint=how)
    if go_version(go) < MINIMUM_GO:
        raise PrerequisiteError(f"{go} is older than Go {wanted}.", hint=how)
    return go


def build_binaries(paths: Paths, reporter: Reporter) -> LabBinaries:
    go = require_go()
    target = LabBinaries(cache_dir(paths))
    (target.root / COMPLETE_MARKER).unlink(missing_ok=True)
    work = paths.cache / "lab" / "build"
    _write_go_module(work, GO_MODULE_FILES)
    started = time.monotonic()
    reporter.step(
        f"Building Kubernetes v{KUBERNETES_VERSION} (control plane, kubelet, kube-proxy) from "
        "Go modules (once; about 10 minutes on 2 cores, more on a slow network): "
        "downloading the modules"
    )
    packages = _package_count(go, work)
    reporter.done(f"Go modules ready ({packages} packages to compile) in {elapsed(started)}")
    compiling = time.monotonic()
    _build_controlplane(go, work, target.controlplane, BuildProgress(reporter, packages))
    _build_pause(go, work, target.pause)
    reporter.done(
        f"Built {CONTROLPLANE} and {PAUSE} (Kubernetes v{KUBERNETES_VERSION}) in "
        f"{elapsed(compiling)}"
    )
    kwok = time.monotonic()
    reporter.step(f"Building kwok v{KWOK_VERSION}")
    _install_kwok(go, target.kwok)
    _copy_kwok_stages(go, work, target.stages)
    reporter.done(f"Built kwok v{KWOK_VERSION} in {elapsed(kwok)} (all: {elapsed(started)})")
    (target.root / COMPLETE_MARKER).write_text(json.dumps(build_info()) + "\n")
    return target


def build_info() -> dict[str, str]:
    return {"kubernetes": KUBERNETES_VERSION, "kwok": KWOK_VERSION, "recipe": recipe_digest()}


def _write_go_module(work: Path, files: tuple[str, ...]) -> None:
    for name in files:
        source = resources.files(__package__).joinpath("gomod", name)
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(source.read_bytes())


def version_ldflags() -> str:
    major, minor, _ = KUBERNETES_VERSION.split(".")
    prefix = "-X k8s.io/component-base/version"
    return (
        f"-s -w {prefix}.gitVersion=v{KUBERNETES_VERSION} "
        f"{prefix}.gitMajor={major} {prefix}.gitMinor={minor}"
    )


def elapsed(since: float) -> str:
    seconds = int(time.monotonic() - since)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class BuildProgress:
    """Counts the packages `go build -v` names as it compiles them (one a line on stderr),
    and reports every tenth of the whole: a cold build says where it is, a log gets ten
    lines, not thousands. Packages already in Go's build cache are not named: a warm build
    ends short of the count."""

    def __init__(self, reporter: Reporter, total: int) -> None:
        self.reporter, self.total = reporter, max(total, 1)
        self.compiled = self.tenths = 0

    def line(self, text: str) -> None:
        if not PACKAGE_LINE.fullmatch(text):
            return  # an error's text, kept for the message
        self.compiled += 1
        tenths = min(self.compiled * 10 // self.total, 9)
        if tenths > self.tenths:
            self.tenths = tenths
            self.reporter.step(
                f"Compiling {CONTROLPLANE}: {self.compiled} of {self.total} packages"
            )


PACKAGE_LINE = re.compile(r"[\w.~/+-]+")  # an import path, as `go build -v` prints it


def _package_count(go: str, work: Path) -> int:
    """The packages the control plane is made of (`go list -deps`, which downloads the
    modules it needs first)."""
    listing = _run([go, "list", "-deps", "."], what="download the Go modules", cwd=work)
    return len(listing.split())


def _build_controlplane(go: str, work: Path, output: Path, progress: BuildProgress) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [go, "build", "-v", "-trimpath", "-ldflags", version_ldflags(), "-o", str(output), "."],
        what=f"build {CONTROLPLANE}",
        cwd=work,
        on_line=progress.line,
    )


def _build_pause(go: str, work: Path, output: Path) -> None:
    # Static (no cgo): it runs alone in an image that has nothing else in it.
    _run(
        [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(output), "./pause"],
        what=f"build {PAUSE}",
        cwd=work,
        env={**os.environ, "CGO_ENABLED": "0"},
    )


def _install_kwok(go: str, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(output.parent)}
    _run(
        [go, "install", "-trimpath", f"sigs.k8s.io/kwok/cmd/kwok@v{KWOK_VERSION}"],
        what="build kwok",
        env=env,
    )


def _copy_kwok_stages(go: str, work: Path, stages: Path) -> None:
    listing = _run(
        [go, "mod", "download", "-json", f"sigs.k8s.io/kwok@v{KWOK_VERSION}"],
        what="locate the kwok module",
        cwd=work.parent,  # outside our module, whose go.mod does not require kwok
    )
    module_dir = Path(json.loads(listing)["Dir"])
    stages.mkdir(parents=True, exist_ok=True)
    for relative in KWOK_STAGE_FILES:
        shutil.copyfile(module_dir / relative, stages / Path(relative).name)


def _run(
    command: list[str],
    *,
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """The command's stdout; `on_line` is given each line of its stderr as it comes."""
    try:
        if on_line is not None:
            code, stdout, stderr = _streamed(command, cwd, env, on_line)
        else:
            done = subprocess.run(
                command, cwd=cwd, env=env, capture_output=True, text=True, check=False
            )
            code, stdout, stderr = done.returncode, done.stdout, done.stderr
    except OSError as error:
        raise PrerequisiteError(f"Could not run {command[0]} to {what}: {error}.") from error
    if code != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise OperationFailedError(
            f"Could not {what} (`{' '.join(command[:3])} …` exited {code}).",
            hint=tail or None,
        )
    return stdout


def _streamed(
    command: list[str],
    cwd: Path | None,
    env: dict[str, str] | None,
    on_line: Callable[[str], None],
) -> tuple[int, str, str]:
    """Runs the command with its stdout thrown away (a build writes nothing there) and its
    stderr read line by line; the last lines are kept for an error message."""
    last: deque[str] = deque(maxlen=15)
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as process:
        for line in process.stderr or ():
            last.append(line.rstrip("\n"))
            on_line(last[-1])
    return process.returncode, "", "\n".join(last)
