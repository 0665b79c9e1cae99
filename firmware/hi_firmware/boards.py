"""`hi-firmware gen-app | build | flash | run-qemu`: the board commands (registered into hi_firmware.cli).

* ``gen-app``   compile the model(s) and write the application configuration (app_config.py);
* ``build``     gen-app + build a board: ``qemu-m4`` with arm-none-eabi-gcc (qemu.py, firmware/qemu/Makefile),
  ``nano33ble`` / ``esp32dev`` with PlatformIO (platformio.py);
* ``flash``     ``pio run -t upload`` for a PlatformIO board;
* ``run-qemu``  start the mps2-an386 image with its UART on a TCP port or a pty, for ``hi-agent serial``.

Only argument handling lives here; user mistakes raise UsageError (one line, exit 2).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from hi_runtime.artifacts import find_model

from .app_config import ENGINES, AppInfo, generate_app
from .errors import UsageError, need_file, need_folder
from .host import build_host_device
from .paths import build_dir, firmware_dir, shipped_model
from .platformio import generate_pio_app, pio_app_dir, pio_command, pio_env
from .qemu import QEMU_MACHINE, build_qemu, check_image, run_qemu
from .toolchain import elf_size

BOARDS = ("qemu-m4", "host", "nano33ble", "esp32dev")
PIO_BOARDS = ("nano33ble", "esp32dev")
DEFAULT_MODEL_NAME = "resnet8_int8.tflite"
DEFAULT_DECIDER_NAME = "decider_resnet8.json"


def default_model() -> Path:
    """The shipped ResNet-8 (the default of --model), or a UsageError saying how to pass one."""
    found = shipped_model(DEFAULT_MODEL_NAME)
    if found is None:
        raise UsageError(f"no --model given and the shipped {DEFAULT_MODEL_NAME} is not installed; pass --model "
                         "MODEL.tflite (or --chain CHAIN.json)")
    return found


def default_decider_for(model: Path) -> Path | None:
    """The shipped decider, when model is the shipped ResNet-8."""
    shipped = shipped_model(DEFAULT_MODEL_NAME)
    if shipped is None or Path(model).resolve() != shipped.resolve():
        return None
    return shipped_model(DEFAULT_DECIDER_NAME)


def _add_app_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, help=f"INT8 .tflite model (default: the shipped {DEFAULT_MODEL_NAME})")
    src.add_argument("--chain", type=Path, help="early-exit chain JSON (models/cifar10/ee_resnet8.json)")
    dec = p.add_mutually_exclusive_group()
    dec.add_argument("--decider", type=Path,
                     help=f"decider JSON or exported header (default: the shipped {DEFAULT_DECIDER_NAME} with the "
                          "shipped model; the chain's final decider with --chain); a decider JSON must have been "
                          "fitted for the model (or the chain's single-file model)")
    dec.add_argument("--no-decider", action="store_true", help="keep every local answer (no offload)")
    p.add_argument("--force-decider", action="store_true",
                   help="use --decider although it was fitted for another model or output (a warning instead of "
                        "an error, as hi-agent --force-decider)")
    p.add_argument("--model-id", default="", help="server model id sent in offload frames (default: server default)")
    p.add_argument("--model-version", help="name reported by `profile%%` (default ic01 for CIFAR-10 models)")
    p.add_argument("--engine", choices=ENGINES, default="compiled",
                   help="compiled: the project's generated C (default); tflm: the TFLite Micro interpreter on the "
                        "same model bytes (PlatformIO *_tflm envs)")


def tcp_port(text: str) -> int:
    """argparse type of run-qemu --port: a TCP port 1..65535, or 0 for a free one (run_qemu picks it)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number; give 1..65535 (0: a free port)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port; give 1..65535 (0: a free port)")
    return port


def check_app_paths(args: argparse.Namespace) -> None:
    """The input files of gen-app/build, checked before anything is compiled or written so the line names
    the flag (a folder given for a file, a missing file)."""
    if args.model is not None:
        args.model = find_model(args.model)
        need_file("--model", args.model, "an INT8 .tflite file")
    if args.chain is not None:
        need_file("--chain", args.chain, "an early-exit chain JSON (hi-train early-exit)")
    if args.decider is not None:
        need_file("--decider", args.decider, "a decider JSON (hi-train decider) or its exported .h")


def app_kwargs(args: argparse.Namespace) -> dict:
    """generate_app's keyword arguments from the shared options (defaults resolved here)."""
    check_app_paths(args)
    model, chain = args.model, args.chain
    if model is None and chain is None:
        model = default_model()
    decider = args.decider
    if decider is None and model is not None and not args.no_decider:
        decider = default_decider_for(model)
    return {"model": model, "chain": chain, "decider": decider, "no_decider": args.no_decider,
            "model_id": args.model_id, "model_version": args.model_version, "engine": args.engine,
            "force_decider": args.force_decider}


