"""Serve the app: ``python -m smart_app.serve --host 127.0.0.1 --port 8200``.

Configuration comes from ``FHIR_DESENS_*`` environment variables (docs/configuration.md). Uses
gunicorn (a production WSGI server) when installed, otherwise Werkzeug's threaded server.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fhir_desens.errors import ConfigurationError

#: seconds gunicorn keeps an idle connection open; longer than the proxy keeps its idle connections to the
#: app (nginx's upstream ``keepalive_timeout``, 60 s by default, docs/deployment.md). With gunicorn's
#: default of 2 s, it closed connections nginx was about to reuse: a POST sent on one was reset and,
#: as nginx does not retry a POST, answered 502.
KEEPALIVE_SECONDS = 75


def _gunicorn(app: Any, host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("keepalive", KEEPALIVE_SECONDS)
            self.cfg.set("accesslog", None)  # access logs would carry session ids in paths

        def load(self) -> Any:
            return app

    _Server().run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smart_app.serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--server", choices=["gunicorn", "werkzeug"], default="gunicorn")
    args = parser.parse_args(argv)
    from smart_app import create_app

    try:
        app = create_app()
    except ConfigurationError as error:
        print(f"smart_app: {error}", file=sys.stderr)
        return error.exit_code
    if args.server == "gunicorn":
        try:
            _gunicorn(app, args.host, args.port, args.workers, args.threads)
            return 0
        except ImportError:
            pass
    from werkzeug.serving import run_simple

    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
