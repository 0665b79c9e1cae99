"""The HI offload protocol: the public API (spec: docs/protocol.md; vectors: tests/vectors/protocol_vectors.json).

Import everything protocol-related from here. The implementation is split into the frame codec
(protocol_codec), stream/socket helpers (protocol_io) and the pre-shared-key handshake (protocol_auth).
"""
from __future__ import annotations

from hi_runtime.protocol_auth import client_proof, new_nonce, server_proof, verify
from hi_runtime.protocol_codec import (
    ABSOLUTE_MAX_FRAME,
    DEFAULT_MAX_FRAME,
    HANDSHAKE_VERSION,
    HEADER,
    HEADER_SIZE,
    MAC_SIZE,
    MAGIC,
    MAX_ERROR_MESSAGE_LEN,
    MAX_MODEL_ID_LEN,
    MAX_NAME_LEN,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Auth,
    AuthOk,
    BadFieldError,
    BadLengthError,
    BadMagicError,
    DType,
    Error,
    ErrorCode,
    FrameDecoder,
    FrameHeader,
    FrameTooLargeError,
    Hello,
    Infer,
    Layout,
    Message,
    MsgType,
    PayloadMismatchError,
    Ping,
    Pong,
    ProtocolError,
    Result,
    UnknownMessageTypeError,
    UnsupportedVersionError,
    Welcome,
    choose_version,
    decode,
    decode_body,
    decode_header,
    dtype_from_numpy,
    encode,
    error_message,
    numpy_dtype,
    parse_layout,
)
from hi_runtime.protocol_io import ConnectionClosedError, read_frame, recv_frame, send_frame, write_frame

__all__ = [name for name in dir() if not name.startswith("_") and name != "annotations"]
