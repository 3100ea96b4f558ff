"""Config: TOML -> validated, frozen Settings; `${VAR}` expansion, strict keys, secret masking,
and errors that are one line naming the file and the key."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from monitor import config
from monitor.config import ConfigError, Settings, Target

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"
SOURCE = "monitor.toml"


def error_of(data: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        config.parse(data, SOURCE, env={} if env is None else env)
    return str(caught.value)


def write(tmp_path: Path, text: str, name: str = "monitor.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the example and the defaults --------------------------------------------------------------


def test_example_config_loads() -> None:
    if not EXAMPLE.exists():
        pytest.skip("config.example.toml not written yet")
    text = EXAMPLE.read_text(encoding="utf-8")
    # Give every ${VAR} it mentions (even in comments) a value, so the test needs no real env.
    env = {name: f"value-of-{name}" for name in re.findall(r"\$\{(\w+)\}", text)}

    settings = config.load(EXAMPLE, env=env)

    assert isinstance(settings, Settings)
    assert settings.effective_targets()


def test_empty_config_gives_the_documented_defaults() -> None:
    settings = config.parse({}, SOURCE, env={})

    assert settings.aws.region == "us-east-1"
    assert settings.aws.profile is None and settings.aws.endpoint_url is None
    assert settings.targets == ()
    assert settings.effective_targets() == (Target(app_id="*", branches=("*",)),)
    assert settings.poll.interval_seconds == 60
    assert settings.poll.active_interval_seconds == 10
    assert settings.poll.discovery_interval_seconds == 300
    assert settings.poll.max_concurrency == 16
    assert settings.alerts.on == ("FAILED", "CANCELLED")
    assert settings.alerts.recovery is True
    assert settings.slack is None
    assert settings.metrics.listen == "127.0.0.1:9853"
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 9853)
    assert settings.state.backend == "sqlite"
    assert settings.state.path == Path("amplify-monitor.db")
    assert (settings.log.format, settings.log.level) == ("json", "info")


def test_issue_config_keys_are_read() -> None:
    text = """
[aws]
region = "eu-west-1"
profile = "prod"
endpoint_url = "http://127.0.0.1:4566"

[[targets]]
app_id = "d1abc"
branches = ["main", "release/*"]

[poll]
interval_seconds = 30
active_interval_seconds = 5
discovery_interval_seconds = 120
max_concurrency = 4

[alerts]
on = ["FAILED"]

[slack]
channel = "#deploys"
token = "xoxb-1"
base_url = "http://127.0.0.1:9999/api/"

[metrics]
listen = "0.0.0.0:9100"

[state]
path = "/var/lib/amplify-monitor/state.db"

