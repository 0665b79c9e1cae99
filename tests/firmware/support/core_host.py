"""Host builds of the firmware's C core, driven from Python through ctypes.

Two libraries:

* :func:`build_core_lib` - firmware/lib/hi_core alone (codec, auth, decider, exit policy, serial parser),
  for tests that compare each C module with its one Python implementation (hi_runtime.protocol,
  hi_runtime.decider, hi_runtime.early_exit). Segments of a pipeline can be Python callables.
* :func:`build_host_device` - the whole firmware (shared main, core, hi_nn kernels, generated application)
  with the UART replaced by two calls (firmware/src/host_sim): :class:`HostDevice` behaves exactly like a
  board on its serial port. It is the "host engine" the emulated board is compared with, and the fake device
  behind the serial bridge's tests.

WHY ctypes and the one host driver (hi_firmware.toolchain): no extra dependency, and the same sources that go
to the boards (firmware/sources.mk) are built. Test support, not shipped: it lives under tests/.
"""
from __future__ import annotations

import ctypes
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
from hi_firmware.host import build_host_device  # noqa: F401  (re-exported for the tests)
from hi_firmware.paths import firmware_dir
from hi_firmware.sources import paths
from hi_firmware.toolchain import build_shared


def default_build_dir() -> Path:
    return firmware_dir() / "build" / "host"


def build_core_lib(out_dir: Path | None = None, defines: Sequence[str] = ()) -> Path:
    """firmware/lib/hi_core alone (sources.mk HI_CORE_SRCS) as a shared library."""
    core = firmware_dir() / "lib" / "hi_core"
    return build_shared(paths("HI_CORE_SRCS"), [core], out_dir or default_build_dir(), "libhi_core", defines)


class HostDevice:
    """The firmware behind a byte interface: write(bytes) runs commands, read() returns the replies."""

    def __init__(self, lib_path: Path) -> None:
        # The firmware keeps its state in statics, and the dynamic loader hands out one copy per path: load a
        # private copy so every HostDevice is a freshly booted board.
        import tempfile

        fd, private = tempfile.mkstemp(suffix=".so", prefix="hi_device_")
        os.close(fd)
        shutil.copyfile(lib_path, private)
        self.lib = ctypes.CDLL(private, mode=ctypes.RTLD_LOCAL)
        os.unlink(private)  # the mapping stays valid
        self.lib.hi_host_begin.restype = ctypes.c_int
        self.lib.hi_host_feed.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        self.lib.hi_host_take.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        self.lib.hi_host_take.restype = ctypes.c_long
        self._buf = ctypes.create_string_buffer(1 << 17)
        if self.lib.hi_host_begin() != 0:
            raise RuntimeError(f"firmware setup failed: {self.read().decode(errors='replace')}")

    def read(self) -> bytes:
        chunks = []
        while True:
            n = self.lib.hi_host_take(self._buf, len(self._buf))
            if n < 0:
                raise RuntimeError("host device output overflowed its buffer")
            if n == 0:
                return b"".join(chunks)
            chunks.append(self._buf.raw[:n])

    def write(self, data: bytes) -> bytes:
        """Feed bytes; returns everything the firmware printed while handling them."""
        self.lib.hi_host_feed(data, len(data))
        return self.read()


