"""Board tooling for `hi-firmware`: generate the application configuration, build, flash, run on QEMU.

Subcommands (registered into hi_firmware.cli by :func:`register_cli`):

* ``gen-app``   compile the model (or every segment of an early-exit chain) with the project's compiler
  and write ``hi_app_config.c`` (+ the decider header) that fills ``hi_app_t`` (firmware/include/hi_app.h);
* ``build``     gen-app + build a board: ``qemu-m4`` with arm-none-eabi-gcc (firmware/qemu/Makefile),
  ``nano33ble`` / ``esp32dev`` with PlatformIO (``pio run``);
* ``flash``     ``pio run -t upload`` for a PlatformIO board;
* ``run-qemu``  start the mps2-an386 image with its UART on a TCP port or a pty, for ``hi-agent serial``.

WHY one generated file: the segment count, which generated output is the features and which the scores
(TFLite may reorder outputs, so they are resolved by tensor name), the exit bounds and the decider integers
all come from the shipped artifacts through the ONE Python implementation (hi_runtime.decider,
hi_runtime.early_exit); the C side only compares integers.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = FIRMWARE_DIR.parent
BUILD_DIR = FIRMWARE_DIR / "build"
DEFAULT_MODEL = REPO_ROOT / "models" / "cifar10" / "resnet8_int8.tflite"
DEFAULT_DECIDER = REPO_ROOT / "models" / "cifar10" / "decider_resnet8.json"
BOARDS = ("qemu-m4", "nano33ble", "esp32dev")
PIO_BOARDS = ("nano33ble", "esp32dev")
QEMU_MACHINE = "mps2-an386"
#: QEMU's mps2 boards clock SysTick at 25 MHz; with -icount shift=0 one instruction is 1 ns of virtual time.
QEMU_INSTRUCTIONS_PER_US = 1000


class BoardError(RuntimeError):
    """A build/run step failed; the message says what was wrong and what to do."""


# ---- application configuration ---------------------------------------------------------------------


@dataclass
class SegmentInfo:
    """One compiled segment and how the pipeline calls it."""

    name: str
    model_path: Path
    num_outputs: int
    scores_output: int
    features_output: int  # -1 when the segment has no features output
    features_bytes: int
    features_quant: tuple[float, int]
    next_input_quant: tuple[float, int]
    scores_quant: tuple[float, int]
    exit_bound: int
    arena_bytes: int
    flash_bytes: int
    offload_bound: int | None = None  # three-way policy: offload here iff max(q) - zp < bound (None: never)


@dataclass
class AppInfo:
    """What gen-app produced (also written as app.json beside the sources)."""

    out_dir: Path
    segments: list[SegmentInfo]
    input_shape: tuple[int, int, int]
    input_quant: tuple[float, int]
    num_classes: int
    decider: dict | None
    model_version: str
    model_id: str
    sources: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "format": "hi-firmware-app/1",
            "segments": [{"name": s.name, "model": str(s.model_path), "num_outputs": s.num_outputs,
                          "scores_output": s.scores_output, "features_output": s.features_output,
                          "features_bytes": s.features_bytes, "scores_quant": list(s.scores_quant),
                          "exit_bound": s.exit_bound, "offload_bound": s.offload_bound,
                          "arena_bytes": s.arena_bytes, "flash_bytes": s.flash_bytes}
                         for s in self.segments],
            "input_shape": list(self.input_shape),
            "input_quant": list(self.input_quant),
            "num_classes": self.num_classes,
            "decider": self.decider,
            "model_version": self.model_version,
            "model_id": self.model_id,
        }


def _c_ident(text: str) -> str:
    ident = re.sub(r"[^0-9a-zA-Z_]", "_", text)
    return ident if re.match(r"[A-Za-z_]", ident) else f"m_{ident}"


def _float_c(x: float, suffix: str = "") -> str:
    r = repr(float(x))
    if "e" not in r and "." not in r and "inf" not in r and "nan" not in r:
        r += ".0"
    return r + suffix


def _compile(model_path: Path, name: str, out_dir: Path):
    from hi_firmware.compiler import CompileError, compile_model

    try:
        return compile_model(model_path, out_dir / "models" / name, name=name)
    except CompileError as exc:
        raise BoardError(f"cannot compile {model_path}: {exc}") from exc


def _tensor_quant(t) -> tuple[float, int]:
    if t.scales.size == 0:
        raise BoardError(f"tensor '{t.name}' is not quantized; the firmware runs full-integer INT8 models only")
    return float(t.scale), int(t.zero_point)


def _decider_block(decider_path: Path | None, scores_quant: tuple[float, int], out_dir: Path,
                   decider_obj=None) -> dict | None:
    """Write hi_app_decider.h (exact integer form for the final exit's output quantization)."""
    if decider_path is None and decider_obj is None:
        return None
    scale, zp = scores_quant
    if decider_path is not None and decider_path.suffix == ".h":
        text = decider_path.read_text()
        m = re.search(r"#define\s+(\w+)_TOP_K\s+(\d+)", text)
        z = re.search(r"#define\s+(\w+)_ZERO_POINT\s+\((-?\d+)\)", text)
        if not m or not z:
            raise BoardError(f"{decider_path} does not look like a header from `hi-train decider` "
                             "(no <PREFIX>_TOP_K / <PREFIX>_ZERO_POINT); pass the decider JSON instead")
        if int(z.group(2)) != zp:
            raise BoardError(f"decider header {decider_path} was exported for output zero point {z.group(2)} but the "
                             f"model's scores have zero point {zp}; re-export it for this model")
        shutil.copyfile(decider_path, out_dir / "hi_app_decider.h")
        return {"source": str(decider_path), "prefix": m.group(1), "top_k": int(m.group(2)), "zero_point": zp}
    from hi_runtime.decider import Decider, DeciderError

    try:
        dec = decider_obj if decider_obj is not None else Decider.load(decider_path)
        form = dec.int8 if dec.int8 is not None and dec.int8.matches(scale, zp) else dec.compile_int8(scale, zp)
        dec = dec.with_int8(scale, zp) if dec.int8 is None or not dec.int8.matches(scale, zp) else dec
        header = dec.to_c_header(prefix="HI_APP_DECIDER", source=str(decider_path or "chain final decider"))
    except DeciderError as exc:
        raise BoardError(f"decider {decider_path}: {exc}") from exc
    (out_dir / "hi_app_decider.h").write_text(header)
    return {"source": str(decider_path) if decider_path else "chain", "prefix": "HI_APP_DECIDER",
            "top_k": form.top_k, "A": list(form.coef), "B": form.bias, "zero_point": form.zero_point,
            "exact": form.exact, "grid_disagreements": form.grid_disagreements}


ENGINES = ("compiled", "tflm")


def generate_app(out_dir: Path, *, model: Path | None = None, chain: Path | None = None,
                 decider: Path | None = None, no_decider: bool = False, model_id: str = "",
                 model_version: str | None = None, engine: str = "compiled") -> AppInfo:
    """Compile the model(s) into out_dir/models/NAME and write out_dir/hi_app_config.c.

    engine "compiled" (default): the project's generated C + hi_nn kernels. "tflm": the upstream TensorFlow
    Lite Micro interpreter on the same .tflite bytes (src/common/hi_engine_tflm.cpp; single models only)."""
    if (model is None) == (chain is None):
        raise BoardError("give exactly one of --model MODEL.tflite or --chain CHAIN.json")
    if engine not in ENGINES:
        raise BoardError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "tflm" and chain is not None:
        raise BoardError("--engine tflm runs single models only; early-exit chains need the compiled engine")
    if len(model_id.encode()) > 32 or any(not 0x21 <= ord(c) <= 0x7E for c in model_id):
        raise BoardError(f"model id {model_id!r} must be at most 32 printable ASCII characters without spaces")
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir / "models", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    segments: list[SegmentInfo] = []
    decider_obj = None
    if model is not None:
        model = Path(model)
        if not model.exists():
            raise BoardError(f"model {model} does not exist; train and export it with `hi-train model ... --export int8`")
        name = _c_ident(model.stem)
        res = _compile(model, name, out_dir)
        g = res.graph
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise BoardError(f"{model} has {len(g.inputs)} inputs and {len(g.outputs)} outputs; a single model needs "
                             "one of each (use --chain for early-exit segments)")
        first_in = g.tensors[g.inputs[0]]
        scores_t = g.tensors[g.outputs[0]]
        segments.append(SegmentInfo(name, model, 1, 0, -1, 0, (1.0, 0), (1.0, 0), _tensor_quant(scores_t), 0,
                                    res.generated.arena_size, res.generated.flash_bytes))
        version_default = model.stem
    else:
        from hi_runtime.early_exit import EarlyExitError, SegmentChain

        chain = Path(chain)
        try:
            ch = SegmentChain.load(chain)
            bounds = ch.policy.exit_bounds_int8(ch.scores_quants())
            offload_bounds = ch.policy.offload_bounds_int8(ch.scores_quants())
        except EarlyExitError as exc:
            raise BoardError(f"chain {chain}: {exc}") from exc
        decider_obj = ch.policy.decider
        first_in = None
        for k, spec in enumerate(ch.segments):
            name = _c_ident(f"{chain.stem}_s{k}")
            res = _compile(spec.file, name, out_dir)
            g = res.graph
            out_names = [g.tensors[t].name for t in g.outputs]
            if spec.scores not in out_names:
                raise BoardError(f"segment {k} ({spec.file}) has no output named {spec.scores!r}; outputs: {out_names}")
            scores_i = out_names.index(spec.scores)
            feat_i = -1
            feat_bytes = 0
            fq = (1.0, 0)
            last = k == len(ch.segments) - 1
            if not last:
                if spec.features not in out_names:
                    raise BoardError(f"segment {k} ({spec.file}) has no output named {spec.features!r}; "
                                     f"outputs: {out_names}")
                feat_i = out_names.index(spec.features)
                ft = g.tensors[g.outputs[feat_i]]
                feat_bytes = ft.num_elements
                fq = _tensor_quant(ft)
            if k == 0:
                first_in = g.tensors[g.inputs[0]]
            else:  # this segment's input quantization is the previous one's "next input"
                prev = segments[-1]
                prev.next_input_quant = _tensor_quant(g.tensors[g.inputs[0]])
                if g.tensors[g.inputs[0]].num_elements != prev.features_bytes:
                    raise BoardError(f"segment {k} input has {g.tensors[g.inputs[0]].num_elements} elements but segment "
                                     f"{k - 1} features have {prev.features_bytes}")
            st = g.tensors[g.outputs[scores_i]]
            segments.append(SegmentInfo(name, spec.file, len(out_names), scores_i, feat_i, feat_bytes, fq, fq,
                                        _tensor_quant(st), bounds[k] if not last else 0,
                                        res.generated.arena_size, res.generated.flash_bytes,
                                        offload_bounds[k] if not last else None))
        version_default = chain.stem
    assert first_in is not None
    if first_in.dtype != "int8" or len(first_in.shape) != 4 or first_in.shape[0] != 1:
        raise BoardError(f"the model input must be int8 [1, H, W, C]; got {first_in.dtype} {list(first_in.shape)}")
    in_quant = _tensor_quant(first_in)
    h, w, c = (int(d) for d in first_in.shape[1:])
    num_classes = None
    # every exit has the same number of classes; take it from the compiled graphs' scores outputs
    from hi_firmware.compiler.graph import read_tflite_bytes

    for s in segments:
        gg = read_tflite_bytes(s.model_path.read_bytes(), model_name=s.model_path.name)
        n = gg.tensors[gg.outputs[s.scores_output]].num_elements
        if num_classes is not None and n != num_classes:
            raise BoardError(f"segment {s.name} has {n} classes but an earlier exit has {num_classes}")
        num_classes = n
    assert num_classes is not None
    if no_decider:
        dec_block = None
    elif decider is not None:
        dec_block = _decider_block(Path(decider), segments[-1].scores_quant, out_dir)
    elif decider_obj is not None:
        dec_block = _decider_block(None, segments[-1].scores_quant, out_dir, decider_obj=decider_obj)
    else:
        dec_block = None
    if model_version is None:
        model_version = "ic01" if (h, w, c, num_classes) == (32, 32, 3, 10) else version_default
    info = AppInfo(out_dir, segments, (h, w, c), in_quant, num_classes, dec_block, model_version, model_id)
    if engine == "tflm":
        shutil.rmtree(out_dir / "models", ignore_errors=True)
        data = Path(model).read_bytes()
        rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16)]
        (out_dir / "hi_app_tflm_model.c").write_text(
            f"/* Generated by `hi-firmware gen-app --engine tflm` from {Path(model).name}; do not edit. */\n"
            "#include <stddef.h>\n\n"
            "#if defined(__GNUC__)\n__attribute__((aligned(16)))\n#endif\n"
            f"const unsigned char hi_app_tflm_model[{len(data)}] = {{\n  " + ",\n  ".join(rows) + "\n};\n"
            f"const size_t hi_app_tflm_model_len = {len(data)};\n")
    else:
        (out_dir / "hi_app_tflm_model.c").unlink(missing_ok=True)
    (out_dir / "hi_app_config.c").write_text(_render_config(info, engine))
    (out_dir / "app.json").write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    info.sources = sorted(out_dir.glob("models/*/*.c")) + [out_dir / "hi_app_config.c"]
    return info


