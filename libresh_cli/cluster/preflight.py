"""Preflight: what a host is (parsed from `bootstrap/preflight.sh` output) and whether k3s can
run there. Pure functions, tested with the output of real hosts (tests/fixtures/hosts/)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from libresh_cli.remote.base import Privilege

GIB = 1024**3
MEMORY_REFUSED_BELOW = 1 * GIB
MEMORY_WARNED_BELOW = 2 * GIB
DISK_REFUSED_BELOW = 3 * GIB
DISK_WARNED_BELOW = 10 * GIB
# Traefik serves 80 and 443 (through k3s' service load balancer), the API server 6443.
REQUIRED_PORTS = (80, 443, 6443)
ARCHITECTURES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "armhf",
    "armv8l": "armhf",
}
# The systems libresh is tested on, with the oldest version still supported.
SUPPORTED_SYSTEMS = {"debian": 11, "raspbian": 11, "ubuntu": 20}
RPI_CGROUP_FLAGS = "cgroup_memory=1 cgroup_enable=memory"


@dataclass(frozen=True)
class HostFacts:
    privilege: Privilege
    user: str
    hostname: str
    os_id: str
    os_version: str
    os_name: str
    machine: str
    kernel: str
    memory_bytes: int
    disk_free_bytes: int | None
    listening_ports: frozenset[int]
    memory_cgroup: bool | None
    cmdline: str
    model: str
    boot_cmdline_file: str | None
    init: str
    downloaders: tuple[str, ...]
    k3s_version: str | None
    k3s_config: str | None
    k3s_kubeconfig: bool

    @property
    def arch(self) -> str | None:
        return ARCHITECTURES.get(self.machine)

    @property
    def raspberry_pi(self) -> bool:
        return "raspberry pi" in self.model.lower() or self.boot_cmdline_file is not None

    @property
    def k3s_running(self) -> bool:
        """k3s answers on 6443 and has written its kubeconfig."""
        return self.k3s_version is not None and self.k3s_kubeconfig and 6443 in self.listening_ports


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    message: str
    hint: str | None = None
    forceable: bool = False  # --force goes on despite it


@dataclass
class Assessment:
    checks: list[Check] = field(default_factory=list)

    def failures(self, *, force: bool) -> list[Check]:
        return [c for c in self.checks if c.level is Level.FAIL and not (force and c.forceable)]

    def warnings(self, *, force: bool) -> list[Check]:
        forced = [c for c in self.checks if c.level is Level.FAIL and force and c.forceable]
        return [c for c in self.checks if c.level is Level.WARN] + forced


# -- parsing -------------------------------------------------------------------------------


def split_sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = sections.setdefault(line[2:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def parse_os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    return values


def parse_meminfo_kib(text: str, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def parse_df_free_bytes(line: str) -> int | None:
    """`df -Pk` data line: filesystem, 1K-blocks, used, available, capacity, mount point."""
    fields = line.split()
    if len(fields) >= 6 and fields[3].isdigit():
        return int(fields[3]) * 1024
    return None


def parse_listening_ports(text: str) -> frozenset[int]:
    """/proc/net/tcp local addresses ("0100007F:1F90", IPv6 ones longer) → ports."""
    ports = set()
    for entry in text.split():
        _, _, port = entry.rpartition(":")
        try:
            ports.add(int(port, 16))
        except ValueError:
            continue
    return frozenset(ports)


def parse_memory_cgroup(controllers: str, proc_cgroups: str) -> bool | None:
    """cgroup v2 lists enabled controllers; v1's /proc/cgroups has an `enabled` column."""
    if controllers:
        return "memory" in controllers.split()
    fields = proc_cgroups.split()
    if len(fields) >= 4 and fields[0] == "memory":
        return fields[3] == "1"
    return None


def parse_k3s_version(line: str) -> str | None:
    """`k3s version v1.34.4+k3s1 (c3f8f2d4)` → v1.34.4+k3s1."""
    match = re.search(r"\bv\d+\.\d+\.\d+\+k3s\d+", line)
    return match.group(0) if match else None


