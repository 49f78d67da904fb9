"""One accepted FastCGI connection, read and written without blocking.

A child multiplexes many of these on a selector: bytes are read as they arrive and parsed into records
from a buffer, so a slow or half-open peer holds a file descriptor, never the child. The application runs
only for a complete request (BEGIN_REQUEST, the whole PARAMS stream, the whole STDIN stream up to
``max_body``). Every phase has a deadline: the request head (BEGIN_REQUEST and PARAMS), the body (STDIN,
measured from the last progress), sending the response (from the last progress) and lingering after it
(waiting for the peer to close before we do, so it never reads a reset instead of the response).

Keep-alive: a request whose BEGIN_REQUEST has FCGI_KEEP_CONN (nginx's ``fastcgi_keep_conn on``) leaves
the connection open once its response is sent; it waits (up to ``keepalive_timeout``, which should be
longer than the web server's own idle timeout: the web server closes idle connections, we do not) for the
next request. A leaving child decides when its connections end (see child.py): an idle one is half-closed
(``end``), a busy one after its response once ``reuse`` is off; either then lingers as without keep-alive.

PARAMS and STDIN are byte streams, as the FastCGI spec defines them: the PARAMS records are concatenated
and the name-value pairs decoded once, at the empty record that ends the stream, so a pair may span
records (flup decoded record by record: a pair split across two records was cut short and the rest of
its value read as further pairs, e.g. a smuggled REMOTE_ADDR at the tail of a 65 KB header).
"""
from __future__ import annotations

import io
import logging
import re
import select
import socket
import struct
import tempfile
import time
from dataclasses import dataclass

from flup.server.fcgi_base import (
    FCGI_ABORT_REQUEST,
    FCGI_BEGIN_REQUEST,
    FCGI_CANT_MPX_CONN,
    FCGI_DATA,
    FCGI_END_REQUEST,
    FCGI_GET_VALUES,
    FCGI_GET_VALUES_RESULT,
    FCGI_HEADER_LEN,
    FCGI_KEEP_CONN,
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    FCGI_NULL_REQUEST_ID,
    FCGI_PARAMS,
    FCGI_REQUEST_COMPLETE,
    FCGI_STDIN,
    FCGI_UNKNOWN_TYPE,
    FCGI_VERSION_1,
    FCGI_BeginRequestBody,
    FCGI_EndRequestBody,
    FCGI_Header,
    FCGI_UnknownTypeBody,
    encode_pair,
)

logger = logging.getLogger("mtdispatch.fastcgi")

HEADER = struct.Struct(FCGI_Header)
BEGIN_BODY = struct.Struct(FCGI_BeginRequestBody)
MAX_PARAMS = 1 << 20  # the whole PARAMS stream; nginx's largest headers are far below this
MAX_RECORD = 65535
SPOOL_IN_MEMORY = 1 << 20  # request bodies above this go to a temporary file
# Output is sent in the background (the child goes on) unless this much is unsent: then the application
# waits (up to the send timeout) for the peer, so a huge or endless streamed response cannot fill memory.
OUT_HIGH_WATER = 4 << 20
READ_CHUNK = 65536

# Responses are sent when complete (one send for most), or once this much is queued.
PUSH_AT = 1 << 16

# Connection states (WAITING: kept alive, between requests)
HEAD, BODY, READY, FLUSHING, LINGERING, CLOSED = "head", "body", "ready", "flushing", "lingering", "closed"
WAITING = "waiting"


class ProtocolError(Exception):
    """Malformed input: the connection is dropped (never the process)."""


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0  # from accept to the end of the PARAMS stream
    body_timeout: float = 30.0  # STDIN: longest wait for the next bytes
    send_timeout: float = 30.0  # the response: longest wait for the peer to take the next bytes
    linger_timeout: float = 5.0  # after the response: longest wait for the peer to close
    max_body: int = 64 << 20  # STDIN bytes; more is answered 413
    keepalive_timeout: float = 300.0  # a kept-alive connection: longest wait for the next request


def encode_record(rtype: int, request_id: int, data: bytes = b"") -> bytes:
    """One FastCGI record: header, content, padding to a multiple of 8 bytes."""
    padding = -len(data) & 7
    return HEADER.pack(FCGI_VERSION_1, rtype, request_id, len(data), padding) + data + b"\x00" * padding


def encode_stream(rtype: int, request_id: int, data: bytes) -> bytes:
    """A stream's records (each at most 65535 bytes, split anywhere), ended by an empty record."""
    chunks = [data[start:start + MAX_RECORD] for start in range(0, len(data), MAX_RECORD)]
    return b"".join(encode_record(rtype, request_id, chunk) for chunk in chunks) + encode_record(rtype, request_id)


