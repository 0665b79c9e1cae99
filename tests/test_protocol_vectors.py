"""The shared protocol test vectors decode and re-encode byte-identically.

tests/vectors/protocol_vectors.json is the contract between this Python codec and the firmware's C codec.
Regenerate it only on a deliberate protocol change: `python tests/test_protocol_vectors.py --write`.
"""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hi_runtime import protocol as p

VECTORS = Path(__file__).parent / "vectors" / "protocol_vectors.json"
NONCE_C = bytes(range(0x10, 0x20))
NONCE_S = bytes(range(0xA0, 0xB0))
KEY = b"example-pre-shared-key-32-bytes!"


def _tensor_fields(msg: p.Infer) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model_id": msg.model_id,
        "dtype": msg.dtype.name.lower(),
        "layout": msg.layout.name,
        "shape": list(msg.shape),
        "top_k": msg.top_k,
        "quant": None if msg.quant is None else {"scale": msg.quant[0], "zero_point": msg.quant[1]},
        "values": msg.to_array().reshape(-1).tolist(),
    }
    return fields


def message_to_fields(msg: p.Message) -> dict[str, Any]:
    """JSON-friendly fields of a message (bytes as hex)."""
    if isinstance(msg, p.Infer):
        return _tensor_fields(msg)
    out: dict[str, Any] = {}
    for name in msg.__dataclass_fields__:
        if name == "request_id":
            continue
        value = getattr(msg, name)
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, tuple):
            value = [list(v) for v in value]
        out[name] = value
    return out


def fields_to_message(mtype: str, request_id: int, fields: dict[str, Any]) -> p.Message:
    """Build the message a vector describes from its fields alone (independent of its hex)."""
    if mtype == "INFER":
        dtype = p.DType[fields["dtype"].upper()]
        arr = np.array(fields["values"], dtype=p.numpy_dtype(dtype)).reshape(fields["shape"])
        quant = fields["quant"]
        return p.Infer(
            request_id=request_id,
            model_id=fields["model_id"],
            dtype=dtype,
            layout=p.Layout[fields["layout"]],
            shape=tuple(fields["shape"]),
            data=arr.tobytes(),
            quant=None if quant is None else (quant["scale"], quant["zero_point"]),
            top_k=fields["top_k"],
        )
    cls = {
        "HELLO": p.Hello, "WELCOME": p.Welcome, "AUTH": p.Auth, "AUTH_OK": p.AuthOk, "RESULT": p.Result,
        "ERROR": p.Error, "PING": p.Ping, "PONG": p.Pong,
    }[mtype]
    kwargs = {}
    for name, value in fields.items():
        if name in ("client_nonce", "server_nonce", "mac"):
            value = bytes.fromhex(value)
        elif name == "top_k":
            value = tuple((int(c), float(s)) for c, s in value)
        kwargs[name] = value
    return cls(request_id=request_id, **kwargs)


def _valid(name: str, description: str, msg: p.Message) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "valid": True,
        "type": msg.type.name,
        "request_id": msg.request_id,
        "fields": message_to_fields(msg),
        "hex": p.encode(msg).hex(),
    }


def _invalid(name: str, description: str, frame: bytes, error: str, max_frame: int = p.DEFAULT_MAX_FRAME):
    return {"name": name, "description": description, "valid": False, "error": error,
            "max_frame": max_frame, "hex": frame.hex()}


