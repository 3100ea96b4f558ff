"""deploy/aws/eventbridge-sqs.yaml: valid CloudFormation (cfn-lint), and its rule's pattern takes
exactly the events the daemon reads (sent through moto's EventBridge into a moto queue)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aioboto3
import pytest
from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

from monitor.events import DETAIL_TYPE, SOURCE, AmplifyEvent, parse
from tests.events.conftest import Queue, amplify_event

TEMPLATE = Path(__file__).parents[2] / "deploy" / "aws" / "eventbridge-sqs.yaml"


def _resources() -> dict[str, Any]:
    resources: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))["Resources"]
    return resources


def test_the_template_passes_cfn_lint() -> None:
    lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(lint), str(TEMPLATE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_the_rule_may_send_to_the_queue_and_failures_go_to_a_dead_letter_queue() -> None:
    resources = _resources()
    [statement] = resources["QueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::GetAtt": ["DeploymentStatusRule", "Arn"]
    }
    redrive = resources["Queue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}


def _pattern(app_ids: list[str] | None) -> dict[str, Any]:
    pattern = dict(_resources()["DeploymentStatusRule"]["Properties"]["EventPattern"])
    detail = pattern.pop("detail")
    assert list(detail) == ["Fn::If"]  # every app, or only the given ones
    if app_ids:
        pattern["detail"] = {"appId": app_ids}
    return pattern


def _eventbridge(url: str) -> Any:
    return aioboto3.Session().client(
        "events",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def _entry(app_id: str, status: str, source: str = SOURCE) -> dict[str, Any]:
    detail = amplify_event(app_id, "main", "7", status)["detail"]
    return {"Source": source, "DetailType": DETAIL_TYPE, "Detail": json.dumps(detail)}


@pytest.mark.parametrize("app_ids", [None, ["d1", "d2"]])
async def test_the_rule_delivers_the_events_the_daemon_reads_and_no_others(
    moto_url: str, queue: Queue, app_ids: list[str] | None
) -> None:
    """Through EventBridge (moto's) into the queue: what arrives is what `parse` reads."""
    name = f"amplify-{queue.url.rsplit('-', 1)[1]}"
    async with _eventbridge(moto_url) as bus:
        await bus.put_rule(Name=name, EventPattern=json.dumps(_pattern(app_ids)))
        attributes = await queue.client.get_queue_attributes(
            QueueUrl=queue.url, AttributeNames=["QueueArn"]
        )
        arn = attributes["Attributes"]["QueueArn"]
        await bus.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
        await bus.put_events(
            Entries=[
                _entry("d1", "FAILED"),
                _entry("d2", "STARTED"),
                _entry("d3", "SUCCEED"),
                _entry("d1", "FAILED", source="aws.codebuild"),
            ]
        )
    answer = await queue.client.receive_message(
        QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    events = [parse(m["Body"]) for m in answer.get("Messages", [])]
    assert all(isinstance(e, AmplifyEvent) for e in events)
    got = sorted((e.key.app_id, e.job_status) for e in events if isinstance(e, AmplifyEvent))
    expected = [("d1", "FAILED"), ("d2", "STARTED")]
    assert got == (expected if app_ids else [*expected, ("d3", "SUCCEED")])
