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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.portrait.checkpoint_files import atomic_write_bytes

log = logging.getLogger("agilegan.storage")
CHUNK_BYTES = 1 << 20  # what a streamed read yields at a time
MULTIPART_BYTES = 16 << 20  # files above this go up in parts of this size


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
    tag: str = ""  # changes whenever the object is written again (S3: its ETag); "" = not known


class ObjectStore:
    """put / get / delete / list of whole objects by key ("a/b/c")."""

    local_root: Path | None = None  # where a key is a file (local stores), for streaming it as one
    identity: str = ""  # which store this is (its endpoint, bucket and prefix; its folder)

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

    def put_file(self, key: str, path: Path) -> None:
        """A file's content, streamed (S3: a multipart upload above MULTIPART_BYTES, never whole in memory)."""
        raise NotImplementedError

    def get_file(self, key: str, path: Path) -> None:
        """The object into `path`, streamed and atomic (a partial download is never left at `path`)."""
        raise NotImplementedError

    def open(self, key: str) -> ObjectStream:
        """The object's size and its bytes in chunks; the request is made here, so ObjectMissing and
        StoreUnavailable are raised before the first chunk is read (an API can still answer 410 or 503)."""
        raise NotImplementedError

    def presigned_url(self, key: str, ttl_s: int, filename: str) -> str | None:
        """A URL that reads the object without credentials for `ttl_s` (None: this store has none)."""
        return None


@dataclass(frozen=True)
class ObjectStream:
    size: int
    chunks: Iterator[bytes]


class LocalStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = self.local_root = Path(root)
        self.identity = f"file://{self.root.resolve()}"

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

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)

    def get_file(self, key: str, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(self._path(key), tmp)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(key) from None
        os.replace(tmp, path)

    def open(self, key: str) -> ObjectStream:
        try:
            f = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(key) from None
        size = os.fstat(f.fileno()).st_size

        def chunks() -> Iterator[bytes]:
            with f:
                while block := f.read(CHUNK_BYTES):
                    yield block

        return ObjectStream(size, chunks())

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
                    tag = f"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"  # writes replace the file
                    yield ObjectInfo(path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime, tag)


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
        public_endpoint_url: str | None = None,
    ) -> None:
        """`public_endpoint_url`: the endpoint clients reach, for presigned URLs (default: `endpoint_url`)."""
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.identity = f"s3://{bucket}/{self.prefix}@{endpoint_url or 'aws:' + region}"
        config = Config(
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"max_attempts": 2, "mode": "standard"},
            signature_version="s3v4",
        )

        def client(endpoint: str | None) -> Any:
            return boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                region_name=region,
                config=config,
            )

        self.client = client(endpoint_url)
        public = public_endpoint_url and public_endpoint_url != endpoint_url
        self.public_client = client(public_endpoint_url) if public else self.client

    def _call(self, method: str, **kwargs: Any) -> Any:
        with _store_errors(kwargs.get("Key", "")):
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)

    def _transfer(self, method: str, key: str, *args: Any) -> None:
        """boto3's managed transfers (multipart, parallel parts), with the errors of `_call`."""
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES)
        with _store_errors(key):
            getattr(self.client, method)(*args, Config=config)

    def put_file(self, key: str, path: Path) -> None:
        self._transfer("upload_file", key, str(path), self.bucket, self.prefix + key)

    def get_file(self, key: str, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self._transfer("download_file", key, self.bucket, self.prefix + key, str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def open(self, key: str) -> ObjectStream:
        from botocore.exceptions import BotoCoreError

        response = self._call("get_object", Key=self.prefix + key)
        body = response["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(CHUNK_BYTES)
            except BotoCoreError as e:  # cut off mid-stream: the client sees a short body
                log.warning("reading %s failed mid-stream: %s", key, e)
            finally:
                body.close()

        return ObjectStream(int(response["ContentLength"]), chunks())

    def presigned_url(self, key: str, ttl_s: int, filename: str) -> str | None:
        params = {
            "Bucket": self.bucket,
            "Key": self.prefix + key,
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
        }
        return self.public_client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl_s)

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
                tag = str(item.get("ETag", "")).strip('"')
                yield ObjectInfo(key, int(item["Size"]), item["LastModified"].timestamp(), tag)
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")


@contextmanager
def _store_errors(key: str) -> Iterator[None]:
    """boto3's errors as ours: a missing object is ObjectMissing; connection errors, timeouts, 5xx and
    throttling are StoreUnavailable (transient); anything else (a 403: wrong credentials) as raised."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            raise ObjectMissing(key) from None
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "RequestTimeout"):
            raise StoreUnavailable(f"object store: {code or status}") from e
        raise
    except BotoCoreError as e:  # connection refused, timeouts, DNS
        raise StoreUnavailable(f"object store unreachable: {type(e).__name__}") from e


def open_store(settings: Any) -> ObjectStore:
    """The store a `service.platform.settings.Settings` asks for (`storage`), its bucket made if missing."""
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
        settings.s3_public_endpoint_url,
    )
    try:
        store.ensure_bucket()
    except StoreUnavailable as e:  # an outage at start: requests answer 503 until it ends
        log.warning("the object store is unreachable at start (%s)", e)
    return store
