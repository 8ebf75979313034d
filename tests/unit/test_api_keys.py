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
from receiver.auth import MIN_KEY_CHARS, ApiKeys, KeyFileError
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
    path.write_text("# keys\nsecret-one-0123456789ab\n")
    settle(path)
    return path


def test_a_half_written_key_is_never_accepted(key_file):
    keys = ApiKeys(key_file)
    with open(key_file, "w") as f:  # rewritten in two writes; a check runs between them
        f.write("secret-two-0123")
        f.flush()
        assert not accepts(keys, "secret-two-0123"), "a prefix of a key must never be a key"
        assert accepts(keys, "secret-one-0123456789ab"), "while the file is being written, the last good keys stay"
        f.write("456789ab\n")
    assert accepts(keys, "secret-two-0123456789ab")
    assert not accepts(keys, "secret-two-0123")


def test_a_last_line_without_newline_counts_only_once_the_file_settled(key_file):
    keys = ApiKeys(key_file)
    key_file.write_text("secret-one-0123456789ab\nsecret-two-01234")
    assert accepts(keys, "secret-one-0123456789ab")
    assert not accepts(keys, "secret-two-01234")
    settle(key_file)  # nobody finished the line: it is the whole key (kubectl --from-literal writes no newline)
    assert accepts(keys, "secret-two-01234")


def test_a_single_key_without_newline_at_start(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "SETTLE_SECONDS", 0.3)
    path = tmp_path / "keys"
    path.write_text("only-key-0123456789")
    started = time.monotonic()
    keys = ApiKeys(path)  # waits for the fresh file to settle
    assert time.monotonic() - started >= 0.2
    assert accepts(keys, "only-key-0123456789")


def test_a_file_changed_while_being_read_is_read_again(key_file, monkeypatch):
    keys = ApiKeys(key_file)
    reads = []
    real_read = auth._read_bytes

    def read_then_change(path):
        data = real_read(path)
        reads.append(data)
        if len(reads) == 1:  # another writer replaces the file between our stat and its second stat
            key_file.write_text("secret-three-0123456789ab\n")
            settle(key_file)
        return data

    key_file.write_text("secret-two-0123456789ab\n")
    settle(key_file)
    monkeypatch.setattr(auth, "_read_bytes", read_then_change)
    assert accepts(keys, "secret-three-0123456789ab")
    assert reads == [b"secret-two-0123456789ab\n", b"secret-three-0123456789ab\n"], "the changed file was read again"
    assert not accepts(keys, "secret-two-0123456789ab")


@pytest.mark.parametrize("content", ["", "\n\n", "# every key revoked\n"], ids=["empty", "blank", "comments"])
def test_a_settled_file_without_keys_refuses_everyone_and_says_so(key_file, caplog, content):
    keys = ApiKeys(key_file)
    key_file.write_text(content)
    settle(key_file)
    with caplog.at_level(logging.ERROR, logger="receiver.auth"):
        assert not accepts(keys, "secret-one-0123456789ab")
        assert not accepts(keys, "secret-one-0123456789ab")
    assert keys.count == 0 and keys.file_ok
    assert len([r for r in caplog.records if "no keys" in r.getMessage()]) == 2, "an error at each check"


def test_a_fresh_empty_file_keeps_the_keys_until_it_settles(key_file):
    keys = ApiKeys(key_file)
    key_file.write_text("")  # truncated by a writer that is about to write the new keys
    assert accepts(keys, "secret-one-0123456789ab")
    settle(key_file)
    assert not accepts(keys, "secret-one-0123456789ab")


@pytest.mark.parametrize("break_it", ["delete", "directory"])
def test_a_deleted_or_unreadable_file_keeps_the_last_good_keys_and_says_so(key_file, caplog, break_it):
    keys = ApiKeys(key_file)
    key_file.unlink()
    if break_it == "directory":  # unreadable even for root (tests run as root: chmod would not do)
        key_file.mkdir()
    with caplog.at_level(logging.ERROR, logger="receiver.auth"):
        assert accepts(keys, "secret-one-0123456789ab")
        assert accepts(keys, "secret-one-0123456789ab")
    assert keys.count == 1 and not keys.file_ok
    assert len([r for r in caplog.records if "keeping the last good keys" in r.getMessage()]) == 2
    if break_it == "directory":
        key_file.rmdir()
    key_file.write_text("secret-new-0123456789ab\n")
    settle(key_file)
    assert accepts(keys, "secret-new-0123456789ab") and not accepts(keys, "secret-one-0123456789ab")
    assert keys.file_ok


@pytest.mark.parametrize("content", ["", "# none\n"])
def test_a_file_without_keys_at_start_is_a_start_up_error(tmp_path, content):
    path = tmp_path / "keys"
    path.write_text(content)
    settle(path)
    with pytest.raises(KeyFileError, match="no API keys"):
        ApiKeys(path)


def test_an_unreadable_file_at_start_is_a_start_up_error(tmp_path):
    with pytest.raises(KeyFileError, match="cannot read"):
        ApiKeys(tmp_path / "missing")


# -- a minimum key length (security review, hardening note) ----------------------------------------


@pytest.mark.parametrize(("content", "line"), [
    ("k1\n", 1), ("# keys\nsecret-one-0123456789ab\nshort-key\n", 3), ("secret-one-0123456789ab\nshort-key", 2),
], ids=["only-short", "one-short-line", "unterminated-short"])
def test_a_key_shorter_than_16_characters_is_a_start_up_error_naming_its_line(tmp_path, content, line):
    path = tmp_path / "keys"
    path.write_text(content)
    settle(path)
    with pytest.raises(KeyFileError, match=f"line {line} holds a key shorter than {MIN_KEY_CHARS}"):
        ApiKeys(path)


def test_a_short_key_in_a_reloaded_file_is_ignored_and_logged(key_file, caplog):
    keys = ApiKeys(key_file)
    key_file.write_text("secret-two-0123456789ab\nguessable\n")
    settle(key_file)
    with caplog.at_level(logging.ERROR, logger="receiver.auth"):
        assert accepts(keys, "secret-two-0123456789ab")
        assert not accepts(keys, "guessable")
    assert keys.count == 1
    logged = [r for r in caplog.records if r.getMessage() == "api key lines too short; ignored"]
    assert len(logged) == 2, "an error at each check"
    assert logged[0].lines == [2] and "guessable" not in str(vars(logged[0])), "the log never shows a key"


def test_a_stalled_writers_short_prefix_never_becomes_a_key(key_file):
    """The settle rule takes an unterminated last line after 2 s; a short prefix is still not a key."""
    keys = ApiKeys(key_file)
    with open(key_file, "a") as f:
        f.write("secret-t")  # a writer stalls here, for good
    settle(key_file)
    assert not accepts(keys, "secret-t")
    assert accepts(keys, "secret-one-0123456789ab")


def test_checks_are_rate_limited(key_file, monkeypatch):
    monkeypatch.setattr(auth, "RELOAD_CHECK_SECONDS", 3600.0)
    keys = ApiKeys(key_file)
    key_file.write_text("secret-two-0123456789ab\n")
    settle(key_file)
    assert accepts(keys, "secret-one-0123456789ab"), "not re-read before the check interval"
    keys.refresh(force=True)
    assert accepts(keys, "secret-two-0123456789ab")