def build_vectors() -> list[dict[str, Any]]:
    img_u8 = np.arange(12, dtype=np.uint8).reshape(2, 2, 3) * 20  # pixel values 0..220, R,G,B per pixel
    img_i8 = (img_u8.astype(np.int16) - 128).astype(np.int8)  # what the INT8 ResNet-8 input holds
    img_f32 = img_u8.astype(np.float32) / 4.0
    full = ((np.arange(32 * 32 * 3) * 37) % 256 - 128).astype(np.int8).reshape(32, 32, 3)
    proof_c = p.client_proof(KEY, NONCE_S, NONCE_C, 1, "dev01")
    proof_s = p.server_proof(KEY, NONCE_S, NONCE_C, 1, "dev01")
    good_infer = p.encode(p.Infer.from_array(img_u8, "m", 9))
    vectors = [
        _valid("hello", "Client HELLO: versions 1..1, client nonce 10..1f, name 'dev01'.",
               p.Hello(client_nonce=NONCE_C, client_name="dev01")),
        _valid("welcome_auth", "Server WELCOME: version 1, auth required, 32 in flight, 256 KiB frames, "
               "server nonce a0..af, name 'hi-server'.",
               p.Welcome(version=1, server_nonce=NONCE_S, auth_required=True, max_frame=262144,
                         max_inflight=32, server_name="hi-server")),
        _valid("welcome_open", "Server WELCOME without authentication (loopback server, no key).",
               p.Welcome(version=1, server_nonce=NONCE_S, auth_required=False, max_frame=65536,
                         max_inflight=8, server_name="")),
        _valid("auth", "Client AUTH for the hello/welcome_auth nonces with key "
               f"'{KEY.decode()}' (ASCII) and client name 'dev01'.", p.Auth(mac=proof_c)),
        _valid("auth_ok", "Server AUTH_OK proof for the same transcript and key.", p.AuthOk(mac=proof_s)),
        _valid("infer_uint8_nhwc", "INFER 1x2x2x3 uint8 NHWC, no quant params, model 'resnet56', request 1.",
               p.Infer.from_array(img_u8, "resnet56", 1)),
        _valid("infer_uint8_nchw", "INFER 1x3x2x2 uint8 channel-planar (R plane, G plane, B plane), "
               "top-3 requested, request 2.",
               p.Infer.from_array(img_u8.transpose(2, 0, 1), "resnet56", 2, layout="NCHW", top_k=3)),
        _valid("infer_int8_quant_nhwc", "INFER 1x2x2x3 int8 NHWC with quant scale 1.0, zero point -128 "
               "(pixel = q + 128): an MCU sending its INT8 model input unchanged; request 3.",
               p.Infer.from_array(img_i8, "resnet56", 3, quant=(1.0, -128))),
        _valid("infer_int8_quant_nchw", "INFER 1x3x2x2 int8 NCHW, quant scale 0.5, zero point -10, request 4.",
               p.Infer.from_array(img_i8.transpose(2, 0, 1), "cifar", 4, layout="NCHW", quant=(0.5, -10))),
        _valid("infer_float32_nhwc", "INFER 1x2x2x3 float32 NHWC (little-endian IEEE-754), request 5.",
               p.Infer.from_array(img_f32, "resnet56", 5)),
        _valid("infer_float32_nchw", "INFER 1x3x2x2 float32 NCHW, empty model id (= server default), request 6.",
               p.Infer.from_array(img_f32.transpose(2, 0, 1), "", 6, layout="NCHW")),
        _valid("infer_int8_full_32x32x3", "INFER 1x32x32x3 int8 NHWC with quant 1.0/-128: a full CIFAR-10 "
               "image as the shipped INT8 model's input tensor, values (i*37 mod 256)-128; request 7.",
               p.Infer.from_array(full, "resnet56", 7, quant=(1.0, -128), top_k=1)),
        _valid("result_plain", "RESULT class 3 without top-k, batch 8, queue 1500 us, infer 2500 us, total "
               "4200 us, request 1.",
               p.Result(request_id=1, class_id=3, batch_size=8, queue_us=1500, infer_us=2500, total_us=4200)),
        _valid("result_topk", "RESULT class 8 with top-3 (8: 0.75, 0: 0.125, 1: 0.0625), batch 1, request 2.",
               p.Result(request_id=2, class_id=8, top_k=((8, 0.75), (0, 0.125), (1, 0.0625)),
                        batch_size=1, queue_us=10, infer_us=900, total_us=1000)),
        _valid("error_unknown_model", "ERROR UNKNOWN_MODEL (6) for request 5.",
               p.Error(code=6, message="unknown model 'x'", request_id=5)),
        _valid("error_connection", "Connection-level ERROR FRAME_TOO_LARGE (5), request 0.",
               p.Error(code=5, message="frame too large")),
        _valid("ping", "PING with token 0x0123456789abcdef.", p.Ping(token=0x0123456789ABCDEF)),
        _valid("pong", "PONG echoing the same token.", p.Pong(token=0x0123456789ABCDEF)),
        _invalid("bad_magic", "First two bytes are not 'HI'.", b"XY" + good_infer[2:], "BadMagicError"),
        _invalid("bad_version", "Header version 9.", good_infer[:2] + b"\x09" + good_infer[3:],
                 "UnsupportedVersionError"),
        _invalid("unknown_type", "Message type 0x7e.", good_infer[:3] + b"\x7e" + good_infer[4:],
                 "UnknownMessageTypeError"),
        _invalid("oversize", "A 40 byte INFER frame against a 32 byte maximum frame: rejected from the header.",
                 good_infer, "FrameTooLargeError", max_frame=32),
        _invalid("payload_mismatch", "INFER shape 1x2x2x3 uint8 but 11 payload bytes (body_length adjusted).",
                 good_infer[:8] + struct.pack("<I", len(good_infer) - 13) + good_infer[12:-1],
                 "PayloadMismatchError"),
        _invalid("truncated", "Header announces more body bytes than the buffer holds.", good_infer[:-3],
                 "BadLengthError"),
    ]
    return vectors


