"""The only module that knows aioboto3 for SQS: one queue's long-poll, delete and check.

Messages come out as frozen `Message` values; botocore's errors come out as `QueueError`, each
with the fix an operator needs. Retrying and backoff are the caller's (monitor.events).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from monitor import __version__
from monitor.config import AwsSettings, EventsSettings

WAIT_SECONDS = 20  # SQS's longest long poll: one call a 20 s when the queue is quiet
MAX_MESSAGES = 10  # SQS's most messages per ReceiveMessage

_MISSING = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_DENIED = {"AccessDenied", "AccessDeniedException", "InvalidSecurity"}
_KMS = {"KmsAccessDenied", "KmsDisabled", "KmsNotFound", "KmsInvalidState", "KmsInvalidKeyUsage"}
_CREDENTIALS = {
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
}
_THROTTLED = {"RequestThrottled", "ThrottlingException", "KmsThrottled", "OverLimit"}
_STALE_RECEIPT = {"ReceiptHandleIsInvalid", "InvalidParameterValue"}


@dataclass(frozen=True)
class Message:
    message_id: str
    receipt: str
    body: str
    receive_count: int = 1


class QueueError(Exception):
    """An SQS call failed; `outcome` is a metric label, `fix` says what to do about it."""

    def __init__(self, operation: str, outcome: str, code: str, message: str, fix: str) -> None:
        super().__init__(f"{operation}: {code or outcome}: {message}")
        self.operation = operation
        self.outcome = outcome
        self.code = code
        self.detail = message
        self.fix = fix


def _queue_error(operation: str, exc: ClientError) -> QueueError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or code
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _MISSING:
        return QueueError(
            operation,
            "not_found",
            code,
            message,
            "check events.sqs_queue_url (and events.region / events.endpoint_url): "
            "no such queue there",
        )
    if code in _KMS:
        return QueueError(
            operation, "unauthorized", code, message, "the queue is encrypted: grant kms:Decrypt"
        )
    if code in _DENIED or status == 403:
        return QueueError(
            operation,
            "unauthorized",
            code,
            message,
            "grant sqs:ReceiveMessage, sqs:DeleteMessage and sqs:GetQueueAttributes on the "
            "queue (README, IAM)",
        )
    if code in _CREDENTIALS or status == 401:
        return QueueError(operation, "unauthorized", code, message, "check the AWS credentials")
    if code in _THROTTLED or status == 429:
        return QueueError(operation, "throttled", code, message, "retrying with backoff")
    if 400 <= status < 500:
        return QueueError(operation, "bad_request", code, message, "retrying with backoff")
    return QueueError(operation, "error", code, message, "retrying with backoff")


class SqsQueue:
    """One queue. Build it with `SqsQueue.connect(...)`; `observe` hears of every call."""

    def __init__(
        self,
        client: Any,
        url: str,
        observe: Callable[[str, str, float], None],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._client = client
        self.url = url
        self._observe = observe
        self._clock = clock

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        events: EventsSettings,
        aws: AwsSettings,
        observe: Callable[[str, str, float], None],
    ) -> AsyncIterator[SqsQueue]:
        config = AioConfig(
            retries={"mode": "standard"},
            connect_timeout=aws.connect_timeout_seconds,
            # A long poll holds its answer for 20 s: never cut it before that.
            read_timeout=max(aws.read_timeout_seconds, WAIT_SECONDS + 10),
            user_agent_extra=f"amplify-monitor/{__version__}",
        )
        async with AsyncExitStack() as stack:
            try:
                session = aioboto3.Session(profile_name=aws.profile)
                client = await stack.enter_async_context(
                    session.client(
                        "sqs",
                        region_name=events.queue_region(aws.region),
                        endpoint_url=events.endpoint_url,
                        config=config,
                    )
                )
            except BotoCoreError as exc:
                raise QueueError("connect", "error", "", str(exc), "check [events]") from None
            yield cls(client, events.sqs_queue_url, observe)

    async def _call(self, operation: str, call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        started = self._clock()
        outcome = "ok"
        try:
            return await call
        except ClientError as exc:
            error = _queue_error(operation, exc)
            outcome = error.outcome
            raise error from None
        except NoCredentialsError as exc:
            outcome = "unauthorized"
            raise QueueError(
                operation, outcome, "", str(exc), "configure AWS credentials"
            ) from None
        except (BotoCoreError, OSError, TimeoutError) as exc:
            outcome = "error"
            raise QueueError(
                operation, outcome, type(exc).__name__, str(exc), "retrying with backoff"
            ) from None
        finally:
            self._observe(operation, outcome, self._clock() - started)

    async def check(self) -> int:
        """GetQueueAttributes: the queue is there and ours to read; its visibility timeout."""
        answer = await self._call(
            "GetQueueAttributes",
            self._client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["VisibilityTimeout"]
            ),
        )
        return int(answer.get("Attributes", {}).get("VisibilityTimeout", 30))

    async def receive(self, visibility_seconds: int) -> list[Message]:
        """Long-poll for up to 10 messages, each hidden from other readers while it is handled."""
        answer = await self._call(
            "ReceiveMessage",
            self._client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=MAX_MESSAGES,
                WaitTimeSeconds=WAIT_SECONDS,
                VisibilityTimeout=visibility_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ),
        )
        messages = []
        for raw in answer.get("Messages", []):
            attributes = raw.get("Attributes", {})
            messages.append(
                Message(
                    message_id=str(raw.get("MessageId", "")),
                    receipt=str(raw.get("ReceiptHandle", "")),
                    body=str(raw.get("Body", "")),
                    receive_count=int(attributes.get("ApproximateReceiveCount", 1) or 1),
                )
            )
        return messages

    async def delete(self, message: Message) -> bool:
        """Delete a handled message. False if its receipt went stale (it was received again
        meanwhile and will be handled, and deleted, once more: harmless)."""
        try:
            await self._call(
                "DeleteMessage",
                self._client.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt),
            )
        except QueueError as exc:
            # InvalidParameterValue also means other things; only a receipt complaint is stale.
            stale = exc.code == "ReceiptHandleIsInvalid" or (
                exc.code in _STALE_RECEIPT and "receipt" in exc.detail.lower()
            )
            if stale:
                return False
            raise
        return True
