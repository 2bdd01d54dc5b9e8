"""HTML sheet -> PDF with WeasyPrint (CSS paged media: running headers, page X of Y, no orphaned headings).

WeasyPrint never fetches anything over the network here: the only URLs it may load are the app's own
static files, read from the package (the stylesheets); anything else is refused.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Response

STATIC = Path(__file__).resolve().parent.parent / "static"


def _static_only(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    path = urlsplit(url).path
    if path.startswith("/static/"):
        candidate = (STATIC / path.removeprefix("/static/")).resolve()
        if candidate.is_file() and STATIC in candidate.parents:
            mime, _ = mimetypes.guess_type(candidate.name)
            return {"string": candidate.read_bytes(), "mime_type": mime or "application/octet-stream"}
    raise ValueError(f"the PDF renderer loads only the app's static files, not {url!r}")


def render_pdf(html: str, base_url: str) -> bytes:
    """The PDF of one sheet's HTML (the HTML links /static/app.css and /static/paper.css)."""
    import weasyprint  # type: ignore[import-untyped]  # heavy (Pango): imported only when a PDF is asked for

    document = weasyprint.HTML(string=html, base_url=base_url, url_fetcher=_static_only)
    return bytes(document.write_pdf())


def pdf_response(html: str, base_url: str, filename: str) -> Response:
    """The PDF as a download named ``filename`` (no patient identifiers in the name)."""
    response = Response(render_pdf(html, base_url), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
