"""The emulated board: build the mps2-an386 (Cortex-M4F) image and run QEMU with its UART exposed.

QEMU exposes the UART as a TCP server (it waits for the first client, so the boot banner is not lost) or a
pty; pyserial (hi-agent serial, the benches, the tests) talks to it. With ``-icount shift=0`` every guest
instruction advances virtual time by 1 ns, so the firmware's timestamps are instruction counts.
"""
from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError, UsageError
from .paths import firmware_dir
from .toolchain import require, run_make

QEMU_MACHINE = "mps2-an386"
#: QEMU's mps2 boards clock SysTick at 25 MHz; with -icount shift=0 one instruction is 1 ns of virtual time.
QEMU_INSTRUCTIONS_PER_US = 1000


def require_arm_toolchain() -> None:
    require("arm-none-eabi-gcc", "install the Arm toolchain (Debian: apt-get install gcc-arm-none-eabi "
                                 "libnewlib-arm-none-eabi)")


def build_qemu(app_dir: Path, build_dir: Path, opt: str = "-O2", extra_cflags: str = "") -> Path:
    """Build the board image (the application generated in app_dir) with firmware/qemu/Makefile."""
    require_arm_toolchain()
    build_dir = Path(build_dir).resolve()
    run_make(firmware_dir() / "qemu", "all", {"BUILD": str(build_dir), "APP_DIR": str(Path(app_dir).resolve()),
                                              "OPT": opt, "EXTRA_CFLAGS": extra_cflags}, "QEMU image build")
    return build_dir / "hi_qemu_m4.elf"


EM_ARM = 40  # ELF e_machine of 32-bit Arm
BUILD_HINT = "build it with `hi-firmware build --board qemu-m4`"


def check_image(elf: Path, what: str = "image") -> Path:
    """The file QEMU is to boot must be a 32-bit Arm ELF: QEMU takes any file as -kernel and then waits
    forever for a UART nobody writes to, so anything else is refused here, in one line. ``what`` names the
    flag (e.g. "--elf")."""
    elf = Path(elf)
    if elf.is_dir():
        raise UsageError(f"{what} {elf} is a folder; give the .elf image ({BUILD_HINT})")
    if not elf.exists():
        raise UsageError(f"{what} {elf} does not exist; {BUILD_HINT}")
    with elf.open("rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        raise UsageError(f"{what} {elf} is not an ELF image; give the hi_qemu_m4.elf that `hi-firmware build "
                         "--board qemu-m4` writes")
    machine = int.from_bytes(head[18:20], "big" if head[5:6] == b"\x02" else "little")
    if head[4:5] != b"\x01" or machine != EM_ARM:
        raise UsageError(f"{what} {elf} is an ELF for another machine (e_machine {machine}), not 32-bit Arm; "
                         f"give the Cortex-M4 image ({BUILD_HINT})")
    return elf


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def qemu_command(elf: Path, *, port: int | None = None, pty: bool = False, icount: bool = True) -> list[str]:
    qemu = require("qemu-system-arm", "install QEMU (Debian: apt-get install qemu-system-arm)")
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
    elf = check_image(elf)
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
            raise BuildError(f"QEMU exited with status {proc.returncode}: {out.strip()}")
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
    raise BuildError(f"QEMU did not listen on 127.0.0.1:{port} within {timeout} s")


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
    raise BuildError("QEMU did not report its pty (expected 'char device redirected to /dev/pts/N')")