@contextmanager
def serve_device(device: HostDevice, transport: str = "pty") -> Iterator[str]:
    """Expose a HostDevice as a serial port for pyserial: a pseudo-terminal (``transport="pty"``, yields its
    /dev/pts path, a real tty in raw mode) or a TCP server on 127.0.0.1 (``"tcp"``, yields socket://...).
    The boot banner is sent to the first reader. Stops when the context exits."""
    import select
    import socket
    import threading
    import tty

    stop = threading.Event()
    banner = device.read()
    if transport == "pty":
        master, slave = os.openpty()
        tty.setraw(slave)
        url = os.ttyname(slave)

        def serve_pty() -> None:
            pending = banner
            while not stop.is_set():
                if pending:
                    os.write(master, pending)
                    pending = b""
                r, _, _ = select.select([master], [], [], 0.05)
                if r:
                    try:
                        data = os.read(master, 4096)
                    except OSError:
                        return
                    pending = device.write(data)

        th = threading.Thread(target=serve_pty, daemon=True)
        th.start()
        try:
            yield url
        finally:
            stop.set()
            th.join(2)
            os.close(master)
            os.close(slave)
        return
    if transport != "tcp":
        raise ValueError(f"transport must be 'pty' or 'tcp', not {transport!r}")
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.05)
    url = f"socket://127.0.0.1:{srv.getsockname()[1]}"

    def serve_tcp() -> None:
        pending = banner
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (socket.timeout, OSError):
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.05)
            with conn:
                if pending:
                    conn.sendall(pending)
                    pending = b""
                while not stop.is_set():
                    try:
                        data = conn.recv(4096)
                    except socket.timeout:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    out = device.write(data)
                    if out:
                        conn.sendall(out)

    th = threading.Thread(target=serve_tcp, daemon=True)
    th.start()
    try:
        yield url
    finally:
        stop.set()
        th.join(2)
        srv.close()


# ---- hi_core bindings (ctypes mirrors of the public structs) ---------------------------------------

SEGMENT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p))
WRITE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t)
CLOCK_FN = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)
MAX_TOP_K = 8


class Decider(ctypes.Structure):
    _fields_ = [("top_k", ctypes.c_uint8), ("zero_point", ctypes.c_int32), ("bias", ctypes.c_int32),
                ("coef", ctypes.c_int32 * MAX_TOP_K)]


class Segment(ctypes.Structure):
    _fields_ = [("invoke", SEGMENT_FN), ("num_outputs", ctypes.c_uint8), ("features_output", ctypes.c_int8),
                ("scores_output", ctypes.c_uint8), ("features_bytes", ctypes.c_uint32),
                ("features", ctypes.POINTER(ctypes.c_int8)), ("features_scale", ctypes.c_double),
                ("features_zero_point", ctypes.c_int32), ("next_input_scale", ctypes.c_double),
                ("next_input_zero_point", ctypes.c_int32), ("scores_scale", ctypes.c_double),
                ("scores_zero_point", ctypes.c_int32), ("exit_bound", ctypes.c_int32),
                ("offload_enabled", ctypes.c_uint8), ("offload_bound", ctypes.c_int32)]


class Pipeline(ctypes.Structure):
    _fields_ = [("segments", ctypes.POINTER(Segment)), ("num_segments", ctypes.c_uint8),
                ("decider", ctypes.POINTER(Decider)), ("num_classes", ctypes.c_uint16),
                ("scores", ctypes.POINTER(ctypes.c_int8)), ("height", ctypes.c_uint16), ("width", ctypes.c_uint16),
                ("channels", ctypes.c_uint16), ("input_scale", ctypes.c_float), ("input_zero_point", ctypes.c_int32)]


class Outcome(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("exit_index", ctypes.c_int8), ("segments_run", ctypes.c_uint8),
                ("class_id", ctypes.c_int16), ("offload", ctypes.c_uint8), ("decision_value", ctypes.c_int32)]


class SerialIo(ctypes.Structure):
    _fields_ = [("write", WRITE_FN), ("timestamp_us", CLOCK_FN), ("user", ctypes.c_void_p)]


OFFLOAD_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_int8),
                              ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32))


class SerialConfig(ctypes.Structure):
    _fields_ = [("device_name", ctypes.c_char_p), ("fw_version", ctypes.c_char_p),
                ("model_version", ctypes.c_char_p), ("model_id", ctypes.c_char_p),
                ("pipeline", ctypes.POINTER(Pipeline)), ("input", ctypes.POINTER(ctypes.c_int8)),
                ("db", ctypes.POINTER(ctypes.c_uint8)), ("db_capacity", ctypes.c_uint32),
                ("offload", OFFLOAD_FN), ("offload_user", ctypes.c_void_p)]


_SIZES = {0: Decider, 1: Segment, 2: Pipeline, 3: Outcome, 4: SerialIo, 5: SerialConfig}


