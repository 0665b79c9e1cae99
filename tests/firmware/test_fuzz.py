"""Bounded libFuzzer runs (clang, ASan + UBSan) of the firmware's serial command parser and frame decoder
(firmware/fuzz). Each harness runs HI_FUZZ_SECONDS (default 20) from the committed seed corpus; any crash,
sanitizer report or broken invariant (one m-ready per command, printable m-/e- lines, decoded frames that
re-encode and decode again) fails the test."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[2] / "firmware" / "fuzz"
SECONDS = int(os.environ.get("HI_FUZZ_SECONDS", "20"))


def _libfuzzer_available(tmp: Path) -> bool:
    if not shutil.which("clang") or not shutil.which("make"):
        return False
    src = tmp / "probe.c"
    src.write_text("#include <stddef.h>\n#include <stdint.h>\n"
                   "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
    proc = subprocess.run(["clang", "-fsanitize=fuzzer,address,undefined", str(src), "-o", str(tmp / "probe")],
                          capture_output=True, check=False)
    return proc.returncode == 0


@pytest.mark.parametrize("harness", ["fuzz_serial", "fuzz_frame"])
def test_fuzz_harness_bounded_run(harness, tmp_path):
    if not _libfuzzer_available(tmp_path):
        pytest.skip("clang with libFuzzer is not installed (apt-get install clang)")
    build = tmp_path / "build"
    subprocess.run(["make", "-s", "-C", str(FUZZ_DIR), f"BUILD={build}", f"{build}/{harness}"], check=True,
                   capture_output=True, timeout=300)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    proc = subprocess.run([str(build / harness), f"-max_total_time={SECONDS}", "-timeout=10", "-rss_limit_mb=2560", "-malloc_limit_mb=1024",
                           "-print_final_stats=1", f"-artifact_prefix={tmp_path}/", str(corpus), str(FUZZ_DIR / "corpus" / harness)],
                          capture_output=True, text=True, timeout=SECONDS + 120, check=False)
    log = proc.stderr[-3000:]
    assert proc.returncode == 0, log
    assert "ERROR: AddressSanitizer" not in proc.stderr and "runtime error:" not in proc.stderr, log
    runs = [ln for ln in proc.stderr.splitlines() if ln.startswith("stat::number_of_executed_units")]
    assert runs and int(runs[0].split(":")[-1]) > 10_000, log
    print(f"{harness}: {runs[0].split(':')[-1].strip()} inputs in {SECONDS} s, no crash or sanitizer report")
