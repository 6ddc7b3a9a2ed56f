"""Progress bars for long commands (seeding, rule imports, replay loading), on a terminal only:
piped into a file, a log collector or CI, a bar's carriage returns are noise, so nothing is drawn.
Imports nothing from Django: the simulator, a package that can run alone, uses it too."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def _raw(stream: Any) -> Any:
    # A management command's OutputWrapper ends every write with a newline, which breaks a bar's
    # in-place redraw; the wrapped stream does not.
    return getattr(stream, "_out", stream)


def is_terminal(stream: Any) -> bool:
    isatty = getattr(_raw(stream), "isatty", None)
    return bool(isatty and isatty())


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, stream: Any = None) -> Iterator[T]:
    """`iterable`, with a bar on `stream` (default stderr) when that is a terminal."""
    out = _raw(stream if stream is not None else sys.stderr)
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return iter(tqdm(iterable, desc=desc, total=total, file=out, disable=not is_terminal(out), leave=False))


def steps(total: int, *, desc: str, stream: Any = None) -> tqdm:
    """A bar advanced by hand (``.update()``) over `total` steps; use it as a context manager."""
    out = _raw(stream if stream is not None else sys.stderr)
    return tqdm(total=total, desc=desc, file=out, disable=not is_terminal(out), leave=False)