def parse_facts(text: str) -> HostFacts:
    s = split_sections(text)
    os_release = parse_os_release(s.get("os-release", ""))
    try:
        privilege = Privilege(s.get("privilege", "none"))
    except ValueError:
        privilege = Privilege.NONE
    return HostFacts(
        privilege=privilege,
        user=s.get("user", ""),
        hostname=s.get("hostname", ""),
        os_id=os_release.get("ID", ""),
        os_version=os_release.get("VERSION_ID", ""),
        os_name=os_release.get("PRETTY_NAME", os_release.get("NAME", "")),
        machine=s.get("machine", ""),
        kernel=s.get("kernel", ""),
        memory_bytes=parse_meminfo_kib(s.get("meminfo", ""), "MemTotal"),
        disk_free_bytes=parse_df_free_bytes(s.get("disk", "")),
        listening_ports=parse_listening_ports(s.get("listening", "")),
        memory_cgroup=parse_memory_cgroup(
            s.get("cgroup-controllers", ""), s.get("proc-cgroups", "")
        ),
        cmdline=s.get("cmdline", ""),
        model=s.get("model", ""),
        boot_cmdline_file=s.get("boot-cmdline") or None,
        init=s.get("init", "none"),
        downloaders=tuple(s.get("downloader", "").split()),
        k3s_version=parse_k3s_version(s.get("k3s-version", "")),
        k3s_config=s.get("k3s-config") or None,
        k3s_kubeconfig=s.get("k3s-kubeconfig") == "present",
    )


# -- assessment ----------------------------------------------------------------------------


def assess(facts: HostFacts, *, needs_download: bool) -> Assessment:
    """Every check, in the order a person would fix them."""
    checks = [
        _check_privilege(facts),
        _check_system(facts),
        _check_architecture(facts),
        _check_memory(facts),
        _check_disk(facts),
        _check_ports(facts),
        _check_memory_cgroup(facts),
        _check_init(facts),
    ]
    if needs_download:
        checks.append(_check_downloader(facts))
    return Assessment(checks)


def _gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB"


def _check_privilege(facts: HostFacts) -> Check:
    if facts.privilege is not Privilege.NONE:
        return Check(
            "privilege", Level.OK, f"{facts.user} runs commands as root ({facts.privilege})"
        )
    return Check(
        "privilege",
        Level.FAIL,
        f"{facts.user} is not root and cannot use sudo without a password.",
        hint=f"Log in as root, or give {facts.user} passwordless sudo: as root on the host, "
        f"`echo '{facts.user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{facts.user}`.",
    )


def _check_system(facts: HostFacts) -> Check:
    name = facts.os_name or "an unknown system (no /etc/os-release)"
    oldest = SUPPORTED_SYSTEMS.get(facts.os_id)
    major = _major(facts.os_version)
    tested = ", ".join(f"{k} {v}+" for k, v in SUPPORTED_SYSTEMS.items())
    if oldest is None:
        return Check(
            "system",
            Level.FAIL,
            f"{name} is not a system libresh is tested on ({tested}).",
            hint="Use Debian, Ubuntu or Raspberry Pi OS, or --force to try anyway.",
            forceable=True,
        )
    if major is None or major < oldest:
        return Check(
            "system",
            Level.FAIL,
            f"{name} is too old: libresh needs {facts.os_id} {oldest} or newer.",
            hint="Upgrade the system first, or --force to try anyway.",
            forceable=True,
        )
    return Check("system", Level.OK, name)


def _major(version: str) -> int | None:
    match = re.match(r"(\d+)", version)
    return int(match.group(1)) if match else None


def _check_architecture(facts: HostFacts) -> Check:
    if facts.arch is not None:
        return Check("architecture", Level.OK, f"{facts.machine} ({facts.arch})")
    hint = "k3s runs on amd64 (x86_64), arm64 (aarch64) and armhf (ARMv7)."
    if facts.machine.startswith("armv6"):
        hint += " ARMv6 boards (Raspberry Pi 1 and Zero) cannot run k3s."
    return Check(
        "architecture",
        Level.FAIL,
        f"The architecture {facts.machine or '(unknown)'} is not supported.",
        hint=hint,
    )


