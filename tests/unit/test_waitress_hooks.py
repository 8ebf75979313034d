"""receiver/guard.py and receiver/server.py reach into waitress; these fail loudly if an upgrade moves it.

Also the table of waitress's error statuses → our error codes, over every error class waitress has.
"""

from __future__ import annotations

import inspect

import waitress.utilities
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer

from receiver.guard import WAITRESS_ERROR_CODES, KeyRequired


def _error_classes(base: type) -> set[type]:
    found = set()
    for sub in base.__subclasses__():
        found |= {sub} | _error_classes(sub)
    return found


def test_every_waitress_error_status_has_our_code():
    statuses = {cls.code for cls in _error_classes(waitress.utilities.Error)} | {waitress.utilities.Error.code}
    assert KeyRequired.code in statuses
    missing = statuses - set(WAITRESS_ERROR_CODES)
    assert not missing, f"waitress answers statuses we do not label: {missing}"
    assert WAITRESS_ERROR_CODES[500] == "internal_error"
    assert WAITRESS_ERROR_CODES[400] == "bad_request"


def test_the_parser_hooks_we_override_exist():
    parser = HTTPRequestParser
    for name in ("received", "parse_header"):
        assert callable(getattr(parser, name)), name
    for name in ("completed", "error", "expect_continue", "chunked", "content_length",
                 "header_bytes_received", "body_bytes_received", "headers_finished"):
        assert hasattr(parser, name), name
    # parse_header's ParsingError becomes a 400 in received(): what the framing guard relies on.
    assert "except ParsingError" in inspect.getsource(parser.received)
    # send_continue runs after parser.received(); the guard clears expect_continue before it can.
    assert "expect_continue" in inspect.getsource(HTTPChannel.received)


def test_the_channel_and_server_hooks_we_use_exist():
    for name in ("received", "parser_class", "error_task_class", "request", "will_close"):
        assert hasattr(HTTPChannel, name), name
    assert "self.maintenance(now)" in inspect.getsource(BaseWSGIServer.readable)
    assert "channel_timeout" in inspect.getsource(BaseWSGIServer.maintenance)
    assert "active_channels" in inspect.getsource(BaseWSGIServer.__init__)