def encode_params(params: dict[str, str]) -> bytes:
    return b"".join(encode_pair(k.encode("latin-1"), v.encode("latin-1")) for k, v in params.items())


def decode_pairs(data: bytes | bytearray) -> dict[str, str]:
    """Decode a whole name-value pair stream (PARAMS, GET_VALUES); strings are latin-1 (PEP 3333). (Lengths
    below 128 take one byte, others four with the high bit set.) The stream is decoded to text once and the
    names and values sliced from it (latin-1 maps each byte to one character, so offsets are the same):
    two decode calls a pair cost a third of a request's decoding."""
    data = bytes(data)
    text = data.decode("latin-1")
    pairs, pos, size = {}, 0, len(data)
    while pos < size:
        name_len = data[pos]
        value_len = data[pos + 1] if pos + 1 < size else 0
        if name_len < 128 and value_len < 128 and pos + 1 < size:  # the usual pair: short name and value
            pos += 2
        else:
            pos, name_len, value_len = _long_lengths(data, pos, size)
        middle = pos + name_len
        end = middle + value_len
        if end > size:
            raise ProtocolError("name-value pair runs past the end of the stream")
        pairs[text[pos:middle]] = text[middle:end]
        pos = end
    return pairs


def _long_lengths(data: bytes, pos: int, size: int) -> tuple[int, int, int]:
    """A pair with a length of four bytes: where its name starts, and its lengths."""
    lengths = []
    for _ in range(2):
        if pos >= size:
            raise ProtocolError("name-value pair truncated")
        length = data[pos]
        if length < 128:
            pos += 1
        elif pos + 4 > size:
            raise ProtocolError("name-value pair length truncated")
        else:
            length = int.from_bytes(data[pos:pos + 4], "big") & 0x7FFFFFFF
            pos += 4
        lengths.append(length)
    return pos, lengths[0], lengths[1]


CONTENT_LENGTH = re.compile(r"[0-9]{1,18}\Z")


def request_error(params: dict[str, str], max_body: int) -> tuple[int, str] | None:
    """An HTTP error to answer without running the application, if the head is unusable."""
    length = params.get("CONTENT_LENGTH", "").strip()
    if length and not CONTENT_LENGTH.match(length):
        return 400, f"Bad Request: CONTENT_LENGTH {length[:40]!r} is not a number of bytes"
    if length and int(length) > max_body:
        return 413, f"Payload Too Large: more than {max_body} bytes"
    return None


