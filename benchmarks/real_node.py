"""The lab's real node: cold build of its parts, and `lab up --real-node` from the cache.

Prints, in seconds:
- image build, cold: the debian image (mmdebstrap + OCI archive) into an empty cache;
- pause image, cold: packing the pause binary as an image;
- add-ons (CoreDNS + whoami, local-path-provisioner) into an empty lab cache, with Go's build
  cache as it is (what a changed add-on recipe costs);
- with --go-cold: kubelet and kube-proxy alone, built from the lab's Go module with an empty
  Go build cache (an upper bound of what they add to the control plane's cold build, with
  which they share most packages), and the add-ons likewise; takes minutes on 2 cores;
- `lab up --real-node` from the cache (median of --runs; target under 30 s), and `lab down`;
- memory: the resident set (RSS) of each process the lab started, and of the node's
  containers (its cgroup), with the lab up and idle, then with one Nextcloud (the model image,
  libresh_cli/lab/images/nextcloud-model, with its PostgreSQL and Redis) installed by
  `libresh install` and idle.

Needs root and the real node's Debian packages (see README, "A real node").

    .venv/bin/python benchmarks/real_node.py [--runs 3] [--go-cold]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from libresh_cli.lab import imagebuild, realnode, state
from libresh_cli.lab.binaries import (
    GO_MODULE_FILES,
    build_addons,
    ensure_binaries,
    version_ldflags,
)
from libresh_cli.progress import SilentReporter
from libresh_cli.settings import Paths

LIBRESH = str(Path(sys.executable).parent / "libresh")
LAB_UP_TARGET = 30.0
KUBELET_ONLY = """package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if os.Args[1] == "kubelet" {
		os.Exit(cli.Run(kubelet.NewKubeletCommand(context.Background())))
	}
	os.Exit(cli.Run(proxy.NewProxyCommand()))
}
"""


def timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


def image_cold() -> tuple[float, float]:
    binaries = ensure_binaries(Paths.from_env(), SilentReporter())
    with tempfile.TemporaryDirectory() as cache:
        paths = Paths.from_env({**os.environ, "XDG_CACHE_HOME": cache})
        recipe = imagebuild.load_recipe("debian")
        debian = timed(lambda: imagebuild.build_image(paths, recipe, SilentReporter()))
        pause = timed(lambda: imagebuild.ensure_pause_image(paths, binaries.pause))
    return debian, pause


def go_cold() -> float:
    from importlib import resources

    with tempfile.TemporaryDirectory() as work:
        module = Path(work) / "module"
        for name in GO_MODULE_FILES:
            source = resources.files("libresh_cli.lab").joinpath("gomod", name)
            (module / name).parent.mkdir(parents=True, exist_ok=True)
            (module / name).write_bytes(source.read_bytes())
        (module / "main.go").write_text(KUBELET_ONLY)
        env = {**os.environ, "GOCACHE": str(Path(work) / "gocache")}
        command = ["go", "build", "-trimpath", "-ldflags", version_ldflags(), "-o", "out", "."]
        return timed(lambda: subprocess.run(command, cwd=module, env=env, check=True))


def addons_build(go_cold: bool) -> float:
    """build_addons into an empty lab cache; with go_cold, an empty Go build cache too."""
    # Go keeps its build cache under XDG_CACHE_HOME too: name the one it uses now.
    go_cache = subprocess.run(
        ["go", "env", "GOCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        env["GOCACHE"] = str(Path(cache) / "gocache") if go_cold else go_cache
        paths = Paths.from_env(env)
        saved = dict(os.environ)
        os.environ.update(env)  # build_addons runs Go with this process's environment
        try:
            return timed(lambda: build_addons(paths, SilentReporter()))
        finally:
            os.environ.clear()
            os.environ.update(saved)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def lab_memory(state_home: str) -> dict[str, int]:
    """KiB of resident memory of each process the lab started, and of its containers."""
    paths = Paths.from_env({**os.environ, "XDG_STATE_HOME": state_home})
    lab = state.load_state(paths, "bench")
    assert lab is not None and lab.real_node is not None
    memory = {p.component: rss_kib(p.pid) for p in lab.processes}
    node = realnode.NodeLayout.from_record(lab.real_node)
    # containerd's shims (one per pod) are neither the lab's recorded processes nor in the
    # node's cgroup: ours name the node's containerd socket.
    memory["containerd shims"] = sum(rss_kib(pid) for pid in realnode.shim_pids(node))
    for directory in realnode.cgroup_dirs(node):
        for name in ("memory.current", "memory.usage_in_bytes"):
            if (directory / name).exists():
                memory["containers (cgroup)"] = int((directory / name).read_text()) // 1024
    return memory


def run_seconds(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"`{' '.join(command[1:])}` failed (exit {done.returncode}):\n{done.stderr}")
    return time.perf_counter() - start


def wait_for_the_machine(timeout: float = 900) -> None:
    """A machine runs one real node at a time: wait while another lab's runs."""
    deadline = time.monotonic() + timeout
    while realnode.running_kube_proxy() is not None and time.monotonic() < deadline:
        time.sleep(2)


