"""moto's SQS in server mode on a loopback port (the real wire protocol), one queue per test,
and a helper that plays EventBridge: it sends events to the queue as EventBridge delivers them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aioboto3
import pytest

from tests.e2e.daemon import free_port

_SESSION = aioboto3.Session()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def amplify_event(
    app_id: str, branch: str, job_id: str, status: str, *, region: str = "us-east-1"
) -> dict[str, Any]:
    """An "Amplify Deployment Status Change" as EventBridge writes it into an SQS message."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Amplify Deployment Status Change",
        "source": "aws.amplify",
        "account": "123456789012",
        "time": now,
        "region": region,
        "resources": [f"arn:aws:amplify:{region}:123456789012:apps/{app_id}/branches/{branch}"],
        "detail": {"appId": app_id, "branchName": branch, "jobId": job_id, "jobStatus": status},
    }


@dataclass
class Queue:
    url: str
    client: Any

    async def send(self, body: dict[str, Any] | str) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        await self.client.send_message(QueueUrl=self.url, MessageBody=text)

    async def counts(self) -> tuple[int, int]:
        """(visible, in flight) messages."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        answer = await self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)
        attributes = answer["Attributes"]
        return int(attributes[names[0]]), int(attributes[names[1]])


@pytest.fixture
async def queue(moto_url: str) -> AsyncIterator[Queue]:
    async with _SESSION.client(
        "sqs",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ) as client:
        created = await client.create_queue(QueueName=f"events-{uuid.uuid4().hex[:12]}")
        yield Queue(created["QueueUrl"], client)
