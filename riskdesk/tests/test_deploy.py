"""The deployment files agree with the code: no Docker engine runs here, so check them statically."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_read_from_the_environment_is_documented_in_env_example():
    source = (ROOT / "riskdesk/settings.py").read_text()
    used = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', source)) | set(
        re.findall(r'_required\("([A-Z_]+)"', source)
    )
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert used, "the pattern found no settings"
    assert used - documented == set(), "add these to .env.example"


def test_compose_runs_every_production_process_with_health_checks():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"mysql", "redis", "web", "worker", "beat", "streams", "nginx"} <= set(services)
    assert services["mysql"]["image"].startswith("mysql:8")
    assert services["redis"]["image"].startswith("redis:7")
    for name in ("mysql", "redis", "web", "worker", "nginx"):
        assert "healthcheck" in services[name], name
    assert services["web"]["command"][:2] == ["uvicorn", "riskdesk.asgi:application"]


def test_compose_commands_name_management_commands_that_exist():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    commands = get_commands()
    for service in compose["services"].values():
        command = service.get("command") or []
        if command[:2] == ["python", "manage.py"]:
            assert command[2] in commands, command


def test_the_openapi_schema_generates_without_errors(db):
    from django.test import Client

    response = Client().get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/profiles/" in paths and "/api/v1/auth/token/" in paths