class CoreLib:
    """ctypes view of libhi_core.so with small Pythonic wrappers."""

    def __init__(self, lib_path: Path | None = None) -> None:
        self.lib = ctypes.CDLL(str(lib_path or build_core_lib()))
        L = self.lib
        L.hi_core_sizeof.restype = ctypes.c_size_t
        L.hi_core_sizeof.argtypes = [ctypes.c_int]
        for idx, struct in _SIZES.items():
            if L.hi_core_sizeof(idx) != ctypes.sizeof(struct):
                raise RuntimeError(f"ctypes mirror {struct.__name__} is {ctypes.sizeof(struct)} bytes but C says "
                                   f"{L.hi_core_sizeof(idx)}; update tests/firmware/support/core_host.py")
        self.serial_size = L.hi_core_sizeof(6)
        self.frame_size = L.hi_core_sizeof(7)
        L.hi_decider_value.restype = ctypes.c_int32
        L.hi_decider_value.argtypes = [ctypes.POINTER(Decider), ctypes.POINTER(ctypes.c_int8), ctypes.c_uint16]
        L.hi_decider_accept.argtypes = [ctypes.POINTER(Decider), ctypes.POINTER(ctypes.c_int8), ctypes.c_uint16]
        L.hi_decider_init.argtypes = [ctypes.POINTER(Decider), ctypes.c_int, ctypes.c_int32,
                                      ctypes.POINTER(ctypes.c_int32), ctypes.c_int32]
        L.hi_pipeline_run.argtypes = [ctypes.POINTER(Pipeline), ctypes.POINTER(ctypes.c_int8), ctypes.c_int,
                                      ctypes.POINTER(Outcome)]
        L.hi_pipeline_check.argtypes = [ctypes.POINTER(Pipeline)]
        L.hi_pipeline_quantize_input.argtypes = [ctypes.POINTER(Pipeline), ctypes.POINTER(ctypes.c_uint8),
                                                 ctypes.POINTER(ctypes.c_int8), ctypes.c_uint32]
        L.hi_requantize_s8.argtypes = [ctypes.POINTER(ctypes.c_int8), ctypes.POINTER(ctypes.c_int8), ctypes.c_uint32,
                                       ctypes.c_double, ctypes.c_int32, ctypes.c_double, ctypes.c_int32]
        L.hi_frame_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p]
        L.hi_frame_decode.restype = ctypes.c_int
        L.hi_auth_proof.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p,
                                    ctypes.c_uint8, ctypes.c_char_p, ctypes.c_uint8, ctypes.c_char_p]
        L.hi_hmac_sha256.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
                                     ctypes.c_char_p]
        L.hi_serial_init.argtypes = [ctypes.c_void_p, ctypes.POINTER(SerialIo), ctypes.POINTER(SerialConfig)]
        L.hi_serial_feed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        L.hi_serial_banner.argtypes = [ctypes.c_void_p]

    # decider ------------------------------------------------------------------------------------
    def decider(self, coef: Sequence[int], bias: int, zero_point: int) -> Decider:
        d = Decider()
        arr = (ctypes.c_int32 * len(coef))(*coef)
        if self.lib.hi_decider_init(ctypes.byref(d), len(coef), zero_point, arr, bias) != 0:
            raise ValueError(f"bad decider: {len(coef)} coefficients")
        return d

    def decider_value(self, d: Decider, scores: np.ndarray) -> int:
        s = np.ascontiguousarray(scores, dtype=np.int8)
        return int(self.lib.hi_decider_value(ctypes.byref(d), s.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)), s.size))

    def decider_accept(self, d: Decider | None, scores: np.ndarray) -> bool:
        s = np.ascontiguousarray(scores, dtype=np.int8)
        ptr = ctypes.byref(d) if d is not None else None
        return bool(self.lib.hi_decider_accept(ptr, s.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)), s.size))

    def requantize(self, q: np.ndarray, src: tuple[float, int], dst: tuple[float, int]) -> np.ndarray:
        q = np.ascontiguousarray(q, dtype=np.int8)
        out = np.empty_like(q)
        p = ctypes.POINTER(ctypes.c_int8)
        self.lib.hi_requantize_s8(q.ctypes.data_as(p), out.ctypes.data_as(p), q.size, src[0], src[1], dst[0], dst[1])
        return out

    # frames -------------------------------------------------------------------------------------
    def frame_status(self, frame: bytes, max_frame: int) -> int:
        buf = ctypes.create_string_buffer(self.frame_size)
        return int(self.lib.hi_frame_decode(frame, len(frame), max_frame, buf))

    def auth_proof(self, server: bool, key: bytes, server_nonce: bytes, client_nonce: bytes, version: int,
                   name: str) -> bytes:
        out = ctypes.create_string_buffer(32)
        rc = self.lib.hi_auth_proof(int(server), key, len(key), server_nonce, client_nonce, version, name.encode(),
                                    len(name), out)
        if rc != 0:
            raise ValueError("hi_auth_proof refused its arguments")
        return out.raw

    def hmac_sha256(self, key: bytes, data: bytes) -> bytes:
        out = ctypes.create_string_buffer(32)
        self.lib.hi_hmac_sha256(key, len(key), data, len(data), out)
        return out.raw


