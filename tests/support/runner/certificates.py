"""The API stand-in's TLS: a CA and a serving certificate for its addresses and names."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path


def _split_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
    ips, dns = [], []
    for name in names:
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(name)
    return list(dict.fromkeys(ips)), list(dict.fromkeys(dns))


def _certs_openssl(folder: Path, ips: list[str], dns: list[str]) -> None:
    def openssl(*args: str) -> None:
        proc = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=folder)
        if proc.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()[-2000:]}")

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "7",
        "-subj", "/CN=kube-api stand-in CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    )  # fmt: skip
    openssl("req", "-new", *key, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=kube-apiserver")  # fmt: skip
    san = ",".join([*(f"IP:{ip}" for ip in ips), *(f"DNS:{name}" for name in dns)])
    (folder / "server.ext").write_text(
        f"subjectAltName={san}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", str(secrets.randbits(63)), "-days", "7", "-sha256",
        "-extfile", "server.ext", "-out", "server.crt",
    )  # fmt: skip


def _certs_cryptography(folder: Path, ips: list[str], dns: list[str]) -> None:
    from cryptography import x509  # the fallback without openssl
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def usage(**on: bool) -> x509.KeyUsage:
        flags = dict.fromkeys(
            ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
            False,
        )  # fmt: skip
        return x509.KeyUsage(**(flags | on))

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("kube-api stand-in CA"))
        .issuer_name(name("kube-api stand-in CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    alt += [x509.DNSName(d) for d in dns]
    server = (
        x509.CertificateBuilder()
        .subject_name(name("kube-apiserver"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(digital_signature=True, key_encipherment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.key").write_bytes(pem_key(ca_key))
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(pem_key(key))
    (folder / "server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))


def make_certificates(folder: Path, names: Sequence[str], backend: str = "auto") -> str:
    """Writes ca.crt/ca.key and server.crt/server.key (SANs: `names`, IPs and DNS names) into
    `folder`; returns the backend used: "openssl" (the CLI, when on PATH) or "cryptography"."""
    if backend == "auto":
        backend = "openssl" if shutil.which("openssl") else "cryptography"
    ips, dns = _split_names(names)
    if backend == "openssl":
        _certs_openssl(folder, ips, dns)
    elif backend == "cryptography":
        _certs_cryptography(folder, ips, dns)
    else:
        raise ValueError(f"unknown TLS backend {backend!r}")
    return backend


# ---------------------------------------------------------------------------------------------
# The server.
