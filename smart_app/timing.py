"""``Server-Timing`` on every response: the app's own time for the request (``app``, wall clock from the
first ``before_request`` hook to the response) and the CPU time of its thread (``cpu``), in milliseconds.

``benchmarks/load_app.py`` subtracts ``app`` from the latency the client saw, which separates the app's
work from queueing (gunicorn's backlog, nginx) and the network. The figures say nothing about patients
or sessions; browsers show them in their developer tools only.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g


def _start() -> None:
    g.timing_start = (time.perf_counter(), time.thread_time())


def _header(response: Response) -> Response:
    start = g.get("timing_start")
    if start is not None:
        wall = (time.perf_counter() - start[0]) * 1000
        cpu = (time.thread_time() - start[1]) * 1000
        response.headers["Server-Timing"] = f"app;dur={wall:.2f}, cpu;dur={cpu:.2f}"
    return response


def init_timing(app: Flask) -> None:
    """Register first, so the time covers the other hooks (CSRF check, session load, headers)."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_header)
