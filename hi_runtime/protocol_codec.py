"""Binary frame codec of the HI offload protocol (spec: docs/protocol.md).

This is the one Python implementation of the wire format; the agent, the edge server, the BLE gateway and
the serial bridge all use it, and the firmware's C codec is checked against the same test vectors
(tests/vectors/protocol_vectors.json). Everything is little-endian with fixed offsets so that a
microcontroller can encode and decode frames in place, with no dynamic allocation.

Import the public names from :mod:`hi_runtime.protocol`, not from this module.
"""
from __future__ import annotations

import enum
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

MAGIC = b"HI"
#: Protocol versions this implementation speaks. The header layout and the HELLO/WELCOME/ERROR bodies are
#: frozen across versions, so any peer can parse a handshake; handshake frames always carry version 1.
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
PROTOCOL_VERSION = max(SUPPORTED_VERSIONS)
HANDSHAKE_VERSION = 1

#: magic(2s) version(u8) type(u8) request_id(u32) body_length(u32)
HEADER = struct.Struct("<2sBBII")
HEADER_SIZE = HEADER.size  # 12 bytes
#: Default upper bound of a whole frame (header + body); peers may configure a smaller one.
DEFAULT_MAX_FRAME = 256 * 1024
#: Hard ceiling of body_length regardless of configuration (keeps u32 lengths from meaning 4 GiB buffers).
ABSOLUTE_MAX_FRAME = 16 * 1024 * 1024

NONCE_SIZE = 16
MAC_SIZE = 32
MAX_NAME_LEN = 32
MAX_MODEL_ID_LEN = 32
MAX_ERROR_MESSAGE_LEN = 512
MAX_TOP_K = 255
MAX_DIM = 0xFFFF

# ---- message type codes -----------------------------------------------------------------------------


class MsgType(enum.IntEnum):
    """Message type byte of the frame header."""

    HELLO = 0x01  # client -> server: supported versions, client nonce, client name
    WELCOME = 0x02  # server -> client: chosen version, auth flag, server nonce, limits
    AUTH = 0x03  # client -> server: HMAC proof
    AUTH_OK = 0x04  # server -> client: HMAC proof of the server (mutual authentication)
    INFER = 0x10  # client -> server: tensor to classify
    RESULT = 0x11  # server -> client: class, optional top-k, server timings
    ERROR = 0x20  # either direction: code + message; request_id 0 = connection-level
    PING = 0x30  # either direction: 8-byte token
    PONG = 0x31  # answer to PING with the same token


class DType(enum.IntEnum):
    UINT8 = 1
    INT8 = 2
    FLOAT32 = 3


class Layout(enum.IntEnum):
    NHWC = 0
    NCHW = 1  # channel-planar, as CIFAR-10's raw byte files and the paper's devices send images


class ErrorCode(enum.IntEnum):
    BAD_FRAME = 1  # undecodable frame (bad magic, length, field)
    UNSUPPORTED_VERSION = 2  # no common protocol version
    AUTH_REQUIRED = 3  # frame other than HELLO/AUTH before authentication
    AUTH_FAILED = 4  # wrong HMAC proof (wrong key)
    FRAME_TOO_LARGE = 5  # body_length above the receiver's maximum frame
    UNKNOWN_MODEL = 6  # model id not served
    BAD_TENSOR = 7  # dtype/shape/quantization the model cannot take
    BUSY = 8  # server overloaded
    INTERNAL = 9  # inference failed on the server
    SHUTTING_DOWN = 10  # server is stopping; reconnect later
    TIMEOUT = 11  # idle or slow peer
    UNEXPECTED_MESSAGE = 12  # valid frame, wrong place in the conversation


WELCOME_FLAG_AUTH_REQUIRED = 0x01
INFER_FLAG_QUANT = 0x01

_NP_DTYPES = {DType.UINT8: np.dtype(np.uint8), DType.INT8: np.dtype(np.int8), DType.FLOAT32: np.dtype("<f4")}

# ---- errors -----------------------------------------------------------------------------------------


