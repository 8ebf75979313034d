"""Every route setting `check` accepts is accepted by `receive` and `tail`, and what either refuses `check`
refuses: one table over every config the file tests know (good and wrong), and the flags that decide caps.

`receive` and `tail` run their real start-up (click, the config, the routes' caps against the volume) and
stop just before serving or shipping (the server and the sink are replaced by an exit 0).
"""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from spoolship.cli import main
from tests.unit.test_config_file import GOOD, PROBLEMS, replace

VARIANTS = {f"wrong: {problem}": text for text, problem in PROBLEMS} | {
    "good": GOOD,
    "good, a relative route spool": replace('max_spool_bytes = "512MiB"', 'spool_dir = "fast/clicks"'),
    "good, no bad route": GOOD.split("[routes.bad]")[0] + "[destinations.main]" + GOOD.split("[destinations.main]")[1],
    "caps over the volume": replace('max_spool_bytes = "512MiB"', 'max_spool_bytes = "1000TiB"'),
}
# --spool-dir is given to every command (the tests' /spool is not writable), so this one cannot happen.
VARIANTS.pop("wrong: spool_dir: not set here")


@pytest.fixture
def no_serving(monkeypatch):
    import receiver.server
    import spoolship.commands.tail as tail

    monkeypatch.setattr(receiver.server, "serve", lambda *a, **k: 0)
    monkeypatch.setattr(tail, "_open_sink", lambda config: sys.exit(0))


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_check_accepts_exactly_what_receive_and_tail_accept(tmp_path, no_serving, variant):
    config = tmp_path / "routes.toml"
    text = VARIANTS[variant].replace('"/spool', f'"{tmp_path}/spool')
    config.write_text(text)
    spool = ["--config", str(config), "--spool-dir", str(tmp_path / "spool")]
    events = ["--max-event-bytes", "500000"]  # GOOD's clicks records are 512 KiB
    runner = CliRunner()
    checked = runner.invoke(main, ["check", *spool, *events])
    received = runner.invoke(main, ["receive", *spool, *events, "--port", "0", "--invalid", "drop"])
    tailed = runner.invoke(main, ["tail", *spool, "--region", "us-east-1"])
    codes = {"check": checked.exit_code, "receive": received.exit_code, "tail": tailed.exit_code}
    assert set(codes.values()) <= {0, 2}, (codes, checked.output, received.output, tailed.output)
    assert codes["check"] == max(codes["receive"], codes["tail"]), (codes, received.output, tailed.output)
    if variant.startswith("wrong") or variant.startswith("caps"):
        assert codes["check"] == 2, checked.output
    else:
        assert codes == {"check": 0, "receive": 0, "tail": 0}, (received.output, tailed.output)


def test_check_and_receive_agree_on_the_event_size_a_firehose_record_holds(tmp_path, no_serving):
    """Found by the table above: `check` did not know --max-event-bytes, so it called valid a file that
    `receive` refuses with its default (1,000,000-byte events into 512 KiB Firehose records)."""
    config = tmp_path / "routes.toml"
    config.write_text(GOOD.replace('"/spool', f'"{tmp_path}/spool'))
    runner = CliRunner()
    for args, code in ((["--max-event-bytes", "600000"], 2), ([], 2), (["--max-event-bytes", "524287"], 0)):
        checked = runner.invoke(main, ["check", "--config", str(config), *args])
        received = runner.invoke(main, ["receive", "--config", str(config), "--port", "0", *args])
        assert checked.exit_code == received.exit_code == code, (args, checked.output, received.output)
