"""Where the world reaches the cluster, and whether it does: the public address, ports 80 and
443 from this machine, and each domain's DNS records."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from libresh_cli.doctor import dns
from libresh_cli.doctor.checks import CLUSTER, Check, ok, problem, unchecked, warn

Manifest = dict[str, Any]
# k3s' Traefik: its LoadBalancer Service, given an address by k3s' servicelb (the nodes') or
# by the hcloud cloud controller (a Hetzner load balancer): libresh_cli/infra profiles.
TRAEFIK = ("traefik", "kube-system")
PORTS = (80, 443)
CONNECT_TIMEOUT = 3.0
FIX_ADDRESS = "libresh doctor --public-address IP"


@dataclass(frozen=True)
class PublicAddress:
    addresses: tuple[str, ...]
    source: str  # where they come from, said in the report
    given: bool = False  # --public-address: the user's word, not the cluster's


def public_address(
    traefik: Manifest | None, nodes: list[Manifest], given: tuple[str, ...]
) -> PublicAddress:
    """The user's --public-address, else Traefik's load balancer address, else the nodes'
    ExternalIP, else their InternalIP (a VPS's k3s node often has its public address there)."""
    if given:
        return PublicAddress(given, "given with --public-address", given=True)
    if traefik is not None:
        ingress = ((traefik.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        found = tuple(i["ip"] for i in ingress if i.get("ip"))
        if found:
            return PublicAddress(found, "the load balancer address of Service kube-system/traefik")
    for kind in ("ExternalIP", "InternalIP"):
        found = tuple(
            a["address"]
            for n in nodes
            for a in (n.get("status") or {}).get("addresses") or []
            if a.get("type") == kind and a.get("address")
        )
        if found:
            return PublicAddress(tuple(dict.fromkeys(found)), f"the nodes' {kind}")
    return PublicAddress((), "nothing")


# Documentation ranges (RFC 5737, RFC 3849) stand for public addresses in examples and tests.
DOCUMENTATION = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                                      "2001:db8::/32")
)  # fmt: skip


def private(address: str) -> bool:
    """Not reachable from the internet as it is: RFC 1918, CGNAT, loopback, link-local, ULA."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not ip.is_global and not any(ip in n for n in DOCUMENTATION)


def address_check(public: PublicAddress) -> Check:
    if not public.addresses:
        return unchecked(
            "public-address",
            CLUSTER,
            "neither Traefik's load balancer nor the nodes have an address",
            FIX_ADDRESS,
        )
    shown = ", ".join(public.addresses)
    if not public.given and all(private(a) for a in public.addresses):
        return warn(
            "public-address",
            CLUSTER,
            f"{shown} ({public.source}) is not a public address: the world reaches the cluster "
            "through a router or a NAT, whose public address libresh cannot see",
            f"Forward ports 80 and 443 to {public.addresses[0]}, and give the router's "
            f"address: {FIX_ADDRESS}",
        )
    return ok("public-address", CLUSTER, f"{shown} ({public.source})")


def holds_address(address: str) -> bool:
    """Whether this machine has `address` on one of its interfaces: then a connection to it
    never leaves this machine, and says nothing of what the world sees."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


def answers(address: str, port: int, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None when a TCP connection to address:port opens, else why not."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer in {timeout:.0f} s (a firewall dropping it?)"
    except ConnectionRefusedError:
        return "connection refused (nothing listens)"
    except OSError as error:
        return error.strerror or str(error)


def ports_check(public: PublicAddress, lab: bool) -> Check:
    """Ports 80 and 443, from this machine: outside the node's own network namespace when
    libresh runs on a laptop; never judged from the node itself."""
    if lab:
        return unchecked(
            "ports",
            CLUSTER,
            "this is a libresh lab: its nodes are simulated and "
            "nothing listens for them on 80 or 443",
        )
    if not public.addresses:
        return unchecked("ports", CLUSTER, "the cluster's public address is not known", FIX_ADDRESS)
    address = public.addresses[0]
    if holds_address(address):
        return unchecked(
            "ports",
            CLUSTER,
            f"this machine holds {address}: a connection from here does not come from outside",
            "Run `libresh doctor` from another machine (a laptop with the kubeconfig)",
        )
    failed = {port: why for port in PORTS if (why := answers(address, port)) is not None}
    if failed:
        said = "; ".join(f"port {port}: {why}" for port, why in failed.items())
        return problem(
            "ports",
            CLUSTER,
            f"{address}, from this machine: {said}",
            "Open 80 and 443 to the internet (the server's firewall: `ufw allow 80,443/tcp`; a "
            "Hetzner Cloud Firewall; a router's port forwarding) and check Traefik: "
            "`libresh infra status`",
        )
    return ok("ports", CLUSTER, f"{address} answers on 80 and 443 from this machine")


def domain_check(
    subject: str, domain: str, public: PublicAddress, server: tuple[str, int] | None
) -> Check:
    if server is None:
        return unchecked(
            "dns",
            subject,
            "no nameserver to ask (none in /etc/resolv.conf)",
            "Name one: libresh doctor --nameserver 9.9.9.9",
        )
    if not public.addresses:
        return unchecked("dns", subject, "the cluster's public address is not known", FIX_ADDRESS)
    try:
        answer = dns.resolve(domain, server)
    except dns.DnsError as error:
        return unchecked(
            "dns",
            subject,
            f"{domain}: {error}",
            "Name another nameserver: libresh doctor --nameserver IP",
        )
    return domain_verdict(subject, domain, answer, public, server[0])


def domain_verdict(
    subject: str, domain: str, answer: dns.Answer, public: PublicAddress, asked: str
) -> Check:
    """Pure: the domain's records beside the cluster's addresses."""
    wanted = ", ".join(public.addresses)
    record = "AAAA" if ":" in public.addresses[0] else "A"
    fix = f"At your DNS provider, point {domain} ({record} record) to {public.addresses[0]}"
    if not answer.addresses:
        why = (
            "does not exist (NXDOMAIN)"
            if answer.rcode == "NXDOMAIN"
            else (f"has no A or AAAA record ({answer.rcode})")
        )
        return problem("dns", subject, f"{domain} {why}, asked of {asked}", fix)
    found = ", ".join(answer.addresses)
    elsewhere = [a for a in answer.addresses if a not in public.addresses]
    if not elsewhere:
        return ok("dns", subject, f"{domain} resolves to {found}, the cluster's address")
    if (
        not public.given
        and all(private(a) for a in public.addresses)
        and not any(private(a) for a in elsewhere)
    ):
        return warn(
            "dns",
            subject,
            f"{domain} resolves to {found}; the cluster's address {wanted} is private, so "
            "this is right only if it is your router's address, forwarding 80 and 443",
            f"If it is: libresh doctor --public-address {elsewhere[0]}. If not: {fix}",
        )
    return problem(
        "dns",
        subject,
        f"{domain} resolves to {found} (asked of {asked}), not to the cluster ({wanted}): "
        "visitors and Let's Encrypt reach another machine",
        fix
        + (
            f", and remove the record(s) to {', '.join(elsewhere)}"
            if len(answer.addresses) > len(elsewhere)
            else ""
        ),
    )
