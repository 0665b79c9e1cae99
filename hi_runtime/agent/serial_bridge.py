"""`hi-agent serial`: drive a microcontroller running the HI firmware over its serial port.

The board runs the local model, the early exits and the decider itself; this bridge is its link to the
world. Per sample it loads the image with the MLPerf Tiny runner's ``db load``/``db`` commands, asks the
device for the full HI decision (``hi run``), forwards the offload request the device emits (a protocol
INFER frame, decoded here with hi_runtime.protocol) to the edge server through the agent's resilient
offloader, and hands the answer back (``hi result <RESULT frame>``) or tells the device to keep its own
answer (``hi degraded``) when no server answered in time. Every sample is logged with the same JSONL/CSV
schema as ``hi-agent run`` (hi_runtime.records). The command protocol is documented in docs/serial.md.

Ports are pyserial URLs: a device path (``/dev/ttyACM0``), ``socket://127.0.0.1:PORT`` (the QEMU board of
``hi-firmware run-qemu``) or anything else pyserial opens (``rfc2217://``, ``loop://``).
"""
from __future__ import annotations

import argparse
import logging
import re
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from hi_runtime import protocol as p

log = logging.getLogger(__name__)

READY = "m-ready"
DEFAULT_TIMEOUT_S = 30.0
MAX_DB_CHUNK = 120  # bytes of pixels per `db` command (240 hex digits; the firmware takes 256-char commands)


class DeviceError(RuntimeError):
    """The device answered with an error, garbage, or not at all; the message quotes what it said."""


@dataclass
class DeviceConfig:
    """The device's `hi config` line."""

    model: str
    model_id: str
    num_classes: int
    input_shape: tuple[int, int, int]
    input_quant: tuple[float, int]
    output_quant: tuple[float, int]
    segments: int
    exit_bounds: list[int]
    has_decider: bool
    db_capacity: int
    max_command: int
    # each early exit's scores quantization; firmware older than this field reported only the final's
    exit_quants: list[tuple[float, int]] = field(default_factory=list)

    def scores_quant(self, exit_index: int) -> tuple[float, int]:
        """The quantization of the scores a sample left with (an early exit's, or the final head's)."""
        return self.exit_quants[exit_index] if exit_index < len(self.exit_quants) else self.output_quant

    @property
    def input_bytes(self) -> int:
        h, w, c = self.input_shape
        return h * w * c

    @classmethod
    def parse(cls, line: str) -> DeviceConfig:
        m = re.fullmatch(r"m-hi-config-\[(.*)\]", line.strip())
        if not m:
            raise DeviceError(f"not a config line: {line!r}")
        f = _fields(m.group(1))
        try:
            h, w, c = (int(v) for v in f["input"].split("x"))
            return cls(model=f["model"], model_id=f.get("model_id", ""), num_classes=int(f["classes"]),
                       input_shape=(h, w, c),
                       input_quant=(_bits_to_float(f["in_scale_bits"]), int(f["in_zp"])),
                       output_quant=(_bits_to_float(f["out_scale_bits"]), int(f["out_zp"])),
                       segments=int(f["segments"]),
                       exit_bounds=[int(b) for b in f.get("bounds", "").split(":") if b],
                       has_decider=f.get("decider") == "1", db_capacity=int(f["db"]), max_command=int(f["cmd"]),
                       exit_quants=[(_bits_to_float(q.split("/")[0]), int(q.split("/")[1]))
                                    for q in f.get("exit_quant", "").split(":") if q])
        except (KeyError, ValueError, IndexError) as exc:
            raise DeviceError(f"config line {line!r} lacks or garbles a field ({exc})") from exc


@dataclass
class LocalResult:
    """`m-hi-local-[...]`: the device's own answer and decision."""

    request_id: int
    exit_index: int
    segments_run: int
    class_id: int
    offload: bool
    decision_value: int
    device_us: int
    scores: np.ndarray  # raw int8 scores of the exit taken


@dataclass
class FinalResult:
    """`m-hi-final-[...]`: the answer the device settled on."""

    request_id: int
    class_id: int
    source: str  # "local", "server" or "degraded"
    error_code: int | None = None


