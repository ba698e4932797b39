"""The lab cluster's certificates: a CA, the API server's serving certificate, an admin client
certificate, and the service-account signing key. Ed25519 is not accepted by every component
for service accounts, so ECDSA P-256 is used throughout: small and fast to generate."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from libresh_cli.settings import write_private_file

VALIDITY = datetime.timedelta(days=365)
# The first address of the lab's service range: in-cluster clients reach the API there.
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"


@dataclass(frozen=True)
class LabPki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def etcd_cert(self) -> Path:
        """etcd's serving (and peer) certificate."""
        return self.directory / "etcd.crt"

    @property
    def etcd_key(self) -> Path:
        return self.directory / "etcd.key"

    @property
    def etcd_client_cert(self) -> Path:
        """What kube-apiserver (and libresh's health check) show etcd."""
        return self.directory / "etcd-client.crt"

    @property
    def etcd_client_key(self) -> Path:
        return self.directory / "etcd-client.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _issue_ca(lab_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _new_key()
    name = _name(f"libresh-lab-{lab_name}-ca")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # Key identifiers: OpenSSL's strict X.509 checks (Python 3.13's default context)
        # refuse a CA without a Subject Key Identifier and a certificate it issued without an
        # Authority Key Identifier (RFC 5280 4.2.1.1 and 4.2.1.2).
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    subject: x509.Name,
    usage: x509.ObjectIdentifier | list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName] | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _new_key()
    usages = usage if isinstance(usage, list) else [usage]
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def serving_names(extra: tuple[str, ...] = ()) -> list[x509.GeneralName]:
    """The API server's names; `extra` adds addresses or DNS names (like k3s' tls-san)."""
    dns_names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    ips = ["127.0.0.1", API_SERVICE_IP]
    for name in extra:
        (ips if _is_ip(name) else dns_names).append(name)
    names: list[x509.GeneralName] = [x509.DNSName(dns) for dns in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    return names


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def create_pki(directory: Path, lab_name: str, extra_names: tuple[str, ...] = ()) -> LabPki:
    """Write every key and certificate the lab needs; private keys are 0600."""
    pki = LabPki(directory)
    ca_key, ca_cert = _issue_ca(lab_name)
    serving_key, serving_cert = _issue_leaf(
        ca_key,
        ca_cert,
        _name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        serving_names(extra_names),
    )
    # system:masters is the group Kubernetes grants every permission: the lab's owner is admin.
    admin_key, admin_cert = _issue_leaf(
        ca_key,
        ca_cert,
        _name("libresh-lab-admin", "system:masters"),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    # etcd on loopback still takes only clients with a certificate of the lab's CA: any local
    # user could otherwise read every Secret straight from it (issue 14, finding 19).
    loopback = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    etcd_key, etcd_cert = _issue_leaf(
        ca_key,
        ca_cert,
        _name("etcd"),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],  # peers: both
        loopback,
    )
    etcd_client_key, etcd_client_cert = _issue_leaf(
        ca_key, ca_cert, _name("kube-apiserver-etcd-client"), ExtendedKeyUsageOID.CLIENT_AUTH
    )
    sa_key = _new_key()
    write_private_file(pki.etcd_key, _key_pem(etcd_key))
    write_private_file(pki.etcd_cert, _cert_pem(etcd_cert))
    write_private_file(pki.etcd_client_key, _key_pem(etcd_client_key))
    write_private_file(pki.etcd_client_cert, _cert_pem(etcd_client_cert))
    write_private_file(pki.ca_key, _key_pem(ca_key))
    write_private_file(pki.ca_cert, _cert_pem(ca_cert))
    write_private_file(pki.serving_key, _key_pem(serving_key))
    write_private_file(pki.serving_cert, _cert_pem(serving_cert))
    write_private_file(pki.admin_key, _key_pem(admin_key))
    write_private_file(pki.admin_cert, _cert_pem(admin_cert))
    write_private_file(pki.service_account_key, _key_pem(sa_key))
    write_private_file(
        pki.service_account_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return pki


@dataclass(frozen=True)
class NodeCertificates:
    """What the real node's kubelet shows the API server, and serves the API server with."""

    client_cert: Path
    client_key: Path
    serving_cert: Path
    serving_key: Path


def issue_node_certificates(
    pki: LabPki, directory: Path, node_name: str, node_ip: str
) -> NodeCertificates:
    """A kubelet's client certificate (system:node:NAME in system:nodes, what the Node
    authorizer and NodeRestriction expect) and its serving certificate for NAME and its IP,
    both from the lab's CA."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{pki.ca_key} is not the lab's ECDSA CA key")
    certs = NodeCertificates(
        directory / "kubelet-client.crt",
        directory / "kubelet-client.key",
        directory / "kubelet.crt",
        directory / "kubelet.key",
    )
    client_key, client_cert = _issue_leaf(
        ca_key,
        ca_cert,
        _name(f"system:node:{node_name}", "system:nodes"),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    serving_key, serving_cert = _issue_leaf(
        ca_key,
        ca_cert,
        _name(node_name),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName(node_name), x509.IPAddress(ipaddress.ip_address(node_ip))],
    )
    write_private_file(certs.client_key, _key_pem(client_key))
    write_private_file(certs.client_cert, _cert_pem(client_cert))
    write_private_file(certs.serving_key, _key_pem(serving_key))
    write_private_file(certs.serving_cert, _cert_pem(serving_cert))
    return certs
