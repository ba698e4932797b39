"""The pure parts of `libresh bootstrap`: k3s config and install plans, kubeconfig handling,
the installer script, checksums, and what OpenSSH prints."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from libresh_cli.cluster import kubeconfig
from libresh_cli.cluster.airgap import binary_name, images_name, parse_checksums
from libresh_cli.cluster.bootstrap import InstallSource, SourceKind, context_name, installer_script
from libresh_cli.cluster.k3s import (
    DEFAULT_K3S_VERSION,
    Action,
    parse_version,
    plan_config,
    plan_install,
    wanted_settings,
)
from libresh_cli.errors import BadInputError, ConflictError, UnreachableError
from libresh_cli.remote.ssh import (
    ResolvedHost,
    changed_key_error,
    classify_ssh_failure,
    parse_fingerprints,
    parse_ssh_config_dump,
)

K3S_KUBECONFIG = """
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://127.0.0.1:6443
  name: default
contexts:
- context: {cluster: default, user: default}
  name: default
current-context: default
kind: Config
users:
- name: default
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
"""


# -- k3s config and plan -------------------------------------------------------------------


def settings() -> dict[str, object]:
    return wanted_settings("single", address="203.0.113.10", node_name="vps")


def test_config_has_host_and_profile_settings() -> None:
    plan = plan_config(None, settings())
    assert plan.changed and plan.text.startswith("# Written by libresh")
    written = yaml.safe_load(plan.text)
    assert written["tls-san"] == ["203.0.113.10"]
    assert written["node-name"] == "vps"
    assert written["write-kubeconfig-mode"] == "0600"
    assert written["secrets-encryption"] is True  # from bootstrap/k3s/single.yaml


def test_config_rerun_is_unchanged_and_keeps_hand_added_keys() -> None:
    first = plan_config(None, settings())
    assert not plan_config(first.text, settings()).changed
    edited = first.text + "snapshotter: native\n"
    again = plan_config(edited, settings())
    assert not again.changed and again.kept_keys == ("snapshotter",)
    moved = plan_config(first.text, wanted_settings("single", address="x.example", node_name="vps"))
    assert moved.changed and yaml.safe_load(moved.text)["tls-san"] == ["x.example"]


@pytest.mark.parametrize(
    ("installed", "running", "changed", "version", "expected"),
    [
        (None, False, True, None, Action.INSTALL),
        ("v1.34.4+k3s1", True, False, None, Action.NOTHING),
        ("v1.34.4+k3s1", True, False, "v1.34.4+k3s1", Action.NOTHING),
        ("v1.34.4+k3s1", True, True, None, Action.RECONFIGURE),
        ("v1.34.4+k3s1", False, False, None, Action.START),
        ("v1.34.4+k3s1", True, False, "v1.35.1+k3s1", Action.CHANGE_VERSION),
        ("v1.34.4+k3s1", True, False, "v1.34.5+k3s1", Action.CHANGE_VERSION),
    ],
)
def test_install_plan(
    installed: str | None, running: bool, changed: bool, version: str | None, expected: Action
) -> None:
    plan = plan_install(
        installed=installed, running=running, config_changed=changed, version=version, channel=None
    )
    assert plan.action is expected
    assert plan.runs_installer is (expected is not Action.NOTHING)


def test_install_plan_default_version_and_channel() -> None:
    fresh = plan_install(
        installed=None, running=False, config_changed=True, version=None, channel=None
    )
    assert fresh.version == DEFAULT_K3S_VERSION
    follow = plan_install(
        installed=None, running=False, config_changed=True, version=None, channel="stable"
    )
    assert (follow.version, follow.channel) == (None, "stable")
    kept = plan_install(
        installed="v1.34.4+k3s1", running=True, config_changed=False, version=None, channel="latest"
    )
    assert kept.action is Action.NOTHING  # a channel does not move an installed k3s


@pytest.mark.parametrize(
    ("wanted", "word"), [("v1.33.9+k3s1", "going back"), ("v1.36.0+k3s1", "skip")]
)
def test_downgrades_and_skipped_minors_are_refused(wanted: str, word: str) -> None:
    with pytest.raises(ConflictError, match=word):
        plan_install(
            installed="v1.34.4+k3s1",
            running=True,
            config_changed=False,
            version=wanted,
            channel=None,
        )


def test_version_syntax() -> None:
    assert parse_version("v1.34.4+k3s1") == (1, 34, 4, 1)
    assert parse_version("v1.34.4+k3s2") > parse_version("v1.34.4+k3s1")
    with pytest.raises(BadInputError, match="not a k3s version"):
        parse_version("1.34")


def test_context_names() -> None:
    assert context_name("My_VPS.example.org") == "my-vps.example.org"
    assert context_name("--") == "k3s"


# -- installer script ----------------------------------------------------------------------


def test_installer_script_writes_config_then_runs_the_pinned_installer(tmp_path: Path) -> None:
    script_file = tmp_path / "install.sh"
    script_file.write_bytes(b"#!/bin/sh\necho 'LIBRESH_CONFIG_END' # tricky\n")
    config = plan_config(None, settings())
    plan = plan_install(
        installed=None, running=False, config_changed=True, version=None, channel=None
    )
    text = installer_script(plan, config, InstallSource(SourceKind.SCRIPT, script_file))
    assert text.index("flock") < text.index("config.yaml") < text.index('install-k3s.sh" >')
    assert f"INSTALL_K3S_VERSION='{DEFAULT_K3S_VERSION}'" in text
    # The user's script travels base64-encoded: its content cannot end our here-document.
    assert text.count("LIBRESH_CONFIG_END") == 2
    official = installer_script(plan, config, InstallSource())
    assert "https://get.k3s.io" in official and "base64" not in official


def test_installer_script_without_config_change_and_airgap() -> None:
    config = plan_config(plan_config(None, settings()).text, settings())
    plan = plan_install(
        installed="v1.34.4+k3s1", running=False, config_changed=False, version=None, channel=None
    )
    text = installer_script(plan, config, InstallSource(SourceKind.AIRGAP, Path("/x")))
    assert "config.yaml" not in text
    assert "INSTALL_K3S_SKIP_DOWNLOAD=true" in text
    assert "get.k3s.io" not in text


# -- kubeconfig ----------------------------------------------------------------------------


def test_k3s_kubeconfig_renamed_and_pointed_at_the_public_address() -> None:
    document = kubeconfig.from_k3s(
        K3S_KUBECONFIG, context="vps", server="https://203.0.113.10:6443"
    )
    assert document["current-context"] == "vps"
    assert document["clusters"][0] == {
        "name": "vps",
        "cluster": {"certificate-authority-data": "Q0E=", "server": "https://203.0.113.10:6443"},
    }
    assert document["contexts"][0]["context"] == {"cluster": "vps", "user": "vps"}
    assert kubeconfig.server_url("2001:db8::1") == "https://[2001:db8::1]:6443"


def test_merge_keeps_other_contexts_and_replaces_its_own(tmp_path: Path) -> None:
    path = tmp_path / "config"
    other = kubeconfig.from_k3s(K3S_KUBECONFIG, context="home", server="https://10.0.0.2:6443")
    path.write_text(yaml.safe_dump(other))
    destination = kubeconfig.Destination(path, merge=True)
    new = kubeconfig.from_k3s(K3S_KUBECONFIG, context="vps", server="https://203.0.113.10:6443")
    kubeconfig.check_destination(destination, "vps", "https://203.0.113.10:6443")
    assert kubeconfig.write(destination, new, "vps")
    assert path.stat().st_mode & 0o777 == 0o600
    merged = yaml.safe_load(path.read_text())
    assert sorted(c["name"] for c in merged["contexts"]) == ["home", "vps"]
    assert merged["current-context"] == "home"  # not switched behind the user's back
    assert not kubeconfig.write(destination, new, "vps")  # the same again: untouched


def test_context_used_by_another_cluster_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            kubeconfig.from_k3s(K3S_KUBECONFIG, context="vps", server="https://10.9.9.9:6443")
        )
    )
    for merge in (True, False):
        with pytest.raises(ConflictError, match="already points at another cluster"):
            kubeconfig.check_destination(
                kubeconfig.Destination(path, merge), "vps", "https://203.0.113.10:6443"
            )
    with pytest.raises(ConflictError, match="holds other contexts"):
        kubeconfig.check_destination(
            kubeconfig.Destination(path, merge=False), "other", "https://203.0.113.10:6443"
        )


def test_broken_kubeconfig_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("clusters: [unclosed\n")
    with pytest.raises(BadInputError, match="not valid YAML"):
        kubeconfig.check_destination(kubeconfig.Destination(path, True), "vps", "https://x:6443")


# -- airgap --------------------------------------------------------------------------------


def test_release_checksums_and_file_names() -> None:
    text = f"{'a' * 64}  k3s\n{'B' * 64} *k3s-airgap-images-arm64.tar.zst\nbroken line\n"
    assert parse_checksums(text) == {"k3s": "a" * 64, "k3s-airgap-images-arm64.tar.zst": "b" * 64}
    assert (binary_name("amd64"), binary_name("armhf")) == ("k3s", "k3s-armhf")
    assert images_name("arm64") == "k3s-airgap-images-arm64.tar.zst"


# -- OpenSSH -------------------------------------------------------------------------------


HOST = ResolvedHost("203.0.113.10", 2222, "admin", Path("/home/me/.ssh/known_hosts"), None)


def test_ssh_config_dump(tmp_path: Path) -> None:
    dump = (
        "host vps\nuser admin\nhostname 203.0.113.10\nport 2222\n"
        "userknownhostsfile /tmp/kh /tmp/kh2\nproxyjump bastion\n"
    )
    assert parse_ssh_config_dump(dump) == ResolvedHost(
        "203.0.113.10", 2222, "admin", Path("/tmp/kh"), "bastion"
    )
    assert "via bastion" in parse_ssh_config_dump(dump).describe()


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        ("ssh: Could not resolve hostname nope: Name or service not known", "resolve"),
        ("ssh: connect to host 203.0.113.10 port 2222: Connection timed out", "No answer"),
        (
            "ssh: connect to host 203.0.113.10 port 2222: Connection refused",
            "refused the connection",
        ),
        ("ssh: connect to host 203.0.113.10 port 2222: No route to host", "No network route"),
        ("admin@203.0.113.10: Permission denied (publickey).", "refused to log in"),
    ],
)
def test_ssh_failures_say_what_to_check(stderr: str, expected: str) -> None:
    error = classify_ssh_failure(stderr, HOST, 15)
    assert isinstance(error, UnreachableError)
    assert expected in error.message and error.hint


def test_jump_host_failure_names_the_jump_host() -> None:
    jumped = ResolvedHost("10.0.0.5", 22, "root", Path("/kh"), "admin@bastion")
    stderr = "Host key verification failed.\nConnection closed by UNKNOWN port 65535\n"
    error = classify_ssh_failure(stderr, jumped, 15)
    assert "through the jump host admin@bastion" in error.message
    assert "Host key verification failed." in error.message
    assert "`ssh admin@bastion`" in (error.hint or "")


def test_changed_key_message() -> None:
    stderr = (
        "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n"
        "The fingerprint for the ED25519 key sent by the remote host is\n"
        "SHA256:newnewnew.\n"
        "Offending ED25519 key in /home/me/.ssh/known_hosts:3\n"
        "Host key verification failed.\n"
    )
    error = changed_key_error(stderr, HOST)
    assert "CHANGED" in error.message and "SHA256:newnewnew" in error.message
    assert "known_hosts:3" in error.message
    assert "ssh-keygen -R '[203.0.113.10]:2222'" in (error.hint or "")


def test_a_destination_that_ssh_would_read_as_an_option_is_refused() -> None:
    from libresh_cli.remote.ssh import SshHost, SshTarget

    with pytest.raises(BadInputError, match="is not a destination"):
        SshHost(SshTarget("-oProxyCommand=touch /tmp/x"))


def test_fingerprints_from_ssh_keygen() -> None:
    listed = "256 SHA256:uYcjLQHKWhoho 10.77.1.2 (ED25519)\n3072 SHA256:abc [h]:2222 (RSA)\n"
    assert parse_fingerprints(listed) == ["ED25519 SHA256:uYcjLQHKWhoho", "RSA SHA256:abc"]


def test_a_host_config_with_anchors_is_refused_not_replaced() -> None:
    """k3s reads YAML anchors; libresh's bounded reader does not. Replacing the file would drop
    the admin's own keys and the cluster token: it is refused, with what to do."""
    text = "token: &t s3cr3t-token\nnode-label: [*t]\n"
    with pytest.raises(BadInputError, match="does not rewrite it") as refused:
        plan_config(text, settings())
    assert "s3cr3t-token" not in refused.value.message
    assert "without anchors" in str(refused.value.hint)


def test_ssh_never_forwards_the_agent_whatever_the_config_says(tmp_path: Path) -> None:
    """A user's `ForwardAgent yes` must not reach a server libresh logs in to (issue 14,
    finding 15): options given with -o win over the config file (ssh_config(5): the first
    value obtained is used, and the command line is read first)."""
    from libresh_cli.remote.ssh import SshHost, SshTarget

    config = tmp_path / "ssh_config"
    config.write_text("Host *\n    ForwardAgent yes\n    ForwardX11 yes\n")
    host = SshHost(SshTarget("root@203.0.113.10", config_file=config))
    try:
        options = host._options()
    finally:
        host.close()
    assert "ForwardAgent=no" in options and "ForwardX11=no" in options
