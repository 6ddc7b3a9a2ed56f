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
from collections.abc import Sequence
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


def checksum(table: pa.Table) -> str:
    digest = hashlib.sha256()
    digest.update(str(table.num_rows).encode())
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        text = pc.fill_null(pc.cast(column, pa.string()), NULL_MARK)
        if isinstance(text, pa.ChunkedArray):
            text = text.combine_chunks()
        offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset : text.offset + len(text) + 1]
        start, end = (int(offsets[0]), int(offsets[-1])) if len(offsets) else (0, 0)
        digest.update(name.encode() + b"\x01")
        digest.update((offsets - start).astype("<i8").tobytes())
        data = text.buffers()[2]
        digest.update(data.to_pybytes()[start:end] if data is not None else b"")
    return digest.hexdigest()


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
