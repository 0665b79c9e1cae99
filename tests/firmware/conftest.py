"""Firmware tests build and run this checkout's C sources, whatever hi_firmware_sources package is installed
in the environment (hi_firmware.paths: HI_FIRMWARE_DIR comes before the installed package data)."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HI_FIRMWARE_DIR", str(Path(__file__).resolve().parents[2] / "firmware"))
