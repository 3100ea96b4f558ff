"""The archive PUT against a real HTTP server on loopback: streamed, retried, never leaking."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from monitor.deploy.upload import UploadError, redact, upload

SIGNED = "?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeef&X-Amz-Security-Token=tok"


@dataclass
class Bucket:
    """A presigned-URL stand-in that answers from a script of statuses, then 200."""

    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def put(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        body = b"".join([chunk async for chunk in request.content.iter_chunked(65536)])
        self.bodies.append(body)
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 403:
            xml = (
                "<Error><Code>AccessDenied</Code><Message>Request has expired</Message>"
                "<StringToSign>AWS4-HMAC-SHA256 secret-ish</StringToSign></Error>"
            )
            return web.Response(status=403, text=xml, content_type="application/xml")
        return web.Response(status=status)


@pytest.fixture
async def bucket() -> AsyncIterator[Bucket]:
    state = Bucket()
    app = web.Application()
    app.router.add_put("/upload/{key}", state.put)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/upload/deploy.zip{SIGNED}"
    yield state
    await runner.cleanup()


@pytest.fixture
def payload() -> bytes:
    return os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture
def archive(tmp_path: Path, payload: bytes) -> Path:
    path = tmp_path / "deploy.zip"
    path.write_bytes(payload)
    return path


async def test_the_file_arrives_whole_with_a_declared_length_not_chunked(
    bucket: Bucket, archive: Path, payload: bytes
) -> None:
    result = await upload(bucket.url, archive, chunk_bytes=256 * 1024)

    assert (result.bytes_sent, result.attempts) == (len(payload), 1)
    [body] = bucket.bodies
    assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
    [headers] = bucket.headers
    # Presigned S3 PUTs refuse chunked transfer encoding: the length must be declared.
    assert headers["Content-Length"] == str(len(payload))
    assert "Transfer-Encoding" not in headers
    assert headers["Content-Type"] == "application/zip"


async def test_server_errors_are_retried_with_backoff(
    bucket: Bucket, archive: Path, payload: bytes
) -> None:
    bucket.statuses = [503, 500]
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    result = await upload(bucket.url, archive, retry_delay=0.5, sleep=sleep)

    assert result.attempts == 3
    assert delays == [0.5, 1.0]
    assert bucket.bodies[-1] == payload  # each attempt resends it all, from the start


async def test_a_refusal_is_not_retried_and_the_signature_never_shows(
    bucket: Bucket, archive: Path
) -> None:
    bucket.statuses = [403]

    with pytest.raises(UploadError) as caught:
        await upload(bucket.url, archive, sleep=_no_sleep)

    message = str(caught.value)
    assert len(bucket.bodies) == 1
    assert "HTTP 403: AccessDenied - Request has expired" in message
    assert "may have expired" in message
    for secret in ("X-Amz-Signature", "deadbeef", "AKIAEXAMPLE", "tok", "StringToSign"):
        assert secret not in message


async def test_giving_up_says_how_often_it_tried(bucket: Bucket, archive: Path) -> None:
    bucket.statuses = [500, 500, 500]

    with pytest.raises(UploadError, match="failed after 3 attempts: HTTP 500"):
        await upload(bucket.url, archive, attempts=3, sleep=_no_sleep)


async def test_an_unreachable_host_is_retried_then_reported_without_the_url(
    archive: Path,
) -> None:
    url = f"http://127.0.0.1:9/upload{SIGNED}"
    with pytest.raises(UploadError) as caught:
        await upload(url, archive, attempts=2, sleep=_no_sleep)
    assert "failed after 2 attempts" in str(caught.value)
    assert "Signature" not in str(caught.value)


def test_redact_keeps_where_and_drops_what_authorises() -> None:
    assert redact(f"https://bucket.s3.amazonaws.com/a/b.zip{SIGNED}#frag") == (
        "https://bucket.s3.amazonaws.com/a/b.zip"
    )


async def _no_sleep(seconds: float) -> None:
    return None
