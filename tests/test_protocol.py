"""Codec round trips and malformed-frame handling of hi_runtime.protocol (property-based)."""
from __future__ import annotations

import asyncio
import socket
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hi_runtime import protocol as p

ascii_id = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=32)
u32 = st.integers(0, 2**32 - 1)
f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
pos_f32 = st.floats(min_value=0.125, max_value=1024.0, width=32)
nonce = st.binary(min_size=16, max_size=16)


@st.composite
def infers(draw: st.DrawFn) -> p.Infer:
    dtype = draw(st.sampled_from(list(p.DType)))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=4, max_size=4)))
    size = int(np.prod(shape)) * p.numpy_dtype(dtype).itemsize
    quant = None
    if dtype != p.DType.FLOAT32 and draw(st.booleans()):
        quant = (draw(pos_f32), draw(st.integers(-(2**31), 2**31 - 1)))
    return p.Infer(
        request_id=draw(u32), model_id=draw(ascii_id), dtype=dtype, layout=draw(st.sampled_from(list(p.Layout))),
        shape=shape, data=draw(st.binary(min_size=size, max_size=size)), quant=quant, top_k=draw(st.integers(0, 255)),
    )


messages = st.one_of(
    st.builds(p.Hello, client_nonce=nonce, client_name=ascii_id, min_version=st.just(1),
              max_version=st.integers(1, 255), request_id=u32),
    st.builds(p.Welcome, version=st.integers(0, 255), server_nonce=nonce, auth_required=st.booleans(),
              max_frame=u32, max_inflight=st.integers(0, 65535), server_name=ascii_id, request_id=u32),
    st.builds(p.Auth, mac=st.binary(min_size=32, max_size=32), request_id=u32),
    st.builds(p.AuthOk, mac=st.binary(min_size=32, max_size=32), request_id=u32),
    infers(),
    st.builds(p.Result, request_id=u32, class_id=st.integers(0, 65535),
              top_k=st.lists(st.tuples(st.integers(0, 65535), f32), max_size=10).map(tuple),
              batch_size=st.integers(0, 65535), queue_us=u32, infer_us=u32, total_us=u32),
    st.builds(p.Error, code=st.integers(0, 65535), message=st.text(max_size=100), request_id=u32),
    st.builds(p.Ping, token=st.integers(0, 2**64 - 1), request_id=u32),
    st.builds(p.Pong, token=st.integers(0, 2**64 - 1), request_id=u32),
)


@given(messages)
@settings(max_examples=300, deadline=None)
def test_round_trip(msg: p.Message) -> None:
    frame = p.encode(msg)
    assert frame[:2] == b"HI"
    assert struct.unpack_from("<I", frame, 8)[0] == len(frame) - p.HEADER_SIZE
    assert p.decode(frame) == msg


