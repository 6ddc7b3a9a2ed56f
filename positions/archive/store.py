"""The archive store named by ARCHIVE_URL.

- a directory (a path, or file:///path; default VAR_DIR/archive): files are written to a temporary
  name, fsynced, renamed into place and the directory fsynced, so a crash leaves the old file or
  the new one, never half of one;
- s3://bucket/prefix?endpoint_url=http://minio:9000&region=us-east-1: any S3-compatible bucket
  through django-storages (boto3); credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. A PUT
  that returned is durable (S3's answer is the fsync)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from django.conf import settings


class DirectoryStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def uri(self, key: str) -> str:
        return (self.root / key).as_uri()

    def local_path(self, key: str) -> str | None:
        return str(self.root / key)

    def write(self, key: str, data: bytes) -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return self.uri(key)

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def exists(self, key: str) -> bool:
        return (self.root / key).exists()

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    def remove(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


class S3Store:
    def __init__(self, url: str):
        from storages.backends.s3 import S3Storage

        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.storage = S3Storage(
            bucket_name=self.bucket,
            location=self.prefix,
            endpoint_url=query.get("endpoint_url") or os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            region_name=query.get("region") or os.environ.get("AWS_S3_REGION_NAME") or None,
            file_overwrite=True,
            default_acl=None,
            querystring_auth=False,
        )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}{key}"

    def local_path(self, key: str) -> None:
        return None

    def write(self, key: str, data: bytes) -> str:
        from django.core.files.base import ContentFile

        self.storage.save(key, ContentFile(data))
        return self.uri(key)

    def read(self, key: str) -> bytes:
        with self.storage.open(key, "rb") as fh:
            return fh.read()

    def exists(self, key: str) -> bool:
        return self.storage.exists(key)

    def keys(self, prefix: str) -> list[str]:
        bucket = self.storage.bucket
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        cut = len(self.prefix) + 1 if self.prefix else 0
        return sorted(obj.key[cut:] for obj in bucket.objects.filter(Prefix=full))

    def remove(self, key: str) -> None:
        self.storage.delete(key)


def get_store(url: str | None = None):
    url = url if url is not None else getattr(settings, "ARCHIVE_URL", "")
    if not url:
        return DirectoryStore(Path(settings.VAR_DIR) / "archive")
    if url.startswith("s3://"):
        return S3Store(url)
    if url.startswith("file://"):
        return DirectoryStore(Path(urlparse(url).path))
    return DirectoryStore(Path(url))


def key_for(table: str, day, part: int) -> str:
    return f"{table}/date={day.isoformat()}/part-{part:06d}.parquet"