class ProtocolError(ValueError):
    """A frame that violates docs/protocol.md. ``code`` is the ERROR code a server answers with."""

    code: ErrorCode = ErrorCode.BAD_FRAME


class BadMagicError(ProtocolError):
    pass


class UnsupportedVersionError(ProtocolError):
    code = ErrorCode.UNSUPPORTED_VERSION


class UnknownMessageTypeError(ProtocolError):
    pass


class BadLengthError(ProtocolError):
    """body_length disagrees with what the message type's fields need."""


class FrameTooLargeError(ProtocolError):
    code = ErrorCode.FRAME_TOO_LARGE


class PayloadMismatchError(ProtocolError):
    """Tensor payload size does not match shape x dtype."""

    code = ErrorCode.BAD_FRAME  # the spec: a frame whose length disagrees with its header is malformed


class BadFieldError(ProtocolError):
    """A field holds a value the spec does not allow (unknown dtype, model id too long, ...)."""


# ---- messages ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """Client opens the conversation: the versions it speaks and a fresh random nonce for authentication."""

    client_nonce: bytes
    client_name: str = ""
    min_version: int = 1
    max_version: int = PROTOCOL_VERSION
    request_id: int = 0

    type = MsgType.HELLO


@dataclass(frozen=True)
class Welcome:
    """Server answer to HELLO: chosen version, whether AUTH must follow, its nonce and per-connection limits."""

    version: int
    server_nonce: bytes
    auth_required: bool = False
    max_frame: int = DEFAULT_MAX_FRAME
    max_inflight: int = 32
    server_name: str = ""
    request_id: int = 0

    type = MsgType.WELCOME


@dataclass(frozen=True)
class Auth:
    """Client proof: HMAC-SHA256(key, ...) over both nonces (see protocol_auth.client_proof)."""

    mac: bytes
    request_id: int = 0

    type = MsgType.AUTH


@dataclass(frozen=True)
class AuthOk:
    """Server proof that it holds the same key, so a device never offloads to an impostor."""

    mac: bytes
    request_id: int = 0

    type = MsgType.AUTH_OK


@dataclass(frozen=True)
class Infer:
    """One tensor to classify. ``shape`` is in ``layout`` order, i.e. (N, H, W, C) or (N, C, H, W)."""

    request_id: int
    model_id: str
    dtype: DType
    layout: Layout
    shape: tuple[int, int, int, int]
    data: bytes
    quant: tuple[float, int] | None = None  # (scale, zero_point): pixel = (q - zero_point) * scale
    top_k: int = 0

    type = MsgType.INFER

    @classmethod
    def from_array(
        cls,
        array: np.ndarray,
        model_id: str,
        request_id: int,
        *,
        layout: str | Layout = Layout.NHWC,
        quant: tuple[float, int] | None = None,
        top_k: int = 0,
    ) -> Infer:
        """Build an INFER from a uint8/int8/float32 array; a 3-D array is taken as one image (batch 1)."""
        arr = np.asarray(array)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4:
            raise BadFieldError(f"tensor must be 3-D (one image) or 4-D (batch), got shape {arr.shape}")
        dtype = dtype_from_numpy(arr.dtype)
        data = np.ascontiguousarray(arr, dtype=_NP_DTYPES[dtype]).tobytes()
        return cls(
            request_id=request_id,
            model_id=model_id,
            dtype=dtype,
            layout=parse_layout(layout),
            shape=tuple(int(d) for d in arr.shape),  # type: ignore[arg-type]
            data=data,
            quant=(float(np.float32(quant[0])), int(quant[1])) if quant is not None else None,
            top_k=top_k,
        )

    def to_array(self) -> np.ndarray:
        """The payload as a numpy array of ``shape`` (a read-only view of ``data``)."""
        return np.frombuffer(self.data, dtype=_NP_DTYPES[self.dtype]).reshape(self.shape)


