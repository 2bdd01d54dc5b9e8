"""The port argument of the server commands (apart from the plan options, so a server starts without the
protocol engine)."""

from __future__ import annotations

import argparse


def port_number(text: str) -> int:
    """argparse type for a TCP port; 0 means any free port."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range (0-65535, 0 = any free port): {value}")
    return value
