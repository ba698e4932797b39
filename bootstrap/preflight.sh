#!/bin/sh
# libresh preflight: facts about a host that is to become a k3s node, in one round trip.
# Read-only. Runs as the login user; what only root may read is read through `sudo -n` when
# that works. Output: sections, each a line "@@name" followed by raw command output, parsed by
# libresh_cli/cluster/preflight.py (fixtures of real hosts in tests/fixtures/hosts/).
# Paths are overridable for the k3s installer's INSTALL_K3S_BIN_DIR; defaults are k3s' own.

K3S_CONFIG=/etc/rancher/k3s/config.yaml
K3S_KUBECONFIG=/etc/rancher/k3s/k3s.yaml

section() { printf '@@%s\n' "$1"; }

if [ "$(id -u)" -eq 0 ]; then
    privilege=root
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    privilege=sudo
    as_root() { sudo -n "$@"; }
else
    privilege=none
    as_root() { "$@"; }
fi

section privilege; echo "$privilege"
section user; id -un
section hostname; cat /proc/sys/kernel/hostname 2>/dev/null || hostname
section os-release; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
section machine; uname -m
section kernel; uname -r
section meminfo; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo
# k3s keeps its data, images and volumes under /var/lib/rancher.
section disk; df -Pk /var/lib 2>/dev/null | tail -n 1
# Listening TCP sockets (state 0A), local address:port in hex, IPv4 and IPv6.
section listening; awk '$4 == "0A" { print $2 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
section cgroup-controllers; cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null
section proc-cgroups; grep -E '^memory' /proc/cgroups 2>/dev/null
section cmdline; cat /proc/cmdline 2>/dev/null
section model; { tr -d '\000' </proc/device-tree/model; } 2>/dev/null; echo
section boot-cmdline
for file in /boot/firmware/cmdline.txt /boot/cmdline.txt; do
    if [ -f "$file" ]; then echo "$file"; break; fi
done
section init
if [ -d /run/systemd/system ]; then echo systemd
elif command -v openrc >/dev/null 2>&1 || [ -x /sbin/openrc-run ]; then echo openrc
else echo none; fi
section downloader
for tool in curl wget; do command -v "$tool" >/dev/null 2>&1 && echo "$tool"; done
section k3s-version
k3s_bin=$(command -v k3s 2>/dev/null || { [ -x /usr/local/bin/k3s ] && echo /usr/local/bin/k3s; })
[ -n "$k3s_bin" ] && "$k3s_bin" --version 2>/dev/null | head -n 1
section k3s-config; as_root cat "$K3S_CONFIG" 2>/dev/null
section k3s-kubeconfig; as_root test -s "$K3S_KUBECONFIG" 2>/dev/null && echo present
section end
exit 0
