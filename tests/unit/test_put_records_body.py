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