@dataclass(frozen=True)
class Result:
    """Answer to INFER: the class, optionally the top-k (class, probability) pairs, and server timings."""

    request_id: int
    class_id: int
    top_k: tuple[tuple[int, float], ...] = ()
    batch_size: int = 1
    queue_us: int = 0  # time waiting for a batch
    infer_us: int = 0  # time of the batched model call
    total_us: int = 0  # frame fully received -> result queued for sending

    type = MsgType.RESULT


@dataclass(frozen=True)
class Error:
    """A failure. request_id names the request it answers; 0 means the whole connection (which then closes)."""

    code: int
    message: str = ""
    request_id: int = 0

    type = MsgType.ERROR


@dataclass(frozen=True)
class Ping:
    token: int = 0
    request_id: int = 0

    type = MsgType.PING


@dataclass(frozen=True)
class Pong:
    token: int = 0
    request_id: int = 0

    type = MsgType.PONG


Message = Union[Hello, Welcome, Auth, AuthOk, Infer, Result, Error, Ping, Pong]

# ---- field helpers ----------------------------------------------------------------------------------


def dtype_from_numpy(dtype: np.dtype) -> DType:
    for code, np_dtype in _NP_DTYPES.items():
        if np.dtype(dtype) == np_dtype or np.dtype(dtype) == np_dtype.newbyteorder("="):
            return code
    raise BadFieldError(f"unsupported tensor dtype {np.dtype(dtype)}: use uint8, int8 or float32")


def numpy_dtype(dtype: DType) -> np.dtype:
    return _NP_DTYPES[DType(dtype)]


def parse_layout(layout: str | Layout | int) -> Layout:
    if isinstance(layout, str):
        try:
            return Layout[layout.upper()]
        except KeyError:
            raise BadFieldError(f"unknown layout {layout!r}: use 'NHWC' or 'NCHW'") from None
    return Layout(layout)


def _check_u(value: int, bits: int, name: str) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise BadFieldError(f"{name}={value!r} is not an unsigned {bits}-bit integer")


def _encode_ascii(text: str, max_len: int, name: str, *, allow_empty: bool = True) -> bytes:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise BadFieldError(f"{name} {text!r} must be ASCII") from None
    if len(raw) > max_len:
        raise BadFieldError(f"{name} {text!r} is {len(raw)} bytes; the limit is {max_len}")
    if not allow_empty and not raw:
        raise BadFieldError(f"{name} must not be empty")
    if any(b < 0x21 or b > 0x7E for b in raw):
        raise BadFieldError(f"{name} {text!r} must be printable ASCII without spaces")
    return raw


def _decode_ascii(raw: bytes, name: str) -> str:
    if any(b < 0x21 or b > 0x7E for b in raw):
        raise BadFieldError(f"{name} {raw!r} is not printable ASCII")
    return raw.decode("ascii")


def _short_str(raw: bytes) -> bytes:
    return bytes([len(raw)]) + raw


# ---- body layouts (little-endian, no padding) ---------------------------------------------------------
# HELLO:   min_version u8, max_version u8, flags u16, client_nonce[16], name_len u8, name[name_len]
_HELLO = struct.Struct("<BBH16s")
# WELCOME: version u8, flags u8, max_inflight u16, max_frame u32, server_nonce[16], name_len u8, name
_WELCOME = struct.Struct("<BBHI16s")
# INFER:   dtype u8, layout u8, flags u8, top_k u8, shape u16[4], model_id_len u8,
#          [scale f32, zero_point i32 if flags&QUANT], model_id[model_id_len], payload
_INFER = struct.Struct("<BBBB4HB")
_QUANT = struct.Struct("<fi")
_F32 = struct.Struct("<f")
# RESULT:  class_id u16, top_k_count u8, flags u8, batch_size u16, reserved u16,
#          queue_us u32, infer_us u32, total_us u32, then top_k_count x (class u16, score f32)
_RESULT = struct.Struct("<HBBHHIII")
_TOPK = struct.Struct("<Hf")
# ERROR:   code u16, message_len u16, message (UTF-8)
_ERROR = struct.Struct("<HH")
# PING/PONG: token u64
_PING = struct.Struct("<Q")


