"""receiver/{guard,connection,framing,listener}.py reach into waitress; these fail loudly if an upgrade moves it.

Also the table of waitress's error statuses → our error codes, over every error class waitress has.
"""

from __future__ import annotations

import inspect

import waitress.parser
import waitress.utilities
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.buffers import OverflowableBuffer
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer

from receiver.body_buffers import INBUF_OVERFLOW_BYTES
from receiver.framing import VersionNotSupported
from receiver.guard import WAITRESS_ERROR_CODES, BuffersFull, KeyRequired


def _error_classes(base: type) -> set[type]:
    found = set()
    for sub in base.__subclasses__():
        found |= {sub} | _error_classes(sub)
    return found


def test_every_waitress_error_status_has_our_code():
    statuses = {cls.code for cls in _error_classes(waitress.utilities.Error)} | {waitress.utilities.Error.code}
    assert {KeyRequired.code, BuffersFull.code, VersionNotSupported.code} <= statuses
    missing = statuses - set(WAITRESS_ERROR_CODES)
    assert not missing, f"waitress answers statuses we do not label: {missing}"
    assert WAITRESS_ERROR_CODES[500] == "internal_error"
    assert WAITRESS_ERROR_CODES[400] == "bad_request"


def test_the_parser_hooks_we_override_exist():
    parser = HTTPRequestParser
    for name in ("received", "parse_header", "close"):
        assert callable(getattr(parser, name)), name
    for name in ("completed", "error", "expect_continue", "chunked", "content_length", "header_plus",
                 "header_bytes_received", "body_bytes_received", "headers_finished", "body_rcv", "version"):
        assert hasattr(parser, name), name
    # Transfer-Encoding leaves the parsed headers (in HTTP/1.1) before the guard could see it: hence the raw read.
    assert 'headers.pop("TRANSFER_ENCODING"' in inspect.getsource(parser.parse_header)
    # A header block over the limit is parsed as a stand-in request line: parse_header must accept it.
    assert 'self.parse_header(b"GET / HTTP/1.0\\r\\n")' in inspect.getsource(parser.received)
    # parse_header's ParsingError becomes a 400 in received(): what the framing guard relies on.
    assert "except ParsingError" in inspect.getsource(parser.received)
    # send_continue runs after parser.received(); the guard clears expect_continue before it can.
    assert "expect_continue" in inspect.getsource(HTTPChannel.received)


def test_the_channel_and_server_hooks_we_use_exist():
    for name in ("received", "parser_class", "error_task_class", "request", "will_close", "close_when_flushed",
                 "total_outbufs_len", "readable", "handle_write", "handle_close"):
        assert hasattr(HTTPChannel, name), name
    received = inspect.getsource(HTTPChannel.received)
    # A new parser per request, made through parser_class (ours binds the channel), inside requests_lock.
    assert "self.request = self.parser_class(self.adj)" in received and "self.requests_lock" in received
    # Pipelined bytes are parsed one request at a time: a parser that consumes everything ends the loop.
    assert "if n >= len(data):" in received
    # Not readable while requests are queued or answers unsent: held bytes are fed back from readable().
    readable = inspect.getsource(HTTPChannel.readable)
    assert "self.requests" in readable and "self.total_outbufs_len" in readable
    assert Adjustments.channel_request_lookahead == 0
    # Lingering close: an empty read closes through handle_close; a closing channel closes from handle_write.
    assert "self.handle_close()" in inspect.getsource(wasyncore.dispatcher.recv)
    assert "self.handle_close()" in inspect.getsource(HTTPChannel.handle_write)
    # The message the channel logger counts instead of logging.
    assert 'self.logger.info("Client disconnected while serving' in inspect.getsource(HTTPChannel.service)
    assert "self.maintenance(now)" in inspect.getsource(BaseWSGIServer.readable)
    assert "channel_timeout" in inspect.getsource(BaseWSGIServer.maintenance)
    assert "active_channels" in inspect.getsource(BaseWSGIServer.__init__)


def test_a_body_past_the_overflow_leaves_memory_for_a_temp_file():
    """What receiver/body_buffers.py counts as memory: at most INBUF_OVERFLOW_BYTES of a body."""
    buffer = OverflowableBuffer(INBUF_OVERFLOW_BYTES)
    buffer.append(b"x" * (INBUF_OVERFLOW_BYTES - 1))
    assert not buffer.overflowed
    buffer.append(b"x" * 2)
    assert buffer.overflowed, "a body past the overflow is in a temp file"
    buffer.close()
    assert Adjustments.inbuf_overflow == INBUF_OVERFLOW_BYTES
    assert waitress.parser.OverflowableBuffer is OverflowableBuffer
