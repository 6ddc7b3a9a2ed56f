"""Rows to Arrow and Parquet and back, with exact types, and the checksum that proves a file
holds exactly the rows read from the database.

The sha256 runs over every column (primary key first) in a canonical text form computed by Arrow
itself (decimals with their full scale, timestamps in UTC, NULL as a marker no value can take),
so the digest of the rows before writing equals the digest of the file read back only if every
key and every value came back."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

NULL_MARK = "\x00NULL\x00"
JSON_COLUMNS = frozenset({"reason_codes", "details", "plan", "result", "snapshot", "message_params"})


def _json(value):
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def to_arrow(rows: Sequence[tuple], schema: pa.Schema) -> pa.Table:
    """Rows as values_list gives them (one tuple per row, in the schema's column order)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for values, field in zip(columns, schema, strict=True):
        if field.name in JSON_COLUMNS:
            values = [_json(v) for v in values]
        elif pa.types.is_string(field.type):
            values = [str(v) if isinstance(v, uuid.UUID) else v for v in values]
        elif pa.types.is_boolean(field.type):
            values = [None if v is None else bool(v) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def text_to_arrow(rows: Sequence[tuple], schema: pa.Schema) -> pa.Table:
    """Rows read as text (MariaDB's fast path, services._read_text): strings, ints and JSON text as
    they are; decimals and times parsed by Arrow from their exact text, never through a float."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for values, field in zip(columns, schema, strict=True):
        if pa.types.is_decimal(field.type):
            arrays.append(pc.cast(pa.array(values, type=pa.string()), field.type))
        elif pa.types.is_timestamp(field.type):  # UTC text without an offset: naive, then marked UTC
            naive = pc.cast(pa.array(values, type=pa.string()), pa.timestamp(field.type.unit))
            arrays.append(naive.cast(field.type))
        elif pa.types.is_boolean(field.type):
            arrays.append(pa.array([None if v is None else bool(v) for v in values], type=field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=True, write_statistics=True)
    return sink.getvalue()


def from_parquet(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def _text(chunk: pa.Array) -> pa.Array:
    """A column chunk in the checksum's canonical text: Arrow's own cast to string, NULL marked."""
    typ = chunk.type
    if pa.types.is_timestamp(typ) and typ.tz == "UTC" and typ.unit == "us":
        # Arrow formats a UTC timestamp as its naive text plus "Z", but through the time zone
        # database, value by value: 15x slower than the naive cast. Same bytes, the fast way
        # (tests/test_archive_speed.py holds them equal).
        naive = pc.cast(chunk.cast(pa.timestamp(typ.unit)), pa.string())
        return pc.fill_null(pc.binary_join_element_wise(naive, "Z", ""), NULL_MARK)
    return pc.fill_null(pc.cast(chunk, pa.string()), NULL_MARK)


def _hash_column(digest, name: str, chunks: Callable[[], Iterable[pa.Array]]) -> None:
    """name, then the column's string offsets (int64, from 0), then its UTF-8 bytes: exactly as if the
    chunks were one array. `chunks` is called twice (offsets first, then bytes), so a file can be
    hashed one row group at a time: memory is one chunk, never the whole column."""
    digest.update(name.encode() + b"\x01")
    base = 0
    first = True
    for chunk in chunks():
        text = _text(chunk)
        offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset : text.offset + len(text) + 1]
        offsets = offsets.astype("<i8") - int(offsets[0]) + base
        digest.update((offsets if first else offsets[1:]).tobytes())
        base = int(offsets[-1])
        first = False
    if first:  # no chunk at all: one zero offset, as an empty array has
        digest.update(np.zeros(1, dtype="<i8").tobytes())
    for chunk in chunks():
        text = _text(chunk)
        data = text.buffers()[2]
        if data is None or not len(text):
            continue
        offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset : text.offset + len(text) + 1]
        digest.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])


def _chunks_of(column: pa.ChunkedArray) -> Callable[[], Iterable[pa.Array]]:
    return lambda: [c for c in column.chunks if len(c)] or column.chunks[:1]


def checksum(table: pa.Table) -> str:
    digest = hashlib.sha256()
    digest.update(str(table.num_rows).encode())
    for name in table.column_names:
        _hash_column(digest, name, _chunks_of(table.column(name)))
    return digest.hexdigest()


def checksum_file(source) -> tuple[str, int]:
    """checksum() of a Parquet file's table, read one column of one row group at a time (a compacted
    file of a million rows is never all in memory). (sha256, rows)."""
    pf = source if isinstance(source, pq.ParquetFile) else pq.ParquetFile(source)
    rows = pf.metadata.num_rows
    digest = hashlib.sha256()
    digest.update(str(rows).encode())

    def chunks(name):
        def read():
            for i in range(pf.num_row_groups):
                yield from pf.read_row_group(i, columns=[name]).column(0).chunks

        return read

    for name in pf.schema_arrow.names:
        _hash_column(digest, name, chunks(name))
    return digest.hexdigest(), rows


def to_rows(table: pa.Table) -> list[dict]:
    """Back to Python values for restore: Decimals, aware UTC datetimes, parsed JSON."""
    out = table.to_pylist()
    for row in out:
        for name in JSON_COLUMNS.intersection(row):
            if row[name] is not None:
                row[name] = json.loads(row[name])
        for name, value in row.items():
            if isinstance(value, dt.datetime) and value.tzinfo is None:
                row[name] = value.replace(tzinfo=dt.UTC)
            elif isinstance(value, Decimal):
                row[name] = value
    return out