def _render_config(info: AppInfo, engine: str = "compiled") -> str:
    tflm = engine == "tflm"
    h, w, c = info.input_shape
    n_in = h * w * c
    lines = [
        "/* Generated by `hi-firmware gen-app`; do not edit. Rebuild with hi-firmware build. */",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        '#include "hi_app.h"',
        '#include "hi_decider.h"',
        '#include "hi_exit_policy.h"',
    ]
    for s in info.segments:
        if not tflm:
            lines.append(f'#include "hi_model_{s.name}.h"')
    if tflm:
        lines += ["", "/* engine: TensorFlow Lite Micro (src/common/hi_engine_tflm.cpp, built with -DHI_ENGINE_TFLM=1) */",
                  "int hi_tflm_invoke_generic(const void *const *inputs, void *const *outputs);"]
    if info.decider:
        lines.append('#include "hi_app_decider.h"')
    lines += ["", f"#define HI_APP_INPUT_BYTES {n_in}", f"#define HI_APP_NUM_CLASSES {info.num_classes}", ""]
    # compile-time checks against the generated model headers
    first = info.segments[0].name.upper()
    if not tflm:
        lines.append(f"typedef char hi_app_check_input[(HI_MODEL_{first}_INPUT_BYTES == HI_APP_INPUT_BYTES) ? 1 : -1];")
        for s in info.segments:
            lines.append(f"typedef char hi_app_check_outputs_{s.name}[(HI_MODEL_{s.name.upper()}_NUM_OUTPUTS == "
                         f"{s.num_outputs}) ? 1 : -1];")
    lines += [
        "",
        "static int8_t g_input[HI_APP_INPUT_BYTES];",
        "static uint8_t g_db[HI_APP_INPUT_BYTES];",
        "static int8_t g_scores[HI_APP_NUM_CLASSES];",
    ]
    for k, s in enumerate(info.segments):
        if s.features_output >= 0:
            lines.append(f"static int8_t g_features_{k}[{s.features_bytes}];")
    if info.decider:
        lines.append("static hi_decider_t g_decider;")
    lines += ["", f"static const hi_segment_t g_segments[{len(info.segments)}] = {{"]
    for k, s in enumerate(info.segments):
        feat = f"g_features_{k}" if s.features_output >= 0 else "NULL"
        lines += [
            f"    {{/* segment {k}: {s.model_path.name} */",
            (f"     {'hi_tflm_invoke_generic' if tflm else f'hi_model_{s.name}_invoke_generic'}, {s.num_outputs}, "
             f"{s.features_output}, {s.scores_output},"),
            f"     {s.features_bytes}u, {feat},",
            f"     {_float_c(s.features_quant[0])}, {s.features_quant[1]},",
            f"     {_float_c(s.next_input_quant[0])}, {s.next_input_quant[1]},",
            f"     {_float_c(s.scores_quant[0])}, {s.scores_quant[1]},",
            (f"     {s.exit_bound}, {int(s.offload_bound is not None)}, "
             f"{0 if s.offload_bound is None else s.offload_bound}}},"),
        ]
    lines += ["};", ""]
    dec = "&g_decider" if info.decider else "NULL"
    lines += [
        "static const hi_pipeline_t g_pipeline = {",
        f"    g_segments, {len(info.segments)}, {dec}, HI_APP_NUM_CLASSES, g_scores,",
        f"    {h}, {w}, {c}, {_float_c(info.input_quant[0], 'f')}, {info.input_quant[1]}}};",
        "",
        "int hi_app_setup(hi_app_t *app) {",
        "  if (app == NULL) return -1;",
    ]
    if info.decider:
        p = info.decider["prefix"]
        lines.append(f"  if (hi_decider_init(&g_decider, {p}_TOP_K, {p}_ZERO_POINT, {p}_A, {p}_B) != 0) return -1;")
    lines += [
        "  app->pipeline = &g_pipeline;",
        "  app->input = g_input;",
        "  app->db = g_db;",
        "  app->db_capacity = HI_APP_INPUT_BYTES;",
        f"  app->model_version = \"{info.model_version}\";",
        f"  app->model_id = \"{info.model_id}\";",
        "  return hi_pipeline_check(&g_pipeline);",
        "}",
        "",
    ]
    return "\n".join(lines)


