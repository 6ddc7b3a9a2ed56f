"""Write a self-signed TLS certificate and key for nginx when none is there (docker-compose.yml's
`certs` service), so a fresh install serves HTTPS at once. Browsers warn about it: replace it with a
real certificate (README "HTTPS": Let's Encrypt). Uses `cryptography`, already in requirements.txt,
so the app image needs no openssl.

    python scripts/make_cert.py --dir /certs --host desk.example.com
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT, KEY = "fullchain.pem", "privkey.pem"


def make_pair(directory: Path, host: str, days: int = 365) -> bool:
    """Write CERT and KEY into directory unless both exist; True when it wrote them."""
    cert_path, key_path = directory / CERT, directory / KEY
    if cert_path.exists() and key_path.exists():
        return False
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    names: list[x509.GeneralName] = [x509.DNSName(host), x509.DNSName("localhost")]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The key is written readable by its owner only, before any byte of it lands on disk.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    if make_pair(args.dir, args.host, args.days):
        print(f"wrote a self-signed certificate for {args.host} to {args.dir} (replace it with a real one)")
    else:
        print(f"{args.dir}/{CERT} and {KEY} exist: kept")


if __name__ == "__main__":
    main()
