"""requirements.txt alone must run the production processes (issue 14 item 4): kombu's Redis
transport imports `packaging`, which only the dev tools had installed, so a compose image's Celery
worker and beat died on import. .ci/worker_smoke starts them from a fresh venv; this catches the
same gap in the suite, offline, from the installed packages' metadata."""

from __future__ import annotations

import re
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def pinned() -> dict[str, str]:
    names = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            names[canonical(req.name)] = str(req.specifier)
    return names


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_requirements(dist: str, extra: str) -> list[Requirement]:
    found = []
    for text in requires(dist) or []:
        req = Requirement(text)
        if req.marker is not None and req.marker.evaluate({"extra": extra}):
            found.append(req)
    return found


def test_every_package_kombus_redis_transport_needs_is_pinned():
    # The production broker is Redis (docker-compose.yml), so kombu's "redis" extra is a runtime need.
    missing = [str(r) for r in extra_requirements("kombu", "redis") if canonical(r.name) not in pinned()]
    assert missing == [], "pin these in requirements.txt"


def test_requirements_pin_exact_versions():
    loose = {name: spec for name, spec in pinned().items() if not spec.startswith("==")}
    assert loose == {}
