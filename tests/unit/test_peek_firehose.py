"""`peek --delivery-stream` reads what Firehose wrote, compressed or not (routes review, finding 13: with
the common CompressionFormat GZIP it printed the compressed bytes)."""

from __future__ import annotations

import gzip
import io

import pytest

from spoolship.peek import peek_delivery_stream

LINES = [b'{"n":1}\n', b'{"n":2}\n', b'{"n":3}\n']


class FakeFirehose:
    def describe_delivery_stream(self, DeliveryStreamName):  # noqa: N803 (boto3's names)
        return {"DeliveryStreamDescription": {"Destinations": [{"ExtendedS3DestinationDescription": {
            "BucketARN": "arn:aws:s3:::bucket", "Prefix": "clicks/"}}]}}


class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_paginator(self, _name):
        objects = self.objects

        class Paginator:
            def paginate(self, Bucket, Prefix):  # noqa: N803
                yield {"Contents": [{"Key": k} for k in objects if k.startswith(Prefix)]}

        return Paginator()

    def get_object(self, Bucket, Key):  # noqa: N803
        return {"Body": io.BytesIO(self.objects[Key])}


BODIES = {
    "plain": b"".join(LINES),
    "gzip": gzip.compress(b"".join(LINES)),
    "gzip, several members": gzip.compress(b"".join(LINES[:1])) + gzip.compress(b"".join(LINES[1:])),
}


@pytest.mark.parametrize("kind", BODIES)
def test_every_object_format_reads_back_as_its_lines(kind):
    s3 = FakeS3({"clicks/2026/12/01/obj-1" + (".gz" if "gzip" in kind else ""): BODIES[kind]})
    assert list(peek_delivery_stream(FakeFirehose(), s3, "clicks")) == LINES
