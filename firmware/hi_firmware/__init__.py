"""Firmware tooling (`hi-firmware`): the INT8 model compiler and the board build/flash/emulation commands."""
