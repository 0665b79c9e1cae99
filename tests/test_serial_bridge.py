"""hi-agent serial (hi_runtime/agent/serial_bridge.py) against the real firmware built for the host.

The fake device is not a mock: it is the firmware (shared main, HI core, hi_nn kernels, generated
application with a tiny INT8 model) compiled with gcc and exposed on a pseudo-terminal or a TCP socket
(tests/firmware/support/core_host.py). Offloads go to a loopback hi-server serving a second tiny model.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from core_host import HostDevice, build_host_device, make_tiny_models, serve_device
from hi_firmware.app_config import generate_app

from hi_runtime import protocol as p
from hi_runtime.decider import Decider
from hi_runtime.records import SAMPLE_FIELDS
from hi_runtime.agent.serial_bridge import DeviceError, SerialBridge, SerialDevice

N_SAMPLES = 24


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> list[Path]:
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no host C compiler")
    return make_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, size=(N_SAMPLES, 32, 32, 3), dtype=np.uint8)
    x[::2] = (x[::2] * rng.uniform(0.1, 1.0, size=(N_SAMPLES // 2, 1, 1, 1))).astype(np.uint8)
    return x, rng.integers(0, 10, N_SAMPLES)


@pytest.fixture(scope="session")
def device_lib(tiny_models, images, tmp_path_factory) -> Path:
    """Firmware with tiny_0 and a max-softmax decider whose threshold offloads about half the samples."""
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_file(str(tiny_models[0]))
    conf = []
    for img in images[0]:
        interp.set_input((img.astype(np.int16) - 128).astype(np.int8)[None], 0)
        interp.invoke()
        conf.append((interp.get_output(0).astype(np.int32).max() + 128) / 256)
    work = tmp_path_factory.mktemp("serial_app")
    Decider.max_softmax(float(np.median(conf)) + 1e-6).save(work / "decider.json")
    generate_app(work / "app", model=tiny_models[0], decider=work / "decider.json", model_id="tiny1")
    return build_host_device(work / "app")


@pytest.fixture()
def server(tiny_models):
    from offload_server.config import ModelConfig, ServerConfig
    from offload_server.server import run_server_in_thread

    cfg = ServerConfig(models=[ModelConfig(id="tiny1", path=str(tiny_models[1]), backend="tflite", max_batch_size=4,
                                           max_queue_delay_us=200)], port=0)
    with run_server_in_thread(cfg) as handle:
        yield handle


def _offloader(port: int, budget_ms: float = 2000.0):
    from hi_runtime.agent.offloader import Endpoint, OffloadConfig, Offloader

    return Offloader(OffloadConfig([Endpoint("127.0.0.1", port)], model_id="tiny1",
                                  latency_budget_ms=budget_ms, connect_timeout=1.0))


def _local_reference(model: Path, img: np.ndarray, quant: tuple[float, int]) -> np.ndarray:
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_file(str(model))
    q = np.clip(np.round(img.astype(np.float32) / np.float32(quant[0])) + quant[1], -128, 127).astype(np.int8)
    interp.set_input(q[None], 0)
    interp.invoke()
    return interp.get_output(0).reshape(-1)


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_bridge_runs_hi_on_the_device_and_forwards_offloads(device_lib, tiny_models, images, server, transport):
    from hi_runtime.offload_client import OffloadClient

    x, labels = images
    with serve_device(HostDevice(device_lib), transport) as url, SerialDevice.open(url, timeout=10) as dev:
        assert "host-sim" in dev.sync()
        cfg = dev.config()
        assert cfg.input_shape == (32, 32, 3) and cfg.num_classes == 10 and cfg.has_decider
        bridge = SerialBridge(dev, _offloader(server.port))
        records = [bridge.process(i, x[i], int(labels[i]), request_id=i + 1) for i in range(N_SAMPLES)]
        offloaded = [r for r in records if r.offloaded]
        assert 0 < len(offloaded) < N_SAMPLES  # the decider splits the samples
        with OffloadClient("127.0.0.1", server.port) as client:
            for r in records:
                scores = _local_reference(tiny_models[0], x[r.sample_id], cfg.input_quant)
                assert r.local_class == int(np.argmax(scores))  # the firmware == tflite-micro
                assert r.local_confidence == pytest.approx((int(scores.max()) + 128) / 256)
                if r.offloaded:
                    q = np.clip(np.round(x[r.sample_id].astype(np.float32) / np.float32(cfg.input_quant[0]))
                                + cfg.input_quant[1], -128, 127).astype(np.int8)
                    direct = client.infer(q, "tiny1", quant=cfg.input_quant)
                    assert r.server_class == direct.class_id == r.final_class
                    assert not r.degraded
                else:
                    assert r.final_class == r.local_class and r.server_class is None
        assert dev.status()["answers"] == len(offloaded)
        bridge.offloader.close()


def test_server_down_every_sample_still_answered_degraded(device_lib, images, tiny_models):
    from offload_server.config import ModelConfig, ServerConfig
    from offload_server.server import run_server_in_thread

    x, _ = images
    cfg = ServerConfig(models=[ModelConfig(id="tiny1", path=str(tiny_models[1]), backend="tflite")], port=0)
    with serve_device(HostDevice(device_lib), "tcp") as url, SerialDevice.open(url, timeout=10) as dev:
        dev.sync()
        with run_server_in_thread(cfg) as handle:
            port = handle.port
            bridge = SerialBridge(dev, _offloader(port, budget_ms=300.0))
            first = [bridge.process(i, x[i], request_id=i + 1) for i in range(8)]
        # server stopped: the rest degrade, nothing is dropped
        rest = [bridge.process(i, x[i], request_id=i + 1) for i in range(8, N_SAMPLES)]
        assert any(r.offloaded and not r.degraded for r in first)
        late = [r for r in rest if r.offloaded]
        assert late and all(r.degraded and r.final_class == r.local_class and r.server_class is None for r in late)
        assert len(first) + len(rest) == N_SAMPLES and bridge.last_error
        bridge.offloader.close()


def test_device_protocol_errors_are_reported(device_lib):
    with serve_device(HostDevice(device_lib), "pty") as url, SerialDevice.open(url, timeout=5) as dev:
        dev.sync()
        with pytest.raises(DeviceError, match="e-\\[Unknown command"):
            dev.checked("frobnicate")
        with pytest.raises(DeviceError, match="takes"):
            dev.load(np.zeros((8, 8, 3), np.uint8))
        with pytest.raises(DeviceError, match="no offload is pending"):
            dev.answer(p.Result(request_id=3, class_id=1))
        with pytest.raises(DeviceError, match="load a 3072-byte sample"):
            dev.infer(1, 0)
        dev.load(np.full((32, 32, 3), 100, np.uint8))
        laps, scores = dev.infer(2, 0)
        assert laps[1] >= laps[0] and len(scores) == 10


def test_an_offload_left_pending_by_an_interrupted_session_does_not_wedge_the_next(device_lib, images):
    """A session stops while the device holds an offload (Ctrl-C, a crash); the next one starts its request
    ids at 1 again and the firmware closes the stale offload (degraded) in the reply to its first `hi run`."""
    x, _ = images
    with serve_device(HostDevice(device_lib), "tcp") as url:
        with SerialDevice.open(url, timeout=10) as dev:
            dev.sync()
            for i in range(N_SAMPLES):
                dev.load(x[i])
                if dev.run_hi(1).offload is not None:
                    break  # interrupted here: the offload stays pending on the device
            else:
                pytest.skip("no sample offloads with this tiny model")
        with SerialDevice.open(url, timeout=10) as dev:
            dev.sync()
            rec = SerialBridge(dev).process(0, x[i], request_id=1)
    assert rec.offloaded and rec.degraded and rec.final_class == rec.local_class


def test_not_an_hi_device_times_out_with_a_clear_message():
    dev = SerialDevice.open("loop://", timeout=0.5)  # echoes what we send: never says m-ready
    with pytest.raises(DeviceError, match="no answer from the device"):
        dev.sync()
    dev.close()
    with pytest.raises(DeviceError, match="cannot open serial port"):
        SerialDevice.open("/dev/does-not-exist-hi", timeout=0.5)


def test_cli_writes_the_agent_log_schema(device_lib, images, server, tmp_path):
    from hi_runtime.agent.cli import main

    x, labels = images
    np.savez(tmp_path / "samples.npz", images=x[:10], labels=labels[:10])
    log_path = tmp_path / "run.jsonl"
    with serve_device(HostDevice(device_lib), "pty") as url:
        rc = main(["serial", "--port", url, "--input", f"npz:{tmp_path / 'samples.npz'}", "--server",
                   f"127.0.0.1:{server.port}", "--latency-budget-ms", "2000", "--log", str(log_path),
                   "--no-progress", "--summary-json", str(tmp_path / "summary.json")])
    assert rc == 0
    lines = [json.loads(ln) for ln in log_path.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["strategy"] == "hi" and lines[0]["backend"] == "firmware"
    samples = lines[1:]
    assert len(samples) == 10
    for rec in samples:
        assert list(rec) == ["type", *SAMPLE_FIELDS]
        assert rec["strategy"] == "hi" and rec["exit_index"] is None and rec["label"] is not None
    assert json.loads((tmp_path / "summary.json").read_text())["header"]["port"] == url


def test_cli_help_and_bad_port():
    from hi_runtime.agent.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["serial", "--help"])
    assert exc.value.code == 0
    assert main(["serial", "--port", "/dev/does-not-exist-hi", "--input", "npz:x.npz", "--timeout", "0.5"]) == 2


# ---- links that misbehave (a scripted port: tests/support/scripted_device.py) ----------------------------

def _images(n: int) -> list:
    from hi_runtime.agent.inputs import ArraySource

    return ArraySource(np.zeros((n, 32, 32, 3), np.uint8), np.full(n, 9))


def test_a_device_that_only_chatters_times_out():
    from support.scripted_device import ScriptedPort

    import time

    dev = SerialDevice(ScriptedPort("chatty"), timeout=0.3)
    started = time.monotonic()
    with pytest.raises(DeviceError, match="no answer from the device within 0.3 s"):
        dev.sync()
    assert time.monotonic() - started < 2.0


def test_a_dropped_link_and_a_garbled_reply_are_device_errors_and_done_samples_are_kept():
    from support.scripted_device import ScriptedPort

    for mode, message in (("drop:3", "serial link broke"), ("garble:3", "garbled `hi run` reply")):
        dev = SerialDevice(ScriptedPort(mode), timeout=1.0)
        dev.sync()
        bridge = SerialBridge(dev)
        with pytest.raises(DeviceError, match=message):
            bridge.run(_images(5), progress=False)
        assert len(bridge.records) == 2  # what an interrupted run still summarizes


def test_a_board_that_offloads_by_itself_logs_its_radio_time_as_the_offload():
    from support.scripted_device import ScriptedPort

    dev = SerialDevice(ScriptedPort("selfoff", radio_s=0.05), timeout=1.0)
    dev.sync()
    recs = SerialBridge(dev).run(_images(2), progress=False)
    for r in recs:
        assert r.offloaded and r.final_class == 4 and r.server_class == 4
        assert r.t_decide_ms == 0.0 and r.t_offload_ms >= 45.0 and r.t_local_ms == 1.0


def test_an_early_exit_sample_is_read_with_its_exits_quantization():
    """The board reports each early exit's scores quantization (`exit_quant`); a sample that left at exit 1
    is read with that scale, not the final head's; a board without the field falls back to the final's."""
    from support.scripted_device import CONFIG, ScriptedPort

    from hi_runtime.agent.serial_bridge import DeviceConfig

    dev = SerialDevice(ScriptedPort("ee"), timeout=1.0)
    dev.sync()
    recs = SerialBridge(dev).run(_images(2), progress=False)
    assert [r.exit_index for r in recs] == [0, 1]
    assert recs[0].local_confidence == pytest.approx(255 / 512)  # exit 1: scale 2^-9
    assert recs[1].local_confidence == pytest.approx(255 / 256)  # final head: scale 2^-8
    old = DeviceConfig.parse(CONFIG.replace("segments=1", "segments=2"))
    assert old.scores_quant(0) == old.output_quant
    with pytest.raises(DeviceError, match="garbles a field"):
        DeviceConfig.parse(CONFIG.replace("bounds=,", "bounds=,exit_quant=3b000000,"))