def load_vectors() -> list[dict[str, Any]]:
    return json.loads(VECTORS.read_text())


def test_vectors_file_is_current() -> None:
    """The committed file equals what the codec produces (a codec change must regenerate it on purpose)."""
    assert load_vectors() == json.loads(json.dumps(build_vectors()))


@pytest.mark.parametrize("vector", load_vectors() if VECTORS.exists() else [], ids=lambda v: v["name"])
def test_vector(vector: dict[str, Any]) -> None:
    frame = bytes.fromhex(vector["hex"])
    if not vector["valid"]:
        with pytest.raises(getattr(p, vector["error"])):
            p.decode(frame, max_frame=vector["max_frame"])
        return
    msg = p.decode(frame)
    assert msg.type.name == vector["type"]
    assert msg.request_id == vector["request_id"]
    expected = fields_to_message(vector["type"], vector["request_id"], vector["fields"])
    assert msg == expected
    assert p.encode(expected) == frame
    # and the incremental decoder agrees, fed one byte at a time
    dec = p.FrameDecoder()
    out = [m for i in range(len(frame)) for m in dec.feed(frame[i : i + 1])]
    assert out == [msg]


def test_vectors_cover_the_required_cases() -> None:
    names = {v["name"] for v in load_vectors()}
    types = {v.get("type") for v in load_vectors()}
    assert {"HELLO", "WELCOME", "AUTH", "AUTH_OK", "INFER", "RESULT", "ERROR", "PING", "PONG"} <= types
    assert {"infer_uint8_nhwc", "infer_int8_quant_nchw", "infer_float32_nchw", "result_plain", "result_topk",
            "infer_int8_full_32x32x3"} <= names


def test_auth_vector_matches_key() -> None:
    """The AUTH vector is reproducible from the key and nonces stated in its description."""
    vec = {v["name"]: v for v in load_vectors()}
    mac = bytes.fromhex(vec["auth"]["fields"]["mac"])
    assert mac == p.client_proof(KEY, NONCE_S, NONCE_C, 1, "dev01")
    assert KEY.decode() in vec["auth"]["description"]


if __name__ == "__main__":
    if "--write" in sys.argv:
        VECTORS.write_text(json.dumps(build_vectors(), indent=1) + "\n")
        print(f"wrote {VECTORS}")
    else:
        print(__doc__)
