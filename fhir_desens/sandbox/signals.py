"""Foreground servers stop cleanly on SIGTERM as on Ctrl-C, so their child processes never outlive them.

:func:`run_until_stopped` is the foreground loop of the commands that run one service
(``fhir-desens fhir-server --engine hapi``, ``fhir-desens hl7-validator``).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (so every ``finally`` and ``__exit__`` runs)."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ForegroundService(Protocol):
    """A child service run in the foreground: started (its URL), waited for (its exit status), stopped."""

    def start(self) -> str: ...

    def wait(self) -> int: ...

    def stop(self) -> None: ...


def run_until_stopped(service: ForegroundService, name: str, ready: Callable[[str], str]) -> int:
    """Start ``service``, print ``ready(url)``, then wait until it exits, Ctrl-C or SIGTERM; it is
    stopped in every case. Exit status: 0 after Ctrl-C or SIGTERM, 1 when the service exits with a
    failure (``the NAME exited with status N`` on stderr), 0 when it exits cleanly."""
    with sigterm_as_interrupt():
        try:
            url = service.start()
            print(ready(url), flush=True)
            code = service.wait()
            print(f"the {name} exited with status {code}", file=sys.stderr)
            return 1 if code else 0
        except KeyboardInterrupt:
            return 0
        finally:
            service.stop()