def _encode_body(msg: Message) -> bytes:
    if isinstance(msg, Hello):
        _check_u(msg.min_version, 8, "min_version")
        _check_u(msg.max_version, 8, "max_version")
        if not 1 <= msg.min_version <= msg.max_version:
            raise BadFieldError(f"version range {msg.min_version}..{msg.max_version} is empty or starts at 0")
        if len(msg.client_nonce) != NONCE_SIZE:
            raise BadFieldError(f"client_nonce must be {NONCE_SIZE} bytes, got {len(msg.client_nonce)}")
        name = _encode_ascii(msg.client_name, MAX_NAME_LEN, "client_name")
        return _HELLO.pack(msg.min_version, msg.max_version, 0, msg.client_nonce) + _short_str(name)
    if isinstance(msg, Welcome):
        _check_u(msg.version, 8, "version")
        _check_u(msg.max_inflight, 16, "max_inflight")
        _check_u(msg.max_frame, 32, "max_frame")
        if len(msg.server_nonce) != NONCE_SIZE:
            raise BadFieldError(f"server_nonce must be {NONCE_SIZE} bytes, got {len(msg.server_nonce)}")
        name = _encode_ascii(msg.server_name, MAX_NAME_LEN, "server_name")
        flags = WELCOME_FLAG_AUTH_REQUIRED if msg.auth_required else 0
        return (
            _WELCOME.pack(msg.version, flags, msg.max_inflight, msg.max_frame, msg.server_nonce)
            + _short_str(name)
        )
    if isinstance(msg, (Auth, AuthOk)):
        if len(msg.mac) != MAC_SIZE:
            raise BadFieldError(f"mac must be {MAC_SIZE} bytes (HMAC-SHA256), got {len(msg.mac)}")
        return bytes(msg.mac)
    if isinstance(msg, Infer):
        dtype = DType(msg.dtype)
        layout = Layout(msg.layout)
        if len(msg.shape) != 4:
            raise BadFieldError(f"shape must have 4 dimensions (N and 3 image axes), got {msg.shape}")
        for dim in msg.shape:
            if not isinstance(dim, (int, np.integer)) or not 1 <= dim <= MAX_DIM:
                raise BadFieldError(f"shape {msg.shape}: every dimension must be 1..{MAX_DIM}")
        _check_u(msg.top_k, 8, "top_k")
        model_id = _encode_ascii(msg.model_id, MAX_MODEL_ID_LEN, "model_id")
        expected = math.prod(msg.shape) * _NP_DTYPES[dtype].itemsize
        if len(msg.data) != expected:
            raise PayloadMismatchError(
                f"payload is {len(msg.data)} bytes but shape {tuple(msg.shape)} x {dtype.name.lower()} "
                f"needs {expected}"
            )
        flags = 0
        quant = b""
        if msg.quant is not None:
            if dtype == DType.FLOAT32:
                raise BadFieldError("quantization parameters only apply to uint8/int8 tensors")
            scale, zero_point = msg.quant
            try:
                wire = _F32.unpack(_F32.pack(float(scale)))[0]
            except OverflowError:  # beyond float32's range
                wire = math.inf
            if not (math.isfinite(wire) and wire > 0):  # checked as sent (float32): 1e-46 would arrive as 0
                raise BadFieldError(f"quant scale {scale!r} must be a finite positive number as a float32")
            if not -(1 << 31) <= int(zero_point) < (1 << 31):
                raise BadFieldError(f"quant zero_point {zero_point!r} must fit int32")
            flags |= INFER_FLAG_QUANT
            quant = _QUANT.pack(scale, int(zero_point))
        fixed = _INFER.pack(dtype, layout, flags, msg.top_k, *msg.shape, len(model_id))
        return fixed + quant + model_id + bytes(msg.data)
    if isinstance(msg, Result):
        _check_u(msg.class_id, 16, "class_id")
        _check_u(msg.batch_size, 16, "batch_size")
        for name in ("queue_us", "infer_us", "total_us"):
            _check_u(getattr(msg, name), 32, name)
        if len(msg.top_k) > MAX_TOP_K:
            raise BadFieldError(f"at most {MAX_TOP_K} top-k entries, got {len(msg.top_k)}")
        parts = [
            _RESULT.pack(
                msg.class_id, len(msg.top_k), 0, msg.batch_size, 0, msg.queue_us, msg.infer_us, msg.total_us
            )
        ]
        for cls, score in msg.top_k:
            _check_u(cls, 16, "top_k class")
            parts.append(_TOPK.pack(cls, score))
        return b"".join(parts)
    if isinstance(msg, Error):
        _check_u(msg.code, 16, "error code")
        text = msg.message.encode("utf-8")
        if len(text) > MAX_ERROR_MESSAGE_LEN:
            raise BadFieldError(f"error message is {len(text)} bytes; the limit is {MAX_ERROR_MESSAGE_LEN}")
        return _ERROR.pack(msg.code, len(text)) + text
    if isinstance(msg, (Ping, Pong)):
        _check_u(msg.token, 64, "token")
        return _PING.pack(msg.token)
    raise TypeError(f"cannot encode {type(msg).__name__}: not a protocol message")