def _print_app(info: AppInfo) -> None:
    print(f"application: {len(info.segments)} segment(s), input {'x'.join(map(str, info.input_shape))} int8 "
          f"(scale {info.input_quant[0]}, zero point {info.input_quant[1]}), {info.num_classes} classes")
    for s in info.segments:
        print(f"  {s.name}: arena {s.arena_bytes} B, scratch {s.scratch_bytes} B, constants {s.flash_bytes} B"
              + (f", exit bound {s.exit_bound}" if s.features_output >= 0 else "")
              + (f", offload bound {s.offload_bound}" if s.offload_bound is not None else ""))
    print(f"  decider: {info.decider['source'] if info.decider else 'none (every local answer is kept)'}")
    for warning in info.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def cmd_gen_app(args: argparse.Namespace) -> int:
    need_folder("--out", args.out)
    info = generate_app(args.out, **app_kwargs(args))
    _print_app(info)
    print(f"wrote {info.out_dir}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    if args.build_dir is not None:
        need_folder("--build-dir", args.build_dir)
    if args.board == "qemu-m4":
        if args.engine == "tflm":
            raise UsageError("the QEMU image builds with arm-none-eabi-gcc from this tree only; TFLite Micro's C++ "
                             "sources are not in it, so --engine tflm is for the PlatformIO envs *_tflm")
        out = Path(args.build_dir or build_dir() / "qemu-m4")
        info = generate_app(out / "app", **app_kwargs(args))
        _print_app(info)
        elf = build_qemu(out / "app", out, opt=args.opt)
        size = elf_size(elf)
        print(f"built {elf}")
        print(f"  flash {size['flash']} B (text {size['text']} + data {size['data']}), "
              f"RAM {size['ram']} B (data {size['data']} + bss {size['bss']}, incl. 16 KiB stack)")
        print(f"run it: hi-firmware run-qemu --elf {elf}")
        return 0
    if args.board == "host":
        if args.engine == "tflm":
            raise UsageError("--engine tflm needs TFLite Micro's C++ sources, which are not in this tree; the host "
                             "build runs the compiled engine")
        out = Path(args.build_dir or build_dir() / "host")
        info = generate_app(out / "app", **app_kwargs(args))
        _print_app(info)
        lib = build_host_device(out / "app", out)
        print(f"built {lib} (the firmware as a host library: src/host_sim, driven through ctypes)")
        return 0
    env = pio_env(args.board, args.engine)
    info = generate_pio_app(env, **app_kwargs(args))
    _print_app(info)
    cmd = pio_command(["run", "-d", str(firmware_dir()), "-e", env])
    print("$ " + " ".join(cmd))
    return subprocess.call(cmd)


def cmd_flash(args: argparse.Namespace) -> int:
    env = pio_env(args.board, args.engine)
    if not pio_app_dir(env).exists():
        raise UsageError(f"no generated application for {env}; run `hi-firmware build --board {args.board} "
                         f"--engine {args.engine}` first")
    cmd = pio_command(["run", "-d", str(firmware_dir()), "-e", env, "-t", "upload"])
    if args.port:
        cmd += ["--upload-port", args.port]
    print("$ " + " ".join(cmd))
    return subprocess.call(cmd)


def cmd_run_qemu(args: argparse.Namespace) -> int:
    if args.pty and args.port is not None:
        raise UsageError("--port is the UART's TCP port and --pty exposes a pty instead: drop one")
    elf = check_image(Path(args.elf or build_dir() / "qemu-m4" / "hi_qemu_m4.elf"),
                      "--elf" if args.elf else "the default image")
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
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("gen-app", help="compile model(s) and write the firmware's application configuration",
                              description="Compile the INT8 model (or each early-exit segment) and write "
                                          "hi_app_config.c + hi_app_decider.h for firmware/include/hi_app.h.")
    _add_app_args(p)
    p.add_argument("--out", type=Path, required=True, help="output directory (e.g. build/hi-firmware/app)")
    p.set_defaults(func=cmd_gen_app)

    p = subparsers.add_parser("build", help="build the firmware for a board (qemu-m4, host, nano33ble, esp32dev)",
                              description="Generate the application and build the board image. qemu-m4 uses "
                                          "arm-none-eabi-gcc; host builds the firmware as a shared library with the "
                                          "host C compiler; nano33ble/esp32dev run `pio run` (needs PlatformIO).")
    p.add_argument("--board", choices=BOARDS, default="qemu-m4")
    _add_app_args(p)
    p.add_argument("--build-dir", type=Path,
                   help="qemu-m4 / host build directory (default ./build/hi-firmware/<board>)")
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
    p.add_argument("--elf", type=Path, help="image (default ./build/hi-firmware/qemu-m4/hi_qemu_m4.elf)")
    p.add_argument("--port", type=tcp_port, help="TCP port for the UART, 1..65535 (default or 0: a free port)")
    p.add_argument("--pty", action="store_true", help="expose the UART as a pty instead of TCP")
    p.add_argument("--no-icount", action="store_true",
                   help="run as fast as possible (timestamps are then host time, not instruction counts)")
    p.set_defaults(func=cmd_run_qemu)