RunFn = Callable[[np.ndarray], "tuple[np.ndarray | None, np.ndarray]"]


class PyPipeline:
    """A hi_pipeline_t whose segments are Python functions x -> (features or None, scores), for testing the
    C policy against hi_runtime.early_exit.run_chain with the same segment outputs."""

    def __init__(self, core: CoreLib, segment_fns: Sequence[RunFn], *, input_shape: tuple[int, int, int],
                 input_bytes: int, feature_bytes: Sequence[int], num_classes: int, bounds: Sequence[int],
                 scores_quants: Sequence[tuple[float, int]],
                 feature_quants: Sequence[tuple[tuple[float, int], tuple[float, int]]] = (),
                 decider: Decider | None = None, input_quant: tuple[float, int] = (1.0, -128),
                 scores_first: bool = True, offload_bounds: Sequence[int | None] = ()) -> None:
        n = len(segment_fns)
        self.core = core
        self.calls: list[int] = []
        self.seen_inputs: list[np.ndarray] = []
        self._keep: list[object] = []
        self.scores = (ctypes.c_int8 * num_classes)()
        segs = (Segment * n)()
        in_sizes = [input_bytes, *feature_bytes]
        for k, fn in enumerate(segment_fns):
            last = k == n - 1
            n_out = 1 if last else 2
            scores_idx = 0 if (last or scores_first) else 1
            feat_idx = -1 if last else 1 - scores_idx

            def invoke(ins, outs, k=k, fn=fn, n_in=in_sizes[k], scores_idx=scores_idx, feat_idx=feat_idx,
                       fb=(feature_bytes[k] if not last else 0)):
                x = np.ctypeslib.as_array(ctypes.cast(ins[0], ctypes.POINTER(ctypes.c_int8)), (n_in,)).copy()
                self.calls.append(k)
                self.seen_inputs.append(x)
                feats, sc = fn(x)
                sc = np.asarray(sc, dtype=np.int8).reshape(-1)
                ctypes.memmove(outs[scores_idx], sc.ctypes.data, num_classes)
                if feat_idx >= 0:
                    f = np.asarray(feats, dtype=np.int8).reshape(-1)
                    assert f.size == fb
                    ctypes.memmove(outs[feat_idx], f.ctypes.data, fb)
                return 0

            cb = SEGMENT_FN(invoke)
            self._keep.append(cb)
            s = segs[k]
            s.invoke = cb
            s.num_outputs = n_out
            s.features_output = feat_idx
            s.scores_output = scores_idx
            if not last:
                buf = (ctypes.c_int8 * feature_bytes[k])()
                self._keep.append(buf)
                s.features = ctypes.cast(buf, ctypes.POINTER(ctypes.c_int8))
                s.features_bytes = feature_bytes[k]
                fq, nq = feature_quants[k] if feature_quants else ((1.0, 0), (1.0, 0))
                s.features_scale, s.features_zero_point = fq
                s.next_input_scale, s.next_input_zero_point = nq
                s.exit_bound = bounds[k]
                ob = offload_bounds[k] if offload_bounds else None
                s.offload_enabled = int(ob is not None)
                s.offload_bound = 0 if ob is None else ob
            s.scores_scale, s.scores_zero_point = scores_quants[k]
        self._segs = segs
        self._decider = decider
        p = Pipeline()
        p.segments = ctypes.cast(segs, ctypes.POINTER(Segment))
        p.num_segments = n
        p.decider = ctypes.pointer(decider) if decider is not None else ctypes.POINTER(Decider)()
        p.num_classes = num_classes
        p.scores = ctypes.cast(self.scores, ctypes.POINTER(ctypes.c_int8))
        p.height, p.width, p.channels = input_shape
        p.input_scale, p.input_zero_point = input_quant
        self.pipeline = p

    def run(self, x: np.ndarray, all_segments: bool = False) -> Outcome:
        x = np.ascontiguousarray(x, dtype=np.int8)
        out = Outcome()
        self.calls.clear()
        self.seen_inputs.clear()
        self.core.lib.hi_pipeline_run(ctypes.byref(self.pipeline), x.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
                                      1 if all_segments else 0, ctypes.byref(out))
        return out

    def quantize_input(self, pixels: np.ndarray) -> np.ndarray:
        px = np.ascontiguousarray(pixels, dtype=np.uint8)
        q = np.empty(px.size, dtype=np.int8)
        self.core.lib.hi_pipeline_quantize_input(ctypes.byref(self.pipeline),
                                                 px.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
                                                 q.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)), px.size)
        return q


