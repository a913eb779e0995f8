"""Object stores behind the lake: a local directory or an S3-compatible bucket.

Both give atomic whole-object puts: a local put writes a temporary file beside the target and
``os.replace``s it; an S3 PUT is atomic per object. Readers therefore see the previous version or
the new one, never half of either.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Protocol

from usdcop_assets.core.settings import LAKE_ENV, ConfigError, LakeLocation, Settings, as_settings


class LakeUnavailable(RuntimeError):
    """The lake cannot be reached or used; the message names the location and the cause."""


class ObjectStore(Protocol):
    location: str

    def put(self, key: str, data: bytes) -> None: ...
    def create(self, key: str, data: bytes) -> bool: ...  # exclusive: False if the key exists (lease.py)
    def get(self, key: str) -> bytes | None: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str) -> list[str]: ...
    def check(self) -> None: ...


_TMP_MARK = ".tmp-"


def _node_id() -> str:
    """Who can judge our process ids: this host (boot) and pid namespace. Two pods, containers or hosts
    sharing a lake directory get different ids even when their hostnames or pids collide."""
    parts = [socket.gethostname()]
    for read in (
        lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        lambda: os.readlink("/proc/self/ns/pid"),
    ):
        try:
            parts.append(read())
        except OSError:
            pass
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


_NODE = _node_id()


def _writer() -> str:
    return f"{os.getpid()}-{_NODE}"  # at each call: a forked child has its own pid


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: the process exists (another user's)
        return True
    return True


def _orphaned(folder: Path, name: str, now: float, stale_after: float) -> bool:
    """Whether the temp file ``name`` was left by a writer that no longer runs.

    Its writer's pid is only meaningful in the pid namespace of the same boot of the same host (the node
    id in the name); a temp file from anywhere else (another host or pod on a shared directory, or an
    older name without a node id) is judged by age alone.
    """
    fields = name.rpartition(_TMP_MARK)[2].split("-")
    if len(fields) == 3 and fields[1] == _NODE and fields[0].isdigit():
        pid = int(fields[0])
        return pid != os.getpid() and not _pid_alive(pid)
    try:
        return now - (folder / name).stat().st_mtime > stale_after
    except OSError:
        return False


def _sweep_orphaned_temps(folder: Path, stale_after: float) -> None:
    """Remove temp files of ``folder`` left by writers that no longer run (killed before their rename).

    Readers never see them (listings skip dot files, keys never name them); this keeps the lake from
    accumulating them. A temp file of a live process (this one included) is left alone, and so is a
    recent one written from another host or pid namespace.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return
    now = time.time()
    for name in names:
        if not name.startswith(".") or _TMP_MARK not in name:
            continue
        if _orphaned(folder, name, now, stale_after):
            try:
                (folder / name).unlink()
            except OSError:
                pass


