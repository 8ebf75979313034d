"""Firehose delivery streams on the moto server, delivering to moto's S3 (moto writes each
PutRecordBatch call as one S3 object: its records' bytes, one after another)."""

from __future__ import annotations

import uuid

import boto3
from botocore.config import Config

from tests.servers.kinesis import KinesisServer


def aws_client(service: str, endpoint: str):
    extra = {"config": Config(s3={"addressing_style": "path"})} if service == "s3" else {}
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", **extra)


def create_delivery_stream(server: KinesisServer, name: str | None = None, prefix: str = "events/") -> str:
    """A delivery stream with an S3 destination in a bucket of its own (``<name>-bucket``)."""
    name = name or f"hose-{uuid.uuid4().hex[:12]}"
    aws_client("s3", server.endpoint).create_bucket(Bucket=f"{name}-bucket")
    aws_client("firehose", server.endpoint).create_delivery_stream(
        DeliveryStreamName=name, DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/firehose",
                                            "BucketARN": f"arn:aws:s3:::{name}-bucket", "Prefix": prefix})
    return name


def delivered_objects(endpoint: str, name: str) -> list[bytes]:
    """Every S3 object the delivery stream wrote, oldest key first."""
    s3 = aws_client("s3", endpoint)
    bucket = f"{name}-bucket"
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return [s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in sorted(keys)]


def delivered_lines(endpoint: str, name: str) -> list[bytes]:
    return [line for body in delivered_objects(endpoint, name) for line in body.splitlines(keepends=True)]