class SerialSession:
    """hi_serial_t over a PyPipeline: feed(bytes) -> output bytes (for parser tests with hostile input)."""

    def __init__(self, core: CoreLib, pipe: PyPipeline, *, db_capacity: int | None = None,
                 model_id: str = "m", device_name: str = "py-dut",
                 offload: Callable[[int, np.ndarray], int | tuple[int, int]] | None = None) -> None:
        self.core = core
        self.out = bytearray()
        self.clock = 0
        p = pipe.pipeline
        n_in = p.height * p.width * p.channels
        self.input = (ctypes.c_int8 * n_in)()
        self.db = (ctypes.c_uint8 * (db_capacity or n_in))()

        def write(user, data, n):
            self.out += ctypes.string_at(data, n)

        def clock(user):
            self.clock = (self.clock + 7) & 0xFFFFFFFF
            return self.clock

        self._write = WRITE_FN(write)
        self._clock = CLOCK_FN(clock)
        self.io = SerialIo(self._write, self._clock, None)
        self._strings = [device_name.encode(), b"test-fw", b"ic01", model_id.encode()]
        def offload_cb(user, request_id, inp, pipeline, server_class):
            rc = offload(request_id, np.ctypeslib.as_array(inp, (n_in,)).copy())
            rc, cls = rc if isinstance(rc, tuple) else (rc, -1)
            server_class[0] = cls
            return rc

        self._offload = OFFLOAD_FN(offload_cb) if offload is not None else OFFLOAD_FN()
        self.cfg = SerialConfig(self._strings[0], self._strings[1], self._strings[2], self._strings[3],
                                ctypes.pointer(p), ctypes.cast(self.input, ctypes.POINTER(ctypes.c_int8)),
                                ctypes.cast(self.db, ctypes.POINTER(ctypes.c_uint8)), len(self.db),
                                self._offload, None)
        self.ctx = ctypes.create_string_buffer(core.serial_size)
        self.pipe = pipe
        if core.lib.hi_serial_init(self.ctx, ctypes.byref(self.io), ctypes.byref(self.cfg)) != 0:
            raise ValueError("hi_serial_init refused the configuration")

    def feed(self, data: bytes) -> bytes:
        self.out.clear()
        self.core.lib.hi_serial_feed(self.ctx, data, len(data))
        return bytes(self.out)


# ---- frame codec bindings --------------------------------------------------------------------------

class FrameHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint8), ("type", ctypes.c_uint8), ("request_id", ctypes.c_uint32),
                ("body_length", ctypes.c_uint32)]


class Hello(ctypes.Structure):
    _fields_ = [("min_version", ctypes.c_uint8), ("max_version", ctypes.c_uint8), ("flags", ctypes.c_uint16),
                ("client_nonce", ctypes.c_void_p), ("name_len", ctypes.c_uint8), ("name", ctypes.c_void_p)]


class Welcome(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint8), ("flags", ctypes.c_uint8), ("max_inflight", ctypes.c_uint16),
                ("max_frame", ctypes.c_uint32), ("server_nonce", ctypes.c_void_p), ("name_len", ctypes.c_uint8),
                ("name", ctypes.c_void_p)]


class Auth(ctypes.Structure):
    _fields_ = [("mac", ctypes.c_void_p)]


class Infer(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_uint8), ("layout", ctypes.c_uint8), ("flags", ctypes.c_uint8),
                ("top_k", ctypes.c_uint8), ("shape", ctypes.c_uint16 * 4), ("scale", ctypes.c_float),
                ("zero_point", ctypes.c_int32), ("model_id_len", ctypes.c_uint8), ("model_id", ctypes.c_void_p),
                ("payload", ctypes.c_void_p), ("payload_len", ctypes.c_uint32)]


class Result(ctypes.Structure):
    _fields_ = [("class_id", ctypes.c_uint16), ("top_k_count", ctypes.c_uint8), ("flags", ctypes.c_uint8),
                ("batch_size", ctypes.c_uint16), ("queue_us", ctypes.c_uint32), ("infer_us", ctypes.c_uint32),
                ("total_us", ctypes.c_uint32), ("top_k", ctypes.c_void_p)]


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("message_len", ctypes.c_uint16), ("message", ctypes.c_void_p)]


class Ping(ctypes.Structure):
    _fields_ = [("token", ctypes.c_uint64)]


class FrameBody(ctypes.Union):
    _fields_ = [("hello", Hello), ("welcome", Welcome), ("auth", Auth), ("infer", Infer), ("result", Result),
                ("error", Error), ("ping", Ping)]


class Frame(ctypes.Structure):
    _fields_ = [("header", FrameHeader), ("u", FrameBody)]


#: hi_frame_status_t -> the Python ProtocolError subclass with the same meaning
FRAME_ERRORS = {-1: "BadMagicError", -2: "UnsupportedVersionError", -3: "UnknownMessageTypeError",
                -4: "FrameTooLargeError", -5: "BadLengthError", -6: "BadFieldError", -7: "PayloadMismatchError"}


def _bytes_at(ptr: int | None, n: int) -> bytes:
    return ctypes.string_at(ptr, n) if n else b""


