"""Configuration: TOML file -> validated, frozen Settings.

Owns `${VAR}` expansion, the rule that unknown keys are errors, secret masking for display, and
turning every validation problem into one line that names the file and the key.
"""

from __future__ import annotations

import json
import os
import re
import string
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

CONFIG_ENV = "AMPLIFY_MONITOR_CONFIG"
DEFAULT_ALERT_ON = ("FAILED", "CANCELLED")


class ConfigError(Exception):
    """A config problem, already phrased for a person: `file: key: what is wrong`."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveSeconds = Annotated[float, Field(gt=0)]


class AwsSettings(_Section):
    region: str = "us-east-1"
    profile: str | None = None
    endpoint_url: str | None = None
    # Per HTTP attempt: a hung answer holds one worker this long at most, then is an error.
    connect_timeout_seconds: PositiveSeconds = 5.0
    read_timeout_seconds: PositiveSeconds = 30.0


class Target(_Section):
    app_id: str = "*"
    branches: tuple[str, ...] = ("*",)


class PollSettings(_Section):
    interval_seconds: PositiveSeconds = 60.0
    active_interval_seconds: PositiveSeconds = 10.0
    discovery_interval_seconds: PositiveSeconds = 300.0
    max_concurrency: Annotated[int, Field(ge=1, le=256)] = 16
    # Our own pacing on top of botocore's retries: a steady ceiling on calls per second.
    max_requests_per_second: Annotated[float, Field(gt=0)] = 20.0


def _check_statuses(values: tuple[str, ...]) -> tuple[str, ...]:
    allowed = {"FAILED", "CANCELLED", "SUCCEED"}
    for value in values:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {sorted(allowed)}")
    return values


class AlertSettings(_Section):
    on: tuple[str, ...] = DEFAULT_ALERT_ON
    recovery: bool = True
    digest_threshold: Annotated[int, Field(ge=1)] = 5
    digest_window_seconds: PositiveSeconds = 30.0

    _statuses = field_validator("on")(_check_statuses)


# The fields a route's `title` template may name (Python str.format syntax).
TITLE_FIELDS = frozenset({"app", "branch", "job_id", "status", "job_type"})


def _check_title(template: str) -> str:
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"not a valid template: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TITLE_FIELDS or spec or conversion:
            raise ValueError(
                f"unknown field {{{name}}}: use {', '.join('{' + f + '}' for f in sorted(TITLE_FIELDS))}"
                if name not in TITLE_FIELDS
                else f"{{{name}}} takes no format spec or conversion"
            )
    return template


class SlackRoute(_Section):
    app_id: str | None = None
    app_name: str | None = None
    branches: tuple[str, ...] = ("*",)
    channel: str
    mention: str | None = None
    on: tuple[str, ...] | None = None
    # Bot mode: one living message per job, posted when it starts and updated as it moves.
    notify_start: StrictBool = False
    # The first line of this route's messages, e.g. "{app} {branch}: job {job_id} {status}".
    title: Annotated[str, Field(min_length=1, max_length=150)] | None = None

    @field_validator("on")
    @classmethod
    def _route_statuses(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else _check_statuses(value)

    _title = field_validator("title")(lambda value: None if value is None else _check_title(value))


class SlackSettings(_Section):
    token: SecretStr | None = None
    token_file: Path | None = None
    channel: str | None = None
    webhook_url: SecretStr | None = None
    base_url: str = "https://slack.com/api/"
    routes: tuple[SlackRoute, ...] = ()

    @model_validator(mode="after")
    def _one_mode(self) -> SlackSettings:
        has_bot = self.token is not None or self.token_file is not None
        if self.token is not None and self.token_file is not None:
            raise ValueError("set either token or token_file, not both")
        if has_bot and self.webhook_url is not None:
            raise ValueError("set either token (+ channel) or webhook_url, not both")
        if not has_bot and self.webhook_url is None:
            raise ValueError("needs token (or token_file) + channel, or webhook_url")
        if has_bot and self.channel is None:
            raise ValueError("channel is required with token")
        if self.token_file is not None and not self.token_file.is_file():
            raise ValueError(f"token_file {self.token_file} does not exist or is not a file")
        return self

    def bot_token(self) -> str | None:
        """The bot token, read from token_file at call time so a rotated secret is picked up."""
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            return self.token_file.read_text(encoding="utf-8").strip()
        return None


class MetricsSettings(_Section):
    listen: str = "127.0.0.1:9853"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not host:port")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class StateSettings(_Section):
    backend: Literal["sqlite", "redis"] = "sqlite"
    path: Path = Path("amplify-monitor.db")
    redis_url: SecretStr | None = None
    redis_prefix: str = "amplify-monitor"

    @model_validator(mode="after")
    def _redis_needs_url(self) -> StateSettings:
        if self.backend == "redis" and self.redis_url is None:
            raise ValueError("redis_url is required with backend = 'redis'")
        return self


_QUEUE_URL = re.compile(
    r"^https?://(?P<host>[^/]+)/(?P<account>[0-9]{12})/(?P<name>[A-Za-z0-9_-]{1,80}(\.fifo)?)$"
)
# sqs.<region>.amazonaws.com today; <region>.queue.amazonaws.com in older URLs.
_SQS_HOST = re.compile(
    r"^(sqs\.(?P<region>[a-z0-9-]+)|(?P<legacy>[a-z0-9-]+)\.queue)\.amazonaws\.com(\.cn)?$"
)


class EventsSettings(_Section):
    """Push mode: Amplify's EventBridge events, delivered to an SQS queue."""

    sqs_queue_url: str
    endpoint_url: str | None = None
    region: str | None = None

    @field_validator("sqs_queue_url")
    @classmethod
    def _queue_url(cls, value: str) -> str:
        if not _QUEUE_URL.match(value):
            raise ValueError(
                f"{value!r} is not an SQS queue URL "
                "(https://sqs.<region>.amazonaws.com/<account id>/<queue name>)"
            )
        return value

    @property
    def queue_name(self) -> str:
        return self.sqs_queue_url.rsplit("/", 1)[1]

    def queue_region(self, default: str) -> str:
        """`region` if set, else the region in the queue URL's host, else `default`."""
        if self.region:
            return self.region
        match = _QUEUE_URL.match(self.sqs_queue_url)
        host = _SQS_HOST.match(match.group("host")) if match else None
        if host is None:
            return default
        return str(host.group("region") or host.group("legacy"))


