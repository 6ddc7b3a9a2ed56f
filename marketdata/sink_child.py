"""The sink process's entry point (marketdata.sink.SinkProcess). Its own module, importing
nothing of Django's at the top: a spawned child imports the target's module before it can run
``django.setup()``, and marketdata.sink imports models."""

from __future__ import annotations

import os
import pickle
import signal
from typing import Any

NICENESS = 10
DRAIN = "drain"  # the parent's request: finish what is due, answer with the timings


def main(conn: Any, databases: dict[str, Any]) -> None:
    """Django set up afresh with the parent's databases (a test run's included), a SinkWork of its
    own, fed from the pipe until the parent closes it."""
    # A Ctrl-C or a TERM to the whole group must not cut a batch short: the child ends when the
    # parent closes the pipe (SinkProcess.close at its exit), or with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Its work can wait a few milliseconds; the stream process's frames and alerts, on the same
    # cores, cannot: under contention the scheduler gives this child a smaller share.
    os.nice(NICENESS)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connections

    from marketdata.sink import SinkWork

    settings.DATABASES = databases
    connections._settings = None  # the handler reads DATABASES again on first use
    connections.__dict__.pop("settings", None)
    work = SinkWork()
    while True:
        try:
            kind, key, value, merge = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            break  # the parent closed the pipe or died
        if kind == DRAIN:  # key: the drain's number, value: its timeout
            ok = work.drain(value)
            conn.send((key, ok, list(work.publish_ms), list(work.persist_ms)))
            work.publish_ms.clear()
            work.persist_ms.clear()
        else:
            work.put(kind, key, value, merge)
    work.drain(60.0)