@dataclass
class HiOutcome:
    local: LocalResult
    offload: p.Infer | None  # the INFER the device asked to send
    final: FinalResult | None  # None while an offload is pending


def _fields(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise DeviceError(f"malformed field {part!r} in {text!r}")
        out[key] = value
    return out


def _bits_to_float(hex_bits: str) -> float:
    return float(struct.unpack(">f", bytes.fromhex(hex_bits))[0])


def _open_port(url: str, baudrate: int, timeout: float):
    import serial

    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout)
    except (serial.SerialException, ValueError) as exc:
        raise DeviceError(f"cannot open serial port {url!r}: {exc}") from exc
    sock = getattr(port, "_socket", None)
    if sock is not None:  # socket:// (QEMU): small command writes must not wait for Nagle
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    return port


class SerialDevice:
    """The command protocol of docs/serial.md over a pyserial port (one command at a time)."""

    def __init__(self, port: Any, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.port = port
        self.timeout = timeout
        self.transcript: list[str] = []  # last lines, for error messages
        self._config: DeviceConfig | None = None

    @classmethod
    def open(cls, url: str, *, baudrate: int = 115200, timeout: float = DEFAULT_TIMEOUT_S) -> SerialDevice:
        return cls(_open_port(url, baudrate, min(timeout, 1.0)), timeout=timeout)

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> SerialDevice:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- line protocol ---------------------------------------------------------------------------

    def _io(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """A port call; a link that breaks (unplugged, re-enumerated, the socket gone) is a DeviceError."""
        try:
            return fn(*args)
        except OSError as exc:  # serial.SerialException is an OSError
            raise DeviceError(f"the serial link broke while {what} ({exc}); check the cable and --port") from None

    def _readline(self, deadline: float) -> str:
        """The next line, by ``deadline``: checked before every read, so a device that keeps printing lines
        that are not the answer (another sketch, a GPS module, a wrong baud rate) still times out."""
        buf = bytearray()
        while True:
            if time.monotonic() > deadline:
                said = " | ".join(self.transcript[-4:]) or "nothing"
                raise DeviceError(f"no answer from the device within {self.timeout} s (last lines: {said}); is the "
                                  "port right and the HI firmware running?")
            chunk = self._io("reading", self.port.readline)
            if chunk:
                buf += chunk
                if buf.endswith(b"\n"):
                    line = buf.decode("ascii", errors="replace").rstrip("\r\n")
                    self.transcript = (self.transcript + [line])[-8:]
                    return line

    def command(self, cmd: str, timeout: float | None = None) -> list[str]:
        """Send `cmd%` and return the reply lines (without the final m-ready)."""
        if "%" in cmd or len(cmd) > (self._config.max_command if self._config else 256):
            raise DeviceError(f"command {cmd[:40]!r}... is not sendable (contains % or is too long)")
        self._io("writing", self.port.write, cmd.encode("ascii") + b"%")
        self._io("writing", self.port.flush)
        deadline = time.monotonic() + (timeout or self.timeout)
        lines = []
        while True:
            line = self._readline(deadline)
            if line == READY:
                return lines
            if line:
                lines.append(line)

    def checked(self, cmd: str, timeout: float | None = None) -> list[str]:
        lines = self.command(cmd, timeout)
        errors = [ln for ln in lines if ln.startswith("e-")]
        if errors:
            raise DeviceError(f"device refused {cmd[:60]!r}: {errors[0]}")
        return lines

    def sync(self) -> str:
        """Get in step with the device (skipping a boot banner or a half-received command); returns its name.

        A lone '%' first ends whatever partial command the device holds (it answers e-[...] + m-ready);
        then `name%` is sent and everything up to its m-name-dut line and the following m-ready is skipped."""
        self._io("opening", self.port.reset_input_buffer)
        self._io("writing", self.port.write, b"%name%")
        self._io("writing", self.port.flush)
        deadline = time.monotonic() + self.timeout
        name = None
        while True:
            line = self._readline(deadline)
            m = re.fullmatch(r"m-name-dut-\[(.*)\]", line)
            if m:
                name = m.group(1)
            elif line == READY and name is not None:
                return name

    # ---- commands --------------------------------------------------------------------------------

    def config(self) -> DeviceConfig:
        if self._config is None:
            lines = self.checked("hi config")
            cfg = [ln for ln in lines if ln.startswith("m-hi-config-")]
            if not cfg:
                raise DeviceError(f"`hi config` gave no m-hi-config line: {lines}")
            self._config = DeviceConfig.parse(cfg[0])
        return self._config

    def load(self, image: np.ndarray) -> None:
        """`db load N` + `db HEX` chunks with the image's uint8 pixels in NHWC order."""
        cfg = self.config()
        data = np.ascontiguousarray(image, dtype=np.uint8).reshape(-1)
        if data.size != cfg.input_bytes:
            raise DeviceError(f"image has {data.size} values but the device model takes "
                              f"{'x'.join(map(str, cfg.input_shape))} = {cfg.input_bytes}")
        raw = data.tobytes()
        self.checked(f"db load {len(raw)}")
        chunk = max(1, min(MAX_DB_CHUNK, (cfg.max_command - 3) // 2))
        for i in range(0, len(raw), chunk):
            lines = self.checked("db " + raw[i:i + chunk].hex())
        if "m-load-done" not in lines:
            raise DeviceError(f"device did not confirm the sample (last reply {lines})")

    def run_hi(self, request_id: int) -> HiOutcome:
        lines = self.checked(f"hi run {request_id}")
        try:
            return self._hi_outcome(lines, request_id)
        except (KeyError, ValueError) as exc:  # a field lost or garbled on the line (serial noise)
            raise DeviceError(f"garbled `hi run` reply ({type(exc).__name__}: {exc}): {lines}"[:300]) from None

    def _hi_outcome(self, lines: list[str], request_id: int) -> HiOutcome:
        local = offload = final = None
        for ln in lines:
            if ln.startswith("m-hi-local-["):
                f = _fields(ln[len("m-hi-local-["):-1])
                local = LocalResult(int(f["id"]), int(f["exit"]), int(f["segments"]), int(f["class"]),
                                    f["offload"] == "1", int(f["dv"]), int(f["us"]),
                                    np.frombuffer(bytes.fromhex(f["scores"]), dtype=np.int8).copy())
            elif ln.startswith("m-hi-offload-["):
                f = _fields(ln[len("m-hi-offload-["):-1])
                frame = bytes.fromhex(f["frame"])
                if len(frame) != int(f["bytes"]):
                    raise DeviceError(f"offload frame has {len(frame)} bytes, the device announced {f['bytes']}")
                try:
                    msg = p.decode(frame)
                except p.ProtocolError as exc:
                    raise DeviceError(f"device emitted an invalid offload frame: {exc}") from exc
                if not isinstance(msg, p.Infer) or msg.request_id != request_id:
                    raise DeviceError(f"offload frame is not an INFER for request {request_id}: {msg!r}"[:200])
                offload = msg
            elif ln.startswith("m-hi-final-[") and local is not None:
                # a final line before m-hi-local closes an offload left pending by an earlier session
                # (interrupted, or its answer refused): the firmware answers it degraded; not this sample's
                final = _parse_final(ln)
        if local is None:
            raise DeviceError(f"`hi run` gave no m-hi-local line: {lines}")
        # offload=1 comes with a frame for the host to forward, or (boards that offload by themselves over
        # BLE/WiFi) directly with the final answer; exactly one of frame and final answer is present
        if (offload is not None and not local.offload) or (final is None) == (offload is None):
            raise DeviceError(f"inconsistent `hi run` reply: {lines}")
        return HiOutcome(local, offload, final)

    def answer(self, answer: p.Result | p.Error) -> FinalResult:
        """Give the device the server's answer to its pending offload."""
        frame = p.encode(answer if not isinstance(answer, p.Error) else _short_error(answer))
        return self._final(self.checked("hi result " + frame.hex()))

    def degraded(self, request_id: int) -> FinalResult:
        return self._final(self.checked(f"hi degraded {request_id}"))

    def infer(self, runs: int = 1, warmup: int = 0, timeout: float | None = None) -> tuple[list[int], list[float]]:
        """The MLPerf Tiny `infer N W` command: (m-lap-us timestamps, result scores)."""
        lines = self.checked(f"infer {runs} {warmup}", timeout)
        laps = [int(ln[len("m-lap-us-"):]) for ln in lines if ln.startswith("m-lap-us-")]
        res = [ln for ln in lines if ln.startswith("m-results-[")]
        if len(laps) != 2 or not res:
            raise DeviceError(f"unexpected `infer` reply: {lines}")
        return laps, [float(v) for v in res[0][len("m-results-["):-1].split(",")]

    def status(self) -> dict[str, int]:
        lines = self.checked("hi status")
        st = [ln for ln in lines if ln.startswith("m-hi-status-[")]
        return {k: int(v) for k, v in _fields(st[0][len("m-hi-status-["):-1]).items()} if st else {}

    def _final(self, lines: list[str]) -> FinalResult:
        try:
            finals = [_parse_final(ln) for ln in lines if ln.startswith("m-hi-final-[")]
        except (KeyError, ValueError) as exc:
            raise DeviceError(f"garbled m-hi-final reply ({type(exc).__name__}: {exc}): {lines}"[:300]) from None
        if not finals:
            raise DeviceError(f"device gave no final answer: {lines}")
        return finals[-1]


def _parse_final(line: str) -> FinalResult:
    f = _fields(line[len("m-hi-final-["):-1])
    return FinalResult(int(f["id"]), int(f["class"]), f["source"], int(f["error"]) if "error" in f else None)


def _short_error(err: p.Error) -> p.Error:
    """An ERROR frame short enough for one device command (the message is for humans; the code matters)."""
    return p.error_message(err.code, err.message[:40], err.request_id)


# ---- the bridge -------------------------------------------------------------------------------------


@dataclass
class BridgeStats:
    samples: int = 0
    offloads: int = 0
    answered: int = 0
    degraded: int = 0
    device_us: list[int] = field(default_factory=list)


class SerialBridge:
    """Runs samples through the device's HI decision, offloading through ``offloader`` (a
    hi_runtime.agent.offloader.Offloader, or None to answer every offload request 'degraded')."""

    def __init__(self, device: SerialDevice, offloader: Any = None, *, decider: Any = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.device = device
        self.offloader = offloader
        self.decider = decider  # optional hi_runtime.decider.Decider for the logged decider_score
        self.clock = clock
        self.config = device.config()
        self.stats = BridgeStats()
        self.last_error: str | None = None
        self.strategy = "ee-hi" if self.config.segments > 1 else "hi"
        self.records: list = []

    def process(self, sample_id: Any, image: np.ndarray, label: int | None = None, request_id: int = 1):
        from hi_runtime.records import SampleRecord

        cfg = self.config
        t0 = self.clock()
        self.device.load(image)
        t1 = self.clock()
        out = self.device.run_hi(request_id)
        t2 = self.clock()
        local = out.local
        scale, zp = cfg.scores_quant(local.exit_index)
        probs = (local.scores.astype(np.float64) - zp) * scale
        score = None
        if self.decider is not None and local.exit_index == cfg.segments - 1:
            score = float(self.decider.score(probs.reshape(1, -1))[0])
        server_class = None
        final = out.final
        t_off = 0.0
        if out.offload is not None:
            self.stats.offloads += 1
            t3 = self.clock()
            final = self._offload(out.offload)
            t_off = (self.clock() - t3) * 1000.0
            if final.source == "server":
                server_class = final.class_id
        elif local.offload and final is not None:  # the board offloaded by itself (over BLE/WiFi)
            self.stats.offloads += 1
            # the firmware's `us` covers the model and the policy; the rest of the command is its radio
            # round trip (and the serial exchange): the offload, not the decision
            t_off = max(0.0, (t2 - t1) * 1000.0 - local.device_us / 1000.0)
            if final.source == "server":
                server_class = final.class_id
        assert final is not None
        self_offloaded = out.offload is None and local.offload
        self.stats.samples += 1
        self.stats.device_us.append(local.device_us)
        degraded = final.source == "degraded"
        self.stats.degraded += int(degraded)
        self.stats.answered += int(final.source == "server")
        return SampleRecord(
            sample_id=sample_id, strategy=self.strategy, local_class=local.class_id,
            local_confidence=float(probs.max()), exit_index=local.exit_index if cfg.segments > 1 else None,
            decider_score=score, offloaded=local.offload, server_class=server_class,
            final_class=final.class_id, degraded=degraded, label=None if label is None else int(label),
            t_preprocess_ms=(t1 - t0) * 1000.0, t_local_ms=local.device_us / 1000.0,
            t_decide_ms=0.0 if self_offloaded else max(0.0, (t2 - t1) * 1000.0 - local.device_us / 1000.0),
            t_offload_ms=t_off,
            t_total_ms=(self.clock() - t0) * 1000.0)

    def _offload(self, req: p.Infer) -> FinalResult:
        if self.offloader is None:
            self.last_error = "no --server given"
            return self.device.degraded(req.request_id)
        outcome = self.offloader.offload(req.to_array(), quant=req.quant, layout=req.layout.name)
        if not outcome.ok:
            self.last_error = outcome.error
            log.info("offload of request %d failed: %s", req.request_id, outcome.error)
            return self.device.degraded(req.request_id)
        t = outcome.server_timings or {}
        res = p.Result(request_id=req.request_id, class_id=int(outcome.class_id),
                       batch_size=int(t.get("batch_size", 1)) & 0xFFFF,
                       queue_us=int(t.get("queue_us", 0)) & 0xFFFFFFFF, infer_us=int(t.get("infer_us", 0)) & 0xFFFFFFFF,
                       total_us=int(t.get("total_us", 0)) & 0xFFFFFFFF)
        final = self.device.answer(res)
        if final.source != "server":
            self.last_error = f"device did not take the server's answer: {final}"
        return final

    def run(self, source, writer=None, progress: bool = True) -> list:
        """Process every sample of an input source (hi_runtime.agent.inputs); returns the records (also in
        ``self.records`` as they come, so an interrupted run can still be summarized)."""
        records = self.records = []
        bar = None
        if progress:
            try:
                from tqdm import tqdm

                bar = tqdm(total=getattr(source, "total", None), unit="sample", desc="serial", file=sys.stderr)
            except ImportError:
                bar = None
        try:
            for i, sample in enumerate(source):
                rec = self.process(sample.sample_id, sample.image, sample.label, request_id=i + 1)
                records.append(rec)
                if writer is not None:
                    writer.write(rec)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return records


# ---- CLI --------------------------------------------------------------------------------------------


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from hi_runtime.agent.inputs import INPUT_FORMS
    from hi_runtime.agent.options import add_input_args, add_server_args
    from hi_runtime.cli_support import at_least

    sp = subparsers.add_parser(
        "serial", help="drive a microcontroller running the HI firmware over its serial port",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Send samples to a board over serial (MLPerf Tiny db commands), run HI on the board, forward "
                    "its offload requests to the server and return the answers (docs/serial.md).\n\ninput forms:\n  "
                    + "\n  ".join(INPUT_FORMS),
        epilog="examples:\n  hi-agent serial --port /dev/ttyACM0 --input npz:models/cifar10/demo_samples.npz "
               "--server 192.168.1.10:8555 --log runs/board.jsonl\n  hi-firmware run-qemu   # then: hi-agent serial "
               "--port socket://127.0.0.1:PORT ...")
    sp.add_argument("--port", required=True, help="pyserial URL: /dev/ttyACM0, socket://127.0.0.1:5555 (QEMU), ...")
    sp.add_argument("--baud", type=at_least(1), default=115200, help="baud rate for real serial ports (default 115200)")
    add_input_args(sp)
    sp.add_argument("--timeout", type=at_least(0, float, exclusive=True), default=DEFAULT_TIMEOUT_S,
                    help=f"seconds to wait for any device reply (default {DEFAULT_TIMEOUT_S:g})")
    sp.add_argument("--decider", help="decider JSON, only to log decider_score (the device decides by itself)")
    sp.add_argument("--log", help="per-sample log (.jsonl or .csv), the hi-agent run schema")
    sp.add_argument("--summary-json", help="also write the summary as JSON here")
    sp.add_argument("--device", help="device name for the log header (default: what the board reports)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_server_args(sp, default_budget_ms=SERIAL_BUDGET_MS)
    sp.set_defaults(func=cmd_serial)


SERIAL_BUDGET_MS = 100.0  # a board waits for its offload answer on the serial line: a tighter default budget


def cmd_serial(args: argparse.Namespace) -> int:
    from hi_runtime.agent.inputs import InputError, open_input
    from hi_runtime.agent.options import build_offloader
    from hi_runtime.cli_support import UsageError, output_file
    from hi_runtime.records import RecordWriter, default_header, summarize, summary_text

    def say(msg: str) -> None:
        print(f"hi-agent serial: {msg}", file=sys.stderr)

    for flag, path, example in (("--log", args.log, "run.jsonl"), ("--summary-json", args.summary_json, "summary.json")):
        if path:
            output_file(flag, path, example)
    # the arguments first (--server, --key-file, --decider), so a mistake names its flag before the port opens
    decider = None
    if args.decider:
        from hi_runtime.decider import Decider

        try:
            decider = Decider.load(args.decider)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--decider: {exc}") from None
    budget = args.latency_budget_ms or SERIAL_BUDGET_MS
    offloader = build_offloader(args, budget)  # connects lazily, on the first offload
    try:  # the input before the port: a mistake there is found before a board is reset and synced
        source = open_input(args.input, size=(32, 32), limit=args.limit, offset=args.offset, order=args.order)
    except InputError as exc:
        if offloader is not None:
            offloader.close()
        raise UsageError(f"--input: {exc}") from None
    try:
        device = SerialDevice.open(args.port, baudrate=args.baud, timeout=args.timeout)
    except DeviceError as exc:
        if offloader is not None:
            offloader.close()
        source.close()
        raise UsageError(f"--port: {exc}") from None
    writer = None
    try:
        name = device.sync()
        cfg = device.config()
        say(f"device '{name}': model {cfg.model}, input {'x'.join(map(str, cfg.input_shape))}, {cfg.segments} "
            f"segment(s), decider {'on' if cfg.has_decider else 'off'}")
        if offloader is not None and not args.model_id and cfg.model_id:
            offloader.config.model_id = cfg.model_id
        if offloader is None:
            say("no --server: every offload request is answered 'degraded' (the device keeps its local answer)")
        source.fit_to(tuple(cfg.input_shape[:2]))  # the device's input size, known once it is synced
        bridge = SerialBridge(device, offloader, decider=decider)
        header = default_header(model=cfg.model, strategy=bridge.strategy, server=",".join(args.server) or None,
                                device=args.device or name, input=source.name, port=args.port,
                                backend="firmware", decider=args.decider, latency_budget_ms=budget,
                                server_model_id=(offloader.config.model_id if offloader else None) or None)
        writer = RecordWriter(args.log, header, args.log_format if hasattr(args, "log_format") else None) \
            if args.log else None
        try:
            records = bridge.run(source, writer, progress=not args.no_progress)
        except KeyboardInterrupt:
            records = list(bridge.records)  # the samples done before Ctrl-C are logged: summarize them
            say("interrupted")
    except (DeviceError, InputError, ValueError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        source.close()
        if offloader is not None:
            offloader.close()
        if writer is not None:
            writer.close()
        device.close()
    summary = summarize(records, bridge.strategy)
    print(summary_text([summary], title="hi-agent serial summary"))
    if bridge.stats.degraded:
        say(f"{bridge.stats.degraded} offloads answered locally (degraded); last error: {bridge.last_error}")
    if args.log:
        say(f"per-sample log: {args.log}")
    if args.summary_json:
        from hi_runtime.records import write_summary_json

        write_summary_json(args.summary_json, summary, header)
    return 0