class Connection:
    """State machine of one connection: head → body → ready (the application runs) → flushing → lingering."""

    capability = {FCGI_MAX_CONNS: "1000", FCGI_MAX_REQS: "1000", FCGI_MPXS_CONNS: "0"}

    def __init__(self, sock: socket.socket, addr, limits: Limits, now: float | None = None) -> None:
        sock.setblocking(False)
        self.sock, self.addr, self.limits = sock, addr, limits
        self.now = time.monotonic() if now is None else now
        self.accepted = self.now
        self.state = HEAD
        self.deadline = self.now + limits.header_timeout
        self.inbuf = bytearray()
        self.received = 0
        self.outbuf = bytearray()
        self.request_id = 0
        self.role = self.flags = 0
        self.params: dict[str, str] = {}
        self._params_buf = bytearray()
        self.stdin = None
        self.stdin_length = 0
        self.error: tuple[int, str] | None = None  # answer this instead of running the application
        self.broken = False  # the peer went away while we were writing
        self.close_reason = ""
        self.reuse = True  # keep the connection for another request if the web server asks (FCGI_KEEP_CONN)
        self.requests = 0  # answered on this connection
        self.idle_since = 0.0  # monotonic: when it went WAITING

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def reading(self) -> bool:
        # READY too: the connection stays registered for reading from its request to the next (no epoll_ctl
        # per request); on_readable leaves a READY connection alone until its response is written.
        return self.state in (HEAD, BODY, READY, LINGERING, WAITING)

    @property
    def writing(self) -> bool:
        return self.state == FLUSHING

    # -- input --------------------------------------------------------------------------------------

    def on_readable(self, now: float) -> None:
        """Read what the socket has (up to a bound, for fairness between connections) and parse it."""
        if self.state == READY:
            return  # read on after the response (a peer that closed early is noticed then, as before)
        self.now = now
        for _ in range(16):
            try:
                data = self.sock.recv(READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                return self.close(f"recv: {exc}")
            if not data:
                return self.close("peer closed" if self.state not in (LINGERING, WAITING) else "")
            self.received += len(data)
            if self.state == LINGERING:
                continue  # input after the response (e.g. the rest of a refused body): discarded
            if self.state == WAITING:  # the next request on a kept-alive connection
                self.state = HEAD
                self.deadline = now + self.limits.header_timeout
            self.inbuf += data
            try:
                self._parse()
            except ProtocolError as exc:
                logger.warning("Dropping a FastCGI connection after a protocol error: %s", exc)
                return self.close(f"protocol error: {exc}")
            if self.state not in (HEAD, BODY) or len(data) < READ_CHUNK:
                break

    _parsing = False
    _consumed = 0  # bytes of inbuf parsed already, while _parse_records runs

    def _parse(self) -> None:
        self._parsing = True
        try:
            self._parse_records()
        finally:
            self._parsing = False

    def _parse_records(self) -> None:
        """The complete records in the input buffer, parsed from one copy of it; the consumed bytes are
        removed once at the end (removing each record's bytes as it was parsed moved the rest of the buffer
        every time). Nothing is copied until the first record is complete (a record trickling in a byte at a
        time would be copied once a byte)."""
        if len(self.inbuf) < FCGI_HEADER_LEN:
            return
        version, _, _, length, padding = HEADER.unpack_from(self.inbuf)
        if version == FCGI_VERSION_1 and len(self.inbuf) < FCGI_HEADER_LEN + length + padding:
            return
        data = bytes(self.inbuf)
        size, pos = len(data), 0
        try:
            while self.state in (HEAD, BODY) and size - pos >= FCGI_HEADER_LEN:
                version, rtype, request_id, length, padding = HEADER.unpack_from(data, pos)
                if version != FCGI_VERSION_1:
                    raise ProtocolError(f"FastCGI version {version}")
                start = pos + FCGI_HEADER_LEN
                end = start + length + padding
                if size < end:
                    return
                pos = self._consumed = end
                self._record(rtype, request_id, data[start:start + length])
        finally:
            del self.inbuf[:pos]
            self._consumed = 0

    def _record(self, rtype: int, request_id: int, content: bytes) -> None:
        if request_id == FCGI_NULL_REQUEST_ID:
            return self._management(rtype, content)
        if rtype == FCGI_BEGIN_REQUEST:
            return self._begin(request_id, content)
        if request_id != self.request_id:
            return  # a record for no request of ours: ignored, as the spec says
        if rtype == FCGI_PARAMS and self.state == HEAD:
            self._params(content)
        elif rtype == FCGI_STDIN and self.state == BODY:
            self._body(content)
        elif rtype == FCGI_ABORT_REQUEST:
            self.send(encode_record(FCGI_END_REQUEST, request_id, struct.pack(FCGI_EndRequestBody, 0,
                                                                              FCGI_REQUEST_COMPLETE)))
            self.finish_response()
        elif rtype not in (FCGI_PARAMS, FCGI_STDIN, FCGI_DATA):
            raise ProtocolError(f"unexpected record type {rtype}")

    def _management(self, rtype: int, content: bytes) -> None:
        if rtype == FCGI_GET_VALUES:
            asked = decode_pairs(content)
            answer = b"".join(encode_pair(name.encode("latin-1"), self.capability[name].encode())
                              for name in asked if name in self.capability)
            self.send(encode_record(FCGI_GET_VALUES_RESULT, FCGI_NULL_REQUEST_ID, answer))
        else:
            self.send(encode_record(FCGI_UNKNOWN_TYPE, FCGI_NULL_REQUEST_ID, struct.pack(FCGI_UnknownTypeBody, rtype)))
        self._push()  # answered at once, whatever the state of the request

    def _begin(self, request_id: int, content: bytes) -> None:
        if len(content) != BEGIN_BODY.size:
            raise ProtocolError(f"BEGIN_REQUEST body of {len(content)} bytes")
        if self.request_id:  # one request per connection: no multiplexing
            body = struct.pack(FCGI_EndRequestBody, 0, FCGI_CANT_MPX_CONN)
            self.send(encode_record(FCGI_END_REQUEST, request_id, body))
            self._push()
            return
        self.request_id = request_id
        self.role, self.flags = BEGIN_BODY.unpack(content)

    def _params(self, content: bytes) -> None:
        if content:
            if len(self._params_buf) + len(content) > MAX_PARAMS:
                raise ProtocolError(f"PARAMS stream over {MAX_PARAMS} bytes")
            self._params_buf += content
            return
        self.params = decode_pairs(self._params_buf)  # the whole stream, once: pairs may span records
        self._params_buf = bytearray()
        self.error = request_error(self.params, self.limits.max_body)
        if self.error:
            self.state = READY  # answered without waiting for (or reading) the body
            return
        self.state = BODY
        self.stdin = io.BytesIO()  # a SpooledTemporaryFile once the body is large (see _body)
        self.deadline = self.now + self.limits.body_timeout

    def _body(self, content: bytes) -> None:
        if not content:
            self.stdin.seek(0)
            self.state = READY
            return
        self.stdin_length += len(content)
        if self.stdin_length > self.limits.max_body:
            self.error = 413, f"Payload Too Large: more than {self.limits.max_body} bytes"
            self.state = READY
            return
        self.stdin.write(content)
        if self.stdin_length > SPOOL_IN_MEMORY and type(self.stdin) is io.BytesIO:
            spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # rolls over to a file
            spooled.write(self.stdin.getbuffer())
            self.stdin = spooled
        self.deadline = self.now + self.limits.body_timeout  # progress

    # -- output -------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue bytes; once PUSH_AT are queued send what the socket takes now, and while the application
        runs wait (up to the send timeout) only if a lot is unsent. The rest goes with the end of the
        response (``finish_response``): one send for most responses. A peer that went away makes further
        output a no-op."""
        if self.broken or self.state == CLOSED:
            return
        self.outbuf += data
        if len(self.outbuf) >= PUSH_AT:
            self.push()

    def push(self) -> None:
        """Send what the socket takes now (a streamed response's chunk goes out as it is written)."""
        self._push()
        if len(self.outbuf) > OUT_HIGH_WATER:
            self.wait_writable(OUT_HIGH_WATER)

    def _push(self) -> bool:
        """Send without blocking; True when progress was made."""
        sent = False
        while self.outbuf and not self.broken:
            try:
                n = self.sock.send(self.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.broken, self.close_reason = True, f"send: {exc}"
                self.outbuf.clear()
                break
            del self.outbuf[:n]
            sent = True
        return sent

    def wait_writable(self, below: int) -> None:
        poll = select.poll()  # not select(): a child may hold descriptors above FD_SETSIZE
        poll.register(self.sock, select.POLLOUT)
        deadline = time.monotonic() + self.limits.send_timeout
        while len(self.outbuf) > below and not self.broken:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.broken, self.close_reason = True, "send timeout"
                self.outbuf.clear()
                return
            poll.poll(remaining * 1000)
            if self._push():
                deadline = time.monotonic() + self.limits.send_timeout

    def finish_response(self, now: float | None = None) -> None:
        """The response is complete (END_REQUEST queued): flush it in the background, then linger."""
        self.now = time.monotonic() if now is None else now
        self._close_stdin()
        if self.broken:
            return self.close(self.close_reason)
        self.state = FLUSHING
        self.deadline = self.now + self.limits.send_timeout
        self._push()
        if self.broken:
            return self.close(self.close_reason)
        self._after_flush()

    def on_writable(self, now: float) -> None:
        self.now = now
        if self._push():
            self.deadline = now + self.limits.send_timeout
        if self.broken:
            return self.close(self.close_reason)
        self._after_flush()

    def _after_flush(self) -> None:
        if self.outbuf:
            return
        self.requests += 1
        if self.reuse and self.flags & FCGI_KEEP_CONN:
            return self._wait_for_next()
        self.end()

    def _wait_for_next(self) -> None:
        """Kept alive: ready for the next request on this connection."""
        self.request_id, self.role, self.flags = 0, 0, 0
        self.params, self.error, self.stdin_length = {}, None, 0
        self.state = WAITING
        self.idle_since = self.now
        self.deadline = self.now + self.limits.keepalive_timeout
        if len(self.inbuf) > self._consumed:  # the next request came with the end of this one (after an ABORT)
            self.state = HEAD
            self.deadline = self.now + self.limits.header_timeout
            if not self._parsing:  # else the loop parsing goes on with it
                try:
                    self._parse()
                except ProtocolError as exc:
                    logger.warning("Dropping a FastCGI connection after a protocol error: %s", exc)
                    self.close(f"protocol error: {exc}")

    def end(self) -> None:
        """No further request on this connection: half-close it and linger until the peer closes (it reads
        the end of the stream, never a reset)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return self.close("")
        self.state = LINGERING
        self.deadline = self.now + self.limits.linger_timeout

    # -- end ----------------------------------------------------------------------------------------

    def expired(self, now: float) -> bool:
        return self.state != READY and self.state != CLOSED and now >= self.deadline

    def timeout_reason(self) -> str:
        return {HEAD: "header timeout", BODY: "body timeout", FLUSHING: "send timeout",
                LINGERING: "", WAITING: ""}.get(self.state, "")

    def close(self, reason: str = "") -> None:
        if self.state == CLOSED:
            return
        self.close_reason = reason or self.close_reason
        self.state = CLOSED
        self._close_stdin()
        try:
            self.sock.close()
        except OSError:
            pass

    def _close_stdin(self) -> None:
        if self.stdin is not None:
            self.stdin.close()
            self.stdin = None
