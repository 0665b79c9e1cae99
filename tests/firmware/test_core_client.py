"""The firmware's offload protocol client (hi_offload_client.c, used by the ESP32 and Coral boards) against
the real hi-server over a loopback TCP socket: version negotiation, the mutual HMAC handshake with the
right and a wrong key, INFER -> RESULT equal to what the Python client gets, server ERRORs, and a closed
connection."""
from __future__ import annotations

import ctypes
import os
import shutil
import socket
import time

import numpy as np
import pytest
from core_host import CoreLib, Infer, make_tiny_models

KEY = b"a-pre-shared-key-for-tests-32byt"
SEND = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t)
RECV = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t, ctypes.c_uint32)
NOW = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)


class Transport(ctypes.Structure):
    _fields_ = [("send", SEND), ("recv", RECV), ("now_ms", NOW), ("user", ctypes.c_void_p)]


class Answer(ctypes.Structure):
    _fields_ = [("class_id", ctypes.c_uint16), ("batch_size", ctypes.c_uint16), ("queue_us", ctypes.c_uint32),
                ("infer_us", ctypes.c_uint32), ("total_us", ctypes.c_uint32), ("error_code", ctypes.c_uint16)]


class CClient:
    """hi_client_t over a Python socket (what WiFiClient is on the ESP32)."""

    def __init__(self, core: CoreLib, port: int, name: str = "esp32-test") -> None:
        self.L = core.lib
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2)

        def send(user, data, n):
            try:
                self.sock.sendall(ctypes.string_at(data, n))
                return 0
            except OSError:
                return -1

        def recv(user, buf, cap, timeout_ms):
            self.sock.settimeout(max(timeout_ms, 1) / 1000)
            try:
                chunk = self.sock.recv(cap)
            except socket.timeout:
                return 0
            except OSError:
                return -1
            if not chunk:
                return -1
            ctypes.memmove(buf, chunk, len(chunk))
            return len(chunk)

        self._cbs = (SEND(send), RECV(recv), NOW(lambda u: int(time.monotonic() * 1000) & 0xFFFFFFFF))
        self.t = Transport(*self._cbs, None)
        self.c = ctypes.create_string_buffer(1 << 13)
        self.L.hi_client_init.argtypes = [ctypes.c_void_p, ctypes.POINTER(Transport), ctypes.c_char_p]
        self.L.hi_client_handshake.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                               ctypes.c_uint32]
        self.L.hi_client_infer.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(Infer), ctypes.c_uint32,
                                           ctypes.POINTER(Answer)]
        assert self.L.hi_client_init(self.c, ctypes.byref(self.t), name.encode()) == 0

    def handshake(self, key: bytes | None) -> int:
        return self.L.hi_client_handshake(self.c, os.urandom(16), key, len(key or b""), 3000)

    def infer(self, rid: int, q: np.ndarray, model_id: str = "tiny", quant=(1.0, -128)) -> tuple[int, Answer]:
        data = np.ascontiguousarray(q, dtype=np.int8).tobytes()
        self._keep = (ctypes.create_string_buffer(data, len(data)), ctypes.create_string_buffer(model_id.encode()))
        m = Infer(2, 0, 1, 0, (ctypes.c_uint16 * 4)(1, *q.shape), quant[0], quant[1], len(model_id),
                  ctypes.addressof(self._keep[1]), ctypes.addressof(self._keep[0]), len(data))
        ans = Answer()
        rc = self.L.hi_client_infer(self.c, rid, ctypes.byref(m), 5000, ctypes.byref(ans))
        return rc, ans

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def core():
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no host C compiler")
    return CoreLib()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.getbasetemp() / "tiny_models_client")[0]


def _server(model, key: bytes | None):
    from offload_server.config import ModelConfig, ServerConfig
    from offload_server.server import run_server_in_thread

    return run_server_in_thread(ServerConfig(models=[ModelConfig(id="tiny", path=str(model), backend="tflite")],
                                             port=0, auth_key=key.decode() if key else None))


@pytest.mark.parametrize("key", [None, KEY])
def test_handshake_and_infer_match_the_python_client(core, model, key):
    from hi_runtime.offload_client import OffloadClient

    rng = np.random.default_rng(1)
    with _server(model, key) as srv:
        c = CClient(core, srv.port)
        assert c.handshake(key) == 0
        with OffloadClient("127.0.0.1", srv.port, key=key) as py:
            for rid in range(1, 9):
                q = rng.integers(-128, 128, (32, 32, 3)).astype(np.int8)
                rc, ans = c.infer(rid, q)
                assert rc == 0, rc
                assert ans.class_id == py.infer(q, "tiny", quant=(1.0, -128)).class_id
                assert ans.batch_size >= 1
        rc, ans = c.infer(20, q, model_id="nope")
        assert rc == -6 and ans.error_code == 6  # HI_CLIENT_E_SERVER, UNKNOWN_MODEL
        rc, ans = c.infer(21, q)  # the connection survives a request error
        assert rc == 0
        c.close()


def test_wrong_or_missing_key_is_refused(core, model):
    with _server(model, KEY) as srv:
        c = CClient(core, srv.port)
        assert c.handshake(b"not-the-right-key-at-all-0123456") == -5  # HI_CLIENT_E_AUTH
        c.close()
        c = CClient(core, srv.port)
        assert c.handshake(None) == -5
        rc, _ = c.infer(1, np.zeros((32, 32, 3), np.int8))
        assert rc == -1  # no infer before a successful handshake
        c.close()


def test_closed_connection_is_reported(core, model):
    with _server(model, None) as srv:
        c = CClient(core, srv.port)
        assert c.handshake(None) == 0
        c.sock.shutdown(socket.SHUT_RD)
        rc, _ = c.infer(1, np.zeros((32, 32, 3), np.int8))
        assert rc in (-2, -3)  # HI_CLIENT_E_IO (or a timeout on some stacks)
        c.close()
