"""The `refsd` command line: entry point and `refsd pseudonymize`."""

from __future__ import annotations

from .entry import main

__all__ = [
    "main",
]
