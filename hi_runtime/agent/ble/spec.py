"""The HI offload GATT service: UUIDs and the byte layout of every message (the contract in docs/ble.md).

The microcontroller is the GATT *server* (peripheral) and the gateway the GATT *client* (central). In
GATT only the server can notify and only the client can write, so images and control messages from the
device travel as notifications and the gateway's answers (configuration, NACKs, results) as writes.

Every field is little-endian and every message fits the default ATT payload of 20 bytes except image
chunks, which grow with the negotiated MTU. A device needs no dynamic allocation: fixed structs, one
image buffer, one sample in flight.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union

_BASE = "-7a1e-4c5b-9f3d-2b6e0d1c0a00"
SERVICE_UUID = "48490001" + _BASE  # "HI" 0001
CONTROL_UUID = "48490002" + _BASE  # notify (device -> gateway) + write (gateway -> device)
IMAGE_UUID = "48490003" + _BASE  # notify: image chunks
RESULT_UUID = "48490004" + _BASE  # write (with response): the answer for a sample

DEFAULT_ATT_MTU = 23
ATT_NOTIFY_OVERHEAD = 3  # opcode + attribute handle
MAX_ATT_MTU = 517
CHUNK_HEADER = struct.Struct("<HH")  # seq, offset
MAX_IMAGE_BYTES = 0xFFFF  # total_len and offsets are u16

OP_START = 0x01
OP_END = 0x02
OP_ABORT = 0x03
OP_CONFIG = 0x80
OP_NACK = 0x81

STATUS_OK = 0
STATUS_DEGRADED = 1  # the server could not answer in time: keep the local answer
STATUS_ERROR = 2  # the image could not be received (or was malformed): keep the local answer
NO_CLASS = 0xFF

DTYPE_UINT8, DTYPE_INT8, DTYPE_FLOAT32 = 1, 2, 3  # the offload protocol's DType codes
LAYOUT_NHWC, LAYOUT_NCHW = 0, 1
_ITEM = {DTYPE_UINT8: 1, DTYPE_INT8: 1, DTYPE_FLOAT32: 4}

_START = struct.Struct("<BHHBBBBBfi")  # 18 bytes
_END = struct.Struct("<BHH")  # 5
_ABORT = struct.Struct("<BH")  # 3
_CONFIG = struct.Struct("<BH")  # 3
_NACK = struct.Struct("<BHHH")  # 7
_RESULT = struct.Struct("<HBBH")  # 6


class BleProtocolError(ValueError):
    """A GATT message is malformed (wrong length, unknown opcode, inconsistent fields)."""


def chunk_payload_size(att_mtu: int) -> int:
    """Image bytes per chunk notification at this ATT MTU (16 at the default MTU of 23)."""
    mtu = max(DEFAULT_ATT_MTU, min(int(att_mtu), MAX_ATT_MTU))
    return mtu - ATT_NOTIFY_OVERHEAD - CHUNK_HEADER.size


@dataclass(frozen=True)
class Start:
    """Device starts sending a sample: its id, byte length and tensor description (the model input)."""

    sample_id: int
    total_len: int
    dtype: int
    layout: int
    height: int
    width: int
    channels: int
    scale: float = 0.0  # 0 = not quantized; else pixel = (q - zero_point) * scale
    zero_point: int = 0

    def encode(self) -> bytes:
        return _START.pack(OP_START, self.sample_id, self.total_len, self.dtype, self.layout, self.height,
                           self.width, self.channels, self.scale, self.zero_point)

    @property
    def quant(self) -> tuple[float, int] | None:
        return (float(self.scale), int(self.zero_point)) if self.scale else None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The tensor shape in its layout order, batch 1."""
        if self.layout == LAYOUT_NCHW:
            return (1, self.channels, self.height, self.width)
        return (1, self.height, self.width, self.channels)

    def validate(self) -> None:
        if self.dtype not in _ITEM:
            raise BleProtocolError(f"START: unknown dtype {self.dtype} (1 uint8, 2 int8, 3 float32)")
        if self.layout not in (LAYOUT_NHWC, LAYOUT_NCHW):
            raise BleProtocolError(f"START: unknown layout {self.layout} (0 NHWC, 1 NCHW)")
        expect = self.height * self.width * self.channels * _ITEM[self.dtype]
        if expect != self.total_len or expect == 0:
            raise BleProtocolError(f"START: total_len {self.total_len} != {self.height}x{self.width}x{self.channels} "
                                   f"x {_ITEM[self.dtype]} bytes")
        if self.scale and self.dtype == DTYPE_FLOAT32:
            raise BleProtocolError("START: quantization parameters on a float32 tensor")


@dataclass(frozen=True)
class End:
    """Device sent every chunk of the sample (``chunks``: how many, for diagnostics)."""

    sample_id: int
    chunks: int

    def encode(self) -> bytes:
        return _END.pack(OP_END, self.sample_id, self.chunks)


