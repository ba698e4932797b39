"""What the kube adapter takes from the kubernetes client's loader, and the lab's certificates
under OpenSSL's strict X.509 checks (Python 3.13's default).

The loader's output is a `kubernetes.client.Configuration`; where it keeps the header value of
a token changed between releases (issue 19, point 6), so both places are read."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from kubernetes import client as k8s_client

from libresh_cli.errors import BadInputError
from libresh_cli.kube.connection import _authorization_getter
from libresh_cli.kube.kubeconfig_extras import bypasses_proxy, extras_for, selected_entries
from libresh_cli.lab.pki import create_pki


@pytest.mark.parametrize(
    "key",
    ["BearerToken", "authorization"],  # kubernetes >= 37.0; 30.1 to 36.x
)
def test_the_token_is_read_where_each_client_release_keeps_it(key: str) -> None:
    configuration = k8s_client.Configuration()
    configuration.api_key[key] = "Bearer abc"
    assert _authorization_getter(configuration)() == "Bearer abc"


def test_no_token_no_header() -> None:
    assert _authorization_getter(k8s_client.Configuration())() is None


def _handshake(server_cert: Path, server_key: Path, ca: Path) -> None:
    """A TLS handshake between a server with this certificate and a client that trusts `ca`
    with strict X.509 checks; raises ssl.SSLError when the client refuses."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(server_cert, server_key)
    client_context = ssl.create_default_context(cafile=str(ca))
    client_context.verify_flags |= ssl.VERIFY_X509_STRICT
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with (
            socket.create_connection(listener.getsockname()) as raw,
            client_context.wrap_socket(raw, server_hostname="localhost"),
        ):
            pass
        thread.join(5)


def test_the_lab_certificates_pass_strict_x509(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki", "strict")
    _handshake(pki.serving_cert, pki.serving_key, pki.ca_cert)


def test_strict_x509_refuses_a_ca_without_key_identifiers(tmp_path: Path) -> None:
    """The teeth of the test above: the same certificates without their key identifiers (as
    the lab made them before) are refused by the strict checks."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )

    def builder(
        subject: str, issuer: str, key: ec.EllipticCurvePrivateKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca = (
        builder("old-ca", "old-ca", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        builder("localhost", "old-ca", leaf_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ssl.SSLError):
        _handshake(tmp_path / "leaf.pem", tmp_path / "leaf.key", tmp_path / "ca.pem")


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypassed"),
    [
        ("10.1.2.3", "10.0.0.0/8", True),  # a CIDR block (httpx alone would proxy it)
        ("10.1.2.3", "192.168.0.0/16", False),
        ("api.example.org", "example.org", True),  # a domain and its subdomains
        ("api.example.org", ".example.org", True),
        ("example.org.evil.net", "example.org", False),
        ("api.example.org", "api.example.org:6443", True),
        ("api.example.org", "api.example.org:443", False),  # another port
        ("203.0.113.7", "203.0.113.7", True),
        ("203.0.113.7", "*", True),
        ("127.0.0.1", "", True),  # loopback never goes through a proxy
        ("localhost", "", True),
        ("203.0.113.7", "", False),
    ],
)
def test_no_proxy_is_read_as_go_reads_it(host: str, no_proxy: str, bypassed: bool) -> None:
    assert bypasses_proxy(host, 6443, no_proxy) is bypassed


def test_the_proxy_comes_from_the_kubeconfig_else_the_environment() -> None:
    env = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "10.0.0.0/8"}
    server = "https://10.0.0.5:6443"
    assert extras_for({}, {}, server, env).proxy is None
    assert extras_for({}, {}, "https://203.0.113.7:6443", env).proxy == "http://proxy:3128"
    cluster = {"proxy-url": "socks5://jump:1080"}
    assert extras_for(cluster, {}, server, env).proxy == "socks5://jump:1080"


def test_insecure_beside_a_ca_is_refused_as_kubectl_does() -> None:
    cluster = {"insecure-skip-tls-verify": True, "certificate-authority-data": "LS0t"}
    with pytest.raises(BadInputError, match="insecure-skip-tls-verify and a certificate"):
        extras_for(cluster, {}, "https://203.0.113.7:6443", {})


def test_impersonation_and_server_name_are_taken_from_the_kubeconfig() -> None:
    user = {
        "as": "alice",
        "as-groups": ["ops", "audit"],
        "as-uid": "42",
        "as-user-extra": {"scopes": ["view", "edit"]},
        "exec": {"command": "plugin"},
    }
    extras = extras_for({"tls-server-name": "kubernetes"}, user, "https://10.0.0.5:6443", {})
    assert extras.headers == {
        "Impersonate-User": "alice",
        "Impersonate-Uid": "42",
        "Impersonate-Extra-scopes": "view,edit",
    }
    assert extras.impersonate_groups == ("ops", "audit")
    assert extras.tls_server_name == "kubernetes"
    assert extras.refreshable


def test_the_context_selects_the_cluster_and_user_first_file_first() -> None:
    first = {
        "current-context": "a",
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"as": "first"}}],
    }
    second = {
        "clusters": [{"name": "c", "cluster": {"tls-server-name": "k"}}],
        "users": [{"name": "u", "user": {"as": "second"}}],
    }
    cluster, user = selected_entries([first, second], None)
    assert cluster == {"tls-server-name": "k"}
    assert user == {"as": "first"}
