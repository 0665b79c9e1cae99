"""Test support: stand-ins the tests drive (not shipped with the package)."""
