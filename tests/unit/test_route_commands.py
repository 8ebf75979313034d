"""The commands' options with routes: what is refused (exit 2), and status per route."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from receiver.bad_events import TokenBucket
from spoolship.cli import main
from tests.helpers import write_segments

CONFIG = """
spool_dir = "{spool}"
[routing]
field = "type"
default = "events"
[routes.events]
destination = "k"
[routes.clicks]
destination = "f"
values = ["click"]
[destinations.k]
type = "kinesis"
stream = "events"
[destinations.f]
type = "firehose"
delivery_stream = "clicks"
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "routes.toml"
    path.write_text(CONFIG.format(spool=tmp_path / "spool"))
    return path


@pytest.mark.parametrize(("args", "message"), [
    (["tail", "--spool-dir", "x"], "give one of --stream"),
    (["tail", "--spool-dir", "x", "--stream", "s", "--delivery-stream", "d"], "give one of --stream"),
    (["tail", "--stream", "s"], "--spool-dir is required"),
    (["tail", "--spool-dir", "x", "--stream", "s", "--route", "a"], "--route needs --config"),
    (["tail", "--config", "{config}", "--stream", "s"], "do not go with --config"),
    (["tail", "--config", "{config}", "--route", "nope"], "not a route"),
    (["tail", "--config", "{config}", "--aggregate"], "route clicks (firehose clicks): Firehose has no partition keys"),
    (["tail", "--config", "{config}", "--external-id", "x", "--sts-endpoint-url", "http://sts"],
     "--external-id, --sts-endpoint-url: no route of"),
    (["tail", "--spool-dir", "x", "--delivery-stream", "d", "--aggregate"], "Firehose has no partition keys"),
    (["tail", "--spool-dir", "x", "--stream", "s", "--external-id", "abc"], "need --role-arn"),
    (["receive", "--port", "0"], "--spool-dir is required"),
    (["receive", "--spool-dir", "x", "--invalid", "keep"], "needs a bad route"),
    (["receive", "--config", "{config}", "--invalid", "keep"], "needs a bad route"),
    (["receive", "--config", "{config}", "--max-event-bytes", "1040000"], "route 'clicks'"),
    (["receive", "--spool-dir", "x", "--trusted-proxies", "10.0.0.0/8"], "without --client-ip-field"),
    (["receive", "--spool-dir", "x", "--client-ip-field", "ip", "--trusted-proxies", "nonsense"], "'nonsense'"),
    (["peek", "--config", "{config}"], "--route"),
    (["peek", "--route", "events"], "--route needs --config"),
    (["status"], "--spool-dir, or --config"),
])
def test_what_is_refused_at_start(config, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [a.replace("{config}", str(config)) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output


def test_status_shows_each_routes_backlog(config, tmp_path):
    write_segments(tmp_path / "spool" / "events", "w1", 50)
    table = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert table.exit_code == 0, table.output
    rows = {line.split()[0]: line for line in table.output.splitlines() if line.startswith(("events", "clicks"))}
    assert "kinesis events" in rows["events"] and "no spool yet" in rows["clicks"]
    doc = json.loads(CliRunner().invoke(main, ["status", "--config", str(config), "--json"]).output)
    assert doc["clicks"] is None and doc["events"]["bytes_behind"] > 0


def test_a_token_bucket_allows_a_burst_then_its_rate():
    now = [0.0]
    bucket = TokenBucket(5, clock=lambda: now[0])
    assert sum(bucket.take() for _ in range(20)) == 5, "a second's worth at once"
    now[0] += 1.0
    assert sum(bucket.take() for _ in range(20)) == 5
    now[0] += 100.0
    assert sum(bucket.take() for _ in range(20)) == 5, "never more than its capacity saved up"
    big = TokenBucket(1024, capacity=10_000, clock=lambda: now[0])
    assert big.take(9000) and not big.take(2000), "a large item passes once the bucket is full"


def test_status_and_check_show_segments_outside_every_route(config, tmp_path):
    """Routes review, finding 1: the single-route layout's root segments and a removed route's directory
    are listed (before the fix: "no spool yet" and "valid", nothing else)."""
    spool = tmp_path / "spool"
    write_segments(spool, "old-pod_w0", 20)
    write_segments(spool / "gone", "old-pod_w0", 5)
    table = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert table.exit_code == 0, table.output
    assert "segments outside every configured spool" in table.output
    assert "stray.root" in table.output and "stray.gone" in table.output
    doc = json.loads(CliRunner().invoke(main, ["status", "--config", str(config), "--json"]).output)
    assert doc["stray.root"]["bytes_behind"] > 0 and doc["stray.gone"]["bytes_behind"] > 0
    one = json.loads(CliRunner().invoke(main, ["status", "--spool-dir", str(spool), "--json"]).output)
    assert list(one["strays"]) == ["stray.gone"]
    checked = CliRunner().invoke(main, ["check", "--config", str(config), "--spool-dir", str(spool)])
    assert checked.exit_code == 0, checked.output
    assert f"{spool} (the spool root): 1 segment" in checked.output and f"{spool / 'gone'}: 1 segment" in checked.output


ROLE_CONFIG = """
spool_dir = "{spool}"
[routing]
default = "events"
[routes.events]
destination = "k"
[routes.clicks]
destination = "f"
[destinations.k]
type = "kinesis"
stream = "events"
[destinations.f]
type = "firehose"
delivery_stream = "clicks"
role_arn = "arn:aws:iam::210987654321:role/spoolship-clicks"
"""


def test_role_flags_apply_to_every_route_that_assumes_a_role(tmp_path):
    """Routes review, finding 12: with --config and no --role-arn, --external-id, --role-session-name and
    --sts-endpoint-url were dropped without a word (AccessDenied for ever). Failed before the fix."""
    from spoolship.commands.tail import _configs, tail

    path = tmp_path / "routes.toml"
    path.write_text(ROLE_CONFIG.format(spool=tmp_path / "spool"))
    args = ["--config", str(path), "--external-id", "the-id", "--role-session-name", "audit-me",
            "--sts-endpoint-url", "https://sts.eu-west-1.amazonaws.com"]
    ctx = tail.make_context("tail", args)
    with ctx:
        params = dict(ctx.params)
        params.pop("log_level")
        configs, _strays = _configs(ctx, params.pop("config_file"), params.pop("routes"),
                                    params.pop("delivery_stream"), params)
    roles = {c.route: c.role for c in configs}
    assert roles["events"] is None, "a destination without role_arn assumes nothing"
    assert roles["clicks"].role_arn.endswith("spoolship-clicks")
    assert (roles["clicks"].external_id, roles["clicks"].session_name, roles["clicks"].sts_endpoint_url) == (
        "the-id", "audit-me", "https://sts.eu-west-1.amazonaws.com")


def test_a_role_without_source_credentials_is_a_usage_error_not_a_traceback(tmp_path, monkeypatch):
    """Finding 12: an uncaught ValueError (exit 1, retried 10 times by a drain Job) became exit 2."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = CliRunner().invoke(main, ["tail", "--spool-dir", str(tmp_path / "s"), "--stream", "s", "--region",
                                       "us-east-1", "--role-arn", "arn:aws:iam::123456789012:role/r"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "needs source credentials" in result.output
