"""Real HTTP relays in front of a real server.

:class:`DroppingProxy` loses answers: the request reaches the server, the response never reaches the
client (the connection is closed). That is the "outcome unknown" case. :func:`failing_relay` answers 500 to
one kind of request and relays everything else (headers, bearer tokens included): a server failing halfway.
``DroppingProxy.paused``: the server is down; every request's connection is closed unanswered.
"""

from __future__ import annotations

import http.server
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


class DroppingProxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.origin = "/".join(self.target.split("/", 3)[:3])  # scheme://host:port
        self.drop_posts = 0  # answers to POSTs still to lose
        self.forwarded_posts = 0
        self.paused = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                if proxy.paused:
                    self.close_connection = True
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                upstream = requests.request(
                    self.command, proxy.origin + self.path, data=body, headers=headers, timeout=30
                )
                if self.command == "POST":
                    proxy.forwarded_posts += 1
                    if proxy.drop_posts > 0:
                        proxy.drop_posts -= 1
                        self.close_connection = True
                        return  # the server did it; the client never hears
                self.send_response(upstream.status_code)
                for name in ("Content-Type", "ETag", "Location", "Last-Modified"):
                    if name in upstream.headers:
                        self.send_header(name, upstream.headers[name])
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        prefix = self.target.split("/", 3)[3] if self.target.count("/") >= 3 else ""
        return f"http://{host}:{port}/{prefix}".rstrip("/")

    def start(self) -> DroppingProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_DATABASE_DOWN = (
    '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception",'
    '"diagnostics":"database unavailable"}]}'
)
_NOT_SUPPORTED = (
    '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported",'
    '"diagnostics":"update of AllergyIntolerance is not offered by this EHR"}]}'
)
_REFUSALS = {500: _DATABASE_DOWN, 405: _NOT_SUPPORTED}


def failing_relay(
    target: str, method: str, resource_type: str, status: int = 500
) -> tuple[str, BaseWSGIServer]:
    """A base URL relaying to ``target``, answering ``status`` (500: the database is down; 405: not supported)
    to ``method`` on ``resource_type`` (e.g. POST Provenance, PUT AllergyIntolerance/17); the caller shuts the
    returned server down."""
    target = target.rstrip("/")
    base_path = urlsplit(target).path.rstrip("/")
    bases: list[str] = []

    @Request.application  # type: ignore[misc]
    def relay(request: Request) -> Response:
        path = request.path[len(base_path) :]
        if request.method == method and path.strip("/") == resource_type:
            return Response(_REFUSALS[status], status, content_type="application/fhir+json")
        upstream = requests.request(
            request.method,
            target + path,
            params=list(request.args.items(multi=True)),
            data=request.get_data(),
            headers={k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")},
            timeout=30,
        )
        headers = {
            k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "etag", "location")
        }
        body = upstream.content.replace(target.encode(), bases[0].encode())
        return Response(body, upstream.status_code, headers=headers)

    server = make_server("127.0.0.1", 0, relay, threaded=True)
    bases.append(f"http://127.0.0.1:{server.server_port}{base_path}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return bases[0], server