class LogSettings(_Section):
    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class ClusterSettings(_Section):
    """Replicas sharing the fleet (read only with the Redis backend)."""

    # How long a replica's claim on an app lasts without renewal (renewed at a third of it).
    lease_seconds: Annotated[float, Field(ge=1)] = 15.0
    replica_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class Settings(_Section):
    aws: AwsSettings = AwsSettings()
    targets: tuple[Target, ...] = ()
    poll: PollSettings = PollSettings()
    alerts: AlertSettings = AlertSettings()
    slack: SlackSettings | None = None
    metrics: MetricsSettings = MetricsSettings()
    state: StateSettings = StateSettings()
    events: EventsSettings | None = None
    cluster: ClusterSettings = ClusterSettings()
    log: LogSettings = LogSettings()

    def effective_targets(self) -> tuple[Target, ...]:
        """No targets at all means every app and branch in the region."""
        return self.targets or (Target(),)

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data, every secret shown as '**********'."""
        data: dict[str, Any] = json.loads(self.model_dump_json())
        return data


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, path: str, env: dict[str, str]) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            return env[name]

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}" if path else k, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    message = message.removeprefix("Value error, ")
    return f"{_loc(loc)}: {message}"


def parse(
    data: dict[str, Any], source: str = "<config>", env: dict[str, str] | None = None
) -> Settings:
    """Validate already-parsed TOML data; raise ConfigError with one line naming the key."""
    try:
        expanded = _expand(data, "", dict(os.environ) if env is None else env)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        return Settings.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc)}") from None


def load(path: str | Path, env: dict[str, str] | None = None) -> Settings:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, str(path), env)


def resolve_path(arg: str | None) -> str:
    """The config path from the command line, else from AMPLIFY_MONITOR_CONFIG."""
    if arg:
        return arg
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return from_env
    raise ConfigError(f"no config file: pass --config PATH or set {CONFIG_ENV}")