# ---- QEMU ------------------------------------------------------------------------------------------


def _require(tool: str, what: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise BoardError(f"{tool} not found: {what}")
    return path


def build_qemu(app_dir: Path, build_dir: Path = BUILD_DIR / "qemu-m4", opt: str = "-O2",
               extra_cflags: str = "") -> Path:
    """Build the mps2-an386 ELF with firmware/qemu/Makefile; returns its path."""
    _require("arm-none-eabi-gcc", "install the Arm toolchain (Debian: apt-get install gcc-arm-none-eabi "
                                  "libnewlib-arm-none-eabi)")
    build_dir = Path(build_dir).resolve()
    cmd = ["make", "-s", "-C", str(FIRMWARE_DIR / "qemu"), f"BUILD={build_dir}", f"APP_DIR={Path(app_dir).resolve()}",
           f"OPT={opt}", f"EXTRA_CFLAGS={extra_cflags}", "all"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BoardError(f"QEMU image build failed ({' '.join(cmd)}):\n{proc.stdout}\n{proc.stderr}")
    return build_dir / "hi_qemu_m4.elf"


def elf_size(elf: Path) -> dict[str, int]:
    """text/data/bss from arm-none-eabi-size (Berkeley format); flash = text + data, RAM = data + bss."""
    tool = _require("arm-none-eabi-size", "install gcc-arm-none-eabi (binutils)")
    out = subprocess.run([tool, str(elf)], capture_output=True, text=True, check=True).stdout.splitlines()
    text, data, bss = (int(x) for x in out[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def qemu_command(elf: Path, *, port: int | None = None, pty: bool = False, icount: bool = True) -> list[str]:
    qemu = _require("qemu-system-arm", "install QEMU (Debian: apt-get install qemu-system-arm)")
    if pty:
        serial = "pty"
    else:
        serial = f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"  # nodelay: no 40 ms Nagle stalls
    cmd = [qemu, "-M", QEMU_MACHINE, "-nographic", "-monitor", "none", "-kernel", str(elf), "-serial", serial]
    if icount:
        cmd += ["-icount", "shift=0"]
    return cmd


@dataclass
class QemuHandle:
    process: subprocess.Popen
    url: str  # pyserial URL of the board's UART (socket://... or a /dev/pts path)


@contextmanager
def run_qemu(elf: Path, *, icount: bool = True, pty: bool = False, port: int | None = None,
             start_timeout: float = 10.0) -> Iterator[QemuHandle]:
    """Start QEMU with the image; yields the serial URL. QEMU waits (TCP) until the first client connects,
    so the boot banner is not lost. The process is terminated on exit."""
    elf = Path(elf)
    if not elf.exists():
        raise BoardError(f"{elf} does not exist; build it with `hi-firmware build --board qemu-m4`")
    if pty:
        cmd = qemu_command(elf, pty=True, icount=icount)
    else:
        port = port or free_tcp_port()
        cmd = qemu_command(elf, port=port, icount=icount)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        if pty:
            url = _wait_pty(proc, start_timeout)
        else:
            url = f"socket://127.0.0.1:{port}"
            _wait_port(proc, port, start_timeout)
        yield QemuHandle(proc, url)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _wait_port(proc: subprocess.Popen, port: int, timeout: float) -> None:
    """Wait until QEMU listens; QEMU prints nothing reliable, so probe /proc/net/tcp rather than connect
    (a probing connection would be taken as the serial client)."""
    deadline = time.monotonic() + timeout
    hexport = f"{port:04X}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise BoardError(f"QEMU exited with status {proc.returncode}: {out.strip()}")
        try:
            with open("/proc/net/tcp") as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if parts[1].endswith(":" + hexport) and parts[3] == "0A":  # LISTEN
                        return
        except OSError:
            time.sleep(0.5)  # no procfs: give QEMU a moment and let the client retry
            return
        time.sleep(0.05)
    raise BoardError(f"QEMU did not listen on 127.0.0.1:{port} within {timeout} s")


def _wait_pty(proc: subprocess.Popen, timeout: float) -> str:
    import selectors

    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"(/dev/pts/\d+)", line)
        if m:
            return m.group(1)
    raise BoardError("QEMU did not report its pty (expected 'char device redirected to /dev/pts/N')")


# ---- PlatformIO ------------------------------------------------------------------------------------


def pio_command(args: Sequence[str]) -> list[str]:
    pio = shutil.which("pio") or shutil.which("platformio")
    if not pio:
        raise BoardError("PlatformIO is not installed (pip install platformio); it must also be able to download the "
                         "board platform (nordicnrf52 / espressif32) the first time")
    return [pio, *args]


def pio_env(board: str, engine: str = "compiled") -> str:
    """The platformio.ini environment of a board and engine (nano33ble, nano33ble_tflm, ...)."""
    return board + ("_tflm" if engine == "tflm" else "")


def pio_app_dir(env: str) -> Path:
    """Where gen-app writes the application for a PlatformIO env (platformio.ini's lib_extra_dirs)."""
    return BUILD_DIR / "pio_app" / env / "hi_app"


def generate_pio_app(env: str, **kwargs) -> AppInfo:
    out = pio_app_dir(env)
    info = generate_app(out, **kwargs)
    # a PlatformIO library: the generated sources with their include dirs
    incs = ["-I" + str(p.resolve()) for p in sorted(out.glob("models/*"))]
    (out / "library.json").write_text(json.dumps({
        "name": "hi_app", "version": "0.0.0",
        "description": "generated by hi-firmware gen-app: models, decider and application configuration",
        "build": {"flags": ["-I" + str(out.resolve()), *incs], "srcFilter": ["+<*.c>", "+<models/*/*.c>"]},
    }, indent=2) + "\n")
    return info


# ---- CLI -------------------------------------------------------------------------------------------


def _add_app_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, help=f"INT8 .tflite model (default {DEFAULT_MODEL.relative_to(REPO_ROOT)})")
    src.add_argument("--chain", type=Path, help="early-exit chain JSON (models/cifar10/ee_resnet8.json)")
    p.add_argument("--decider", type=Path,
                   help="decider JSON or exported header (default: models/cifar10/decider_resnet8.json with "
                        "--model when it exists; the chain's final decider with --chain)")
    p.add_argument("--no-decider", action="store_true", help="keep every local answer (no offload)")
    p.add_argument("--model-id", default="", help="server model id sent in offload frames (default: server default)")
    p.add_argument("--model-version", help="name reported by `profile%%` (default ic01 for CIFAR-10 models)")
    p.add_argument("--engine", choices=ENGINES, default="compiled",
                   help="compiled: the project's generated C (default); tflm: the TFLite Micro interpreter on the "
                        "same model bytes (PlatformIO *_tflm envs)")


def _app_kwargs(args: argparse.Namespace) -> dict:
    model, chain = args.model, args.chain
    if model is None and chain is None:
        model = DEFAULT_MODEL
    decider = args.decider
    if decider is None and model is not None and not args.no_decider and DEFAULT_DECIDER.exists() \
            and Path(model).resolve() == DEFAULT_MODEL.resolve():
        decider = DEFAULT_DECIDER
    return {"model": model, "chain": chain, "decider": decider, "no_decider": args.no_decider,
            "model_id": args.model_id, "model_version": args.model_version, "engine": args.engine}


def _print_app(info: AppInfo) -> None:
    print(f"application: {len(info.segments)} segment(s), input {'x'.join(map(str, info.input_shape))} int8 "
          f"(scale {info.input_quant[0]}, zero point {info.input_quant[1]}), {info.num_classes} classes")
    for s in info.segments:
        print(f"  {s.name}: arena {s.arena_bytes} B, constants {s.flash_bytes} B"
              + (f", exit bound {s.exit_bound}" if s.features_output >= 0 else "")
              + (f", offload bound {s.offload_bound}" if s.offload_bound is not None else ""))
    print(f"  decider: {info.decider['source'] if info.decider else 'none (every local answer is kept)'}")


def cmd_gen_app(args: argparse.Namespace) -> int:
    try:
        info = generate_app(args.out, **_app_kwargs(args))
    except BoardError as exc:
        print(f"hi-firmware gen-app: error: {exc}", file=sys.stderr)
        return 1
    _print_app(info)
    print(f"wrote {info.out_dir}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    try:
        if args.board == "qemu-m4":
            if args.engine == "tflm":
                raise BoardError("the QEMU image builds with arm-none-eabi-gcc from this tree only; TFLite Micro's "
                                 "C++ sources are not in it, so --engine tflm is for the PlatformIO envs *_tflm")
            build_dir = Path(args.build_dir or BUILD_DIR / "qemu-m4")
            info = generate_app(build_dir / "app", **_app_kwargs(args))
            _print_app(info)
            elf = build_qemu(build_dir / "app", build_dir, opt=args.opt)
            size = elf_size(elf)
            print(f"built {elf}")
            print(f"  flash {size['flash']} B (text {size['text']} + data {size['data']}), "
                  f"RAM {size['ram']} B (data {size['data']} + bss {size['bss']}, incl. 16 KiB stack)")
            print(f"run it: hi-firmware run-qemu --elf {elf}")
            return 0
        env = pio_env(args.board, args.engine)
        info = generate_pio_app(env, **_app_kwargs(args))
        _print_app(info)
        cmd = pio_command(["run", "-d", str(FIRMWARE_DIR), "-e", env])
        print("$ " + " ".join(cmd))
        return subprocess.call(cmd)
    except BoardError as exc:
        print(f"hi-firmware build: error: {exc}", file=sys.stderr)
        return 1


def cmd_flash(args: argparse.Namespace) -> int:
    env = pio_env(args.board, args.engine)
    try:
        cmd = pio_command(["run", "-d", str(FIRMWARE_DIR), "-e", env, "-t", "upload"])
    except BoardError as exc:
        print(f"hi-firmware flash: error: {exc}", file=sys.stderr)
        return 1
    if args.port:
        cmd += ["--upload-port", args.port]
    if not pio_app_dir(env).exists():
        print(f"hi-firmware flash: error: no generated application for {env}; run "
              f"`hi-firmware build --board {args.board} --engine {args.engine}` first", file=sys.stderr)
        return 1
    print("$ " + " ".join(cmd))
    return subprocess.call(cmd)


def cmd_run_qemu(args: argparse.Namespace) -> int:
    elf = Path(args.elf or BUILD_DIR / "qemu-m4" / "hi_qemu_m4.elf")
    try:
        with run_qemu(elf, icount=not args.no_icount, pty=args.pty, port=args.port) as handle:
            print(f"QEMU {QEMU_MACHINE} running {elf}")
            print(f"board UART: {handle.url}")
            print(f"drive it:   hi-agent serial --port {handle.url} --input ... (Ctrl-C stops QEMU)")
            sys.stdout.flush()
            import signal

            def _stop(signum, frame):  # SIGTERM too: never leave QEMU running
                raise KeyboardInterrupt

            previous = signal.signal(signal.SIGTERM, _stop)
            try:
                handle.process.wait()
            except KeyboardInterrupt:
                pass
            finally:
                signal.signal(signal.SIGTERM, previous)
    except BoardError as exc:
        print(f"hi-firmware run-qemu: error: {exc}", file=sys.stderr)
        return 1
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("gen-app", help="compile model(s) and write the firmware's application configuration",
                              description="Compile the INT8 model (or each early-exit segment) and write "
                                          "hi_app_config.c + hi_app_decider.h for firmware/include/hi_app.h.")
    _add_app_args(p)
    p.add_argument("--out", type=Path, required=True, help="output directory (e.g. firmware/build/qemu-m4/app)")
    p.set_defaults(func=cmd_gen_app)

    p = subparsers.add_parser("build", help="build the firmware for a board (qemu-m4, nano33ble, esp32dev)",
                              description="Generate the application and build the board image. qemu-m4 uses "
                                          "arm-none-eabi-gcc; nano33ble/esp32dev run `pio run` (needs PlatformIO).")
    p.add_argument("--board", choices=BOARDS, default="qemu-m4")
    _add_app_args(p)
    p.add_argument("--build-dir", type=Path, help="qemu-m4 build directory (default firmware/build/qemu-m4)")
    p.add_argument("--opt", default="-O2", help="optimization flag for qemu-m4 (default -O2)")
    p.set_defaults(func=cmd_build)

    p = subparsers.add_parser("flash", help="upload a PlatformIO board (wraps `pio run -t upload`)",
                              description="Upload the firmware built by `hi-firmware build --board B` to a board.")
    p.add_argument("--board", choices=PIO_BOARDS, required=True)
    p.add_argument("--port", help="serial port of the board (default: PlatformIO autodetects)")
    p.add_argument("--engine", choices=ENGINES, default="compiled", help="which build to upload (see build)")
    p.set_defaults(func=cmd_flash)

    p = subparsers.add_parser("run-qemu", help="run the Cortex-M4 image on QEMU mps2-an386 with its UART exposed",
                              description="Start qemu-system-arm -M mps2-an386 with the firmware; the UART is a TCP "
                                          "server on 127.0.0.1 (or a pty) for hi-agent serial / pyserial.")
    p.add_argument("--elf", type=Path, help="image (default firmware/build/qemu-m4/hi_qemu_m4.elf)")
    p.add_argument("--port", type=int, help="TCP port for the UART (default: a free port)")
    p.add_argument("--pty", action="store_true", help="expose the UART as a pty instead of TCP")
    p.add_argument("--no-icount", action="store_true",
                   help="run as fast as possible (timestamps are then host time, not instruction counts)")
    p.set_defaults(func=cmd_run_qemu)