class FrameCodec:
    """C encode/decode of hi_runtime.protocol messages (for byte-for-byte comparison with Python)."""

    def __init__(self, core: CoreLib) -> None:
        from hi_runtime import protocol as p

        self.p = p
        self.core = core
        L = core.lib
        if ctypes.sizeof(Frame) != L.hi_core_sizeof(7):
            raise RuntimeError(f"ctypes Frame is {ctypes.sizeof(Frame)} bytes but C says {L.hi_core_sizeof(7)}")
        L.hi_frame_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.POINTER(Frame)]
        for fn, args in {
            "hi_frame_encode_hello": [ctypes.c_uint32, ctypes.POINTER(Hello)],
            "hi_frame_encode_welcome": [ctypes.c_uint32, ctypes.POINTER(Welcome)],
            "hi_frame_encode_auth": [ctypes.c_uint8, ctypes.c_uint8, ctypes.c_uint32, ctypes.c_char_p],
            "hi_frame_encode_infer": [ctypes.c_uint8, ctypes.c_uint32, ctypes.POINTER(Infer)],
            "hi_frame_encode_result": [ctypes.c_uint8, ctypes.c_uint32, ctypes.POINTER(Result),
                                       ctypes.POINTER(ctypes.c_uint16), ctypes.POINTER(ctypes.c_float)],
            "hi_frame_encode_error": [ctypes.c_uint8, ctypes.c_uint32, ctypes.POINTER(Error)],
            "hi_frame_encode_ping": [ctypes.c_uint8, ctypes.c_uint8, ctypes.c_uint32, ctypes.c_uint64],
        }.items():
            f = getattr(L, fn)
            f.argtypes = [ctypes.c_char_p, ctypes.c_size_t, *args]
            f.restype = ctypes.c_int32

    def encode(self, msg, version: int = 1, cap: int = 1 << 20) -> bytes | int:
        """Encode with C; returns the frame, or the negative status."""
        p, L = self.p, self.core.lib
        out = ctypes.create_string_buffer(cap)
        keep = []

        def buf(data: bytes) -> int:
            b = ctypes.create_string_buffer(bytes(data), max(len(data), 1))
            keep.append(b)
            return ctypes.addressof(b)

        rid = msg.request_id
        if isinstance(msg, p.Hello):
            name = msg.client_name.encode()
            m = Hello(msg.min_version, msg.max_version, 0, buf(msg.client_nonce), len(name), buf(name))
            n = L.hi_frame_encode_hello(out, cap, rid, ctypes.byref(m))
        elif isinstance(msg, p.Welcome):
            name = msg.server_name.encode()
            m = Welcome(msg.version, 1 if msg.auth_required else 0, msg.max_inflight, msg.max_frame,
                        buf(msg.server_nonce), len(name), buf(name))
            n = L.hi_frame_encode_welcome(out, cap, rid, ctypes.byref(m))
        elif isinstance(msg, (p.Auth, p.AuthOk)):
            n = L.hi_frame_encode_auth(out, cap, version, int(msg.type), rid, bytes(msg.mac))
        elif isinstance(msg, p.Infer):
            mid = msg.model_id.encode()
            m = Infer(int(msg.dtype), int(msg.layout), 1 if msg.quant is not None else 0, msg.top_k,
                      (ctypes.c_uint16 * 4)(*msg.shape), msg.quant[0] if msg.quant else 0.0,
                      msg.quant[1] if msg.quant else 0, len(mid), buf(mid), buf(msg.data), len(msg.data))
            n = L.hi_frame_encode_infer(out, cap, version, rid, ctypes.byref(m))
        elif isinstance(msg, p.Result):
            k = len(msg.top_k)
            cls = (ctypes.c_uint16 * max(k, 1))(*[c for c, _ in msg.top_k])
            sc = (ctypes.c_float * max(k, 1))(*[s for _, s in msg.top_k])
            m = Result(msg.class_id, k, 0, msg.batch_size, msg.queue_us, msg.infer_us, msg.total_us, None)
            n = L.hi_frame_encode_result(out, cap, version, rid, ctypes.byref(m), cls, sc)
        elif isinstance(msg, p.Error):
            text = msg.message.encode("utf-8")
            m = Error(msg.code, len(text), buf(text))
            n = L.hi_frame_encode_error(out, cap, version, rid, ctypes.byref(m))
        elif isinstance(msg, (p.Ping, p.Pong)):
            n = L.hi_frame_encode_ping(out, cap, version, int(msg.type), rid, msg.token)
        else:
            raise TypeError(f"no C encoder for {type(msg).__name__}")
        return out.raw[:n] if n > 0 else int(n)

    def decode(self, frame: bytes, max_frame: int = 256 * 1024):
        """Decode with C; returns the hi_runtime.protocol message, or the negative status."""
        p = self.p
        f = Frame()
        st = self.core.lib.hi_frame_decode(frame, len(frame), max_frame, ctypes.byref(f))
        if st != 0:
            return int(st)
        h, u, rid = f.header, f.u, f.header.request_id
        t = h.type
        if t == p.MsgType.HELLO:
            m = u.hello
            return p.Hello(client_nonce=_bytes_at(m.client_nonce, 16), client_name=_bytes_at(m.name, m.name_len).decode(),
                           min_version=m.min_version, max_version=m.max_version, request_id=rid)
        if t == p.MsgType.WELCOME:
            m = u.welcome
            return p.Welcome(version=m.version, server_nonce=_bytes_at(m.server_nonce, 16),
                             auth_required=bool(m.flags & 1), max_frame=m.max_frame, max_inflight=m.max_inflight,
                             server_name=_bytes_at(m.name, m.name_len).decode(), request_id=rid)
        if t in (p.MsgType.AUTH, p.MsgType.AUTH_OK):
            cls = p.Auth if t == p.MsgType.AUTH else p.AuthOk
            return cls(mac=_bytes_at(u.auth.mac, 32), request_id=rid)
        if t == p.MsgType.INFER:
            m = u.infer
            quant = (float(m.scale), int(m.zero_point)) if m.flags & 1 else None
            return p.Infer(request_id=rid, model_id=_bytes_at(m.model_id, m.model_id_len).decode(),
                           dtype=p.DType(m.dtype), layout=p.Layout(m.layout), shape=tuple(m.shape),
                           data=_bytes_at(m.payload, m.payload_len), quant=quant, top_k=m.top_k)
        if t == p.MsgType.RESULT:
            m = u.result
            cls_p = ctypes.c_uint16()
            sc_p = ctypes.c_float()
            self.core.lib.hi_frame_result_top_k.argtypes = [ctypes.POINTER(Result), ctypes.c_uint8,
                                                            ctypes.POINTER(ctypes.c_uint16), ctypes.POINTER(ctypes.c_float)]
            top = []
            for i in range(m.top_k_count):
                self.core.lib.hi_frame_result_top_k(ctypes.byref(m), i, ctypes.byref(cls_p), ctypes.byref(sc_p))
                top.append((int(cls_p.value), float(sc_p.value)))
            return p.Result(request_id=rid, class_id=m.class_id, top_k=tuple(top), batch_size=m.batch_size,
                            queue_us=m.queue_us, infer_us=m.infer_us, total_us=m.total_us)
        if t == p.MsgType.ERROR:
            m = u.error
            return p.Error(code=m.code, message=_bytes_at(m.message, m.message_len).decode("utf-8", errors="replace"),
                           request_id=rid)
        cls = p.Ping if t == p.MsgType.PING else p.Pong
        return cls(token=int(u.ping.token), request_id=rid)


