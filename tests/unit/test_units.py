import pytest

from spooler import parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("1048576", 1048576), ("64MiB", 64 * 1024**2), ("1GB", 10**9), ("1.5 KiB", 1536), (7, 7)],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "12 parsecs", "MiB", "1..2"])
def test_parse_size_rejects_nonsense(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(("text", "expected"), [("1", 1.0), ("250ms", 0.25), ("2m", 120.0), ("0.5s", 0.5), (3, 3.0)])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


def test_parse_duration_rejects_nonsense():
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
