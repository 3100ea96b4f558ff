"""Raw simulator answers checked against botocore's model: required members, types, limits.

botocore parses leniently (a missing required member just goes missing), so this walks the
output shapes itself; an independent stand-in that follows the model must agree with us.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from monitor.simulator import Fleet, ManualClock, Simulator, load_model

MODEL = load_model()
SHAPES: dict[str, Any] = MODEL["shapes"]


def violations(shape_name: str, value: Any, path: str = "$") -> list[str]:
    shape = SHAPES[shape_name]
    kind = shape["type"]
    found: list[str] = []
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        found += [f"{path}.{m}: required" for m in shape.get("required", []) if m not in value]
        for key, item in value.items():
            member = shape["members"].get(key)
            if member is None:
                found.append(f"{path}.{key}: not a member of {shape_name}")
            else:
                found += violations(member["shape"], item, f"{path}.{key}")
    elif kind == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        if len(value) > shape.get("max", len(value)):
            found.append(f"{path}: more than {shape['max']} items")
        for i, item in enumerate(value):
            found += violations(shape["member"]["shape"], item, f"{path}[{i}]")
    elif kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        for key, item in value.items():
            found += violations(shape["key"]["shape"], key, f"{path}<key>")
            found += violations(shape["value"]["shape"], item, f"{path}.{key}")
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string, got {value!r}"]
        if "enum" in shape and value not in shape["enum"]:
            found.append(f"{path}: {value!r} not in enum")
        if not shape.get("min", 0) <= len(value) <= shape.get("max", len(value)):
            found.append(f"{path}: length {len(value)} out of range")
        if "pattern" in shape and not re.fullmatch(shape["pattern"], value):
            found.append(f"{path}: {value!r} does not match {shape['pattern']}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            found.append(f"{path}: expected an integer")
    elif kind == "boolean":
        if not isinstance(value, bool):
            found.append(f"{path}: expected a boolean")
    # rest-json sends timestamps as epoch seconds, a JSON number.
    elif kind == "timestamp" and (isinstance(value, bool) or not isinstance(value, int | float)):
        found.append(f"{path}: expected epoch seconds, got {value!r}")
    return found


def output_shape(op: str) -> str:
    return str(MODEL["operations"][op]["output"]["shape"])


def test_the_validator_catches_what_it_should() -> None:
    bad = {"jobSummary": {"jobId": 7, "status": "DONE", "startTime": "yesterday"}}
    found = violations(output_shape("StartJob"), bad)
    assert "$.jobSummary.jobArn: required" in found
    assert any("jobId: expected a string" in f for f in found)
    assert any("'DONE' not in enum" in f for f in found)
    assert any("startTime: expected epoch seconds" in f for f in found)


async def test_raw_answers_match_the_model_output_shapes(
    fleet: Fleet, clock: ManualClock, sim: Simulator
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    fleet.add_branch(app_id, "feature/x")
    fleet.add_branch(app_id, "release/1")
    failed = fleet.start_job(app_id, "main", outcome="FAILED", fail_step="VERIFY", reason="502")
    fleet.start_job(app_id, "feature/x", outcome="CANCELLED")
    clock.advance(60)
    running = fleet.start_job(app_id, "feature/x")
    clock.advance(2.5)
    branch = quote("feature/x", safe="")
    base = f"{sim.url}/apps/{app_id}/branches"
    requests: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("ListApps", "GET", f"{sim.url}/apps", None),
        ("GetApp", "GET", f"{sim.url}/apps/{app_id}", None),
        ("ListBranches", "GET", f"{base}", None),
        ("GetBranch", "GET", f"{base}/{branch}", None),
        ("ListJobs", "GET", f"{base}/{branch}/jobs", None),
        ("GetJob", "GET", f"{base}/main/jobs/{failed}", None),
        ("GetJob", "GET", f"{base}/{branch}/jobs/1", None),
        ("GetJob", "GET", f"{base}/{branch}/jobs/{running}", None),
        ("StopJob", "DELETE", f"{base}/{branch}/jobs/{running}/stop", None),
        ("StartJob", "POST", f"{base}/main/jobs", {"jobType": "RELEASE"}),
        ("CreateDeployment", "POST", f"{base}/{branch}/deployments", {"fileMap": {"a": "x"}}),
        (
            "StartDeployment",
            "POST",
            f"{base}/release%2F1/deployments/start",
            {"sourceUrl": "https://example.com/site.zip", "sourceUrlType": "ZIP"},
        ),
    ]
    async with aiohttp.ClientSession() as http:
        for op, method, url, body in requests:
            async with http.request(method, url, json=body) as resp:
                assert resp.status == 200, (op, await resp.text())
                answer = await resp.json()
            assert violations(output_shape(op), answer) == [], op


@pytest.mark.parametrize(
    ("method", "path", "code", "status"),
    [
        ("GET", "/apps/dnothere", "NotFoundException", 404),
        ("GET", "/apps?maxResults=500", "BadRequestException", 400),
    ],
)
async def test_errors_carry_the_type_header_and_a_message_body(
    sim: Simulator, method: str, path: str, code: str, status: int
) -> None:
    async with aiohttp.ClientSession() as http, http.request(method, sim.url + path) as resp:
        assert resp.status == status == SHAPES[code]["error"]["httpStatusCode"]
        assert resp.headers["x-amzn-ErrorType"] == code
        assert violations(code, await resp.json()) == []
