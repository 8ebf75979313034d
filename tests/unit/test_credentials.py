"""AssumeRole settings are checked at start-up; the refresh margins reach botocore's attributes."""

from __future__ import annotations

import boto3
import pytest
from botocore.credentials import RefreshableCredentials

from tailer import TailerConfig
from tailer.credentials import RoleSettings, _RoleCredentials, assume_role_session


def test_the_refresh_margins_set_the_attributes_botocore_reads():
    """botocore's RefreshableCredentials reads these two attributes; an upgrade that renames them fails here."""
    probe = RefreshableCredentials("a", "b", None, None, lambda: {}, "x", advisory_timeout=7, mandatory_timeout=3)
    assert (probe._advisory_refresh_timeout, probe._mandatory_refresh_timeout) == (7, 3)
    ours = _RoleCredentials(lambda: {}, 11.0, 5.0)
    assert (ours._advisory_refresh_timeout, ours._mandatory_refresh_timeout) == (11.0, 5.0)
    assert ours.refresh_needed(), "nothing is fetched before the first call"


@pytest.mark.parametrize(("settings", "message"), [
    ({"role_arn": "my-role"}, "not an ARN"),
    ({"role_arn": "arn:aws:iam::1:role/r", "session_name": "x"}, "2 to 64"),
    ({"role_arn": "arn:aws:iam::1:role/r", "external_id": "x"}, "2 to 1,224"),
])
def test_bad_role_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        RoleSettings(**settings)


def test_role_options_without_a_role_are_refused(tmp_path):
    with pytest.raises(ValueError, match="need --role-arn"):
        TailerConfig(tmp_path, "s", external_id="abc")
    config = TailerConfig(tmp_path, "s", role_arn="arn:aws:iam::1:role/r", sts_endpoint_url="http://127.0.0.1:1")
    assert config.role == RoleSettings("arn:aws:iam::1:role/r", sts_endpoint_url="http://127.0.0.1:1")


def test_a_role_session_assumes_the_role_only_when_first_needed():
    source = boto3.Session(aws_access_key_id="src", aws_secret_access_key="src", region_name="us-east-1")
    session = assume_role_session(source, RoleSettings("arn:aws:iam::1:role/r"), None)
    credentials = session.get_credentials()
    assert credentials.method == "assume-role" and session.region_name == "us-east-1"
    assert credentials._frozen_credentials is None, "built without calling STS"
    with pytest.raises(ValueError, match="source credentials"):
        assume_role_session(_NoCredentials(), RoleSettings("arn:aws:iam::1:role/r"), "us-east-1")


class _NoCredentials(boto3.Session):
    def get_credentials(self):
        return None
