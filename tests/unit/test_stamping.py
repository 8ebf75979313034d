import base64

from hypothesis import given
from hypothesis import strategies as st

from receiver.stamping import IdGenerator, encode_id, format_received_at


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_ids_match_the_standard_base32hex_encoding(value):
    assert encode_id(value) == base64.b32hexencode(value.to_bytes(16, "big"))[:26].decode()


@given(st.lists(st.integers(min_value=0, max_value=2**128 - 1), min_size=2, max_size=20))
def test_ids_sort_like_their_values(values):
    assert sorted(values) == sorted(values, key=encode_id)


def test_ids_are_unique_and_ordered_within_and_across_milliseconds():
    ids = IdGenerator()
    first = ids.new_ids(1000, 1_700_000_000_000)
    second = ids.new_ids(10, 1_700_000_000_000)
    later = ids.new_ids(5, 1_700_000_000_001)
    earlier_clock = ids.new_ids(5, 1_699_999_999_000)  # the clock stepped back: still after
    everything = first + second + later + earlier_clock
    assert len(set(everything)) == len(everything)
    assert everything == sorted(everything)


def test_received_at_format():
    assert format_received_at(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert format_received_at(1_700_000_000.123) == "2023-11-14T22:13:20.123Z"  # floats round, not truncate
    assert format_received_at(1_700_000_001_000) == "2023-11-14T22:13:21.000Z"
