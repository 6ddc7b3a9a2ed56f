"""The TLS deployment files (issue 14 item 7), checked statically: no Docker engine runs here.
nginx's own `nginx -t` and a run of this conf were done by hand (the report of issue 14, helper S)."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from cryptography import x509

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_nginx_serves_https_with_mounted_certificates_made_by_an_init_service_when_missing():
    services = compose()["services"]
    nginx = services["nginx"]
    assert "443:443" in nginx["ports"] and "80:80" in nginx["ports"]
    assert any(v.endswith(":/etc/nginx/certs:ro") for v in nginx["volumes"])
    assert nginx["depends_on"]["certs"] == {"condition": "service_completed_successfully"}
    assert services["certs"]["command"][:2] == ["python", "scripts/make_cert.py"]
    assert "https://" in " ".join(nginx["healthcheck"]["test"])


def test_the_nginx_conf_redirects_http_and_tells_django_the_scheme():
    conf = (ROOT / "deploy/nginx/riskdesk.conf").read_text()
    plain = conf.split("server {")[1]
    assert "listen 80;" in plain and "return 301 https://$host$request_uri;" in plain
    assert "/.well-known/acme-challenge/" in plain
    assert "listen 443 ssl;" in conf and "ssl_certificate     /etc/nginx/certs/fullchain.pem;" in conf
    assert conf.count("proxy_set_header X-Forwarded-Proto $scheme;") == 2  # pages and the WebSocket


def test_the_image_leaves_secrets_and_local_state_out_and_compiles_the_check():
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".env", "var/", ".venv/"):
        assert entry in ignored
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN python scripts/build_checks.py --require$", dockerfile, re.MULTILINE)
    assert compose()["x-app"]["build"]["dockerfile"] == "Dockerfile"


def test_make_cert_writes_a_private_key_only_its_owner_reads_and_keeps_an_existing_pair(tmp_path):
    command = [sys.executable, "scripts/make_cert.py", "--dir", str(tmp_path), "--host", "desk.example.com"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=60)
    cert = x509.load_pem_x509_certificate((tmp_path / "fullchain.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "desk.example.com" in names.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE((tmp_path / "privkey.pem").stat().st_mode) == 0o600

    before = (tmp_path / "fullchain.pem").read_bytes()
    kept = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=60)
    assert "kept" in kept.stdout and (tmp_path / "fullchain.pem").read_bytes() == before
