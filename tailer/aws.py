"""boto3 sessions for the commands: the standard chain, plus a convenience for local endpoints.

A Kinesis-API server on a loopback address (moto, kinesalite, LocalStack on this
machine) accepts any credentials, but boto3 still insists on some and on a
region. For those endpoints only, missing credentials and region are filled
with harmless placeholders, so `spoolship up`, `peek` and `replay` work on a
laptop with no AWS configuration. Real AWS always uses boto3's chain as is.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

import boto3

__all__ = ["is_local_endpoint", "make_session"]

LOCAL_REGION = "us-east-1"


def is_local_endpoint(endpoint_url: str | None) -> bool:
    if not endpoint_url:
        return False
    host = urlparse(endpoint_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_session(endpoint_url: str | None, region: str | None) -> tuple[boto3.Session, str | None]:
    """A session and the region to use (None: let boto3 resolve it, or fail clearly)."""
    session = boto3.Session()
    if not is_local_endpoint(endpoint_url):
        return session, region
    if session.get_credentials() is None:
        session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local")
    return session, region or session.region_name or LOCAL_REGION
