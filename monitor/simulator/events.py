"""The simulator's EventBridge: as its jobs start and end, it sends the matching "Amplify
Deployment Status Change" events to an SQS queue, shaped as EventBridge delivers them.

As Amplify does, it sends STARTED, SUCCEED and FAILED, and nothing for a cancel; delivery being
best-effort, a share of the events can be dropped on purpose (seeded, counted).
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aioboto3
import anyio

from monitor.model import CANCELLED
from monitor.simulator.fleet import Fleet, Job

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SOURCE = "aws.amplify"
DETAIL_TYPE = "Amplify Deployment Status Change"
BATCH = 10  # SendMessageBatch's most entries


class EventFeed:
    """Which events are due: each job's start and end after the feed began, once each."""

    def __init__(self, fleet: Fleet, *, drop_share: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= drop_share < 1.0:
            raise ValueError("drop_share must be in [0, 1)")
        self.fleet = fleet
        self.since = fleet.now()
        self.drop_share = drop_share
        self._rng = random.Random(seed)
        self._told: set[tuple[str, str, str, str]] = set()
        self.sent: Counter[str] = Counter()  # by jobStatus
        self.dropped: Counter[str] = Counter()

    def due(self) -> list[dict[str, Any]]:
        """The events that happened since the last call, oldest first, drops left out."""
        fleet = self.fleet
        fleet.tick()
        now = fleet.now()
        found: list[tuple[float, str, str, Job, str]] = []
        for app in fleet.apps():
            for branch in app.branches.values():
                for job in branch.jobs[-2:]:  # a job may end and the next start in one tick
                    found.extend(self._happened(app.app_id, branch.name, job, now))
        found.sort(key=lambda f: f[0])
        events = []
        for at, app_id, branch_name, job, status in found:
            if self.drop_share and self._rng.random() < self.drop_share:
                self.dropped[status] += 1
                continue
            self.sent[status] += 1
            events.append(self.event(app_id, branch_name, job.job_id, status, at))
        return events

    def _happened(
        self, app_id: str, branch: str, job: Job, now: float
    ) -> list[tuple[float, str, str, Job, str]]:
        if job.started_at is None:
            return []
        out = []
        start = job.started_at
        if self.since <= start <= now and self._first(app_id, branch, job, "STARTED"):
            out.append((start, app_id, branch, job, "STARTED"))
        end = job.end_time(now)
        if end is not None and end >= self.since and self._first(app_id, branch, job, "END"):
            status = job.status(now)
            if status != CANCELLED:  # Amplify announces no cancel
                out.append((end, app_id, branch, job, status))
        return out

    def _first(self, app_id: str, branch: str, job: Job, kind: str) -> bool:
        told = (app_id, branch, job.job_id, kind)
        if told in self._told:
            return False
        self._told.add(told)
        return True

    def event(
        self, app_id: str, branch: str, job_id: str, status: str, at: float
    ) -> dict[str, Any]:
        fleet = self.fleet
        arn = f"arn:aws:amplify:{fleet.region}:{fleet.account_id}:apps/{app_id}/branches/{branch}"
        return {
            "version": "0",
            "id": str(uuid.UUID(int=self._rng.getrandbits(128))),
            "detail-type": DETAIL_TYPE,
            "source": SOURCE,
            "account": fleet.account_id,
            "time": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": fleet.region,
            "resources": [arn],
            "detail": {"appId": app_id, "branchName": branch, "jobId": job_id, "jobStatus": status},
        }


def _session() -> aioboto3.Session:
    # A stand-in queue (moto) takes any signature: these are not credentials.
    return aioboto3.Session(aws_access_key_id="simulator", aws_secret_access_key="simulator")  # noqa: S106


async def create_queue(endpoint_url: str, name: str, region: str = "us-east-1") -> str:
    async with _session().client("sqs", endpoint_url=endpoint_url, region_name=region) as sqs:
        created = await sqs.create_queue(QueueName=name)
    return str(created["QueueUrl"])


@asynccontextmanager
async def sqs_stand_in(name: str = "amplify-monitor-events") -> AsyncIterator[tuple[str, str]]:
    """moto's SQS, in a thread of this process on a free loopback port, with one queue:
    yields (endpoint URL, queue URL). Needs `moto[server]` (a test dependency)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access line per long poll
    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        yield endpoint, await create_queue(endpoint, name)
    finally:
        server.stop()


async def publish(
    feed: EventFeed,
    queue_url: str,
    *,
    endpoint_url: str,
    region: str = "us-east-1",
    every: float = 0.2,
) -> None:
    """Until cancelled: every `every` seconds, send what the feed has due to the queue."""
    async with _session().client("sqs", endpoint_url=endpoint_url, region_name=region) as sqs:
        while True:
            events = feed.due()
            for start in range(0, len(events), BATCH):
                entries: list[SendMessageBatchRequestEntryTypeDef] = [
                    {"Id": str(i), "MessageBody": json.dumps(e)}
                    for i, e in enumerate(events[start : start + BATCH])
                ]
                await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            await anyio.sleep(every)