@given(st.lists(messages, min_size=1, max_size=5), st.data())
@settings(max_examples=100, deadline=None)
def test_frame_decoder_any_chunking(msgs: list, data: st.DataObject) -> None:
    stream = b"".join(p.encode(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    dec = p.FrameDecoder()
    out = []
    for a, b in zip([0] + cuts, cuts + [len(stream)]):
        out += dec.feed(stream[a:b])
    assert out == msgs
    assert dec.buffered == 0


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_garbage_never_crashes(blob: bytes) -> None:
    """Any byte string either decodes or raises a ProtocolError: never another exception."""
    try:
        msg = p.decode(blob)
    except p.ProtocolError:
        return
    # what decoded is a well-formed message: re-encoding it is stable
    again = p.encode(msg)
    assert p.encode(p.decode(again)) == again


@given(infers(), st.integers(-3, 3).filter(lambda d: d != 0))
@settings(max_examples=100, deadline=None)
def test_shape_payload_mismatch(msg: p.Infer, delta: int) -> None:
    frame = bytearray(p.encode(msg))
    if delta > 0:
        frame += b"\0" * delta
    elif len(msg.data) + delta < 0:
        return
    else:
        del frame[len(frame) + delta :]
    struct.pack_into("<I", frame, 8, len(frame) - p.HEADER_SIZE)
    with pytest.raises(p.ProtocolError) as exc:
        p.decode(bytes(frame))
    assert isinstance(exc.value, (p.PayloadMismatchError, p.BadLengthError, p.BadFieldError))


def _infer_frame() -> bytes:
    return p.encode(p.Infer.from_array(np.zeros((2, 2, 3), np.uint8), "m", 1))


def test_header_errors_name_the_problem() -> None:
    frame = _infer_frame()
    with pytest.raises(p.BadMagicError, match="magic"):
        p.decode(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(p.UnsupportedVersionError, match="version 2"):
        p.decode(frame[:2] + b"\x02" + frame[3:])
    with pytest.raises(p.UnknownMessageTypeError, match="0x99"):
        p.decode(frame[:3] + b"\x99" + frame[4:])
    with pytest.raises(p.FrameTooLargeError, match="maximum frame size 20"):
        p.decode(frame, max_frame=20)
    with pytest.raises(p.BadLengthError):
        p.decode(frame + b"\0")
    assert p.FrameTooLargeError.code == p.ErrorCode.FRAME_TOO_LARGE


def test_oversize_rejected_from_header_alone() -> None:
    """A header announcing 1 GiB is refused by the incremental decoder before any body byte arrives."""
    head = p.HEADER.pack(b"HI", 1, p.MsgType.INFER, 1, 1 << 30)
    dec = p.FrameDecoder(max_frame=4096)
    with pytest.raises(p.FrameTooLargeError):
        dec.feed(head)
    with pytest.raises(p.FrameTooLargeError):  # the decoder stays failed until reset
        dec.feed(b"more")
    dec.reset()
    assert dec.feed(_infer_frame())[0].model_id == "m"


def test_encode_rejects_bad_fields() -> None:
    with pytest.raises(p.BadFieldError, match="model_id"):
        p.encode(p.Infer.from_array(np.zeros((2, 2, 3), np.uint8), "x" * 33, 1))
    with pytest.raises(p.BadFieldError, match="ASCII"):
        p.encode(p.Infer.from_array(np.zeros((2, 2, 3), np.uint8), "modèle", 1))
    with pytest.raises(p.BadFieldError, match="quantization"):
        p.encode(p.Infer.from_array(np.zeros((2, 2, 3), np.float32), "m", 1, quant=(1.0, 0)))
    with pytest.raises(p.BadFieldError, match="dtype"):
        p.Infer.from_array(np.zeros((2, 2, 3), np.int32), "m", 1)
    for scale in (1e-46, 3.5e38):  # fine as float64, 0 or beyond range as the float32 the wire carries
        with pytest.raises(p.BadFieldError, match="float32"):
            p.encode(p.Infer(1, "m", p.DType.UINT8, p.Layout.NHWC, (1, 2, 2, 3), b"\0" * 12, quant=(scale, 0)))
    with pytest.raises(p.PayloadMismatchError):
        p.encode(p.Infer(1, "m", p.DType.UINT8, p.Layout.NHWC, (1, 2, 2, 3), b"\0" * 11))
    with pytest.raises(p.BadFieldError, match="nonce"):
        p.encode(p.Hello(client_nonce=b"short"))


def test_infer_array_round_trip_keeps_layout_and_values() -> None:
    img = np.arange(3 * 4 * 5, dtype=np.int8).reshape(3, 4, 5)
    msg = p.decode(p.encode(p.Infer.from_array(img, "m", 3, layout="NCHW", quant=(0.5, -3))))
    assert msg.layout == p.Layout.NCHW and msg.shape == (1, 3, 4, 5) and msg.quant == (0.5, -3)
    np.testing.assert_array_equal(msg.to_array()[0], img)


def test_version_negotiation() -> None:
    assert p.choose_version(1, 5) == 1
    assert p.choose_version(1, 5, supported=(1, 2, 3)) == 3
    with pytest.raises(p.UnsupportedVersionError, match="no common version"):
        p.choose_version(2, 4)
    # handshake frames always carry header version 1, so any peer can parse them
    assert p.encode(p.Hello(client_nonce=bytes(16), max_version=7))[2] == 1


def test_hmac_proofs() -> None:
    sn, cn = p.new_nonce(), p.new_nonce()
    assert sn != cn and len(sn) == 16
    good = p.client_proof(b"k" * 16, sn, cn, 1, "dev")
    assert p.verify(good, p.client_proof(b"k" * 16, sn, cn, 1, "dev"))
    assert not p.verify(good, p.client_proof(b"x" * 16, sn, cn, 1, "dev"))  # wrong key
    assert not p.verify(good, p.client_proof(b"k" * 16, cn, sn, 1, "dev"))  # nonces swapped
    assert not p.verify(good, p.server_proof(b"k" * 16, sn, cn, 1, "dev"))  # client proof != server proof


def test_async_stream_helpers() -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        frames = [p.Ping(token=5), p.Infer.from_array(np.ones((2, 2, 3), np.float32), "m", 2)]
        reader.feed_data(b"".join(p.encode(f) for f in frames))
        reader.feed_data(p.encode(p.Pong(token=1))[:5])
        reader.feed_eof()
        assert await p.read_frame(reader) == frames[0]
        assert await p.read_frame(reader) == frames[1]
        with pytest.raises(p.ConnectionClosedError):
            await p.read_frame(reader)
        empty = asyncio.StreamReader()
        empty.feed_eof()
        assert await p.read_frame(empty) is None
        big = asyncio.StreamReader()
        big.feed_data(p.HEADER.pack(b"HI", 1, p.MsgType.INFER, 1, 10_000_000))
        with pytest.raises(p.FrameTooLargeError):
            await p.read_frame(big, max_frame=1024)

    asyncio.run(main())


def test_socket_helpers() -> None:
    a, b = socket.socketpair()
    with a, b:
        p.send_frame(a, p.Error(code=6, message="ünknown", request_id=4))
        p.send_frame(a, p.Ping(token=9))
        assert p.recv_frame(b) == p.Error(code=6, message="ünknown", request_id=4)
        assert p.recv_frame(b) == p.Ping(token=9)
        a.close()
        assert p.recv_frame(b) is None


def test_error_message_truncates_safely() -> None:
    err = p.error_message(p.ErrorCode.BAD_TENSOR, "é" * 1000, 3)
    assert len(err.message.encode()) <= p.MAX_ERROR_MESSAGE_LEN
    assert p.decode(p.encode(err)) == err
