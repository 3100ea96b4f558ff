"""The simulator's HTTP face: Amplify's rest-json protocol over aiohttp, on loopback.

Routes, input locations, limits and error statuses are read from botocore's own service model,
so the wire stays what a real client expects; this module turns `Fleet` objects into the
model's output shapes, answers errors the rest-json way and streams deployment uploads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from aiohttp import web
from botocore.loaders import create_loader
from multidict import MultiMapping

from monitor import log
from monitor.simulator.faults import Faults
from monitor.simulator.fleet import ApiError, App, BadRequest, Branch, Fleet, Job, NotFound

_log = log.get(__name__)

Json = dict[str, Any]
# Upload and log URLs are ours, not Amplify's (they stand in for S3 presigned URLs).
_EXTRA_ROUTES = (
    ("PUT", "/_upload/{token}", "Upload"),
    ("GET", "/_logs/{appId}/{branchName}/{jobId}/{stepName}", "GetLog"),
)
_CHUNK = 64 * 1024
T = TypeVar("T")


@functools.cache
def load_model() -> Json:
    """botocore's Amplify service model (the reference for paths, shapes and errors).
    Cached: parsing it costs a third of a second, and every test starts a simulator. Read-only."""
    model: Json = create_loader().load_service_model("amplify", "service-2")
    return model


class _Route:
    def __init__(self, op: str, method: str, uri: str) -> None:
        self.op, self.method = op, method
        self.parts = tuple(uri.strip("/").split("/"))

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None:
        if method != self.method or len(segments) != len(self.parts):
            return None
        labels: dict[str, str] = {}
        for part, seg in zip(self.parts, segments, strict=True):
            if part.startswith("{"):
                if not seg:
                    return None
                labels[part.strip("{}")] = seg
            elif part != seg:
                return None
        return labels


def _validation(name: str, value: object, constraint: str) -> BadRequest:
    return BadRequest(
        f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy"
        f" constraint: {constraint}"
    )


def _encode_token(kind: str, value: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def _decode_token(kind: str, token: str) -> int:
    try:
        got_kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if got_kind == kind:
            return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise BadRequest("Invalid nextToken.")


class Simulator:
    """Serves a `Fleet` as the Amplify API, subject to `Faults`, inside the caller's loop."""

    def __init__(self, fleet: Fleet | None = None, faults: Faults | None = None) -> None:
        self.fleet = fleet if fleet is not None else Fleet()
        self.faults = faults if faults is not None else Faults()
        self.counts: Counter[str] = Counter()
        self.url = ""
        self._model = load_model()
        self._shapes: dict[str, Json] = self._model["shapes"]
        self._handlers: dict[str, Callable[[Json, str], Json]] = {
            "ListApps": self._list_apps,
            "GetApp": self._get_app,
            "ListBranches": self._list_branches,
            "GetBranch": self._get_branch,
            "ListJobs": self._list_jobs,
            "GetJob": self._get_job,
            "StartJob": self._start_job,
            "StopJob": self._stop_job,
            "CreateDeployment": self._create_deployment,
            "StartDeployment": self._start_deployment,
        }
        ops = self._model["operations"]
        self._routes = [
            _Route(op, ops[op]["http"]["method"], ops[op]["http"]["requestUri"])
            for op in self._handlers
        ] + [_Route(op, method, uri) for method, uri, op in _EXTRA_ROUTES]
        self._runner: web.AppRunner | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 = any free port) and return the endpoint URL."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}"
        _log.info("simulator_started", url=self.url)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def reset_counts(self) -> None:
        self.counts.clear()

    # -- dispatch -------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        # Split the raw path before decoding: a branch name's "/" arrives as %2F.
        segments = [unquote(s) for s in request.rel_url.raw_path.strip("/").split("/")]
        for route in self._routes:
            labels = route.match(request.method, segments)
            if labels is not None:
                break
        else:
            return _error(404, NotFound(f"No route for {request.method} {request.path}"))
        op = route.op
        self.counts[op] += 1
        try:
            verdict = self.faults.check(op)
            if verdict.delay:
                await asyncio.sleep(verdict.delay)
            if verdict.error is not None:
                raise verdict.error
            if op == "Upload":
                return await self._upload(request, labels["token"])
            if op == "GetLog":
                return self._get_log(labels)
            params = self._parse(op, labels, request.query, await request.read())
            base = str(request.url.origin())
            return web.json_response(self._handlers[op](params, base), headers=_request_id())
        except ApiError as exc:
            status = self._shapes[exc.code]["error"]["httpStatusCode"]
            _log.debug("simulator_error", op=op, code=exc.code, message=exc.message)
            return _error(status, exc)
        except Exception as exc:
            _log.exception("simulator_crash", op=op)
            return _error(500, ApiError(f"Simulator bug: {exc!r}"))

    def _parse(self, op: str, labels: dict[str, str], query: MultiMapping[str], raw: bytes) -> Json:
        """Gather input members from path, query and body as the model places them."""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise BadRequest("Request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise BadRequest("Request body must be a JSON object.")
        shape = self._shapes[self._model["operations"][op]["input"]["shape"]]
        sources: dict[str | None, Mapping[str, Any]] = {
            "uri": labels,
            "querystring": query,
            None: body,
        }
        params: Json = {}
        for name, member in shape["members"].items():
            # Header members exist in the model but none of the served operations uses one.
            source = sources.get(member.get("location"), {})
            value = source.get(member.get("locationName", name))
            if value is not None:
                params[name] = self._coerce(name, self._shapes[member["shape"]], value)
        for name in shape.get("required", []):
            if name not in params:
                raise _validation(name, None, "Member must not be null")
        return params

    def _coerce(self, name: str, shape: Json, value: Any) -> Any:
        kind = shape["type"]
        if kind in ("integer", "long"):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise _validation(name, value, "Member must be a number") from None
            if value > shape.get("max", value):
                limit = shape["max"]
                raise _validation(
                    name, value, f"Member must have value less than or equal to {limit}"
                )
            if value < shape.get("min", value):
                limit = shape["min"]
                raise _validation(
                    name, value, f"Member must have value greater than or equal to {limit}"
                )
        elif kind == "timestamp":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _validation(name, value, "Member must be a timestamp")
            value = float(value)
        elif kind == "string":
            if not isinstance(value, str):
                raise _validation(name, value, "Member must be a string")
            if "enum" in shape and value not in shape["enum"]:
                allowed = ", ".join(shape["enum"])
                raise _validation(name, value, f"Member must satisfy enum value set: [{allowed}]")
            if len(value) > shape.get("max", len(value)):
                limit = shape["max"]
                raise _validation(
                    name, value, f"Member must have length less than or equal to {limit}"
                )
        return value

    def _page_size(self, op: str, params: Json) -> int:
        # 0 or absent: the model's maximum (the real default is undocumented).
        shape = self._model["operations"][op]["input"]["shape"]
        limit = int(self._shapes[self._shapes[shape]["members"]["maxResults"]["shape"]]["max"])
        return int(params.get("maxResults") or limit)

    # -- handlers -------------------------------------------------------------------------

    def _list_apps(self, p: Json, base: str) -> Json:
        apps = self.fleet.apps()
        page, token = _page(apps, lambda a: a.seq, "apps", p, self._page_size("ListApps", p))
        return _with_token({"apps": [self._app(a) for a in page]}, token)

    def _get_app(self, p: Json, base: str) -> Json:
        return {"app": self._app(self.fleet.app(p["appId"]))}

    def _list_branches(self, p: Json, base: str) -> Json:
        app = self.fleet.app(p["appId"])
        size = self._page_size("ListBranches", p)
        page, token = _page(list(app.branches.values()), lambda b: b.seq, "branches", p, size)
        return _with_token({"branches": [self._branch(app, b) for b in page]}, token)

    def _get_branch(self, p: Json, base: str) -> Json:
        app = self.fleet.app(p["appId"])
        return {"branch": self._branch(app, self.fleet.branch(app.app_id, p["branchName"]))}

    def _list_jobs(self, p: Json, base: str) -> Json:
        app_id, name = p["appId"], p["branchName"]
        jobs = self.fleet.branch(app_id, name).jobs[::-1]  # newest first, as Amplify lists them
        size = self._page_size("ListJobs", p)
        page, token = _page(jobs, lambda j: -j.number, "jobs", p, size)
        now = self.fleet.now()
        summaries = [self._summary(app_id, name, j, now) for j in page]
        return _with_token({"jobSummaries": summaries}, token)

    def _get_job(self, p: Json, base: str) -> Json:
        app_id, name = p["appId"], p["branchName"]
        job = self.fleet.job(app_id, name, p["jobId"])
        now = self.fleet.now()
        steps = []
        for step in job.steps(now):
            log_url = "/".join([base, "_logs", app_id, quote(name, safe=""), job.job_id, step.name])
            wire: Json = {
                "stepName": step.name,
                "startTime": step.start,
                "status": step.status,
                "endTime": step.end,
                "logUrl": log_url,
            }
            if step.reason:
                wire["statusReason"] = step.reason
            steps.append(wire)
        return {"job": {"summary": self._summary(app_id, name, job, now), "steps": steps}}

    def _start_job(self, p: Json, base: str) -> Json:
        job = self.fleet.api_start_job(
            p["appId"],
            p["branchName"],
            p["jobType"],
            retry_of=p.get("jobId"),
            commit_id=p.get("commitId"),
            commit_message=p.get("commitMessage"),
            commit_time=p.get("commitTime"),
        )
        return {"jobSummary": self._summary(p["appId"], p["branchName"], job, self.fleet.now())}

    def _stop_job(self, p: Json, base: str) -> Json:
        job = self.fleet.stop_job(p["appId"], p["branchName"], p["jobId"])
        return {"jobSummary": self._summary(p["appId"], p["branchName"], job, self.fleet.now())}

    def _create_deployment(self, p: Json, base: str) -> Json:
        files = sorted(p.get("fileMap") or {})
        job, tokens = self.fleet.create_deployment(p["appId"], p["branchName"], files)
        urls = {name: f"{base}/_upload/{token}" for name, token in tokens.items()}
        zip_url = urls.pop("")
        return {"jobId": job.job_id, "fileUploadUrls": urls, "zipUploadUrl": zip_url}

    def _start_deployment(self, p: Json, base: str) -> Json:
        job = self.fleet.start_deployment(
            p["appId"],
            p["branchName"],
            job_id=p.get("jobId"),
            source_url=p.get("sourceUrl"),
            source_url_type=p.get("sourceUrlType"),
        )
        return {"jobSummary": self._summary(p["appId"], p["branchName"], job, self.fleet.now())}

    async def _upload(self, request: web.Request, token: str) -> web.StreamResponse:
        upload = self.fleet.upload_target(token)
        digest, size = hashlib.sha256(), 0
        # Streamed: deployment zips can be large, and the test for it sends a few MiB.
        async for chunk in request.content.iter_chunked(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        upload.size, upload.sha256 = size, digest.hexdigest()
        return web.Response(status=200, headers={"ETag": f'"{upload.sha256[:32]}"'})

    def _get_log(self, labels: dict[str, str]) -> web.StreamResponse:
        job = self.fleet.job(labels["appId"], labels["branchName"], labels["jobId"])
        for step in job.steps(self.fleet.now()):
            if step.name == labels["stepName"]:
                text = f"# {step.name} {step.status}\n{step.reason}\n"
                return web.Response(text=text, content_type="text/plain")
        raise NotFound(f"No log for step {labels['stepName']}.")

    # -- wire shapes ----------------------------------------------------------------------

    def _arn(self, resource: str) -> str:
        return f"arn:aws:amplify:{self.fleet.region}:{self.fleet.account_id}:{resource}"

    def _app(self, app: App) -> Json:
        wire: Json = {
            "appId": app.app_id,
            "appArn": self._arn(f"apps/{app.app_id}"),
            "name": app.name,
            "description": "",
            "repository": app.repository,
            "platform": app.platform,
            "createTime": app.created_at,
            "updateTime": app.created_at,
            "environmentVariables": {},
            "defaultDomain": f"{app.app_id}.amplifyapp.com",
            "enableBranchAutoBuild": True,
            "enableBasicAuth": False,
            "tags": {},
        }
        prod = next((b for b in app.branches.values() if b.stage == "PRODUCTION"), None)
        if prod is not None:
            wire["productionBranch"] = {
                "branchName": prod.name,
                "lastDeployTime": prod.updated_at(),
            }
        return wire

    def _branch(self, app: App, b: Branch) -> Json:
        latest = b.latest
        return {
            "branchArn": self._arn(f"apps/{app.app_id}/branches/{b.name}"),
            "branchName": b.name,
            "description": "",
            "stage": b.stage,
            "displayName": b.name.replace("/", "-"),
            "enableNotification": False,
            "createTime": b.created_at,
            "updateTime": b.updated_at(),
            "environmentVariables": {},
            "enableAutoBuild": True,
            "customDomains": [],
            "framework": b.framework,
            # Both are required strings; a branch that never built reports "" and "0".
            "activeJobId": latest.job_id if latest else "",
            "totalNumberOfJobs": str(len(b.jobs)),
            "enableBasicAuth": False,
            "ttl": "5",
            "enablePullRequestPreview": False,
            "tags": {},
        }

    def _summary(self, app_id: str, branch: str, job: Job, now: float) -> Json:
        wire: Json = {
            "jobArn": self._arn(f"apps/{app_id}/branches/{branch}/jobs/{job.job_id}"),
            "jobId": job.job_id,
            "commitId": job.commit_id,
            "commitMessage": job.commit_message,
            "commitTime": job.commit_time,
            "startTime": job.start_time,
            "status": job.status(now),
            "jobType": job.job_type,
        }
        end = job.end_time(now)
        if end is not None:
            wire["endTime"] = end
        if job.source_url:
            wire["sourceUrl"], wire["sourceUrlType"] = job.source_url, job.source_url_type
        return wire


def _page(
    items: list[T], key: Callable[[T], int], kind: str, params: Json, size: int
) -> tuple[list[T], str | None]:
    """Keyset pagination: the token names the last key served, so items added meanwhile
    (new jobs at the head of ListJobs) neither shift nor repeat later pages."""
    token = params.get("nextToken")
    if token:
        after = _decode_token(kind, token)
        items = [i for i in items if key(i) > after]
    page = items[:size]
    more = len(items) > size
    return page, _encode_token(kind, key(page[-1])) if more and page else None


def _with_token(body: Json, token: str | None) -> Json:
    if token is not None:
        body["nextToken"] = token
    return body


def _request_id() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}


def _error(status: int, exc: ApiError) -> web.Response:
    # rest-json: botocore reads the code from x-amzn-ErrorType, the message from the body.
    headers = {**_request_id(), "x-amzn-ErrorType": exc.code}
    return web.json_response({"message": exc.message}, status=status, headers=headers)
