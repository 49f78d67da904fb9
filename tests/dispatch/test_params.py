"""PARAMS is a byte stream (FastCGI spec 3.4, 5.2): name-value pairs may span records."""
import random
import struct

import pytest
from flup.server.fcgi_base import (
    FCGI_BEGIN_REQUEST,
    FCGI_PARAMS,
    FCGI_RESPONDER,
    FCGI_STDIN,
    FCGI_BeginRequestBody,
    encode_pair,
)

from dispatch import fcgi_client
from dispatch.connection import ProtocolError, decode_pairs, encode_params, encode_record, encode_stream

BEGIN = encode_record(FCGI_BEGIN_REQUEST, 1, struct.pack(FCGI_BeginRequestBody, FCGI_RESPONDER, 0))


def records(stream: bytes, cuts: list[int]) -> bytes:
    """The PARAMS stream cut into records at the given offsets, then ended; an empty STDIN."""
    bounds = [0, *cuts, len(stream)]
    out = b"".join(encode_record(FCGI_PARAMS, 1, stream[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))
    return BEGIN + out + encode_record(FCGI_PARAMS, 1) + encode_record(FCGI_STDIN, 1)


def split_params(data: bytes) -> list[bytes]:
    """The content of each PARAMS record in a client's request bytes."""
    out, pos = [], 0
    while pos < len(data):
        _, rtype, _, length, padding = struct.unpack_from("!BBHHBx", data, pos)
        if rtype == FCGI_PARAMS:
            out.append(data[pos + 8:pos + 8 + length])
        pos += 8 + length + padding
    return out


def test_the_client_encodes_one_stream_in_records_of_at_most_65535_bytes():
    params = fcgi_client.params_for("GET", "/t/meta?k=HTTP_X_BIG", headers={"X-Big": "é" * 70000})
    contents = split_params(fcgi_client.request_bytes(params))
    assert contents[-1] == b"" and all(len(c) <= 65535 for c in contents) and len(contents) == 3
    assert decode_pairs(b"".join(contents)) == params


def reference_decode(data: bytes) -> dict[str, str]:
    """The spec's name-value pair format read one length at a time, the plain way."""
    pairs, pos = {}, 0
    while pos < len(data):
        lengths = []
        for _ in range(2):
            if pos >= len(data):
                raise ProtocolError("truncated")
            if data[pos] < 128:
                lengths.append(data[pos])
                pos += 1
            elif pos + 4 > len(data):
                raise ProtocolError("truncated")
            else:
                lengths.append(int.from_bytes(data[pos:pos + 4], "big") & 0x7FFFFFFF)
                pos += 4
        name_end, end = pos + lengths[0], pos + lengths[0] + lengths[1]
        if end > len(data):
            raise ProtocolError("truncated")
        pairs[data[pos:name_end].decode("latin-1")] = data[name_end:end].decode("latin-1")
        pos = end
    return pairs


def test_the_decoder_agrees_with_the_spec_on_short_long_cut_and_garbled_streams():
    """decode_pairs takes a fast path for short pairs: long lengths (four bytes), streams cut anywhere and
    stray bytes decode, or are refused, exactly as the spec's plain reading does."""
    rng = random.Random(17)
    refused = 0
    for _ in range(3000):
        stream = b"".join(encode_pair(rng.randbytes(rng.choice([0, 1, 9, 127, 128, 300])),
                                      rng.randbytes(rng.choice([0, 5, 127, 128, 1000])))
                          for _ in range(rng.randrange(1, 4)))
        if rng.random() < 0.5:
            stream = stream[:rng.randrange(len(stream))]
        if rng.random() < 0.2:
            stream += rng.randbytes(1)
        try:
            expected = reference_decode(stream)
        except ProtocolError:
            refused += 1
            with pytest.raises(ProtocolError):
                decode_pairs(stream)
        else:
            assert decode_pairs(stream) == expected
    assert 500 < refused < 2500  # both outcomes were exercised


@pytest.mark.slow
def test_pairs_spanning_records_are_decoded_whole(runfcgi):
    runfcgi.start("--workers", "1")
    params = fcgi_client.params_for("GET", "/t/meta?k=HTTP_X_PROBE", headers={"X-Probe": "v" * 300})
    stream = encode_params(params)
    start = stream.index(b"HTTP_X_PROBE") - 5  # the pair: name length (1 byte), value length (4 bytes), ...
    for cut in (start + 1, start + 3, start + 7, start + 20, start + 200):  # lengths, name, value
        response = fcgi_client.exchange(runfcgi.address, records(stream, [cut]))
        assert (response.status, response.body) == (200, b"v" * 300), cut
    every_byte = list(range(1, len(stream)))  # one record per byte
    assert fcgi_client.exchange(runfcgi.address, records(stream, every_byte)).body == b"v" * 300


@pytest.mark.slow
def test_a_65_kb_header_arrives_whole(runfcgi):
    """Its pair spans two records; so do the pairs after it survive."""
    runfcgi.start("--workers", "1")
    value = "".join(chr(33 + i % 90) for i in range(66560))
    headers = {"X-Big": value, "X-After": "still here"}
    assert len(encode_params(fcgi_client.params_for("GET", "/", headers=headers))) > 65535
    response = fcgi_client.get(runfcgi.address, "/t/meta?k=HTTP_X_BIG", headers=headers)
    assert response.status == 200 and response.body == value.encode()
    assert fcgi_client.get(runfcgi.address, "/t/meta?k=HTTP_X_AFTER", headers=headers).body == b"still here"


@pytest.mark.slow
def test_the_tail_of_a_long_header_cannot_smuggle_remote_addr(runfcgi):
    """A 65 KB header whose value, from the second record on, reads as the pair REMOTE_ADDR=127.0.0.1.
    Decoded per record (before), the status page took the request for a local one: 200."""
    runfcgi.start("--workers", "1")
    params = fcgi_client.params_for("GET", "/dispatch/status", remote="203.0.113.9")
    prefix = encode_params(params)
    name = b"HTTP_X_PAD"
    smuggled = encode_pair(b"REMOTE_ADDR", b"127.0.0.1")
    filler = 65535 - len(prefix) - 5 - len(name)  # the smuggled bytes start the second record
    stream = prefix + encode_pair(name, b"a" * filler + smuggled)
    assert stream[65535:].startswith(smuggled)
    data = BEGIN + encode_stream(FCGI_PARAMS, 1, stream) + encode_record(FCGI_STDIN, 1)
    response = fcgi_client.exchange(runfcgi.address, data)
    assert response.status == 403
    local = fcgi_client.params_for("GET", "/dispatch/status")
    assert fcgi_client.request(runfcgi.address, local).status == 200  # the page itself works


@pytest.mark.slow
def test_a_content_length_that_is_not_a_number_is_a_400(runfcgi):
    """Before: a 500 (int('abc') in Django's body reading) that no log showed."""
    runfcgi.start("--workers", "1")
    params = fcgi_client.params_for("POST", "/t/body", body=b"abc")
    params["CONTENT_LENGTH"] = "abc"
    response = fcgi_client.request(runfcgi.address, params, b"abc")
    assert response.status == 400 and b"CONTENT_LENGTH" in response.body
    params["CONTENT_LENGTH"] = "3"
    assert fcgi_client.request(runfcgi.address, params, b"abc").body == b"3"