[log]
format = "console"
level = "debug"
"""
    settings = config.parse(tomllib.loads(text), SOURCE, env={})

    assert settings.aws.region == "eu-west-1" and settings.aws.profile == "prod"
    assert settings.effective_targets() == (Target(app_id="d1abc", branches=("main", "release/*")),)
    assert settings.poll.max_concurrency == 4
    assert settings.alerts.on == ("FAILED",)
    assert settings.slack is not None and settings.slack.channel == "#deploys"
    assert settings.slack.bot_token() == "xoxb-1"
    assert settings.metrics.port == 9100
    assert settings.state.path == Path("/var/lib/amplify-monitor/state.db")
    assert settings.log.level == "debug"


def test_settings_are_frozen() -> None:
    settings = config.parse({}, SOURCE, env={})

    with pytest.raises(ValidationError):
        settings.poll.interval_seconds = 1


# --- ${VAR} expansion --------------------------------------------------------------------------


def test_set_variables_are_expanded_anywhere_in_strings_lists_and_tables() -> None:
    data = {
        "aws": {"region": "${REGION}", "endpoint_url": "http://${HOST}:${PORT}/"},
        "targets": [{"app_id": "${APP}", "branches": ["main", "${BRANCH}"]}],
        "slack": {"token": "${SLACK_BOT_TOKEN}", "channel": "#c"},
    }
    env = {
        "REGION": "ap-south-1",
        "HOST": "127.0.0.1",
        "PORT": "4566",
        "APP": "d9",
        "BRANCH": "release/*",
        "SLACK_BOT_TOKEN": "xoxb-from-env",
    }

    settings = config.parse(data, SOURCE, env=env)

    assert settings.aws.region == "ap-south-1"
    assert settings.aws.endpoint_url == "http://127.0.0.1:4566/"
    assert settings.targets == (Target(app_id="d9", branches=("main", "release/*")),)
    assert settings.slack is not None and settings.slack.bot_token() == "xoxb-from-env"


def test_expanded_variable_feeds_a_numeric_setting() -> None:
    settings = config.parse(
        {"poll": {"interval_seconds": "${EVERY}"}}, SOURCE, env={"EVERY": "2.5"}
    )

    assert settings.poll.interval_seconds == 2.5


def test_only_braced_variables_are_expanded() -> None:
    settings = config.parse({"aws": {"profile": "$PROFILE"}}, SOURCE, env={"PROFILE": "x"})

    assert settings.aws.profile == "$PROFILE"


@pytest.mark.parametrize(
    ("data", "key", "var"),
    [
        pytest.param({"slack": {"token": "${SLACK_BOT_TOKEN}"}}, "slack.token", "SLACK_BOT_TOKEN",
                     id="nested_key"),
        pytest.param({"aws": {"endpoint_url": "http://${SIM_HOST}:1/"}}, "aws.endpoint_url",
                     "SIM_HOST", id="inside_a_longer_string"),
        pytest.param({"targets": [{"branches": ["main", "${BR}"]}]}, "targets[0].branches[1]",
                     "BR", id="inside_a_list"),
    ],
)  # fmt: skip
def test_unset_variable_is_an_error_naming_key_and_variable(
    data: dict[str, Any], key: str, var: str
) -> None:
    message = error_of(data, env={"OTHER": "1"})

    assert message == f"{SOURCE}: {key}: environment variable {var} is not set"


def test_without_env_argument_the_process_environment_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AMPLIFY_TEST_REGION", "sa-east-1")
    monkeypatch.delenv("AMPLIFY_TEST_UNSET", raising=False)

    settings = config.parse({"aws": {"region": "${AMPLIFY_TEST_REGION}"}}, SOURCE)
    with pytest.raises(ConfigError, match="AMPLIFY_TEST_UNSET"):
        config.parse({"aws": {"region": "${AMPLIFY_TEST_UNSET}"}}, SOURCE)

    assert settings.aws.region == "sa-east-1"


def test_load_passes_env_through(tmp_path: Path) -> None:
    path = write(tmp_path, '[aws]\nregion = "${R}"\n')

    assert config.load(path, env={"R": "us-west-2"}).aws.region == "us-west-2"


# --- unknown keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        pytest.param({"bogus": 1}, "bogus", id="top_level"),
        pytest.param({"poll": {"interval": 5}}, "poll.interval", id="poll"),
        pytest.param({"aws": {"regoin": "x"}}, "aws.regoin", id="aws"),
        pytest.param({"slack": {"webhook_url": "https://h", "chanel": "#c"}}, "slack.chanel",
                     id="optional_slack"),
        pytest.param({"targets": [{"app_id": "a"}, {"branch": "main"}]}, "targets[1].branch",
                     id="array_of_tables"),
        pytest.param({"slack": {"webhook_url": "https://h", "routes": [{"channel": "#c", "x": 1}]}},
                     "slack.routes[0].x", id="deeply_nested"),
    ],
)  # fmt: skip
def test_unknown_key_is_an_error_naming_the_dotted_key(data: dict[str, Any], key: str) -> None:
    assert error_of(data) == f"{SOURCE}: {key}: unknown key"


# --- bad types and values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        pytest.param({"poll": {"interval_seconds": 0}}, "poll.interval_seconds", "greater than 0",
                     id="interval_zero"),
        pytest.param({"poll": {"interval_seconds": -5}}, "poll.interval_seconds", "greater than 0",
                     id="interval_negative"),
        pytest.param({"poll": {"active_interval_seconds": 0.0}}, "poll.active_interval_seconds",
                     "greater than 0", id="active_interval_zero"),
        pytest.param({"poll": {"discovery_interval_seconds": -1}},
                     "poll.discovery_interval_seconds", "greater than 0", id="discovery_negative"),
        pytest.param({"poll": {"interval_seconds": "soon"}}, "poll.interval_seconds", "number",
                     id="interval_not_a_number"),
        pytest.param({"poll": {"max_concurrency": 0}}, "poll.max_concurrency", "greater than or",
                     id="max_concurrency_zero"),
        pytest.param({"poll": {"max_concurrency": 2.5}}, "poll.max_concurrency", "integer",
                     id="max_concurrency_fraction"),
        pytest.param({"alerts": {"on": ["FAILED", "RUNNING"]}}, "alerts.on", "'RUNNING'",
                     id="alerts_on_unfinished_status"),
        pytest.param({"alerts": {"on": ["failed"]}}, "alerts.on", "'failed'",
                     id="alerts_on_wrong_case"),
        pytest.param({"alerts": {"on": "FAILED"}}, "alerts.on", "tuple",
                     id="alerts_on_not_a_list"),
        pytest.param({"slack": {"webhook_url": "https://h", "routes": [{"channel": "#c",
                     "on": ["QUEUED"]}]}}, "slack.routes[0].on", "'QUEUED'",
                     id="route_on_bad_status"),
        pytest.param({"slack": {"webhook_url": "https://h", "routes": [{"channel": "#c"}, {
                     "channel": "#d", "title": "{app} {commit}"}]}}, "slack.routes[1].title",
                     "unknown field {commit}", id="route_title_unknown_field"),
        pytest.param({"slack": {"webhook_url": "https://h", "routes": [{"channel": "#c",
                     "title": "{app!r}"}]}}, "slack.routes[0].title", "no format spec",
                     id="route_title_conversion"),
        pytest.param({"slack": {"webhook_url": "https://h", "routes": [{"channel": "#c",
                     "title": "{app"}]}}, "slack.routes[0].title", "not a valid template",
                     id="route_title_unclosed"),
        pytest.param({"slack": {"webhook_url": "https://h", "routes": [{"channel": "#c",
                     "notify_start": "yes"}]}}, "slack.routes[0].notify_start", "boolean",
                     id="route_notify_start_not_boolean"),
        pytest.param({"metrics": {"listen": "localhost"}}, "metrics.listen", "host:port",
                     id="listen_without_port"),
        pytest.param({"metrics": {"listen": ":9853"}}, "metrics.listen", "host:port",
                     id="listen_without_host"),
        pytest.param({"metrics": {"listen": "localhost:http"}}, "metrics.listen", "host:port",
                     id="listen_port_not_numeric"),
        pytest.param({"metrics": {"listen": "localhost:70000"}}, "metrics.listen", "host:port",
                     id="listen_port_out_of_range"),
        pytest.param({"slack": {"token": "xoxb-1"}}, "slack", "channel is required",
                     id="slack_token_without_channel"),
        pytest.param({"slack": {"token_file": "/run/t"}}, "slack", "channel is required",
                     id="slack_token_file_without_channel"),
        pytest.param({"slack": {"token": "xoxb-1", "channel": "#c", "webhook_url": "https://h"}},
                     "slack", "not both", id="slack_token_and_webhook"),
        pytest.param({"slack": {"token": "x", "token_file": "/run/t", "channel": "#c"}},
                     "slack", "not both", id="slack_token_and_token_file"),
        pytest.param({"slack": {"channel": "#c"}}, "slack", "webhook_url",
                     id="slack_channel_alone"),
        pytest.param({"state": {"backend": "redis"}}, "state", "redis_url",
                     id="redis_without_url"),
        pytest.param({"state": {"backend": "postgres"}}, "state.backend", "sqlite",
                     id="unknown_backend"),
        pytest.param({"log": {"level": "verbose"}}, "log.level", "debug",
                     id="unknown_log_level"),
        pytest.param({"targets": {"app_id": "a"}}, "targets", "tuple",
                     id="targets_table_instead_of_array"),
    ],
)  # fmt: skip
def test_bad_value_is_an_error_naming_the_key(data: dict[str, Any], key: str, words: str) -> None:
    message = error_of(data)

    assert message.startswith(f"{SOURCE}: {key}: "), message
    assert words in message


@pytest.mark.parametrize("seconds", [0.5, 2.5, 0.001])
def test_fractional_intervals_are_accepted(seconds: float) -> None:
    poll = {
        "interval_seconds": seconds,
        "active_interval_seconds": seconds,
        "discovery_interval_seconds": seconds,
    }

    settings = config.parse({"poll": poll}, SOURCE, env={})

    assert settings.poll.interval_seconds == seconds
    assert settings.poll.active_interval_seconds == seconds
    assert settings.poll.discovery_interval_seconds == seconds


def test_ipv6_listen_address_is_accepted() -> None:
    metrics = config.parse({"metrics": {"listen": "[::1]:9853"}}, SOURCE, env={}).metrics

    assert (metrics.host, metrics.port) == ("::1", 9853)


# --- secrets -----------------------------------------------------------------------------------


def test_masked_never_shows_a_secret_value() -> None:
    data = {
        "slack": {"token": "${SLACK_BOT_TOKEN}", "channel": "#deploys"},
        "state": {"backend": "redis", "redis_url": "redis://:${REDIS_PW}@cache:6379/0"},
    }
    env = {"SLACK_BOT_TOKEN": "xoxb-SUPER-SECRET", "REDIS_PW": "hunter2-redis"}
    settings = config.parse(data, SOURCE, env=env)

    masked = settings.masked()
    shown = json.dumps(masked)

    assert "xoxb-SUPER-SECRET" not in shown
    assert "hunter2-redis" not in shown
    # Masked, not dropped: a reader can still see that the secret is set.
    assert masked["slack"]["token"] and set(masked["slack"]["token"]) == {"*"}
    assert masked["state"]["redis_url"] and set(masked["state"]["redis_url"]) == {"*"}
    assert masked["slack"]["channel"] == "#deploys"
    # Nor does the object's own repr, which ends up in logs and tracebacks.
    assert "xoxb-SUPER-SECRET" not in repr(settings)
    assert "hunter2-redis" not in repr(settings)
    # The real value stays available to the code that needs it.
    assert settings.slack is not None and settings.slack.bot_token() == "xoxb-SUPER-SECRET"


def test_masked_hides_the_webhook_url() -> None:
    url = "https://hooks.slack.com/services/T000/B000/SECRETPART"
    settings = config.parse({"slack": {"webhook_url": url}}, SOURCE, env={})

    shown = json.dumps(settings.masked())

    assert "SECRETPART" not in shown
    assert settings.slack is not None and settings.slack.webhook_url is not None
    assert settings.slack.webhook_url.get_secret_value() == url


def test_masked_is_plain_json_data() -> None:
    settings = config.parse({"targets": [{"app_id": "a"}]}, SOURCE, env={})

    masked = settings.masked()

    assert json.loads(json.dumps(masked)) == masked
    assert masked["targets"] == [{"app_id": "a", "branches": ["*"]}]


def test_token_file_is_read_stripped_and_reread_after_rotation(tmp_path: Path) -> None:
    token_file = tmp_path / "slack-token"
    token_file.write_text("xoxb-from-file\n", encoding="utf-8")
    settings = config.parse(
        {"slack": {"token_file": str(token_file), "channel": "#c"}}, SOURCE, env={}
    )
    assert settings.slack is not None

    first = settings.slack.bot_token()
    token_file.write_text("xoxb-rotated", encoding="utf-8")
    second = settings.slack.bot_token()

    assert (first, second) == ("xoxb-from-file", "xoxb-rotated")
    assert "xoxb-from-file" not in json.dumps(settings.masked())


def test_webhook_mode_has_no_bot_token() -> None:
    settings = config.parse({"slack": {"webhook_url": "https://h"}}, SOURCE, env={})

    assert settings.slack is not None and settings.slack.bot_token() is None


# --- the error message -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env"),
    [
        pytest.param('[poll\ninterval_seconds = 1\n', {}, id="not_toml"),
        pytest.param("[poll]\ninterval_seconds = 0\n", {}, id="bad_value"),
        pytest.param("[poll]\nbogus = 1\n", {}, id="unknown_key"),
        pytest.param('[slack]\ntoken = "${NOPE}"\n', {}, id="unset_variable"),
        pytest.param("[poll]\ninterval_seconds = 0\nmax_concurrency = 0\nbogus = 1\n", {},
                     id="several_problems_at_once"),
        pytest.param('[metrics]\nlisten = "${L}"\n', {"L": "a\nb"},
                     id="value_with_a_newline"),
        pytest.param('[alerts]\non = ["${S}"]\n', {"S": "X\nY"},
                     id="status_with_a_newline"),
    ],
)  # fmt: skip
def test_config_error_is_one_line_starting_with_the_file_name(
    tmp_path: Path, text: str, env: dict[str, str]
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        config.load(path, env=env)

    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message and "\r" not in message


def test_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"

    with pytest.raises(ConfigError) as caught:
        config.load(path, env={})

    message = str(caught.value)
    assert message.startswith(f"{path}: cannot read")
    assert "\n" not in message


def test_error_never_echoes_a_secret_value() -> None:
    message = error_of({"slack": {"token": "xoxb-LEAKED", "bogus": 1}})

    assert "xoxb-LEAKED" not in message


def test_resolve_path_prefers_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(config.CONFIG_ENV, "/etc/from-env.toml")
    assert config.resolve_path("given.toml") == "given.toml"
    assert config.resolve_path(None) == "/etc/from-env.toml"

    monkeypatch.delenv(config.CONFIG_ENV)
    with pytest.raises(ConfigError, match=config.CONFIG_ENV):
        config.resolve_path(None)


@pytest.mark.parametrize(
    ("url", "region", "expected"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/events", None, "eu-west-1"),
        ("https://ap-south-1.queue.amazonaws.com/123456789012/events.fifo", None, "ap-south-1"),
        ("http://127.0.0.1:5000/123456789012/events", None, "us-east-2"),  # the [aws] region
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/events", "eu-central-1", "eu-central-1"),
    ],
)
def test_the_event_queue_region_comes_from_the_key_else_the_url_else_aws(
    url: str, region: str | None, expected: str
) -> None:
    events = {"sqs_queue_url": url, **({"region": region} if region else {})}
    settings = config.parse({"aws": {"region": "us-east-2"}, "events": events})
    assert settings.events is not None
    assert settings.events.queue_region(settings.aws.region) == expected


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (
            {"sqs_queue_url": "amplify-monitor-events"},
            "events.sqs_queue_url: 'amplify-monitor-events' is not an SQS queue URL",
        ),
        ({"region": "eu-west-1"}, "events.sqs_queue_url: Field required"),
        (
            {"sqs_queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/q", "wait": 5},
            "events.wait: unknown key",
        ),
    ],
)
def test_a_bad_events_section_names_its_key(events: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse({"events": events}, "c.toml")
    assert str(caught.value).startswith(f"c.toml: {message}")


def test_no_events_section_means_no_push_mode() -> None:
    assert config.parse({}).events is None


def test_aws_timeouts_default_to_5_and_30_seconds_and_must_be_positive() -> None:
    aws = config.parse({}).aws
    assert (aws.connect_timeout_seconds, aws.read_timeout_seconds) == (5.0, 30.0)
    with pytest.raises(ConfigError) as caught:
        config.parse({"aws": {"read_timeout_seconds": 0}}, "c.toml")
    assert str(caught.value).startswith("c.toml: aws.read_timeout_seconds: ")
