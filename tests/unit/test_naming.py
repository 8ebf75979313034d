from spooler import new_writer_id, parse_segment_name
from spooler.naming import CREATING_PREFIX


def test_segment_names_round_trip():
    name = parse_segment_name("web-7d9f_w0_p12_abc-00000042.active")
    assert name.writer == "web-7d9f_w0_p12_abc" and name.seq == 42 and not name.sealed
    assert name.segment_id == "web-7d9f_w0_p12_abc-00000042"
    assert parse_segment_name(name.sealed_name).sealed


def test_hidden_files_being_created_are_never_segments():
    # A reader that took this for a segment would flock it before its writer could.
    assert parse_segment_name(f"{CREATING_PREFIX}w-00000001.active") is None
    assert parse_segment_name(".w-00000001.ndjson") is None
    assert parse_segment_name("checkpoint.json") is None
    assert parse_segment_name("w-1.ndjson") is None


def test_writer_ids_are_safe_and_unique():
    a, b = new_writer_id(0, hostname=".evil/host name"), new_writer_id(0, hostname=".evil/host name")
    assert a != b
    assert parse_segment_name(f"{a}-00000001.active").writer == a