# ---- tiny stand-in models for tests (until/besides the shipped ones) ----------------------------------

def make_tiny_models(out_dir: Path, seeds: Sequence[int] = (0, 1)) -> list[Path]:
    """Small INT8 CIFAR-shaped classifiers (32x32x3 int8 in with scale 1 / zero point -128, 10-way int8
    softmax out), one per seed, trained one epoch on generated images whose class depends on brightness so
    their answers vary. Reused when the files exist. Imports TensorFlow (seconds)."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"tiny_{s}.tflite" for s in seeds]
    if all(p.exists() for p in paths):
        return paths
    import tensorflow as tf
    from hi_firmware.compiler.testing import convert_int8

    out_dir.mkdir(parents=True, exist_ok=True)
    for seed, path in zip(seeds, paths):
        rng = np.random.default_rng(seed)
        tf.keras.utils.set_random_seed(seed)
        x = rng.integers(0, 256, size=(512, 32, 32, 3)).astype(np.float32)
        x[:256] *= rng.uniform(0.2, 1.0, size=(256, 1, 1, 1))
        y = (x[:, : 8 + 8 * seed].mean(axis=(1, 2, 3)) // 20).astype(np.int64).clip(0, 9)
        inp = tf.keras.Input((32, 32, 3))
        h = tf.keras.layers.Rescaling(1 / 255.0)(inp)
        h = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(h)
        h = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(h)
        h = tf.keras.layers.GlobalAveragePooling2D()(h)
        out = tf.keras.layers.Dense(10, activation="softmax")(h)
        model = tf.keras.Model(inp, out)
        model.compile(tf.keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, verbose=0, batch_size=64)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(convert_int8(model, x[:64]))
        os.replace(tmp, path)
    return paths
