"""An in-process stand-in for a serial port with an HI device behind it (docs/serial.md), scripted to
misbehave the ways real links do: a device that only chatters, a link that drops mid-command, a reply with
a garbled field, a board that offloads by itself. The firmware itself is tested through
tests/test_serial_bridge.py; this is for the failure modes a real board cannot be made to show on cue."""
from __future__ import annotations

import time
from collections import deque

CONFIG = ("m-hi-config-[model=fake,model_id=fake1,classes=10,input=32x32x3,in_scale_bits=3f800000,in_zp=-128,"
          "out_scale_bits=3b800000,out_zp=-128,segments=1,bounds=,decider=1,db=3072,cmd=256]")
SCORES = "80" * 9 + "7f"
# an early-exit board whose exit 1 scores have their own scale (2^-9) beside the final head's (2^-8)
EE_CONFIG = CONFIG.replace("segments=1,bounds=,", "segments=2,bounds=90,exit_quant=3b000000/-128,")


class ScriptedPort:
    """``mode``: ``ok``; ``chatty`` (prints lines forever, never m-ready); ``drop:N`` (the link breaks
    during the N-th ``hi run``); ``garble:N`` (that reply names a field wrongly); ``selfoff`` (the board
    offloads by itself, its radio round trip taking ``radio_s``); ``ee`` (an early-exit board: odd runs leave
    at exit 1, even ones at the final head)."""

    def __init__(self, mode: str = "ok", radio_s: float = 0.05) -> None:
        self.mode, self.radio_s = mode, radio_s
        self.lines: deque[bytes] = deque()
        self.runs = self.expect = self.got = 0
        self.broken = False

    def _say(self, *lines: str) -> None:
        self.lines.extend(line.encode() + b"\r\n" for line in lines)

    def write(self, data: bytes) -> int:
        if self.broken:
            raise OSError("write failed: the device is gone")
        for cmd in data.decode().split("%")[:-1]:
            self._command(cmd.strip())
        return len(data)

    def _command(self, cmd: str) -> None:
        if cmd == "":
            self._say("e-[Empty command]", "m-ready")
        elif cmd == "name":
            self._say("m-name-dut-[fake]", "m-ready")
        elif cmd == "hi config":
            self._say(EE_CONFIG if self.mode == "ee" else CONFIG, "m-ready")
        elif cmd.startswith("db load"):
            self.expect, self.got = int(cmd.split()[2]), 0
            self._say(f"m-[Expecting {self.expect} bytes]", "m-ready")
        elif cmd.startswith("db "):
            self.got += len(cmd[3:]) // 2
            self._say(*(["m-load-done"] if self.got == self.expect else []), "m-ready")
        elif cmd.startswith("hi run"):
            self.runs += 1
            rid = int(cmd.split()[2])
            if self.mode == f"drop:{self.runs}":
                self.broken = True
            elif self.mode == "ee":
                ex = 0 if self.runs % 2 else 1
                self._say(f"m-hi-local-[id={rid},exit={ex},segments=2,class=9,offload=0,dv=5,us=1000,scores={SCORES}]",
                          f"m-hi-final-[id={rid},class=9,source=local]", "m-ready")
            elif self.mode == "selfoff":
                self._say(f"m-hi-local-[id={rid},exit=0,segments=1,class=9,offload=1,dv=-5,us=1000,scores={SCORES}]")
                time.sleep(self.radio_s)
                self._say(f"m-hi-final-[id={rid},class=4,source=server]", "m-ready")
            else:
                key = "clas" if self.mode == f"garble:{self.runs}" else "class"
                self._say(f"m-hi-local-[id={rid},exit=0,segments=1,{key}=9,offload=0,dv=5,us=1000,scores={SCORES}]",
                          f"m-hi-final-[id={rid},class=9,source=local]", "m-ready")
        else:
            self._say(f"e-[Unknown command {cmd[:20]}]", "m-ready")

    def readline(self) -> bytes:
        if self.broken:
            raise OSError("read failed: socket disconnected")
        if self.mode == "chatty":
            time.sleep(0.01)
            return b"sensor reading\r\n"
        if self.lines:
            return self.lines.popleft()
        time.sleep(0.01)  # a read timeout with nothing received
        return b""

    def flush(self) -> None:
        pass

    def reset_input_buffer(self) -> None:
        self.lines.clear()

    def close(self) -> None:
        pass