def _check_memory(facts: HostFacts) -> Check:
    total = _gib(facts.memory_bytes)
    if facts.memory_bytes < MEMORY_REFUSED_BELOW:
        return Check(
            "memory",
            Level.FAIL,
            f"Only {total} of memory: k3s alone needs about 1 GiB, apps need more.",
            hint="Use a host with 2 GiB or more, or --force to try anyway.",
            forceable=True,
        )
    if facts.memory_bytes < MEMORY_WARNED_BELOW:
        return Check(
            "memory",
            Level.WARN,
            f"{total} of memory: enough for k3s, tight for apps (2 GiB is the practical floor).",
        )
    return Check("memory", Level.OK, total)


def _check_disk(facts: HostFacts) -> Check:
    free = facts.disk_free_bytes
    if free is None:
        return Check("disk", Level.WARN, "Could not read the free space under /var/lib.")
    if free < DISK_REFUSED_BELOW:
        return Check(
            "disk",
            Level.FAIL,
            f"Only {_gib(free)} free under /var/lib, where k3s keeps images and volumes.",
            hint="Free some space (or grow the disk), or --force to try anyway.",
            forceable=True,
        )
    if free < DISK_WARNED_BELOW:
        return Check("disk", Level.WARN, f"{_gib(free)} free under /var/lib: little room for apps.")
    return Check("disk", Level.OK, f"{_gib(free)} free under /var/lib")


def _check_ports(facts: HostFacts) -> Check:
    if facts.k3s_version is not None:
        # k3s itself holds 6443; it is checked as "already installed" instead.
        return Check("ports", Level.OK, "k3s is installed; its ports are its own")
    taken = [p for p in REQUIRED_PORTS if p in facts.listening_ports]
    if taken:
        listed = ", ".join(str(p) for p in taken)
        return Check(
            "ports",
            Level.FAIL,
            f"Port(s) {listed} already in use on the host; k3s needs 80, 443 and 6443.",
            hint=f"Stop what listens there (`ss -ltnp | grep -E ':({'|'.join(map(str, taken))})'` "
            "shows it; often a web server like nginx or apache2).",
        )
    return Check("ports", Level.OK, "80, 443 and 6443 are free")


def _check_memory_cgroup(facts: HostFacts) -> Check:
    if facts.memory_cgroup is not False:
        return Check("memory cgroup", Level.OK, "enabled")
    if facts.raspberry_pi:
        file = facts.boot_cmdline_file or "/boot/firmware/cmdline.txt"
        hint = (
            f"Add `{RPI_CGROUP_FLAGS}` at the end of the single line in {file}, "
            f"then reboot: sudo sed -i '$ s/$/ {RPI_CGROUP_FLAGS}/' {file} && sudo reboot"
        )
    else:
        hint = (
            f"Add `{RPI_CGROUP_FLAGS}` to the kernel command line (GRUB_CMDLINE_LINUX in "
            "/etc/default/grub, then update-grub) and reboot."
        )
    return Check(
        "memory cgroup",
        Level.FAIL,
        "The memory cgroup is disabled: k3s cannot limit or account pods' memory.",
        hint=hint,
    )


def _check_init(facts: HostFacts) -> Check:
    if facts.init in ("systemd", "openrc"):
        return Check("service manager", Level.OK, facts.init)
    return Check(
        "service manager",
        Level.WARN,
        "Neither systemd nor openrc found: the k3s installer cannot install k3s as a service.",
    )


def _check_downloader(facts: HostFacts) -> Check:
    if facts.downloaders:
        return Check("downloads", Level.OK, f"{facts.downloaders[0]} is there")
    return Check(
        "downloads",
        Level.FAIL,
        "Neither curl nor wget is installed: the k3s installer cannot download k3s.",
        hint="Install curl (apt install curl), or use --airgap DIR to send k3s from here.",
    )
