"""An edge server in a child process on 127.0.0.1: what the offline demo and the benchmarks talk to.

It runs ``hi-server`` (``python -m offload_server.cli``) as its own process, so the device side imports
nothing of the server (the two are separate applications that only share the protocol) and the
measurement is honest: the server's inference does not compete with the agent for one interpreter lock,
as it would in a thread of the same process. The port is chosen by the server (port 0) and read back
from its ``server_started`` log line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


class EdgeProcessError(RuntimeError):
    pass


@dataclass
class EdgeProcess:
    """``with EdgeProcess.start(model) as server: ... server.host, server.port``."""

    proc: subprocess.Popen
    host: str
    port: int
    log_path: Path

    @classmethod
    def start(cls, model: str | Path, *, model_id: str = "cifar10", log_path: str | Path, threads: int = 0,
              max_queue_delay_us: int = 0, timeout_s: float = 60.0) -> EdgeProcess:
        """Start the server on a free loopback port and wait until it listens. ``max_queue_delay_us`` 0:
        one device sends one sample at a time, so a batching window would only add its delay."""
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "offload_server.cli", "--model", f"{model_id}={model}", "--host", "127.0.0.1",
               "--port", "0", "--max-queue-delay-us", str(max_queue_delay_us), "--log-level", "INFO",
               "--log-format", "json"]
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        log = open(log_path, "w")  # noqa: SIM115 - the child writes it for as long as it runs
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        except OSError as exc:
            log.close()
            raise EdgeProcessError(f"cannot start the edge server ({' '.join(cmd)}): {exc}") from exc
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            port = _started_port(log_path)
            if port is not None:
                return cls(proc, "127.0.0.1", port, log_path)
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise EdgeProcessError("the edge server exited at start: " + " | ".join(tail) +
                                       (" (it needs the server extra: pip install 'hi-runtime[server]')"
                                        if any("No module named" in t for t in tail) else ""))
            time.sleep(0.05)
        proc.kill()
        raise EdgeProcessError(f"the edge server did not start within {timeout_s:g} s; see {log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> EdgeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _started_port(log_path: Path) -> int | None:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if '"server_started"' in line:
            try:
                return int(json.loads(line)["port"])
            except (ValueError, KeyError, TypeError):
                return None
    return None