class LocalObjectStore:
    def __init__(self, root: str | Path, fsync: bool = False, stale_temp_seconds: float | None = None):
        self.root = Path(root).absolute()
        self.location = str(self.root)
        # rename is atomic against crashes of this process; fsync adds power-loss durability at a cost.
        self.fsync = fsync
        self._dirs: set[Path] = set()  # folders known to exist
        self._stale_temp_seconds = stale_temp_seconds  # None: USDCOP_LAKE_STALE_TEMP_SECONDS, read at first sweep

    @property
    def stale_temp_seconds(self) -> float:
        if self._stale_temp_seconds is None:
            self._stale_temp_seconds = float(Settings.from_env().storage.stale_temp_seconds)
        return self._stale_temp_seconds

    def _path(self, key: str) -> Path:
        # Lexical check (no filesystem calls on the hot path): relative, no "..", stays under root.
        norm = os.path.normpath(key)
        if not key or os.path.isabs(key) or norm == ".." or norm.startswith(".." + os.sep) or norm == ".":
            raise ValueError(f"lake key {key!r} escapes the lake root")
        return self.root / norm

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if path.parent not in self._dirs:  # data and manifest share a folder: one mkdir, not two
            path.parent.mkdir(parents=True, exist_ok=True)
            _sweep_orphaned_temps(path.parent, self.stale_temp_seconds)
            self._dirs.add(path.parent)
        # The writer's pid and node in the name: a temp file whose writer died (kill -9 between write
        # and rename) is recognised as orphaned and removed by the next writer of its folder.
        tmp = path.with_name(f".{path.name}{_TMP_MARK}{_writer()}-{uuid.uuid4().hex}")
        try:
            try:
                fh = open(tmp, "wb")
            except FileNotFoundError:  # folder removed behind our back since we cached it
                path.parent.mkdir(parents=True, exist_ok=True)
                fh = open(tmp, "wb")
            with fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # the previous object, if any, is untouched
            raise

    def create(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist (atomic: ``link`` of a complete temp file fails on an
        existing name, also over NFS); False when it exists."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}{_TMP_MARK}{_writer()}-{uuid.uuid4().hex}")
        try:
            tmp.write_bytes(data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        root = str(self.root) + os.sep
        out = []
        for dirpath, _dirs, files in os.walk(base):
            rel_dir = dirpath[len(root) :] if dirpath.startswith(root) else ""
            out.extend(f"{rel_dir}/{f}".lstrip("/").replace(os.sep, "/") for f in files if not f.startswith("."))
        return sorted(out)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise LakeUnavailable(f"lake directory {self.root} is not writable ({LAKE_ENV}): {exc}") from None


class S3ObjectStore:
    """A bucket on S3 or an S3-compatible server (MinIO, moto); endpoint and credentials come from the
    standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``)."""

    def __init__(self, bucket: str, prefix: str = "", client=None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = client or _default_s3_client()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _failed(self, operation: str, key: str, exc: Exception) -> LakeUnavailable:
        """The lake's error for a failed request: names the lake, the object and the cause."""
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            cause = f"S3 error {exc.response.get('Error', {}).get('Code', '')}".strip()
        else:
            cause = f"S3 endpoint {self._client.meta.endpoint_url} unreachable ({type(exc).__name__})"
        return LakeUnavailable(f"lake {self.location} ({LAKE_ENV}): {operation} {key} failed: {cause}")

    def put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._failed("PUT", key, exc) from exc

    def create(self, key: str, data: bytes) -> bool:
        """Conditional PUT (``If-None-Match: *``, S3 and MinIO): False when the key exists."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (409, 412) or exc.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                return False
            raise self._failed("PUT", key, exc) from exc
        except BotoCoreError as exc:
            raise self._failed("PUT", key, exc) from exc
        return True

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self._client.exceptions.NoSuchKey:
            return None
        except (BotoCoreError, ClientError) as exc:
            raise self._failed("GET", key, exc) from exc

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._failed("DELETE", key, exc) from exc

    def list(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", ()))
        except (BotoCoreError, ClientError) as exc:
            raise self._failed("LIST", prefix + "*", exc) from exc
        return sorted(keys)

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise LakeUnavailable(f"bucket {self.bucket!r} of {LAKE_ENV} does not exist; create it first") from None
            if code in ("403", "AccessDenied"):
                raise LakeUnavailable(
                    f"access to bucket {self.bucket!r} of {LAKE_ENV} is denied (check the AWS credentials)"
                ) from None
            raise LakeUnavailable(f"bucket {self.bucket!r} of {LAKE_ENV}: S3 error {code}") from None
        except NoCredentialsError:
            raise LakeUnavailable(
                f"no AWS credentials for bucket {self.bucket!r} of {LAKE_ENV} (set "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
            ) from None
        except BotoCoreError as exc:
            endpoint = self._client.meta.endpoint_url
            raise LakeUnavailable(
                f"S3 endpoint {endpoint} for {LAKE_ENV} is unreachable: {type(exc).__name__}"
            ) from None


def _default_s3_client(settings: Settings | None = None):
    import boto3
    from botocore.config import Config

    # boto3 reads AWS_ENDPOINT_URL / credentials / region itself; short timeouts make an unreachable
    # endpoint fail in seconds with a clear error instead of hanging a run.
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=16,
        s3={"addressing_style": "path"},
    )
    return boto3.client("s3", region_name=as_settings(settings).storage.region, config=config)


def open_store(location: LakeLocation) -> ObjectStore:
    if location.scheme == "file":
        return LocalObjectStore(location.root)
    if location.scheme == "s3":
        return S3ObjectStore(location.root, location.prefix)
    raise ConfigError(f"{LAKE_ENV}: unsupported lake scheme {location.scheme!r}")
