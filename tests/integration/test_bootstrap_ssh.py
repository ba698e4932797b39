"""`libresh bootstrap` against real OpenSSH servers in network namespaces (sshhosts.py).

The k3s installer cannot run offline: hosts are given the stand-in installer
(tests/standin/k3s_standin.py), which starts the lab control plane where k3s would run and
writes the kubeconfig and node token where k3s writes them. Everything else is real: ssh and
sshd, sudo, the preflight script, the host's files, the API server reached through the
kubeconfig libresh fetched.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.integration import sshhosts
from tests.integration.sshhosts import TestHost
from tests.integration.test_prompts import Terminal
from tests.standin.k3s_standin import K3S_COMMAND

LIBRESH = str(Path(sys.executable).parent / "libresh")
GIB_KB = 1024 * 1024


def libresh(host: TestHost, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LIBRESH, *args],
        env=host.cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def bootstrap(host: TestHost, user: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return libresh(
        host,
        "-o",
        "json",
        "bootstrap",
        "ssh",
        f"{user}@{host.address}",
        "--install-script",
        str(host.standin_installer()),
        *extra,
    )


def make_host(index: int, base: Path) -> Iterator[TestHost]:
    problem = sshhosts.available()
    if problem:
        pytest.fail(f"Cannot make SSH test hosts: {problem}")
    host = TestHost(index, base / f"host{index}", base / f"client{index}")
    host.create()
    try:
        yield host
    finally:
        host.destroy()


@pytest.fixture(scope="module")
def sudo_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestHost]:
    yield from make_host(1, tmp_path_factory.mktemp("ssh"))


@pytest.fixture(scope="module")
def root_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestHost]:
    yield from make_host(2, tmp_path_factory.mktemp("ssh"))


@pytest.fixture(scope="module")
def spare_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestHost]:
    """For refusals: nothing is installed on it."""
    yield from make_host(3, tmp_path_factory.mktemp("ssh"))


def kubeconfig_of(result: subprocess.CompletedProcess[str]) -> tuple[Path, str]:
    report = json.loads(result.stdout)
    return Path(report["kubeconfig"]), report["context"]


def installer_runs(host: TestHost) -> int:
    log = host.root / "var-log" / "libresh-k3s-install.log"
    return log.read_text().count("Using v") if log.exists() else 0


# -- first bootstrap, re-run, version changes ----------------------------------------------


def test_first_bootstrap_as_a_sudo_user(sudo_host: TestHost) -> None:
    result = bootstrap(sudo_host, "admin", "--accept-new-host-key")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["action"] == "install" and report["node"] == sudo_host.hostname
    assert report["k3s_version"] == "v1.34.4+k3s1"
    assert sudo_host.accepted_logins() == 1  # one connection carried every step
    assert report["round_trips"] == 3  # preflight, config + installer, kubeconfig

    # The host's k3s config, written through sudo, root-only.
    config_file = sudo_host.etc / "rancher" / "k3s" / "config.yaml"
    assert config_file.stat().st_uid == 0 and config_file.stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load(config_file.read_text())
    assert config["tls-san"] == [sudo_host.address]
    assert config["node-name"] == sudo_host.hostname
    assert config["write-kubeconfig-mode"] == "0600"

    # The kubeconfig here: 0600, named, pointing at the host's public address.
    path, context = kubeconfig_of(result)
    assert path.stat().st_mode & 0o777 == 0o600
    document = yaml.safe_load(path.read_text())
    assert document["current-context"] == context == sudo_host.address
    assert document["clusters"][0]["cluster"]["server"] == f"https://{sudo_host.address}:6443"

    # Two independent clients reach the API server through it.
    api = k8s_config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
    nodes = k8s.CoreV1Api(api).list_node().items
    assert [n.metadata.name for n in nodes] == [sudo_host.hostname]
    if shutil.which("kubectl"):
        listed = subprocess.run(
            ["kubectl", "--kubeconfig", str(path), "get", "nodes", "-o", "name"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert listed.stdout.strip() == f"node/{sudo_host.hostname}"
    assert "Next: libresh --kubeconfig" in result.stderr
    assert "client-key-data" not in result.stderr + result.stdout


def test_rerun_changes_nothing(sudo_host: TestHost) -> None:
    config_file = sudo_host.etc / "rancher" / "k3s" / "config.yaml"
    before = (config_file.stat().st_mtime_ns, installer_runs(sudo_host))
    logins = sudo_host.accepted_logins()
    result = bootstrap(sudo_host, "admin")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["action"] == "nothing" and report["kubeconfig_written"] is False
    assert (config_file.stat().st_mtime_ns, installer_runs(sudo_host)) == before
    assert sudo_host.accepted_logins() == logins + 1
    assert report["round_trips"] == 2  # preflight, kubeconfig
    table = libresh(sudo_host, "bootstrap", "ssh", f"admin@{sudo_host.address}")
    assert "already runs" in table.stderr and "action      nothing" in table.stdout


def test_dry_run_reports_and_changes_nothing(sudo_host: TestHost) -> None:
    runs = installer_runs(sudo_host)
    result = bootstrap(sudo_host, "admin", "--k3s-version", "v1.34.5+k3s1", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["action"] == "change-version"
    assert installer_runs(sudo_host) == runs


def test_storage_path_is_a_config_change(sudo_host: TestHost) -> None:
    result = bootstrap(sudo_host, "admin", "--storage-path", "/srv/volumes", "--dry-run")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["action"], report["config_changed"]) == ("reconfigure", True)
    bad = bootstrap(sudo_host, "admin", "--storage-path", "volumes", "--dry-run")
    assert bad.returncode == 2 and "plain absolute path" in bad.stderr


def test_version_change_is_asked_then_done(sudo_host: TestHost) -> None:
    runs = installer_runs(sudo_host)
    unasked = bootstrap(sudo_host, "admin", "--k3s-version", "v1.35.1+k3s1")
    assert unasked.returncode == 2
    assert "Change it to v1.35.1+k3s1?" in unasked.stderr and "--yes" in unasked.stderr
    assert installer_runs(sudo_host) == runs

    done = bootstrap(sudo_host, "admin", "--k3s-version", "v1.35.1+k3s1", "--yes")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["action"] == "change-version"
    assert installer_runs(sudo_host) == runs + 1
    again = bootstrap(sudo_host, "admin")
    assert json.loads(again.stdout)["k3s_version"] == "v1.35.1+k3s1"


@pytest.mark.parametrize(
    ("version", "word"), [("v1.34.4+k3s1", "going back"), ("v1.37.0+k3s1", "skip")]
)
def test_downgrade_and_skipped_minor_refused(sudo_host: TestHost, version: str, word: str) -> None:
    runs = installer_runs(sudo_host)
    result = bootstrap(sudo_host, "admin", "--k3s-version", version, "--yes")
    assert result.returncode == 5 and word in result.stderr
    assert installer_runs(sudo_host) == runs


def test_context_name_used_by_another_cluster(sudo_host: TestHost, tmp_path: Path) -> None:
    other = tmp_path / "kubeconfig"
    other.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "prod", "cluster": {"server": "https://198.51.100.7:6443"}}],
                "users": [{"name": "prod", "user": {}}],
                "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}],
            }
        )
    )
    result = bootstrap(
        sudo_host, "admin", "--kubeconfig", str(other), "--merge", "--context", "prod"
    )
    assert result.returncode == 5
    assert "already points at another cluster" in result.stderr and "--context" in result.stderr
    assert sudo_host.address not in other.read_text()


def test_bootstrap_local_on_the_server_itself(sudo_host: TestHost) -> None:
    """`bootstrap local` run inside the host (its namespaces), as root: no SSH at all."""
    assert sudo_host.process is not None
    pid = sudo_host.process.pid  # `ip netns exec` became unshare, then sshd: its namespaces
    kubeconfig = sudo_host.client_dir / "local.yaml"
    result = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "-m", "-u", LIBRESH, "-o", "json", "bootstrap",
         "local", "--install-script", str(sudo_host.standin_installer()),
         "--address", sudo_host.address, "--kubeconfig", str(kubeconfig)],
        env=sudo_host.cli_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["action"] == "nothing" and report["host"] == "this machine"
    assert yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == (
        f"https://{sudo_host.address}:6443"
    )


# -- interruption --------------------------------------------------------------------------


def test_connection_cut_mid_install_then_rerun_completes(root_host: TestHost) -> None:
    (root_host.var_lib / "rancher").mkdir(parents=True, exist_ok=True)
    hold = root_host.var_lib / "rancher" / "standin-hold"
    started = root_host.var_lib / "rancher" / "standin-started"
    hold.touch()
    merge_into = root_host.client_dir / "kube" / "config"
    args = ["--accept-new-host-key", "--merge", "--kubeconfig", str(merge_into)]
    process = subprocess.Popen(
        [LIBRESH, "bootstrap", "ssh", f"root@{root_host.address}", "--install-script",
         str(root_host.standin_installer()), *args],
        env=root_host.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)
    root_host.cut_connections()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 3, stderr
    assert "was lost" in stderr and "Run the same command again" in stderr
    assert "Traceback" not in stderr
    assert not merge_into.exists()  # nothing written here before k3s was up

    hold.unlink()  # the installer left running on the host goes on
    result = bootstrap(root_host, "root", *args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["node"] == root_host.hostname
    document = yaml.safe_load(merge_into.read_text())
    assert document["current-context"] == root_host.address
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(merge_into), context=root_host.address
    )
    assert k8s.CoreV1Api(api).read_node(root_host.hostname).metadata.name == root_host.hostname


# -- host keys -----------------------------------------------------------------------------


def test_unknown_host_key_without_terminal_is_refused_naming_the_flag(spare_host: TestHost) -> None:
    spare_host.known_hosts.unlink(missing_ok=True)
    result = bootstrap(spare_host, "root", "--dry-run")
    assert result.returncode == 2
    assert "not known yet" in result.stderr and "SHA256:" in result.stderr
    assert "--accept-new-host-key" in result.stderr
    assert not spare_host.known_hosts.exists()
    assert spare_host.accepted_logins() == 0  # nothing was sent to an untrusted host


def test_unknown_host_key_at_a_terminal_shows_the_fingerprint(spare_host: TestHost) -> None:
    spare_host.known_hosts.unlink(missing_ok=True)
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(spare_host.root / "ssh_host_ed25519_key.pub")],
        capture_output=True, text=True, check=True,
    ).stdout.split()[1]  # fmt: skip
    argv = [LIBRESH, "bootstrap", "ssh", f"root@{spare_host.address}", "--dry-run"]
    refused = Terminal(argv, spare_host.cli_env())
    refused.expect(fingerprint)
    refused.expect("Trust it")
    refused.type("n\r")
    assert refused.exit_code() == 2
    assert not spare_host.known_hosts.exists()

    trusted = Terminal(argv, spare_host.cli_env())
    trusted.expect("Trust it")
    trusted.type("y\r")
    assert trusted.exit_code() == 0, trusted.screen()
    assert spare_host.address in spare_host.known_hosts.read_text()


def test_changed_host_key_is_refused(spare_host: TestHost) -> None:
    assert libresh(spare_host, "bootstrap", "ssh", f"root@{spare_host.address}",
                   "--accept-new-host-key", "--dry-run").returncode == 0  # fmt: skip
    known = spare_host.known_hosts.read_text()
    spare_host.restart(new_host_key=True)
    try:
        logins = spare_host.accepted_logins()
        result = bootstrap(spare_host, "root", "--accept-new-host-key")
        assert result.returncode == 5
        assert "CHANGED" in result.stderr and "ssh-keygen -R" in result.stderr
        assert spare_host.known_hosts.read_text() == known  # the flag does not overrule it
        assert spare_host.accepted_logins() == logins
    finally:
        spare_host.known_hosts.unlink()


# -- logins, sudo, reachability ------------------------------------------------------------


def test_user_without_sudo_gets_a_clear_error(spare_host: TestHost) -> None:
    result = bootstrap(spare_host, "nosudo", "--accept-new-host-key")
    assert result.returncode == 6
    assert "nosudo is not root and cannot use sudo" in result.stderr
    assert "NOPASSWD" in result.stderr and "nothing was changed" in result.stderr
    assert not (spare_host.etc / "rancher").exists()


def test_authentication_failure(spare_host: TestHost) -> None:
    result = bootstrap(spare_host, "nokey", "--accept-new-host-key")
    assert result.returncode == 3
    assert "refused to log in nokey" in result.stderr and "--identity" in result.stderr


def test_unreachable_host(spare_host: TestHost) -> None:
    result = libresh(spare_host, "bootstrap", "ssh", f"root@{spare_host.address}", "--port",
                     "2222", "--accept-new-host-key")  # fmt: skip
    assert result.returncode == 3
    assert "refused the connection" in result.stderr and "port 2222" in result.stderr
    assert "Traceback" not in result.stderr


# -- preflight refusals on a real host ------------------------------------------------------


def refused(host: TestHost, *extra: str) -> str:
    host.restart()  # the overrides take effect
    result = bootstrap(host, "root", "--accept-new-host-key", *extra)
    assert result.returncode == 6, result.stderr
    assert "nothing was changed" in result.stderr
    assert not (host.etc / "rancher").exists()
    return result.stderr


def test_small_memory_refused_unless_forced(spare_host: TestHost) -> None:
    meminfo = f"MemTotal:  {GIB_KB // 2} kB\nMemAvailable: {GIB_KB // 4} kB\n"
    spare_host.override("/proc/meminfo", meminfo)
    try:
        stderr = refused(spare_host)
        assert "Only 0.5 GiB of memory" in stderr and "--force" in stderr
        forced = bootstrap(spare_host, "root", "--force", "--dry-run")
        assert forced.returncode == 0, forced.stderr
        assert "memory: Only 0.5 GiB" in forced.stderr  # still said, as a warning
    finally:
        spare_host.drop_overrides()


def test_taken_ports_refused(spare_host: TestHost) -> None:
    spare_host.listen(443)
    stderr = refused(spare_host)
    assert "Port(s) 443 already in use" in stderr
    stderr = refused(spare_host, "--force")  # not something --force goes past
    assert "443" in stderr
    spare_host.stop_listening()


def test_unsupported_system_and_disabled_memory_cgroup(spare_host: TestHost) -> None:
    release = spare_host.etc / "os-release"
    original = release.read_text()
    release.write_text('PRETTY_NAME="CentOS Linux 7 (Core)"\nID="centos"\nVERSION_ID="7"\n')
    spare_host.override(
        "/proc/cgroups", "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t0\t1\t0\n"
    )
    try:
        stderr = refused(spare_host)
        assert "CentOS Linux 7 (Core) is not a system libresh is tested on" in stderr
        assert "memory cgroup is disabled" in stderr
        assert "cgroup_memory=1 cgroup_enable=memory" in stderr
    finally:
        release.write_text(original)
        spare_host.drop_overrides()


# -- airgap: k3s fetched here, verified, sent ------------------------------------------------


class FakeRelease:
    """FAKE of GitHub's k3s release downloads (unreachable from here), on loopback: the
    stand-in k3s command as the binary, random bytes as the images, a sha256sum file, and the
    stand-in installer as install.sh. Counts the requests per file."""

    def __init__(self, root: Path, version: str) -> None:
        self.root, self.version = root, version
        release = root / "releases" / version
        release.mkdir(parents=True)
        (release / "k3s").write_text(K3S_COMMAND)
        (release / "k3s-airgap-images-amd64.tar.zst").write_bytes(os.urandom(3 << 20))
        self.write_checksums()
        script = root / "scripts" / version / "install.sh"
        script.parent.mkdir(parents=True)
        script.write_text(sshhosts.standin_script())
        self.requests: list[str] = []
        fake = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def write_checksums(self, tamper: str | None = None) -> None:
        release = self.root / "releases" / self.version
        lines = []
        for name in ("k3s", "k3s-airgap-images-amd64.tar.zst"):
            digest = hashlib.sha256((release / name).read_bytes()).hexdigest()
            lines.append(f"{'0' * 64 if name == tamper else digest}  {name}")
        (release / "sha256sum-amd64.txt").write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        base = f"http://127.0.0.1:{self.server.server_port}"
        return {
            "LIBRESH_K3S_RELEASES_URL": f"{base}/releases",
            "LIBRESH_K3S_INSTALL_SCRIPT_URL": f"{base}/scripts/{{version}}/install.sh",
        }


def test_airgap_download_verify_send(spare_host: TestHost, tmp_path: Path) -> None:
    version = "v1.34.4+k3s1"
    release = FakeRelease(tmp_path / "mirror", version)
    cache = tmp_path / "airgap"
    env = {**spare_host.cli_env(), **release.env()}
    argv = [LIBRESH, "-o", "json", "bootstrap", "ssh", f"root@{spare_host.address}",
            "--accept-new-host-key", "--airgap", str(cache), "--k3s-version", version]  # fmt: skip
    try:
        release.write_checksums(tamper="k3s-airgap-images-amd64.tar.zst")
        tampered = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert tampered.returncode == 5, tampered.stderr
        assert "does not match the release's checksum" in tampered.stderr
        assert not (cache / version / "k3s-airgap-images-amd64.tar.zst").exists()
        assert not (spare_host.usr_local_bin / "k3s").exists()  # nothing sent
        assert not (spare_host.etc / "rancher").exists()

        release.write_checksums()
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["action"] == "install" and report["round_trips"] == 6  # + 3 files sent
        served = release.root / "releases" / version
        assert (spare_host.usr_local_bin / "k3s").read_bytes() == (served / "k3s").read_bytes()
        images = spare_host.var_lib / "rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst"
        assert images.read_bytes() == (served / images.name).read_bytes()
        # The binary was kept from the first (refused) run: fetched once, verified twice.
        assert release.requests.count(f"/releases/{quote(version)}/k3s") == 1
        assert installer_runs(spare_host) == 1
    finally:
        release.server.shutdown()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--k3s-version", "v1.34.4+k3s1", "--k3s-channel", "stable"], "cannot be used together"),
        (["--k3s-version", "1.34"], "is not a k3s version"),
        (["--k3s-channel", "nightly"], "is not a k3s release channel"),
        (["--install-script", "/nonexistent/install.sh"], "no such file"),
        (["--install-script", "/etc/hostname", "--airgap", "/tmp"], "cannot be used together"),
        (["--airgap", "/tmp", "--k3s-channel", "stable"], "needs a fixed --k3s-version"),
    ],
)
def test_bad_options_are_refused_before_logging_in(
    spare_host: TestHost, options: list[str], message: str
) -> None:
    logins = spare_host.accepted_logins()
    result = libresh(spare_host, "bootstrap", "ssh", f"root@{spare_host.address}", *options)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert spare_host.accepted_logins() == logins


def test_ssh_config_alias_is_honoured(spare_host: TestHost) -> None:
    """A Host alias of the user's SSH config: its HostName and User are what ssh uses, the
    alias names the context."""
    config = spare_host.client_dir / "alias_config"
    config.write_text(
        f"Host coop-server\n  HostName {spare_host.address}\n  User admin\n\n"
        + spare_host.ssh_config.read_text()
    )
    env = {**spare_host.cli_env(), "LIBRESH_SSH_CONFIG": str(config)}
    result = subprocess.run(
        [LIBRESH, "-o", "json", "bootstrap", "ssh", "coop-server", "--accept-new-host-key",
         "--dry-run"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["host"] == f"admin@{spare_host.address}"
    assert report["context"] == "coop-server"
    assert report["server"] == f"https://{spare_host.address}:6443"
    assert "Accepted publickey for admin" in spare_host.sshd_log.read_text()


def test_proxyjump_reaches_a_host_only_the_jump_host_can(
    root_host: TestHost, spare_host: TestHost
) -> None:
    """ProxyJump from the user's SSH config: the spare host is reached on a private network
    that only the root host is on, so only a jump through it can work."""
    _, private = root_host.link_privately(spare_host)
    jump_known = spare_host.client_dir / "jump_known_hosts"
    jump_key = (root_host.root / "ssh_host_ed25519_key.pub").read_text().split()
    config = spare_host.client_dir / "jump_config"
    config.write_text(
        f"Host private-box\n  HostName {private}\n  User root\n"
        f"  ProxyJump root@{root_host.address}\n\n"
        "Host *\n"
        f"  UserKnownHostsFile {spare_host.client_dir / 'private_known_hosts'} {jump_known}\n"
        "  GlobalKnownHostsFile /dev/null\n"
        f"  IdentityFile {spare_host.client_dir / 'id_ed25519'}\n"
        f"  IdentityFile {root_host.client_dir / 'id_ed25519'}\n"
        "  IdentitiesOnly yes\n"
    )
    env = {**spare_host.cli_env(), "LIBRESH_SSH_CONFIG": str(config)}
    argv = [LIBRESH, "-o", "json", "bootstrap", "ssh", "private-box", "--accept-new-host-key",
            "--address", "box.example.org", "--dry-run"]  # fmt: skip
    jump_known.write_text("")  # first, the jump host's key is not known: said so
    unknown_jump = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert unknown_jump.returncode == 3
    assert f"through the jump host root@[{root_host.address}]" in unknown_jump.stderr

    # Trusted out of band, as a person checks a fingerprint on the console.
    jump_known.write_text(f"{root_host.address} {jump_key[0]} {jump_key[1]}\n")
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["host"] == f"root@{private} via root@[{root_host.address}]"
    assert report["server"] == "https://box.example.org:6443"
    # The private host saw the connection come from the jump host's side of the link.
    assert f"from {private[:-1]}1 port" in spare_host.sshd_log.read_text()