def encode(msg: Message, *, version: int | None = None) -> bytes:
    """Serialize one message to a complete frame (header + body).

    ``version`` defaults to the protocol version (handshake messages always use HANDSHAKE_VERSION).
    """
    body = _encode_body(msg)
    _check_u(msg.request_id, 32, "request_id")
    if isinstance(msg, (Hello, Welcome)):
        version = HANDSHAKE_VERSION
    elif version is None:
        version = PROTOCOL_VERSION
    if HEADER_SIZE + len(body) > ABSOLUTE_MAX_FRAME:
        raise FrameTooLargeError(
            f"frame of {HEADER_SIZE + len(body)} bytes exceeds the protocol ceiling {ABSOLUTE_MAX_FRAME}"
        )
    return HEADER.pack(MAGIC, version, int(msg.type), msg.request_id, len(body)) + body


def error_message(code: int, message: str, request_id: int = 0) -> Error:
    """An Error whose message is cut to fit MAX_ERROR_MESSAGE_LEN bytes (servers quote user input)."""
    raw = message.encode("utf-8")[:MAX_ERROR_MESSAGE_LEN]
    return Error(code=int(code), message=raw.decode("utf-8", errors="ignore"), request_id=request_id)


# ---- decoding ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameHeader:
    version: int
    type: MsgType
    request_id: int
    body_length: int

    @property
    def frame_size(self) -> int:
        return HEADER_SIZE + self.body_length


