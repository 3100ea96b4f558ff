"""The simulator through a real aioboto3 client: listing, jobs over time, deployments, refusals."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp
import pytest
from botocore.exceptions import ClientError

from monitor.simulator import Fleet, ManualClock, Simulator

if TYPE_CHECKING:
    from types_aiobotocore_amplify.client import AmplifyClient


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


async def test_list_apps_pages_through_every_app_in_creation_order(
    fleet: Fleet, client: AmplifyClient
) -> None:
    ids = [fleet.add_app(f"app-{i}") for i in range(230)]
    pages = [
        page
        async for page in client.get_paginator("list_apps").paginate(
            PaginationConfig={"PageSize": 100}
        )
    ]
    assert [len(p["apps"]) for p in pages] == [100, 100, 30]
    assert [a["appId"] for p in pages for a in p["apps"]] == ids
    assert "nextToken" not in pages[-1]


async def test_page_size_above_the_model_limit_is_a_bad_request(
    fleet: Fleet, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    with pytest.raises(ClientError) as exc:
        await client.list_apps(maxResults=101)
    assert _code(exc) == "BadRequestException"
    with pytest.raises(ClientError) as exc:
        await client.list_branches(appId=app_id, maxResults=51)
    assert _code(exc) == "BadRequestException"


async def test_a_token_from_another_listing_is_rejected(
    fleet: Fleet, client: AmplifyClient
) -> None:
    for i in range(3):
        fleet.add_app(f"app-{i}")
    token = (await client.list_apps(maxResults=1))["nextToken"]
    app_id = fleet.apps()[0].app_id
    with pytest.raises(ClientError) as exc:
        await client.list_branches(appId=app_id, nextToken=token)
    assert _code(exc) == "BadRequestException"
    with pytest.raises(ClientError) as exc:
        await client.list_apps(nextToken="not a token")
    assert _code(exc) == "BadRequestException"


async def test_list_branches_pages_at_most_fifty(fleet: Fleet, client: AmplifyClient) -> None:
    app_id = fleet.add_app("monorepo")
    names = [fleet.add_branch(app_id, f"feature/{i:03d}") for i in range(60)]
    first = await client.list_branches(appId=app_id, maxResults=50)
    second = await client.list_branches(appId=app_id, nextToken=first["nextToken"])
    assert [b["branchName"] for b in first["branches"] + second["branches"]] == names
    assert "nextToken" not in second


async def test_list_jobs_is_newest_first_and_stable_when_jobs_arrive_between_pages(
    fleet: Fleet, clock: ManualClock, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    for _ in range(120):
        fleet.start_job(app_id, "main")
        clock.advance(10)
    first = await client.list_jobs(appId=app_id, branchName="main", maxResults=50)
    fleet.start_job(app_id, "main")  # job 121 lands at the head mid-pagination
    seen = [j["jobId"] for j in first["jobSummaries"]]
    token = first.get("nextToken")
    while token:
        page = await client.list_jobs(appId=app_id, branchName="main", nextToken=token)
        seen += [j["jobId"] for j in page["jobSummaries"]]
        token = page.get("nextToken")
    assert seen == [str(n) for n in range(120, 0, -1)]
    fresh = await client.list_jobs(appId=app_id, branchName="main", maxResults=1)
    assert fresh["jobSummaries"][0]["jobId"] == "121"


@pytest.mark.parametrize("name", ["feature/login", "release/2024/06", "odd name %2F+?#"])
async def test_branch_names_with_slashes_and_reserved_characters_round_trip(
    fleet: Fleet, client: AmplifyClient, name: str
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "feature")  # a prefix of the others must not match them
    fleet.add_branch(app_id, name)
    job_id = fleet.start_job(app_id, name)
    branch = (await client.get_branch(appId=app_id, branchName=name))["branch"]
    assert branch["branchName"] == name
    jobs = await client.list_jobs(appId=app_id, branchName=name)
    assert [j["jobId"] for j in jobs["jobSummaries"]] == [job_id]
    job = await client.get_job(appId=app_id, branchName=name, jobId=job_id)
    assert job["job"]["summary"]["jobId"] == job_id
    stopped = await client.stop_job(appId=app_id, branchName=name, jobId=job_id)
    assert stopped["jobSummary"]["status"] == "CANCELLING"


async def test_job_status_and_steps_follow_the_script_as_the_clock_moves(
    fleet: Fleet, clock: ManualClock, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    durations = {"PENDING": 1, "PROVISIONING": 1, "RUNNING": 3}
    job_id = fleet.start_job(app_id, "main", durations=durations)
    seen: list[tuple[str, list[str], bool]] = []
    for _ in range(6):
        job = (await client.get_job(appId=app_id, branchName="main", jobId=job_id))["job"]
        steps = [f"{s['stepName']}:{s['status']}" for s in job["steps"]]
        seen.append((job["summary"]["status"], steps, "endTime" in job["summary"]))
        clock.advance(1)
    assert seen == [
        ("PENDING", [], False),
        ("PROVISIONING", [], False),
        ("RUNNING", ["BUILD:RUNNING"], False),
        ("RUNNING", ["BUILD:SUCCEED", "DEPLOY:RUNNING"], False),
        ("RUNNING", ["BUILD:SUCCEED", "DEPLOY:SUCCEED", "VERIFY:RUNNING"], False),
        ("SUCCEED", ["BUILD:SUCCEED", "DEPLOY:SUCCEED", "VERIFY:SUCCEED"], True),
    ]


async def test_failed_job_names_the_failed_step_its_reason_and_a_readable_log(
    fleet: Fleet, clock: ManualClock, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    job_id = fleet.start_job(
        app_id, "main", outcome="FAILED", fail_step="DEPLOY", reason="npm ERR! code ELIFECYCLE"
    )
    clock.advance(60)
    job = (await client.get_job(appId=app_id, branchName="main", jobId=job_id))["job"]
    assert job["summary"]["status"] == "FAILED"
    assert [(s["stepName"], s["status"]) for s in job["steps"]] == [
        ("BUILD", "SUCCEED"),
        ("DEPLOY", "FAILED"),
    ]
    failed = job["steps"][1]
    assert failed["statusReason"] == "npm ERR! code ELIFECYCLE"
    async with aiohttp.ClientSession() as http, http.get(failed["logUrl"]) as resp:
        assert resp.status == 200
        assert "npm ERR! code ELIFECYCLE" in await resp.text()


async def test_stop_job_goes_through_cancelling_to_cancelled(
    fleet: Fleet, clock: ManualClock, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    job_id = fleet.start_job(app_id, "main")
    clock.advance(2.5)  # inside BUILD
    stopped = await client.stop_job(appId=app_id, branchName="main", jobId=job_id)
    assert stopped["jobSummary"]["status"] == "CANCELLING"
    clock.advance(1)
    job = (await client.get_job(appId=app_id, branchName="main", jobId=job_id))["job"]
    assert job["summary"]["status"] == "CANCELLED"
    assert [(s["stepName"], s["status"]) for s in job["steps"]] == [("BUILD", "CANCELLED")]
    with pytest.raises(ClientError) as exc:
        await client.stop_job(appId=app_id, branchName="main", jobId=job_id)
    assert _code(exc) == "BadRequestException"


async def test_branch_reports_active_job_and_total_as_jobs_are_created(
    fleet: Fleet, clock: ManualClock, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    branch = (await client.get_branch(appId=app_id, branchName="main"))["branch"]
    assert (branch["activeJobId"], branch["totalNumberOfJobs"]) == ("", "0")
    fleet.start_job(app_id, "main")
    clock.advance(60)
    started = await client.start_job(appId=app_id, branchName="main", jobType="RELEASE")
    branch = (await client.list_branches(appId=app_id))["branches"][0]
    assert started["jobSummary"]["jobId"] == "2"
    assert (branch["activeJobId"], branch["totalNumberOfJobs"]) == ("2", "2")


async def test_start_job_follows_the_next_outcome_set_for_the_branch(
    fleet: Fleet, clock: ManualClock, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    fleet.set_next_outcome(app_id, "main", "FAILED", fail_step="VERIFY", reason="smoke test")
    first = await client.start_job(
        appId=app_id, branchName="main", jobType="RELEASE", commitMessage="ship it"
    )
    assert first["jobSummary"]["status"] == "PENDING"
    assert first["jobSummary"]["commitMessage"] == "ship it"
    clock.advance(60)
    retry = await client.start_job(
        appId=app_id, branchName="main", jobType="RETRY", jobId=first["jobSummary"]["jobId"]
    )
    clock.advance(60)
    jobs = (await client.list_jobs(appId=app_id, branchName="main"))["jobSummaries"]
    assert [(j["jobId"], j["status"], j["jobType"]) for j in jobs] == [
        ("2", "SUCCEED", "RETRY"),
        ("1", "FAILED", "RELEASE"),
    ]
    assert retry["jobSummary"]["commitMessage"] == "ship it"


async def test_start_job_with_an_unknown_job_type_is_a_bad_request(
    fleet: Fleet, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    with pytest.raises(ClientError) as exc:
        await client.start_job(appId=app_id, branchName="main", jobType="NIGHTLY")  # type: ignore[arg-type]
    assert _code(exc) == "BadRequestException"
    assert "enum" in exc.value.response["Error"]["Message"]


async def _chunks(total: int, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield bytes([sent % 251]) * n
        sent += n


async def test_create_deployment_upload_and_start_runs_a_manual_job(
    fleet: Fleet, clock: ManualClock, client: AmplifyClient, sim: Simulator
) -> None:
    app_id = fleet.add_app("static-site")
    fleet.add_branch(app_id, "main")
    created = await client.create_deployment(appId=app_id, branchName="main")
    assert created["fileUploadUrls"] == {}
    assert created["zipUploadUrl"].startswith(f"{sim.url}/_upload/")
    job_id = created["jobId"]
    listed = (await client.list_jobs(appId=app_id, branchName="main"))["jobSummaries"]
    assert [(j["jobId"], j["status"]) for j in listed] == [(job_id, "CREATED")]

    size = 3 * 1024 * 1024 + 17
    expected = hashlib.sha256()
    async for chunk in _chunks(size):
        expected.update(chunk)
    async with (
        aiohttp.ClientSession() as http,
        http.put(created["zipUploadUrl"], data=_chunks(size)) as resp,
    ):
        assert resp.status == 200
    upload = fleet.job(app_id, "main", job_id).uploads[0]
    assert (upload.size, upload.sha256) == (size, expected.hexdigest())

    started = await client.start_deployment(appId=app_id, branchName="main", jobId=job_id)
    assert started["jobSummary"]["jobType"] == "MANUAL"
    assert started["jobSummary"]["status"] == "PENDING"
    clock.advance(60)
    done = await client.get_job(appId=app_id, branchName="main", jobId=job_id)
    assert done["job"]["summary"]["status"] == "SUCCEED"
    assert sim.counts["Upload"] == 1


async def test_start_deployment_without_an_upload_fails_the_job(
    fleet: Fleet, clock: ManualClock, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("static-site")
    fleet.add_branch(app_id, "main")
    job_id = (await client.create_deployment(appId=app_id, branchName="main"))["jobId"]
    await client.start_deployment(appId=app_id, branchName="main", jobId=job_id)
    clock.advance(60)
    job = (await client.get_job(appId=app_id, branchName="main", jobId=job_id))["job"]
    assert job["summary"]["status"] == "FAILED"
    assert job["steps"][-1]["stepName"] == "DEPLOY"


async def test_start_deployment_from_a_source_url(
    fleet: Fleet, clock: ManualClock, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("static-site")
    fleet.add_branch(app_id, "main")
    started = await client.start_deployment(
        appId=app_id, branchName="main", sourceUrl="s3://bucket/site.zip", sourceUrlType="ZIP"
    )
    summary = started["jobSummary"]
    assert (summary["sourceUrl"], summary["sourceUrlType"]) == ("s3://bucket/site.zip", "ZIP")
    with pytest.raises(ClientError) as exc:
        await client.start_deployment(appId=app_id, branchName="main")
    assert _code(exc) == "BadRequestException"
    assert "Must specify jobId or sourceUrl" in exc.value.response["Error"]["Message"]


async def test_starting_anything_while_the_latest_job_runs_is_refused_naming_that_job(
    fleet: Fleet, clock: ManualClock, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    running = fleet.start_job(app_id, "main")
    deployment = (await client.create_deployment(appId=app_id, branchName="main"))["jobId"]
    with pytest.raises(ClientError) as exc:
        await client.start_job(appId=app_id, branchName="main", jobType="RELEASE")
    assert _code(exc) == "BadRequestException"
    assert f"The last job {running} was not finished" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        await client.start_deployment(appId=app_id, branchName="main", jobId=deployment)
    assert f"job(deployment) {running} was not finished" in exc.value.response["Error"]["Message"]
    clock.advance(60)
    started = await client.start_deployment(appId=app_id, branchName="main", jobId=deployment)
    assert started["jobSummary"]["jobId"] == deployment


async def test_missing_and_deleted_resources_are_not_found(
    fleet: Fleet, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    fleet.add_branch(app_id, "gone")
    fleet.delete_branch(app_id, "gone")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: client.get_app(appId="dmissing"),
        lambda: client.get_branch(appId=app_id, branchName="gone"),
        lambda: client.list_jobs(appId=app_id, branchName="gone"),
        lambda: client.get_job(appId=app_id, branchName="main", jobId="99"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc:
            await call()
        assert _code(exc) == "NotFoundException"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    fleet.delete_app(app_id)
    assert (await client.list_apps())["apps"] == []
