"""API key file reloads (receiver/auth.py): what every state of the file means.

| the file                                   | keys in use                      | logged / metric          |
| ------------------------------------------ | -------------------------------- | ------------------------ |
| being written (changed < settle time ago)  | complete lines; a last line      |                          |
|                                            | without newline not yet          |                          |
| fresh and without one complete key         | the previous keys                |                          |
| settled                                    | every line, the last one too     |                          |
| settled, no key (emptied, only comments)   | none: every request refused      | error each check; 0 keys |
| deleted or unreadable                      | the previous keys                | error each check; not ok |
| changed while being read                   | read again                       |                          |
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from receiver import auth
from receiver.auth import ApiKeys
from receiver.errors import Unauthorized


@pytest.fixture(autouse=True)
def check_every_time(monkeypatch):
    monkeypatch.setattr(auth, "RELOAD_CHECK_SECONDS", 0.0)


def settle(path: Path) -> None:
    """Make the file look unchanged for a while (as a finished write would be)."""
    past = time.time() - 60
    os.utime(path, (past, past))


def accepts(keys: ApiKeys, key: str) -> bool:
    try:
        keys.check(None, key)
    except Unauthorized:
        return False
    return True


@pytest.fixture
def key_file(tmp_path) -> Path:
    path = tmp_path / "keys"
    path.write_text("# keys\nsecret-one\n")
    settle(path)
    return path


def test_a_half_written_key_is_never_accepted(key_file):
    keys = ApiKeys(key_file)
    with open(key_file, "w") as f:  # rewritten in two writes; a check runs between them
        f.write("secret-")
        f.flush()
        assert not accepts(keys, "secret-"), "a prefix of a key must never be a key"
        assert accepts(keys, "secret-one"), "while the file is being written, the last good keys stay"
        f.write("two\n")
    assert accepts(keys, "secret-two")
    assert not accepts(keys, "secret-")


def test_a_last_line_without_newline_counts_only_once_the_file_settled(key_file):
    keys = ApiKeys(key_file)
    key_file.write_text("secret-one\nsecret-tw")
    assert accepts(keys, "secret-one")
    assert not accepts(keys, "secret-tw")
    settle(key_file)  # nobody finished the line: it is the whole key (kubectl --from-literal writes no newline)
    assert accepts(keys, "secret-tw")


def test_a_single_key_without_newline_at_start(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "SETTLE_SECONDS", 0.3)
    path = tmp_path / "keys"
    path.write_text("only-key")
    started = time.monotonic()
    keys = ApiKeys(path)  # waits for the fresh file to settle
    assert time.monotonic() - started >= 0.2
    assert accepts(keys, "only-key")


def test_a_file_changed_while_being_read_is_read_again(key_file, monkeypatch):
    keys = ApiKeys(key_file)
    reads = []
    real_read = auth._read_bytes

    def read_then_change(path):
        data = real_read(path)
        reads.append(data)
        if len(reads) == 1:  # another writer replaces the file between our stat and its second stat
            key_file.write_text("secret-three\n")
            settle(key_file)
        return data

    key_file.write_text("secret-two\n")
    settle(key_file)
    monkeypatch.setattr(auth, "_read_bytes", read_then_change)
    assert accepts(keys, "secret-three")
    assert reads == [b"secret-two\n", b"secret-three\n"], "the changed file was read again"
    assert not accepts(keys, "secret-two")


@pytest.mark.parametrize("content", ["", "\n\n", "# every key revoked\n"], ids=["empty", "blank", "comments"])
def test_a_settled_file_without_keys_refuses_everyone_and_says_so(key_file, caplog, content):
    keys = ApiKeys(key_file)
    key_file.write_text(content)
    settle(key_file)
    with caplog.at_level(logging.ERROR, logger="receiver.auth"):
        assert not accepts(keys, "secret-one")
        assert not accepts(keys, "secret-one")
    assert keys.count == 0 and keys.file_ok
    assert len([r for r in caplog.records if "no keys" in r.getMessage()]) == 2, "an error at each check"


def test_a_fresh_empty_file_keeps_the_keys_until_it_settles(key_file):
    keys = ApiKeys(key_file)
    key_file.write_text("")  # truncated by a writer that is about to write the new keys
    assert accepts(keys, "secret-one")
    settle(key_file)
    assert not accepts(keys, "secret-one")


@pytest.mark.parametrize("break_it", ["delete", "directory"])
def test_a_deleted_or_unreadable_file_keeps_the_last_good_keys_and_says_so(key_file, caplog, break_it):
    keys = ApiKeys(key_file)
    key_file.unlink()
    if break_it == "directory":  # unreadable even for root (tests run as root: chmod would not do)
        key_file.mkdir()
    with caplog.at_level(logging.ERROR, logger="receiver.auth"):
        assert accepts(keys, "secret-one")
        assert accepts(keys, "secret-one")
    assert keys.count == 1 and not keys.file_ok
    assert len([r for r in caplog.records if "keeping the last good keys" in r.getMessage()]) == 2
    if break_it == "directory":
        key_file.rmdir()
    key_file.write_text("secret-new\n")
    settle(key_file)
    assert accepts(keys, "secret-new") and not accepts(keys, "secret-one")
    assert keys.file_ok


@pytest.mark.parametrize("content", ["", "# none\n"])
def test_a_file_without_keys_at_start_is_a_start_up_error(tmp_path, content):
    path = tmp_path / "keys"
    path.write_text(content)
    settle(path)
    with pytest.raises(ValueError, match="no API keys"):
        ApiKeys(path)


def test_an_unreadable_file_at_start_is_a_start_up_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        ApiKeys(tmp_path / "missing")


def test_checks_are_rate_limited(key_file, monkeypatch):
    monkeypatch.setattr(auth, "RELOAD_CHECK_SECONDS", 3600.0)
    keys = ApiKeys(key_file)
    key_file.write_text("secret-two\n")
    settle(key_file)
    assert accepts(keys, "secret-one"), "not re-read before the check interval"
    keys.refresh(force=True)
    assert accepts(keys, "secret-two")