@dataclass
class LabFigures:
    up: float  # seconds, median
    down: float
    idle: dict[str, int]  # KiB per component, the lab up and idle
    nextcloud: dict[str, int]  # the same with one Nextcloud (model) installed and idle
    install: float  # seconds of `libresh install nextcloud`


def newest_nextcloud_model() -> str:
    """The newest Nextcloud version the model image stands for. The catalog's newest has no
    image on the node (nothing can be pulled here): installed by default, its pod would wait
    in ImagePullBackOff until the Deployment's progress deadline."""
    recipe = imagebuild.load_recipe("nextcloud-model")
    references = [recipe.reference, *(tag.reference for tag in recipe.also)]
    versions = [r.rsplit(":", 1)[1].removesuffix("-apache") for r in references]
    return max(versions, key=lambda v: tuple(int(part) for part in v.split(".")))


def install_nextcloud(env: dict[str, str]) -> float:
    """`libresh install nextcloud` on the bench lab, as its user would; its seconds."""
    kubeconfig = subprocess.run(
        [LIBRESH, "lab", "kubeconfig", "--name", "bench"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    command = [LIBRESH, "--kubeconfig", kubeconfig, "install", "nextcloud"]
    options = ["--domain", "cloud.example.org", "--version", newest_nextcloud_model(), "--yes"]
    return run_seconds([*command, *options], env)


def lab_up_down(runs: int) -> LabFigures:
    ups, downs = [], []
    idle: dict[str, int] = {}
    loaded: dict[str, int] = {}
    install = 0.0
    with tempfile.TemporaryDirectory(prefix="lrb") as state_home:
        env = {**os.environ, "XDG_STATE_HOME": state_home}
        down = [LIBRESH, "lab", "down", "--name", "bench", "--yes"]
        for run in range(runs):
            wait_for_the_machine()
            ups.append(run_seconds([LIBRESH, "lab", "up", "--name", "bench", "--real-node"], env))
            try:
                time.sleep(5)  # idle, as a lab waits for its user
                idle = lab_memory(state_home)
                if run == runs - 1:  # the last lab gets a Nextcloud
                    install = install_nextcloud(env)
                    time.sleep(20)  # idle: the first requests and cron have settled
                    loaded = lab_memory(state_home)
            except BaseException:
                # Its state goes with the temporary directory: never leave its processes behind.
                subprocess.run(down, env=env, capture_output=True)
                raise
            downs.append(run_seconds(down, env))
    return LabFigures(statistics.median(ups), statistics.median(downs), idle, loaded, install)


def print_memory(title: str, memory: dict[str, int]) -> None:
    print(title)
    for component, kib in sorted(memory.items(), key=lambda item: -item[1]):
        print(f"  {component:38} {kib / 1024:7.1f} MiB")
    total = sum(kib for name, kib in memory.items() if name != "containers (cgroup)")
    print(f"  {'all processes of the lab':38} {total / 1024:7.1f} MiB")
    containers = memory.get("containers (cgroup)", 0)
    print(f"  {'lab and containers':38} {(total + containers) / 1024:7.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--go-cold", action="store_true", help="also build kubelet cold")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("mmdebstrap") is None:
        sys.exit("real_node.py: needs root and the real node's Debian packages (README).")
    debian, pause = image_cold()
    print(f"image debian:bookworm-slim, cold build   {debian:7.1f} s")
    print(f"image pause, cold pack                   {pause:7.1f} s")
    print(f"add-ons, empty lab cache, warm Go cache  {addons_build(go_cold=False):7.1f} s")
    if args.go_cold:
        print(f"kubelet + kube-proxy, cold Go build      {go_cold():7.1f} s")
        print(f"add-ons, cold Go build                   {addons_build(go_cold=True):7.1f} s")
    figures = lab_up_down(args.runs)
    up = figures.up
    target = f"target < {LAB_UP_TARGET:.0f} s: {'ok' if up < LAB_UP_TARGET else 'OVER'}"
    print(f"lab up --real-node, cached (median)      {up:7.1f} s  ({target})")
    print(f"lab down (median)                        {figures.down:7.1f} s")
    print(f"libresh install nextcloud (model)        {figures.install:7.1f} s")
    print_memory("memory (RSS), lab up and idle:", figures.idle)
    print_memory("memory (RSS), one Nextcloud (model) installed, idle:", figures.nextcloud)


if __name__ == "__main__":
    main()
