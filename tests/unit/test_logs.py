import json
import logging

from spoolship.logs import JsonFormatter, RateLimitFilter


def test_json_lines_carry_extras():
    record = logging.LogRecord("tailer", logging.INFO, __file__, 1, "segment shipped", (), None)
    record.segment = "w-00000001"
    doc = json.loads(JsonFormatter().format(record))
    assert doc["event"] == "segment shipped" and doc["segment"] == "w-00000001" and doc["level"] == "info"


def test_repeated_warnings_are_rate_limited_with_a_count():
    limiter = RateLimitFilter(interval_seconds=60)
    records = [logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is %d", (n,), None)
               for n in range(1000)]
    passed = [r for r in records if limiter.filter(r)]
    assert len(passed) == 1, "a load spike logs one line, not a thousand"
    limiter._next_at = 0  # the interval has passed
    later = logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is 3", (), None)
    assert limiter.filter(later) and later.suppressed == 999
