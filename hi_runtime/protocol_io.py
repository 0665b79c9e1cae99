"""Reading and writing HI protocol frames on asyncio streams and blocking sockets.

The header is read first and checked (magic, version, type, maximum frame size) before a single body byte
is read, so an oversized or foreign frame never makes the receiver allocate its announced length.
"""
from __future__ import annotations

import asyncio
import socket

from hi_runtime.protocol_codec import (
    DEFAULT_MAX_FRAME,
    HEADER_SIZE,
    Message,
    decode_body,
    decode_header,
    encode,
)


class ConnectionClosedError(ConnectionError):
    """The peer closed the stream in the middle of a frame."""


async def read_frame(reader: asyncio.StreamReader, max_frame: int = DEFAULT_MAX_FRAME) -> Message | None:
    """Read one frame; None on a clean end of stream between frames.

    Raises ProtocolError subclasses for invalid frames (FrameTooLargeError before reading the body) and
    ConnectionClosedError when the stream ends inside a frame.
    """
    try:
        head = await reader.readexactly(HEADER_SIZE)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ConnectionClosedError(f"stream ended after {len(exc.partial)} of {HEADER_SIZE} header bytes") from None
    header = decode_header(head, max_frame)
    try:
        body = await reader.readexactly(header.body_length) if header.body_length else b""
    except asyncio.IncompleteReadError as exc:
        raise ConnectionClosedError(
            f"stream ended after {len(exc.partial)} of {header.body_length} body bytes of a {header.type.name}"
        ) from None
    return decode_body(header, body)


async def write_frame(writer: asyncio.StreamWriter, msg: Message, *, version: int | None = None) -> None:
    """Encode and send one frame, waiting for the transport buffer to drain (back-pressure)."""
    writer.write(encode(msg, version=version))
    await writer.drain()


def _recv_exactly(sock: socket.socket, size: int, what: str) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            if not chunks and what == "header":
                return None
            raise ConnectionClosedError(f"connection closed after {len(chunks)} of {size} {what} bytes")
        chunks += chunk
    return bytes(chunks)


def recv_frame(sock: socket.socket, max_frame: int = DEFAULT_MAX_FRAME) -> Message | None:
    """Blocking equivalent of :func:`read_frame` (socket timeouts propagate as socket.timeout).

    A timeout inside a frame leaves the stream out of sync; callers that need to survive timeouts should
    feed a :class:`FrameDecoder` instead (as OffloadClient does).
    """
    head = _recv_exactly(sock, HEADER_SIZE, "header")
    if head is None:
        return None
    header = decode_header(head, max_frame)
    body = _recv_exactly(sock, header.body_length, "body") if header.body_length else b""
    return decode_body(header, body or b"")


def send_frame(sock: socket.socket, msg: Message, *, version: int | None = None) -> None:
    """Blocking equivalent of :func:`write_frame`."""
    sock.sendall(encode(msg, version=version))
