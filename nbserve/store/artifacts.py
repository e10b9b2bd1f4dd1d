"""Artifact stores: content-addressed, immutable, verified by sha256 on every read.

An artifact is two files, ``model.pkl`` and ``manifest.json``; its address is the sha256 of the manifest, which
records the sha256 of the pickle, so one hash covers both. ``LocalArtifacts`` keeps them under a directory (the
embedded default, ``<home>/artifacts``); ``S3Artifacts`` keeps them in an S3-compatible bucket and a local cache
by hash (a ``LocalArtifacts``), because runtimes serve from a directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ArtifactIntegrityError, NbserveError
from .scratch import writing

PICKLE = "model.pkl"
MANIFEST = "manifest.json"


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack(pickle_bytes: bytes, manifest: dict) -> tuple[str, bytes]:
    """(address, manifest bytes) of an artifact: the manifest gains the pickle's hash."""
    manifest_bytes = canonical_json(dict(manifest, pickle_sha256=sha256_bytes(pickle_bytes)))
    return sha256_bytes(manifest_bytes), manifest_bytes


def check_manifest(sha: str, data: bytes, where: str) -> dict:
    if sha256_bytes(data) != sha:
        raise ArtifactIntegrityError(
            f"artifact {sha[:12]}: {where} does not match its sha256; the artifact was modified after it was written"
        )
    return json.loads(data)


def check_pickle(sha: str, manifest: dict, data: bytes, where: str) -> bytes:
    if sha256_bytes(data) != manifest["pickle_sha256"]:
        raise ArtifactIntegrityError(
            f"artifact {sha[:12]}: {where} does not match its sha256; refusing to unpickle bytes that changed"
        )
    return data


class LocalArtifacts:
    """``<root>/<sha256>/`` directories, written to a temp dir and renamed into place (visible only whole)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __str__(self):
        return str(self.root)

    def has(self, sha: str) -> bool:
        return (self.root / sha).is_dir()

    def put(self, sha: str, pickle_bytes: bytes, manifest_bytes: bytes) -> None:
        """Write the artifact atomically; storing the same content twice is a no-op."""
        final = self.root / sha
        if final.is_dir():
            return
        tmp = None
        try:
            with writing(self.root, f"artifact {sha[:12]}", len(pickle_bytes) + len(manifest_bytes)):
                tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
                for fname, data in ((PICKLE, pickle_bytes), (MANIFEST, manifest_bytes)):
                    with open(tmp / fname, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():  # lost a race to an identical writer: fine; anything else is not
                    raise
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def directory(self, sha: str) -> Path:
        return self.root / sha

    def manifest(self, sha: str) -> dict:
        path = self.root / sha / MANIFEST
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"artifact {sha[:12]} is missing from {self.root}") from None
        return check_manifest(sha, data, str(path))

    def pickle(self, sha: str) -> bytes:
        """model.pkl's bytes, checked against the manifest's hash: the caller unpickles exactly these."""
        manifest = self.manifest(sha)
        path = self.root / sha / PICKLE
        return check_pickle(sha, manifest, path.read_bytes(), str(path))

    def raw(self, sha: str) -> tuple[bytes, bytes]:
        """(pickle bytes, manifest bytes), both verified: what a copy to another store writes."""
        data = (self.root / sha / MANIFEST).read_bytes()
        return self.pickle(sha), data

    def list(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if len(p.name) == 64 and p.is_dir())


class S3Artifacts:
    """``s3://bucket/prefix/<sha256>/{model.pkl,manifest.json}``; endpoint and credentials come from the
    standard AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION).

    A key is written once: the pickle first, the manifest (the artifact's address) last, so a writer killed in
    between leaves only a pickle that nothing points at and that the next writer of that content overwrites
    with the same bytes. Every read is checked against the hashes; objects are cached locally by hash.
    """

    def __init__(self, url: str, cache_root: Path):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise NbserveError(f"artifact store {url!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
        self.url, self.bucket, self.prefix = url.rstrip("/"), bucket, prefix.strip("/")
        self.cache = LocalArtifacts(cache_root)
        self._client = None

    def __str__(self):
        return self.url

    @property
    def client(self):
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise NbserveError(
                    f"artifacts in {self.url} need boto3: pip install 'nbserve-ml[team]' (or boto3)"
                ) from None
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
            self._client = boto3.client(
                "s3",
                endpoint_url=endpoint,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60),
            )
        return self._client

    def key(self, sha: str, fname: str) -> str:
        return f"{self.prefix}/{sha}/{fname}" if self.prefix else f"{sha}/{fname}"

    def where(self, sha: str, fname: str) -> str:
        return f"s3://{self.bucket}/{self.key(sha, fname)}"

    def _get(self, sha: str, fname: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(sha, fname))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ArtifactIntegrityError(f"artifact {sha[:12]} is missing: no {self.where(sha, fname)}") from None
            raise NbserveError(f"reading {self.where(sha, fname)} failed: {exc}") from None

    def has(self, sha: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(sha, MANIFEST))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise NbserveError(f"checking {self.where(sha, MANIFEST)} failed: {exc}") from None

    def put(self, sha: str, pickle_bytes: bytes, manifest_bytes: bytes) -> None:
        self.cache.put(sha, pickle_bytes, manifest_bytes)
        if self.has(sha):
            return
        self.client.put_object(Bucket=self.bucket, Key=self.key(sha, PICKLE), Body=pickle_bytes)
        self.client.put_object(Bucket=self.bucket, Key=self.key(sha, MANIFEST), Body=manifest_bytes)

    def _fetch(self, sha: str) -> None:
        """Download, verify and cache the artifact; the bucket's object is named when it does not verify."""
        manifest_bytes = self._get(sha, MANIFEST)
        manifest = check_manifest(sha, manifest_bytes, self.where(sha, MANIFEST))
        data = check_pickle(sha, manifest, self._get(sha, PICKLE), self.where(sha, PICKLE))
        self.cache.put(sha, data, manifest_bytes)

    def directory(self, sha: str) -> Path:
        if not self.cache.has(sha):
            self._fetch(sha)
        return self.cache.directory(sha)

    def manifest(self, sha: str) -> dict:
        if not self.cache.has(sha):
            self._fetch(sha)
        return self.cache.manifest(sha)

    def pickle(self, sha: str) -> bytes:
        if not self.cache.has(sha):
            self._fetch(sha)
        return self.cache.pickle(sha)

    def raw(self, sha: str) -> tuple[bytes, bytes]:
        """Straight from the bucket (not the cache), verified: what `registry copy` checks after writing."""
        manifest_bytes = self._get(sha, MANIFEST)
        manifest = check_manifest(sha, manifest_bytes, self.where(sha, MANIFEST))
        return check_pickle(sha, manifest, self._get(sha, PICKLE), self.where(sha, PICKLE)), manifest_bytes

    def list(self) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        prefix = f"{self.prefix}/" if self.prefix else ""
        found = set()
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                sha, _, fname = obj["Key"][len(prefix) :].partition("/")
                if fname == MANIFEST and len(sha) == 64:
                    found.add(sha)
        return sorted(found)


def open_artifacts(spec: str, home: Path):
    """A store from its configuration: a local path (default ``<home>/artifacts``) or ``s3://bucket/prefix``."""
    if spec.startswith("s3://"):
        return S3Artifacts(spec, Path(home) / "cache" / "artifacts")
    if "://" in spec and not spec.startswith("file://"):
        raise NbserveError(f"artifact store {spec!r}: expected a directory or s3://BUCKET/PREFIX")
    return LocalArtifacts(Path(spec.removeprefix("file://")).expanduser())
