"""Settings the pipeline cannot honour are refused at start-up, naming the limit.

Checked in ReceiverConfig (every entry point builds one) and shown by
`spoolship receive` as a usage error (exit 2) before anything listens.
"""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner

from receiver.config import (
    DEFAULT_MAX_PARSE_BYTES,
    MAX_EVENT_BYTES_LIMIT,
    MAX_SERIALIZABLE_DEPTH,
    ReceiverConfig,
)
from spoolship.cli import main


def config(tmp_path, **overrides) -> ReceiverConfig:
    return ReceiverConfig(spool_dir=tmp_path, **overrides)


def nested(depth: int) -> dict:
    event: dict = {}
    for _ in range(depth - 1):
        event = {"a": event}
    return event


def test_the_depth_limit_is_exactly_what_orjson_can_serialize():
    orjson.dumps(nested(MAX_SERIALIZABLE_DEPTH))
    with pytest.raises(TypeError):
        orjson.dumps(nested(MAX_SERIALIZABLE_DEPTH + 1))
    assert orjson.loads(b"[" * (MAX_SERIALIZABLE_DEPTH + 1) + b"]" * (MAX_SERIALIZABLE_DEPTH + 1))


def test_the_event_limit_leaves_room_for_the_newline_the_key_and_kpl_framing():
    kinesis_record, longest_key = 1024 * 1024, 1024  # 256 UTF-16 code units, up to 4 UTF-8 bytes each
    # An aggregated record of one line: magic + digest (20), key table entry and record header (~12), and the
    # key counted once in the table and once as the record's key.
    assert MAX_EVENT_BYTES_LIMIT + 1 + 2 * longest_key + 64 <= kinesis_record


@pytest.mark.parametrize("overrides, words", [
    ({"max_depth": MAX_SERIALIZABLE_DEPTH + 1}, ["--max-depth", str(MAX_SERIALIZABLE_DEPTH)]),
    ({"max_depth": 1000}, ["--max-depth", str(MAX_SERIALIZABLE_DEPTH)]),
    ({"max_depth": 0}, ["--max-depth"]),
    ({"max_event_bytes": MAX_EVENT_BYTES_LIMIT + 1}, ["--max-event-bytes", str(MAX_EVENT_BYTES_LIMIT), "Kinesis"]),
    ({"max_event_bytes": 1024 * 1024}, ["--max-event-bytes", "Kinesis"]),
    ({"max_event_bytes": 60}, ["--max-event-bytes", "stamp"]),
    ({"max_event_bytes": 1, "stamp": False}, ["--max-event-bytes"]),
    ({"max_body_bytes": 2_000_000, "max_inflated_bytes": 1_000_000}, ["--max-inflated-bytes", "--max-body-bytes"]),
    ({"max_body_bytes": 0}, ["--max-body-bytes"]),
    ({"max_events": 0}, ["--max-events"]),
    ({"max_parse_bytes": 1000}, ["--max-parse-bytes"]),
    ({"max_parse_bytes": 8 * 1024**2, "max_inflated_bytes": 5 * 1024**2, "max_body_bytes": 5 * 1024**2},
     ["--max-parse-bytes", "--max-inflated-bytes"]),
    ({"max_parse_bytes": 16 * 1024**2, "max_inflated_bytes": 10 * 1024**2}, ["--max-parse-bytes",
                                                                           "--max-inflated-bytes"]),
])
def test_settings_that_cannot_work_are_refused_naming_the_limit(tmp_path, overrides, words):
    with pytest.raises(ValueError) as refused:
        config(tmp_path, **overrides)
    for word in words:
        assert word in str(refused.value)


def test_the_largest_allowed_settings_are_accepted(tmp_path):
    config(tmp_path, max_depth=MAX_SERIALIZABLE_DEPTH, max_event_bytes=MAX_EVENT_BYTES_LIMIT)
    smallest = len(orjson.dumps({"_id": "0" * 26, "_received_at": "2026-11-26T07:45:42.123Z"}))
    config(tmp_path, max_event_bytes=smallest)
    config(tmp_path, max_event_bytes=2, stamp=False)
    config(tmp_path, max_body_bytes=1000, max_inflated_bytes=1000)
    assert config(tmp_path).max_parse_bytes == DEFAULT_MAX_PARSE_BYTES


@pytest.mark.parametrize("args, words", [
    (["--max-depth", "255"], ["--max-depth", "254"]),
    (["--max-event-bytes", "1MiB"], ["--max-event-bytes", "Kinesis"]),
    (["--max-body-bytes", "2MiB", "--max-inflated-bytes", "1MiB"], ["--max-inflated-bytes"]),
    (["--max-parse-bytes", "4MiB"], ["--max-parse-bytes"]),
])
def test_the_command_refuses_them_as_a_usage_error_before_listening(tmp_path, args, words):
    result = CliRunner().invoke(main, ["receive", "--spool-dir", str(tmp_path / "spool"), "--port", "0", *args])
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.output
    assert "receiver listening" not in result.output


def test_a_buffered_body_budget_below_the_largest_body_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--max-buffered-body-bytes"):
        config(tmp_path, max_body_bytes=2 * 1024**2, max_buffered_body_bytes=1024**2)


@pytest.mark.parametrize(("content", "words"), [
    ("", ["holds no API keys"]),
    ("# every key revoked\n", ["holds no API keys"]),
    ("k1\n", ["line 1", "shorter than 16"]),
], ids=["empty", "comments-only", "short-key"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_key_file_that_cannot_be_used_is_a_usage_error_not_a_worker_traceback(tmp_path, content, words, workers):
    """Follow-up F7: before, an empty key file was a ValueError raised inside the (each) worker."""
    import os
    import time

    keys = tmp_path / "keys"
    keys.write_text(content)
    past = time.time() - 60
    os.utime(keys, (past, past))
    result = CliRunner().invoke(main, ["receive", "--spool-dir", str(tmp_path / "spool"), "--port", "0",
                                       "--workers", workers, "--api-key-file", str(keys)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output
    assert str(keys) in result.output
