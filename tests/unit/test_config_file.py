"""The config file: every problem named with its table and key, and the plan it resolves to."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from spoolship.cli import main
from spoolship.config_file import ConfigError, load_plan, parse_plan
from spoolship.plan import FIREHOSE_RECORD_BYTES
from tailer.firehose_packing import FIREHOSE_MAX_RECORD_BYTES

GOOD = """
spool_dir = "/spool"
[routing]
field = "type"
default = "events"
[routes.events]
destination = "main"
[routes.clicks]
destination = "clicks"
values = ["click", "scroll"]
max_spool_bytes = "512MiB"
[routes.bad]
destination = "rejected"
max_spool_bytes = 1048576
max_events_per_second = 20
[destinations.main]
type = "kinesis"
stream = "events"
aggregate = true
region = "eu-west-1"
[destinations.clicks]
type = "firehose"
delivery_stream = "clicks"
record_bytes = "512KiB"
[destinations.rejected]
type = "kinesis"
stream = "bad-events"
role_arn = "arn:aws:iam::123456789012:role/bad-writer"
external_id = "abc123"
"""


def plan_of(text: str, **kw):
    return parse_plan(tomllib.loads(text), Path("test.toml"), **kw)


def test_a_good_file_resolves_to_routes_spools_caps_and_destinations():
    plan = plan_of(GOOD)
    assert [r.name for r in plan.every_route] == ["events", "clicks", "bad"]
    assert plan.route("clicks").spool_dir == Path("/spool/clicks") and plan.route("clicks").values == ("click", "scroll")
    routing = plan.routing(default_max_spool_bytes=1 << 30)
    assert [r.max_spool_bytes for r in routing.routes] == [1 << 30, 512 * 1024**2]
    assert routing.bad.max_spool_bytes == 1048576 and routing.bad.events_per_second == 20
    configs = {c.route: c for c in plan.tailer_configs(linger_seconds=0.5, region="us-east-1")}
    assert configs["events"].stream == "events" and configs["events"].aggregate
    assert configs["events"].region == "eu-west-1", "the destination's setting wins over the flag's"
    assert configs["clicks"].destination == "firehose" and configs["clicks"].firehose_record_bytes == 512 * 1024
    assert configs["clicks"].region == "us-east-1" and configs["clicks"].linger_seconds == 0.5
    assert configs["bad"].role.external_id == "abc123"
    assert [c.route for c in plan.tailer_configs(("clicks",))] == ["clicks"]
    archived = {c.route: c.archive_dir for c in plan.tailer_configs(archive_dir=Path("/archive"))}
    assert archived == {"events": Path("/archive/events"), "clicks": Path("/archive/clicks"),
                        "bad": Path("/archive/bad")}, "each loop prunes an archive of its own"
    assert plan_of(GOOD, spool_dir=Path("/elsewhere")).route("bad").spool_dir == Path("/elsewhere/bad")


def test_an_event_larger_than_a_firehose_record_is_refused_for_a_firehose_route():
    plan = plan_of(GOOD)
    plan.routing(1 << 30, max_event_bytes=512 * 1024 - 1)
    with pytest.raises(ValueError, match="route 'clicks'"):
        plan.routing(1 << 30, max_event_bytes=512 * 1024)


def test_the_receivers_copy_of_the_firehose_record_limit_is_the_tailers():
    assert FIREHOSE_RECORD_BYTES == FIREHOSE_MAX_RECORD_BYTES


def replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


PROBLEMS = [
    (replace('field = "type"', 'fieldd = "type"'), "routing: unknown key 'fieldd'"),
    (replace('values = ["click", "scroll"]', 'valuse = ["click"]'), "routes.clicks: unknown key 'valuse'"),
    (replace('values = ["click", "scroll"]', 'values = ["click", 3]'), "routes.clicks.values: must be a list"),
    (replace('values = ["click", "scroll"]', 'values = ["click", "click"]'), "already selects route 'clicks'"),
    (replace('destination = "clicks"', 'destination = "nope"'), "'nope' is not a destination"),
    (replace('default = "events"', 'default = "bad"'), "routing.default: 'bad' is not a route of events"),
    (replace('default = "events"\n', ''), "routing.default: required with several routes"),
    (replace('field = "type"\n', ''), "routing.field: routes list values"),
    (replace('field = "type"', 'field = "a..b"'), "is not a dotted path"),
    (replace('spool_dir = "/spool"\n', ''), "spool_dir: not set here"),
    (replace('max_spool_bytes = "512MiB"', 'max_spool_bytes = "lots"'), "routes.clicks.max_spool_bytes: not a size"),
    (replace('max_spool_bytes = "512MiB"', 'max_spool_bytes = true'), "routes.clicks.max_spool_bytes"),
    (replace('max_spool_bytes = "512MiB"', 'spool_dir = "/spool/events/inner"'), "one spool is inside the other"),
    (replace('max_spool_bytes = "512MiB"', 'spool_dir = "/spool/events"'), "share the spool"),
    (replace('max_events_per_second = 20', 'values = ["x"]'), "routes.bad: unknown key 'values'"),
    (replace('max_events_per_second = 20', 'max_payload_bytes = "1MiB"'), "at most 131072"),
    (replace('type = "firehose"', 'type = "s3"'), "destinations.clicks.type: must be"),
    (replace('record_bytes = "512KiB"', 'aggregate = true'), "destinations.clicks: unknown key 'aggregate'"),
    (replace('aggregate = true', 'aggregate = "yes"'), "destinations.main.aggregate: must be bool"),
    (replace('stream = "events"', 'stream = "my events"'), "not a Kinesis stream name"),
    (replace('delivery_stream = "clicks"', 'delivery_stream = ""'), "delivery_stream: must be a non-empty string"),
    (replace('record_bytes = "512KiB"', 'record_bytes = "2MiB"'), "Firehose record bytes"),
    (replace('role_arn = "arn:aws:iam::123456789012:role/bad-writer"', 'role_arn = "bad-writer"'), "not an ARN"),
    (replace('[routes.events]', '[routes.Events]'), "routes.Events: a name is"),
    (GOOD + "\n[extra]\n", "(top level): unknown key 'extra'"),
    # Routes review, finding 2: a route spool off the spool volume (each container's /tmp is its own).
    (replace('max_spool_bytes = "512MiB"', 'spool_dir = "/tmp/clicks"'), "is outside the spool root /spool"),
    (replace('max_spool_bytes = "512MiB"', 'spool_dir = "../clicks"'), "is outside the spool root /spool"),
    (replace('max_spool_bytes = "512MiB"', 'spool_dir = ""'), "routes.clicks.spool_dir: must be a non-empty"),
    # Finding 11: the largest bad event must fit one record of the bad route's Firehose destination.
    (replace('type = "kinesis"\nstream = "bad-events"', 'type = "firehose"\ndelivery_stream = "bad-events"\n'
             'record_bytes = "256KiB"'), "routes.bad: its largest event"),
    (replace('type = "kinesis"\nstream = "bad-events"', 'type = "firehose"\ndelivery_stream = "bad-events"')
     .replace("max_events_per_second = 20", 'max_payload_bytes = "128KiB"'), "max_payload_bytes to at most"),
]


@pytest.mark.parametrize(("text", "problem"), PROBLEMS, ids=[p for _, p in PROBLEMS])
def test_every_problem_is_named_with_its_table_and_key(text, problem):
    with pytest.raises(ConfigError) as raised:
        plan_of(text)
    assert any(problem in p for p in raised.value.problems), raised.value.problems


def test_several_problems_are_reported_at_once():
    text = replace('destination = "clicks"', 'destination = "nope"').replace('fieldx', '').replace(
        'default = "events"', 'default = "gone"')
    with pytest.raises(ConfigError) as raised:
        plan_of(text)
    assert len(raised.value.problems) == 2


def test_a_file_that_is_not_toml_or_not_there(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[routes\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_plan(bad)
    with pytest.raises(ConfigError, match="cannot read it"):
        load_plan(tmp_path / "missing.toml")


def test_check_prints_the_plan_and_exits_2_for_a_wrong_file(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    result = CliRunner().invoke(main, ["check", "--config", str(good)])
    assert result.exit_code == 2 and "--max-event-bytes 1000000: route 'clicks'" in result.output, \
        "the receiver's default event size does not fit clicks' 512 KiB records"
    result = CliRunner().invoke(main, ["check", "--config", str(good), "--max-event-bytes", "500000"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and "click, scroll" in result.output and "rejected requests" in result.output
    doc = json.loads(CliRunner().invoke(main, ["check", "--config", str(good), "--json", "--max-event-bytes",
                                               "500000"]).output)
    assert [r["name"] for r in doc["routes"]] == ["events", "clicks", "bad"]
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(replace('destination = "clicks"', 'destination = "nope"'))
    result = CliRunner().invoke(main, ["check", "--config", str(wrong)])
    assert result.exit_code == 2 and "'nope' is not a destination" in result.output


def test_a_relative_route_spool_is_taken_from_the_spool_root():
    plan = plan_of(replace('max_spool_bytes = "512MiB"', 'spool_dir = "fast/clicks"'))
    assert plan.route("clicks").spool_dir == Path("/spool/fast/clicks")
    assert plan_of(replace('max_spool_bytes = "512MiB"', 'spool_dir = "/spool/x"')).route("clicks").spool_dir \
        == Path("/spool/x")


def test_a_destination_with_a_problem_is_not_also_called_missing():
    """Routes review, finding 12: 'fh' had problems of its own, and was then also "not a destination"."""
    text = replace('delivery_stream = "clicks"', 'stream = "clicks"')
    with pytest.raises(ConfigError) as raised:
        plan_of(text)
    assert any("destinations.clicks" in p for p in raised.value.problems)
    assert not any("is not a destination" in p for p in raised.value.problems), raised.value.problems


def test_the_bad_route_gets_a_small_cap_of_its_own_unless_it_sets_one():
    plan = plan_of(GOOD.replace("max_spool_bytes = 1048576\n", ""))
    assert plan.routing(16 << 30).bad.max_spool_bytes == 64 << 20
    assert plan.routing(1 << 20).bad.max_spool_bytes == 1 << 20, "never above --max-spool-bytes"
    assert plan_of(GOOD).routing(16 << 30).bad.max_spool_bytes == 1048576


def test_route_caps_that_do_not_fit_the_volume_are_refused():
    """Routes review, finding 9: two event routes at 16 GiB each and the bad route on a 20 GiB claim."""
    plan = plan_of(GOOD.replace('max_spool_bytes = "512MiB"\n', ""))
    problem = plan.oversubscribed(16 << 30, 512 << 20, 20 << 30)
    assert problem and "events 17179869184, clicks 17179869184, bad 1048576" in problem
    assert plan.oversubscribed(8 << 30, 512 << 20, 20 << 30) is None
    assert plan_of(GOOD).oversubscribed(16 << 30, 512 << 20, 20 << 30) is None, "16 GiB + 512 MiB + 1 MiB fit"


def test_check_refuses_caps_that_do_not_fit_the_given_volume(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(GOOD.replace('max_spool_bytes = "512MiB"\n', ""))
    args = ["check", "--config", str(good), "--max-spool-bytes", "16GiB", "--min-free-bytes", "512MiB",
            "--max-event-bytes", "500000"]
    refused = CliRunner().invoke(main, [*args, "--volume-size", "20GiB"])
    assert refused.exit_code == 2 and "more than the spool volume's" in refused.output, refused.output
    fits = CliRunner().invoke(main, [*args, "--volume-size", "40GiB"])
    assert fits.exit_code == 0 and "caps     32.0 GiB" in fits.output, fits.output
