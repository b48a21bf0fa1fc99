"""Where the files that jobs share live: a local directory, or an S3-compatible object store (issue 27).

Two implementations of one small interface, chosen by `AGILEGAN_STORAGE` (`open_store`):
- `LocalStore`: keys are paths under the data directory (the one-machine default, unchanged on disk:
  `inputs/<job>/upload`, `results/<job>.<ext>`); writes are atomic (temporary file + rename).
- `S3Store`: keys are objects in one bucket (AWS S3, SeaweedFS, Ceph RGW, Cloudflare R2, …) through boto3.
  A PUT is atomic in S3 (an object is visible only once complete), so a writer killed mid-upload leaves
  nothing visible. An unreachable store is `StoreUnavailable` (the API answers 503, workers retry).

Keys are built only from ids we generate or validate, never from user input.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.core.checkpoint_files import atomic_write_bytes

log = logging.getLogger("agilegan.storage")


class ObjectMissing(KeyError):
    """No object under that key (a job's upload deleted, expired or never published): permanent."""

    code = "input_missing"


class StoreUnavailable(Exception):
    """The object store cannot be reached (an outage): transient, the request or job is retried."""

    code = "unavailable"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float  # seconds since the epoch


class ObjectStore:
    """put / get / delete / list of whole objects by key ("a/b/c")."""

    local_root: Path | None = None  # where a key is a file (local stores), for streaming it as one

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def delete_prefix(self, prefix: str) -> int:
        raise NotImplementedError

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        raise NotImplementedError


class LocalStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = self.local_root = Path(root)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"not an object key: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        """Every object under `prefix` (a folder, "inputs/<job>/", or a name prefix)."""
        gone = list(self.list(prefix))
        for info in gone:
            self._path(info.key).unlink(missing_ok=True)
        folder = self._path(prefix.rstrip("/")) if prefix.endswith("/") else None
        if folder is not None and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
        return len(gone)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`: only the entries of the prefix's folder whose names match
        are visited ("results/<job>." looks at that job's files, not at every result)."""
        folder, _, name = prefix.rpartition("/")
        base = self._path(folder) if folder else self.root
        if not base.is_dir():
            return
        with os.scandir(base) as entries:
            matching = sorted(e.path for e in entries if e.name.startswith(name) and not e.name.startswith("."))
        for top in matching:
            walked = os.walk(top) if os.path.isdir(top) else [(os.path.dirname(top), [], [os.path.basename(top)])]
            for parent, _, files in walked:
                for file in files:
                    if file.startswith("."):  # .tmp files of writes in flight
                        continue
                    path = Path(parent) / file
                    try:
                        stat = path.stat()
                    except FileNotFoundError:
                        continue
                    yield ObjectInfo(path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime)


class S3Store(ObjectStore):
    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        prefix: str = "",
        timeout_s: float = 10.0,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        config = Config(
            connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 2, "mode": "standard"}
        )
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
            config=config,
        )

    def _call(self, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectMissing(kwargs.get("Key", "")) from None
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "RequestTimeout"):
                raise StoreUnavailable(f"object store: {code or status}") from e
            raise
        except BotoCoreError as e:  # connection refused, timeouts, DNS
            raise StoreUnavailable(f"object store unreachable: {type(e).__name__}") from e

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (a fresh SeaweedFS or MinIO; AWS buckets are made by
        the operator)."""
        from botocore.exceptions import ClientError

        try:
            self._call("head_bucket")
        except (ObjectMissing, ClientError):
            self._call("create_bucket")

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=self.prefix + key, Body=data)

    def get(self, key: str) -> bytes:
        return self._call("get_object", Key=self.prefix + key)["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", Key=self.prefix + key)
            return True
        except ObjectMissing:
            return False

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=self.prefix + key)

    def delete_prefix(self, prefix: str) -> int:
        keys = [info.key for info in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": self.prefix + k} for k in keys[start : start + 1000]]
            self._call("delete_objects", Delete={"Objects": chunk, "Quiet": True})
        return len(keys)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        token = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": self.prefix + prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", **kwargs)
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                yield ObjectInfo(key, int(item["Size"]), item["LastModified"].timestamp())
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")


def open_store(settings: Any) -> ObjectStore:
    """The store a `service.core.settings.Settings` asks for (`storage`), its bucket made if missing."""
    if settings.storage == "local":
        return LocalStore(settings.data_dir)
    store = S3Store(
        settings.s3_bucket,
        settings.s3_endpoint_url,
        settings.s3_access_key,
        settings.s3_secret_key,
        settings.s3_region,
        settings.s3_prefix,
        settings.s3_timeout_s,
    )
    try:
        store.ensure_bucket()
    except StoreUnavailable as e:  # an outage at start: requests answer 503 until it ends
        log.warning("the object store is unreachable at start (%s)", e)
    return store