def decode_header(buf: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> FrameHeader:
    """Validate the fixed 12-byte header. Raises before any body is read if the frame is too large."""
    if len(buf) < HEADER_SIZE:
        raise BadLengthError(f"header needs {HEADER_SIZE} bytes, got {len(buf)}")
    magic, version, mtype, request_id, body_length = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise BadMagicError(f"bad magic {magic!r}: expected {MAGIC!r} (is the peer speaking the HI protocol?)")
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(
            f"frame version {version} is not supported (this side speaks {list(SUPPORTED_VERSIONS)})"
        )
    try:
        mtype = MsgType(mtype)
    except ValueError:
        raise UnknownMessageTypeError(f"unknown message type 0x{mtype:02x}") from None
    limit = min(max_frame, ABSOLUTE_MAX_FRAME)
    if HEADER_SIZE + body_length > limit:
        raise FrameTooLargeError(
            f"frame of {HEADER_SIZE + body_length} bytes ({mtype.name}) exceeds the maximum frame size {limit}"
        )
    return FrameHeader(version, mtype, request_id, body_length)


def _need(body: bytes, size: int, what: str) -> None:
    if len(body) < size:
        raise BadLengthError(f"{what} body needs at least {size} bytes, got {len(body)}")


def _exact(body: bytes, size: int, what: str) -> None:
    if len(body) != size:
        raise BadLengthError(f"{what} body must be {size} bytes, got {len(body)}")


def _decode_short_str(body: bytes, offset: int, max_len: int, what: str) -> str:
    _need(body, offset + 1, what)
    length = body[offset]
    if length > max_len:
        raise BadFieldError(f"{what} name length {length} exceeds {max_len}")
    _exact(body, offset + 1 + length, what)
    return _decode_ascii(bytes(body[offset + 1 : offset + 1 + length]), f"{what} name")


def decode_body(header: FrameHeader, body: bytes) -> Message:
    """Decode the body of a frame whose header was already validated."""
    body = bytes(body)
    if len(body) != header.body_length:
        raise BadLengthError(f"header announces {header.body_length} body bytes, got {len(body)}")
    t, rid = header.type, header.request_id
    if t == MsgType.HELLO:
        _need(body, _HELLO.size, "HELLO")
        min_v, max_v, _flags, nonce = _HELLO.unpack_from(body, 0)
        if not 1 <= min_v <= max_v:
            raise BadFieldError(f"HELLO version range {min_v}..{max_v} is empty or starts at 0")
        name = _decode_short_str(body, _HELLO.size, MAX_NAME_LEN, "HELLO client")
        return Hello(client_nonce=nonce, client_name=name, min_version=min_v, max_version=max_v, request_id=rid)
    if t == MsgType.WELCOME:
        _need(body, _WELCOME.size, "WELCOME")
        version, flags, max_inflight, max_frame, nonce = _WELCOME.unpack_from(body, 0)
        name = _decode_short_str(body, _WELCOME.size, MAX_NAME_LEN, "WELCOME server")
        return Welcome(
            version=version,
            server_nonce=nonce,
            auth_required=bool(flags & WELCOME_FLAG_AUTH_REQUIRED),
            max_frame=max_frame,
            max_inflight=max_inflight,
            server_name=name,
            request_id=rid,
        )
    if t in (MsgType.AUTH, MsgType.AUTH_OK):
        _exact(body, MAC_SIZE, t.name)
        return (Auth if t == MsgType.AUTH else AuthOk)(mac=body, request_id=rid)
    if t == MsgType.INFER:
        _need(body, _INFER.size, "INFER")
        dtype_b, layout_b, flags, top_k, n, d1, d2, d3, id_len = _INFER.unpack_from(body, 0)
        try:
            dtype = DType(dtype_b)
        except ValueError:
            raise BadFieldError(f"INFER dtype code {dtype_b} is unknown (1=uint8, 2=int8, 3=float32)") from None
        try:
            layout = Layout(layout_b)
        except ValueError:
            raise BadFieldError(f"INFER layout code {layout_b} is unknown (0=NHWC, 1=NCHW)") from None
        if flags & ~INFER_FLAG_QUANT:
            raise BadFieldError(f"INFER flags 0x{flags:02x} has reserved bits set")
        shape = (n, d1, d2, d3)
        if 0 in shape:
            raise BadFieldError(f"INFER shape {shape} has a zero dimension")
        if id_len > MAX_MODEL_ID_LEN:
            raise BadFieldError(f"INFER model id length {id_len} exceeds {MAX_MODEL_ID_LEN}")
        offset = _INFER.size
        quant = None
        if flags & INFER_FLAG_QUANT:
            if dtype == DType.FLOAT32:
                raise BadFieldError("INFER float32 tensor must not carry quantization parameters")
            _need(body, offset + _QUANT.size, "INFER")
            scale, zero_point = _QUANT.unpack_from(body, offset)
            if not (math.isfinite(scale) and scale > 0):
                raise BadFieldError(f"INFER quant scale {scale!r} must be a finite positive number")
            quant = (scale, zero_point)
            offset += _QUANT.size
        _need(body, offset + id_len, "INFER")
        model_id = _decode_ascii(body[offset : offset + id_len], "INFER model id")
        offset += id_len
        data = body[offset:]
        expected = math.prod(shape) * _NP_DTYPES[dtype].itemsize
        if len(data) != expected:
            raise PayloadMismatchError(
                f"INFER payload is {len(data)} bytes but shape {shape} x {dtype.name.lower()} needs {expected}"
            )
        return Infer(
            request_id=rid,
            model_id=model_id,
            dtype=dtype,
            layout=layout,
            shape=shape,
            data=data,
            quant=quant,
            top_k=top_k,
        )
    if t == MsgType.RESULT:
        _need(body, _RESULT.size, "RESULT")
        class_id, k, _flags, batch, _res, queue_us, infer_us, total_us = _RESULT.unpack_from(body, 0)
        _exact(body, _RESULT.size + k * _TOPK.size, "RESULT")
        top: list[tuple[int, float]] = [
            _TOPK.unpack_from(body, _RESULT.size + i * _TOPK.size) for i in range(k)
        ]
        return Result(
            request_id=rid,
            class_id=class_id,
            top_k=tuple((int(c), float(s)) for c, s in top),
            batch_size=batch,
            queue_us=queue_us,
            infer_us=infer_us,
            total_us=total_us,
        )
    if t == MsgType.ERROR:
        _need(body, _ERROR.size, "ERROR")
        code, length = _ERROR.unpack_from(body, 0)
        if length > MAX_ERROR_MESSAGE_LEN:
            raise BadFieldError(f"ERROR message length {length} exceeds {MAX_ERROR_MESSAGE_LEN}")
        _exact(body, _ERROR.size + length, "ERROR")
        text = body[_ERROR.size :].decode("utf-8", errors="replace")
        return Error(code=code, message=text, request_id=rid)
    if t in (MsgType.PING, MsgType.PONG):
        _exact(body, _PING.size, t.name)
        (token,) = _PING.unpack(body)
        return (Ping if t == MsgType.PING else Pong)(token=token, request_id=rid)
    raise UnknownMessageTypeError(f"unknown message type {t!r}")  # pragma: no cover - MsgType is closed


def decode(buf: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> Message:
    """Decode exactly one complete frame; trailing or missing bytes are an error."""
    header = decode_header(buf, max_frame)
    if len(buf) != header.frame_size:
        raise BadLengthError(
            f"buffer holds {len(buf)} bytes but the frame is {header.frame_size} "
            f"(header {HEADER_SIZE} + body {header.body_length})"
        )
    return decode_body(header, memoryview(buf)[HEADER_SIZE:])


class FrameDecoder:
    """Incremental decoder: feed arbitrary byte chunks (BLE notifications, serial reads), get whole frames.

    Oversized frames are rejected as soon as their header is seen, so the buffer never holds more than one
    maximum frame. After a ProtocolError the stream is out of sync and the decoder refuses further input
    until :meth:`reset` (the transport should drop the connection).
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._header: FrameHeader | None = None
        self._failed: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole frame."""
        return len(self._buf)

    def reset(self) -> None:
        self._buf.clear()
        self._header = None
        self._failed = None

    def feed(self, data: bytes) -> list[Message]:
        """Append bytes and return every frame completed by them (possibly none)."""
        return list(self.iter_feed(data))

    def iter_feed(self, data: bytes) -> Iterator[Message]:
        if self._failed is not None:
            raise self._failed
        self._buf += data
        while True:
            try:
                if self._header is None:
                    if len(self._buf) < HEADER_SIZE:
                        return
                    self._header = decode_header(bytes(self._buf[:HEADER_SIZE]), self.max_frame)
                size = self._header.frame_size
                if len(self._buf) < size:
                    return
                msg = decode_body(self._header, bytes(self._buf[HEADER_SIZE:size]))
            except ProtocolError as exc:
                self._failed = exc
                raise
            del self._buf[:size]
            self._header = None
            yield msg


def choose_version(min_version: int, max_version: int, supported: Sequence[int] = SUPPORTED_VERSIONS) -> int:
    """Highest version both sides speak; raises UnsupportedVersionError if the ranges do not overlap."""
    common = [v for v in supported if min_version <= v <= max_version]
    if not common:
        raise UnsupportedVersionError(
            f"peer speaks versions {min_version}..{max_version}, this side {list(supported)}: no common version"
        )
    return max(common)
