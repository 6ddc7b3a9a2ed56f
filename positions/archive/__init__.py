"""Verified archival of the desk's history to Parquet (docs/ARCHIVE.md).

tables.py   what each table archives, its columns with their Arrow types, which rows are due;
parquet.py  rows to an Arrow table and back, and the sha256 over keys and values;
store.py    where the files go (ARCHIVE_URL: a directory, or an S3-compatible bucket);
locks.py    one run per table at a time;
services.py the batch loop (write, fsync, read back, verify, record, delete) and restore;
history.py  hot rows and archived rows read as one (the history API).
"""