@dataclass(frozen=True)
class Abort:
    """Device gave up on the sample (it answered locally); the gateway discards it."""

    sample_id: int

    def encode(self) -> bytes:
        return _ABORT.pack(OP_ABORT, self.sample_id)


@dataclass(frozen=True)
class Config:
    """Gateway tells the device the negotiated ATT MTU (device chunks with chunk_payload_size(mtu))."""

    att_mtu: int

    def encode(self) -> bytes:
        return _CONFIG.pack(OP_CONFIG, self.att_mtu)


@dataclass(frozen=True)
class Nack:
    """Gateway asks for bytes [offset, offset + length) of the sample again (then END again)."""

    sample_id: int
    offset: int
    length: int

    def encode(self) -> bytes:
        return _NACK.pack(OP_NACK, self.sample_id, self.offset, self.length)


@dataclass(frozen=True)
class Chunk:
    seq: int
    offset: int
    data: bytes

    def encode(self) -> bytes:
        return CHUNK_HEADER.pack(self.seq, self.offset) + self.data


@dataclass(frozen=True)
class Result:
    """Gateway's answer, written to RESULT: class (NO_CLASS unless ok), status and server time (ms)."""

    sample_id: int
    status: int
    class_id: int = NO_CLASS
    server_ms: int = 0

    def encode(self) -> bytes:
        return _RESULT.pack(self.sample_id, self.status, self.class_id, min(max(int(self.server_ms), 0), 0xFFFF))


ControlMessage = Union[Start, End, Abort, Config, Nack]


def decode_control(data: bytes) -> ControlMessage:
    """A CONTROL message (either direction)."""
    if not data:
        raise BleProtocolError("empty CONTROL message")
    op = data[0]
    layouts = {OP_START: (_START, Start), OP_END: (_END, End), OP_ABORT: (_ABORT, Abort),
               OP_CONFIG: (_CONFIG, Config), OP_NACK: (_NACK, Nack)}
    if op not in layouts:
        raise BleProtocolError(f"unknown CONTROL opcode 0x{op:02x}")
    st, cls = layouts[op]
    if len(data) != st.size:
        raise BleProtocolError(f"CONTROL 0x{op:02x} must be {st.size} bytes, got {len(data)}")
    msg = cls(*st.unpack(data)[1:])
    if isinstance(msg, Start):
        msg.validate()
    return msg


def decode_chunk(data: bytes) -> Chunk:
    if len(data) < CHUNK_HEADER.size:
        raise BleProtocolError(f"image chunk of {len(data)} bytes is shorter than its {CHUNK_HEADER.size}-byte header")
    seq, offset = CHUNK_HEADER.unpack_from(data)
    return Chunk(seq, offset, bytes(data[CHUNK_HEADER.size:]))


def decode_result(data: bytes) -> Result:
    if len(data) != _RESULT.size:
        raise BleProtocolError(f"RESULT must be {_RESULT.size} bytes, got {len(data)}")
    return Result(*_RESULT.unpack(data))


def split_chunks(data: bytes, att_mtu: int, first_offset: int = 0, first_seq: int = 0) -> list[Chunk]:
    """Cut ``data`` (which starts at ``first_offset`` of the sample) into chunks for this MTU."""
    size = chunk_payload_size(att_mtu)
    return [Chunk((first_seq + i) & 0xFFFF, first_offset + off, bytes(data[off:off + size]))
            for i, off in enumerate(range(0, len(data), size))]


class Reassembly:
    """One sample's bytes as chunks arrive in any order, with duplicates; knows what is missing."""

    def __init__(self, start: Start) -> None:
        start.validate()
        self.start = start
        self.buffer = bytearray(start.total_len)
        self.have = bytearray(start.total_len)  # 1 per received byte (a device has a bitmap; this is Python)
        self.received = 0
        self.chunks = 0

    def add(self, chunk: Chunk) -> None:
        end = chunk.offset + len(chunk.data)
        if end > len(self.buffer):
            raise BleProtocolError(f"chunk seq {chunk.seq} covers bytes {chunk.offset}..{end} beyond the sample's "
                                   f"{len(self.buffer)} bytes")
        self.buffer[chunk.offset:end] = chunk.data
        new = len(chunk.data) - sum(self.have[chunk.offset:end])
        self.have[chunk.offset:end] = b"\x01" * len(chunk.data)
        self.received += new
        self.chunks += 1

    @property
    def complete(self) -> bool:
        return self.received == len(self.buffer)

    def first_missing(self) -> tuple[int, int] | None:
        """(offset, length) of the first gap, or None when complete."""
        start = self.have.find(0)
        if start < 0:
            return None
        stop = self.have.find(1, start)
        return start, (len(self.have) if stop < 0 else stop) - start
