"""SIGKILL mid-run on MariaDB (issue 16, "Done when"): `manage.py archive` runs as a child process
against the test database and is killed with -9 twice, at different moments; the next run finishes
the work, and nothing is lost or archived twice. The child holds GET_LOCK, which the server frees
when the killed process's connection drops, so the next run is not locked out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from positions.archive import parquet
from positions.archive.store import DirectoryStore, key_for
from positions.models import ArchiveBatch, OrderLog
from positions.tests.archive_fixtures import make_order_logs, snapshot

ROOT = Path(__file__).resolve().parents[2]
ROWS = 12_000


def child_env(archive_dir: Path) -> dict[str, str]:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    env = dict(os.environ)
    env["DATABASE_URL"] = f"mysql://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}/{db['NAME']}"
    env["ARCHIVE_URL"] = str(archive_dir)
    return env


def run_archive(env, *, kill_after_batches: int | None, extra_delay_s: float = 0.0) -> int:
    cmd = [
        sys.executable,
        "manage.py",
        "archive",
        "--table",
        "orderlog",
        "--before",
        "2026-12-01",
        "--batch-size",
        "200",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if kill_after_batches is None:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out.decode()[-2000:]
        return proc.returncode
    deadline = time.monotonic() + 60
    while ArchiveBatch.objects.filter(table="orderlog").count() < kill_after_batches:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(extra_delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    return proc.returncode


@pytest.mark.django_db(transaction=True)
def test_a_run_killed_twice_is_finished_by_the_next_with_nothing_lost_or_twice(account_a, tmp_path):
    if connection.vendor != "mysql":
        pytest.skip("the SIGKILL test runs on MariaDB (CI); the child cannot see SQLite's in-memory test database")
    make_order_logs(account_a, ROWS, step_s=30)  # 2026-11-01 .. 11-05
    before = snapshot(OrderLog)
    env = child_env(tmp_path / "archive")

    assert run_archive(env, kill_after_batches=2, extra_delay_s=0.05) == -signal.SIGKILL
    first_kill = ArchiveBatch.objects.count()
    assert first_kill > 0 and OrderLog.objects.count() > 0
    assert run_archive(env, kill_after_batches=first_kill + 3, extra_delay_s=0.13) == -signal.SIGKILL
    assert run_archive(env, kill_after_batches=None) == 0

    assert OrderLog.objects.count() == 0
    store = DirectoryStore(tmp_path / "archive")
    batches = list(ArchiveBatch.objects.filter(table="orderlog"))
    seen: list[int] = []
    rows: dict[int, dict] = {}
    for b in batches:
        table = parquet.from_parquet(store.read(key_for("orderlog", b.day, b.part)))
        assert table.num_rows == b.rows and parquet.checksum(table) == b.sha256
        for row in parquet.to_rows(table):
            seen.append(row["id"])
            rows[row["id"]] = row
    assert len(seen) == len(set(seen)) == ROWS  # nothing twice, nothing lost
    assert sorted(rows) == sorted(before)
    # No file left that no batch records (the killed runs' unfinished files were swept or replaced).
    assert sorted(store.keys("orderlog/")) == sorted(key_for("orderlog", b.day, b.part) for b in batches)
    # And the values are the ones that left the database, to the last decimal place.
    sample = before[seen[777]]
    assert rows[seen[777]]["price"] == sample[11] and rows[seen[777]]["created_at"] == sample[1]
