"""The archive upload: one HTTP PUT of a file to the presigned `zipUploadUrl`, streamed.

Owns chunked reading (memory stays flat whatever the archive's size), retrying what a retry can
fix (5xx, 408/429, dropped connections) and keeping the URL out of every message: its query
string is a signature that grants write access until it expires.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import anyio

CHUNK_BYTES = 1 << 20
DEFAULT_ATTEMPTS = 4
_RETRY_STATUSES = frozenset({408, 429})


class UploadError(Exception):
    """The archive could not be uploaded; the message is safe to print (no URL query)."""


@dataclass(frozen=True)
class UploadResult:
    bytes_sent: int
    seconds: float
    attempts: int


def redact(url: str) -> str:
    """The URL without its query and fragment: enough to say where, nothing that authorises."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _s3_error(body: str) -> str:
    # S3-style XML errors: quote only Code and Message. Other elements (StringToSign,
    # CanonicalRequest) echo the signed request and have no place in a CI log.
    code = re.search(r"<Code>([^<]{1,100})</Code>", body)
    message = re.search(r"<Message>([^<]{1,300})</Message>", body)
    parts = [m.group(1) for m in (code, message) if m]
    return ": " + " - ".join(parts) if parts else ""


async def _chunks(path: Path, chunk_bytes: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        while chunk := await f.read(chunk_bytes):
            yield chunk


async def upload(
    url: str,
    path: Path,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    retry_delay: float = 1.0,
    chunk_bytes: int = CHUNK_BYTES,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> UploadResult:
    """PUT the file at `path` to `url`; retry transient failures with exponential backoff."""
    total = (await anyio.Path(path).stat()).st_size
    # Presigned PUTs want a known length (S3 refuses chunked transfer encoding), so say it up
    # front; aiohttp then streams the generator as the body without chunking it.
    headers = {"Content-Type": "application/zip", "Content-Length": str(total)}
    # No total deadline: a large archive on a slow runner may take long. Stalls are caught by
    # the connect and per-read limits instead.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=120)
    started = time.monotonic()
    last_error = ""
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for attempt in range(1, attempts + 1):
            try:
                async with session.put(
                    url, data=_chunks(path, chunk_bytes), headers=headers
                ) as response:
                    if response.status < 300:
                        await response.read()
                        return UploadResult(total, time.monotonic() - started, attempt)
                    body = (await response.content.read(4096)).decode("utf-8", "replace")
                    last_error = f"HTTP {response.status}{_s3_error(body)}"
                    if response.status < 500 and response.status not in _RETRY_STATUSES:
                        hint = (
                            " (the upload URL may have expired)" if response.status == 403 else ""
                        )
                        raise UploadError(f"upload to {redact(url)} refused: {last_error}{hint}")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                # aiohttp's messages can carry the full URL; say only what kind of failure.
                last_error = type(exc).__name__
            if attempt < attempts:
                await sleep(retry_delay * 2 ** (attempt - 1))
    raise UploadError(f"upload to {redact(url)} failed after {attempts} attempts: {last_error}")
