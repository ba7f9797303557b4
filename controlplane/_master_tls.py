"""The cluster CA and each master's serving certificate.

kubectl sends a kubeconfig's bearer token only over TLS, so every master serves HTTPS from the
start: ``master init`` (and ``edgectl up``) create a cluster CA, and each master issues itself a
serving certificate for its API address from that CA. A joining master receives the CA through
the authenticated join call, as it receives the cluster secret. The kubeconfig carries the CA
certificate so clients verify the masters.

Files, next to the other secrets of a master's data directory: ``ca.crt``, ``ca.key`` (0600),
``tls.crt``, ``tls.key`` (0600).
"""

from __future__ import annotations

import datetime
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._master_layout import MasterError, write_private

__all__ = ["CertificateAuthority", "ensure_serving_cert", "load_ca", "new_ca", "write_ca"]

# A site's CA outlives its hardware; certificates are re-issued when masters restart.
_CA_DAYS = 3650
_CERT_DAYS = 365
# Tolerate clocks that are a little behind the issuing master's.
_BACKDATE = datetime.timedelta(minutes=5)


class CertificateAuthority:
    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self.key = key

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def issue_server(self, host: str) -> tuple[bytes, bytes]:
        """(cert PEM, key PEM) for a server reachable as ``host`` (an IP or a DNS name)."""
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        try:
            names.insert(0, x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.insert(0, x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=_CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem


def new_ca(name: str = "edgeplane-cluster-ca") -> CertificateAuthority:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert, key)


def write_ca(ca: CertificateAuthority, cert_path: pathlib.Path, key_path: pathlib.Path) -> None:
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(ca.cert_pem)
    write_private(key_path, ca.key_pem.decode().rstrip("\n"))


def load_ca(cert_path: pathlib.Path | str, key_path: pathlib.Path | str) -> CertificateAuthority:
    try:
        cert = x509.load_pem_x509_certificate(pathlib.Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(pathlib.Path(key_path).read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise MasterError(f"CA file {exc.filename} does not exist") from None
    except ValueError as exc:
        raise MasterError(f"cannot load the cluster CA from {cert_path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise MasterError(f"{key_path}: expected an EC private key")
    return CertificateAuthority(cert, key)


def ensure_serving_cert(ca: CertificateAuthority, host: str, cert_path: pathlib.Path,
                        key_path: pathlib.Path) -> None:
    """Issue ``cert_path``/``key_path`` for ``host`` unless a valid one from this CA exists."""
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            hosts = {str(v) for v in san.get_values_for_type(x509.IPAddress)}
            hosts |= set(san.get_values_for_type(x509.DNSName))
            fresh = cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + \
                datetime.timedelta(days=30)
            if cert.issuer == ca.cert.subject and host in hosts and fresh:
                return
        except (ValueError, x509.ExtensionNotFound):
            pass
    cert_pem, key_pem = ca.issue_server(host)
    cert_path.write_bytes(cert_pem)
    write_private(key_path, key_pem.decode().rstrip("\n"))
