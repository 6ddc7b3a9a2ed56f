"""Failure injection: what the real exchange does to a client on a bad day.

Modes (simulator-only; set with --fault at start or POST /_sim/fault):

``drop``               close every WebSocket with 1001 "going away" (the 24 h disconnect)
``silent``             keep sockets open but send nothing for ``seconds`` (or until cleared)
``http429``/``http418`` answer the next ``count`` REST requests (or for ``seconds``) with that
                       status, ``Retry-After`` and code -1003
``http503``            answer the next ``count`` POST /fapi/v1/order with 503 "Unknown error";
                       by default the order IS executed (``execute``), as Binance warns it may be
``malformed``          send the next ``count`` market frames as broken JSON (``variant`` "json")
                       or valid JSON of the wrong shape (``variant`` "shape")
``expire_listen_keys`` send listenKeyExpired, invalidate the keys (PUT -> -1125), close the sockets
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

MODES = ("drop", "silent", "http429", "http418", "http503", "malformed", "expire_listen_keys")
INSTANT_MODES = ("drop", "expire_listen_keys")
MALFORMED_VARIANTS = ("json", "shape")
FOREVER = math.inf


class FaultError(ValueError):
    pass


@dataclass(frozen=True)
class FaultSpec:
    mode: str
    count: int = 1
    seconds: float | None = None  # http429/418 and silent: a time window instead of a count
    retry_after: int = 5
    variant: str = "json"
    execute: bool = True  # http503: run the order anyway (execution status "unknown" to the client)
    after: float = 0.0  # start: delay before applying
    every: float | None = None  # start: re-apply every N seconds (drop, expire_listen_keys)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise FaultError(f"fault mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.count < 1:
            raise FaultError(f"fault count must be >= 1, got {self.count}")
        if self.seconds is not None and self.seconds <= 0:
            raise FaultError(f"fault seconds must be > 0, got {self.seconds}")
        if self.variant not in MALFORMED_VARIANTS:
            raise FaultError(f"malformed variant must be one of {MALFORMED_VARIANTS}, got {self.variant!r}")
        if self.after < 0 or (self.every is not None and self.every <= 0):
            raise FaultError("fault after must be >= 0 and every > 0")

    @classmethod
    def from_mapping(cls, data: Mapping) -> FaultSpec:
        fields = set(cls.__dataclass_fields__)
        unknown = set(data) - fields
        if unknown:
            raise FaultError(f"unknown fault field {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(fields))})")
        try:
            return cls(**{k: _coerce(k, v) for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            raise FaultError(str(exc)) from None

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """``MODE[:key=value,...]``, e.g. ``http429:count=3,retry_after=2`` or ``drop:after=30,every=60``."""
        mode, _, rest = text.partition(":")
        pairs = dict(item.split("=", 1) if "=" in item else (item, "") for item in rest.split(",") if item)
        return cls.from_mapping({"mode": mode.strip(), **pairs})


def _coerce(key: str, value: object) -> object:
    if key in ("mode", "variant"):
        return str(value)
    if key in ("count", "retry_after"):
        if isinstance(value, bool):
            raise ValueError(f"fault {key} must be an int")
        return int(value)  # type: ignore[call-overload]
    if key == "execute":
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    return None if value is None else float(value)  # type: ignore[arg-type]


class Faults:
    """The active, consumable faults; ``drop`` and ``expire_listen_keys`` are actions, not state."""

    def __init__(self) -> None:
        self.clear()

    def clear(self, mode: str | None = None) -> None:
        if mode in (None, "http429", "http418"):
            self.http_status, self.http_left, self.http_until, self.retry_after = 0, 0, 0.0, 5
        if mode in (None, "http503"):
            self.order503_left, self.order503_execute = 0, True
        if mode in (None, "silent"):
            self.silent_until = 0.0
        if mode in (None, "malformed"):
            self.malformed_left, self.malformed_variant = 0, "json"

    def arm(self, spec: FaultSpec) -> None:
        now = time.monotonic()
        if spec.mode in ("http429", "http418"):
            self.http_status = int(spec.mode[4:])
            self.http_left = 0 if spec.seconds else spec.count
            self.http_until = now + spec.seconds if spec.seconds else 0.0
            self.retry_after = spec.retry_after
        elif spec.mode == "http503":
            self.order503_left, self.order503_execute = spec.count, spec.execute
        elif spec.mode == "silent":
            self.silent_until = now + spec.seconds if spec.seconds else FOREVER
        elif spec.mode == "malformed":
            self.malformed_left, self.malformed_variant = spec.count, spec.variant

    def take_http(self) -> tuple[int, int] | None:
        """(status, retry_after) when this REST request must be refused."""
        if self.http_until and time.monotonic() < self.http_until:
            return self.http_status, self.retry_after
        if self.http_left > 0:
            self.http_left -= 1
            return self.http_status, self.retry_after
        return None

    def take_order503(self) -> bool | None:
        """None: answer normally; otherwise answer 503 and execute the order iff True."""
        if self.order503_left <= 0:
            return None
        self.order503_left -= 1
        return self.order503_execute

    def silent(self) -> bool:
        return time.monotonic() < self.silent_until

    def take_malformed(self) -> str | None:
        if self.malformed_left <= 0:
            return None
        self.malformed_left -= 1
        return self.malformed_variant

    def describe(self) -> dict:
        now = time.monotonic()
        http_s = max(0.0, self.http_until - now)
        return {
            "http": {
                "status": self.http_status,
                "count_left": self.http_left,
                "seconds_left": round(http_s, 3),
                "retry_after": self.retry_after,
            }
            if self.http_left or http_s
            else None,
            "http503": {"count_left": self.order503_left, "execute": self.order503_execute}
            if self.order503_left
            else None,
            "silent": ("until cleared" if self.silent_until == FOREVER else round(self.silent_until - now, 3))
            if self.silent()
            else None,
            "malformed": {"count_left": self.malformed_left, "variant": self.malformed_variant}
            if self.malformed_left
            else None,
        }


def spec_dict(spec: FaultSpec) -> dict:
    return asdict(spec)
