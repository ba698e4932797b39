"""Preflight facts parsed from real hosts' output, and the checks made on them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from libresh_cli.cluster.preflight import (
    GIB,
    Assessment,
    HostFacts,
    Level,
    assess,
    parse_facts,
    parse_listening_ports,
    parse_memory_cgroup,
)
from libresh_cli.remote.base import Privilege

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hosts"


def facts(name: str) -> HostFacts:
    return parse_facts((FIXTURES / f"{name}.txt").read_text())


def check(assessment: Assessment, name: str) -> tuple[Level, str, str | None]:
    found = next(c for c in assessment.checks if c.name == name)
    return found.level, found.message, found.hint


def test_debian_vm_facts() -> None:
    host = facts("debian12-amd64")
    assert (host.os_id, host.os_version, host.arch) == ("debian", "12", "amd64")
    assert host.privilege is Privilege.ROOT
    assert host.memory_bytes == 24683656 * 1024
    assert host.disk_free_bytes == 66285800 * 1024
    assert host.listening_ports == frozenset({2024})
    assert host.memory_cgroup is True  # cgroup v1: /proc/cgroups says enabled
    assert host.k3s_version is None and not host.k3s_running
    assert host.downloaders == ("curl", "wget")
    assert not host.raspberry_pi


def test_ubuntu_vps_passes_with_a_memory_warning() -> None:
    host = facts("ubuntu2404-amd64")
    assert (host.os_id, host.os_version, host.privilege) == ("ubuntu", "24.04", Privilege.SUDO)
    assert host.memory_cgroup is True  # cgroup v2 controller list
    assert host.listening_ports == frozenset({53, 22})
    result = assess(host, needs_download=True)
    assert result.failures(force=False) == []
    level, message, _ = check(result, "memory")
    assert level is Level.WARN and "1.8 GiB" in message


def test_raspberry_pi_without_memory_cgroup_gets_the_cmdline_fix() -> None:
    host = facts("raspios-bookworm-arm64")
    assert host.arch == "arm64" and host.raspberry_pi
    assert host.memory_cgroup is False
    failures = assess(host, needs_download=True).failures(force=True)
    assert [c.name for c in failures] == ["memory cgroup"]  # --force does not skip it
    hint = failures[0].hint or ""
    assert "cgroup_memory=1 cgroup_enable=memory" in hint
    assert "/boot/firmware/cmdline.txt" in hint


def test_small_armhf_board_with_k3s_installed() -> None:
    host = facts("raspbian-bullseye-armhf-k3s")
    assert (host.os_id, host.arch, host.machine) == ("raspbian", "armhf", "armv7l")
    assert host.k3s_version == "v1.33.5+k3s1"
    assert host.k3s_running  # binary, kubeconfig, and 6443 listening
    assert host.k3s_config is not None and "snapshotter: native" in host.k3s_config
    result = assess(host, needs_download=False)
    # Under 1 GiB: refused, unless --force; ports are k3s' own, so they are not in the way.
    assert [c.name for c in result.failures(force=False)] == ["memory"]
    assert result.failures(force=True) == []
    assert "memory" in [c.name for c in result.warnings(force=True)]
    assert check(result, "ports")[0] is Level.OK


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"privilege": Privilege.NONE}, "privilege"),
        ({"os_id": "fedora", "os_name": "Fedora Linux 40"}, "system"),
        ({"os_version": "10"}, "system"),
        ({"machine": "armv6l"}, "architecture"),
        ({"machine": "riscv64"}, "architecture"),
        ({"memory_bytes": GIB // 2}, "memory"),
        ({"disk_free_bytes": 2 * GIB}, "disk"),
        ({"listening_ports": frozenset({22, 80, 6443})}, "ports"),
        ({"downloaders": ()}, "downloads"),
    ],
)
def test_each_refusal(change: dict[str, object], failing: str) -> None:
    host = replace(facts("debian12-amd64"), **change)  # type: ignore[arg-type]
    failures = assess(host, needs_download=True).failures(force=False)
    assert [c.name for c in failures] == [failing]
    assert failures[0].hint


def test_refusal_messages_say_what_and_how() -> None:
    host = replace(facts("debian12-amd64"), listening_ports=frozenset({80, 443}), user="admin")
    _, message, hint = check(assess(host, needs_download=False), "ports")
    assert "80, 443" in message and "ss -ltnp" in (hint or "")
    no_sudo = replace(host, privilege=Privilege.NONE)
    _, message, hint = check(assess(no_sudo, needs_download=False), "privilege")
    assert "admin" in message and "NOPASSWD" in (hint or "")
    old_pi = replace(host, machine="armv6l")
    _, _, hint = check(assess(old_pi, needs_download=False), "architecture")
    assert "ARMv6" in (hint or "")


def test_only_unforceable_refusals_survive_force() -> None:
    host = replace(facts("debian12-amd64"), memory_bytes=GIB // 2, os_id="alpine", machine="mips")
    assert {c.name for c in assess(host, needs_download=False).failures(force=False)} == {
        "memory",
        "system",
        "architecture",
    }
    assert [c.name for c in assess(host, needs_download=False).failures(force=True)] == [
        "architecture"
    ]


def test_listening_ports_ipv4_and_ipv6() -> None:
    text = "0100007F:1F90\n00000000000000000000000001000000:01BB\nnot-an-address\n"
    assert parse_listening_ports(text) == frozenset({8080, 443})


def test_memory_cgroup_sources() -> None:
    assert parse_memory_cgroup("cpuset cpu memory", "") is True
    assert parse_memory_cgroup("cpuset cpu io", "memory\t0\t1\t1") is False  # v2 wins
    assert parse_memory_cgroup("", "memory\t0\t90\t0") is False
    assert parse_memory_cgroup("", "") is None  # unknown: not refused
