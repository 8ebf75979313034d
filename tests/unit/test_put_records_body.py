"""KinesisSink's hand-written PutRecords body against botocore's own serializer, over the whole space.

The body is built with orjson and base64 for speed (tailer/kinesis.py); botocore's model-driven JSON
serializer is the reference: both bodies must read back as the same document.
"""

from __future__ import annotations

import json

import botocore.session
import orjson
import pytest
from botocore.serialize import create_serializer
from hypothesis import given, settings
from hypothesis import strategies as st

from tailer.kinesis import KinesisSink

_OPERATION = botocore.session.get_session().get_service_model("kinesis").operation_model("PutRecords")
_SERIALIZER = create_serializer("json", include_validation=False)


def botocore_body(stream: str, records) -> bytes:
    params = {"StreamName": stream, "Records": [
        {"Data": data, "PartitionKey": key, **({} if hash_key is None else {"ExplicitHashKey": hash_key})}
        for data, key, hash_key in records]}
    return _SERIALIZER.serialize_to_request(params, _OPERATION)["body"]


def encoder(stream: str) -> KinesisSink:
    sink = KinesisSink.__new__(KinesisSink)  # the encoder only: no session, no client
    sink._stream_json = orjson.dumps(stream)
    return sink


keys = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=256)
hash_keys = st.one_of(st.none(), st.integers(0, 2**128 - 1).map(str))
records = st.lists(st.tuples(st.binary(max_size=700), keys, hash_keys), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(stream=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=128), records=records)
def test_the_body_is_the_document_botocore_would_send(stream, records):
    mine = encoder(stream)._encode(records)
    assert orjson.loads(mine) == json.loads(botocore_body(stream, records))


@pytest.mark.parametrize("copies", [1, 3])  # 42 records (the path for few, large records), 126 (many, small)
def test_lines_of_every_length_mod_three_and_json_specials(copies):
    records = [(b"x" * n + b"\n", key, None if n % 2 else str(n * 10**30))
               for n in range(7) for key in ('"', "\\", "\n", "é", "\u2028", "k")] * copies
    assert orjson.loads(encoder("s")._encode(records)) == json.loads(botocore_body("s", records))


@settings(max_examples=30, deadline=None)
@given(records=st.lists(st.tuples(st.binary(max_size=300), keys, hash_keys), min_size=65, max_size=200))
def test_many_records_make_the_same_document(records):
    assert orjson.loads(encoder("stream")._encode(records)) == json.loads(botocore_body("stream", records))


# The fast path for many records (tailer/kinesis.py, _encode_plain_keys): no ExplicitHashKey, keys that need no
# JSON escaping. Keys near that edge (quotes, backslashes, DEL, control characters, non-ASCII) must leave it.
plain_keys = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\"\\\\"), max_size=64)
edge_keys = st.one_of(plain_keys, st.sampled_from(['"', "\\", "\x7f", "\x00", "\x1f", "é", "\u2028", "a\"b", ""]))


@settings(max_examples=200, deadline=None)
@given(records=st.lists(st.tuples(st.binary(max_size=300), plain_keys, st.none()), min_size=65, max_size=600),
       stream=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=64))
def test_many_plain_keys_make_the_bytes_of_the_record_by_record_path(records, stream):
    sink = encoder(stream)
    fast = sink._encode_plain_keys(records)
    assert fast is not None  # this is the path being tested
    assert fast == sink._encode_each(records)
    assert orjson.loads(fast) == json.loads(botocore_body(stream, records))


@settings(max_examples=200, deadline=None)
@given(records=st.lists(st.tuples(st.binary(max_size=50), edge_keys, st.one_of(st.none(), st.just("0"))),
                        min_size=65, max_size=120))
def test_keys_that_need_escaping_or_hash_keys_leave_the_fast_path(records):
    sink = encoder("stream")
    plain = all(h is None for _, _, h in records) and all(
        k.isascii() and k.isprintable() and '"' not in k and "\\" not in k for _, k, _ in records)
    fast = sink._encode_plain_keys(records)
    assert (fast is not None) == plain
    body = sink._encode(records)
    assert body == sink._encode_each(records)
    assert orjson.loads(body) == json.loads(botocore_body("stream", records))


def test_an_empty_hash_key_is_not_no_hash_key():
    records = [(b"x\n", "k", "")] + [(b"y\n", "k", None)] * 70
    assert encoder("s")._encode_plain_keys(records) is None
    assert orjson.loads(encoder("s")._encode(records)) == json.loads(botocore_body("s", records))


compiled = pytest.importorskip("tailer._speedups", reason="tailer._speedups is not built (tests/unit/test_speedups.py)")


class _Key(str):
    pass


_odd_records = st.lists(st.one_of(
    st.tuples(st.binary(max_size=300), edge_keys, st.one_of(st.none(), st.none(), st.just("0"), st.just(""))),
    st.tuples(st.binary(max_size=20).map(bytearray), plain_keys, st.none()),  # bytes-like, not bytes
    st.tuples(st.binary(max_size=20), plain_keys.map(_Key), st.none()),  # a str subclass
    st.tuples(st.binary(max_size=20), plain_keys, st.none()).map(list),  # not a tuple
    st.tuples(st.binary(max_size=20), plain_keys),  # not three fields
), min_size=65, max_size=120)


@settings(max_examples=400, deadline=None)
@given(records=st.one_of(st.lists(st.tuples(st.binary(max_size=700), plain_keys, st.none()), min_size=65,
                                  max_size=600),
                         _odd_records),
       stream=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=64))
def test_the_compiled_body_is_the_python_body_byte_for_byte_or_leaves_it_to_python(records, stream):
    """For the calls it is used for: more than 64 records (tailer/kinesis.py, _encode)."""
    sink = encoder(stream)
    mine = sink._encode_compiled(records)
    exact = all(type(r) is tuple and len(r) == 3 and type(r[0]) is bytes and type(r[1]) is str for r in records)
    if mine is None:  # only where the Python path finds keys to escape or a hash key, or the types are not exact
        assert not exact or sink._encode_plain_keys(records) is None
    else:
        assert exact and mine == sink._encode_plain_keys(records) == sink._encode_each(records)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 1024 * 1024 - 1, 1024 * 1024])
def test_the_compiled_base64_of_every_length_mod_three_and_the_largest_record(size):
    records = [(bytes(range(256)) * (size // 256) + bytes(range(size % 256)), f"0x{i:x}", None) for i in range(70)]
    assert encoder("s")._encode_compiled(records) == encoder("s")._encode_each(records)


def test_a_list_subclass_is_left_to_python():
    """Its items may differ from its storage (an overridden __iter__): only Python reads them as Python would."""
    class Records(list):
        def __iter__(self):
            return iter([(b"other", "other", None)] * len(self))

    assert encoder("s")._encode_compiled(Records([(b"a", "k", None)] * 65)) is None
    assert compiled.put_records_body(b"[", Records([(b"a", "k", None)] * 65), b"]") is None
