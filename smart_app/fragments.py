"""Rendered parts of a page, cached by what they show, with the per-request values filled in per request.

The plan page is reloaded after every edit and while the clinician checks it. Its biggest parts (the
worksheet with its step table and timeline, the protocol form with the library's protocols) depend on
the draft's content, and only a few values in them change per request: the CSRF token, the page's URL
(it holds the session id), the clock times ("if started now"). Such a part is rendered once with a
**hole** in place of each per-request value (:func:`hole`: a marker with this process's random nonce,
which no content can contain because nobody outside this process knows it), split at the holes and kept
in the page memo (:mod:`smart_app.page_cache`); each request fills the holes with its own values,
escaped (:meth:`Fragment.fill`). So:

- **The key is everything the part shows except its holes**: the draft's content digest, and whatever
  else the template reads (the user's role when it changes what is shown, the allergy screening). A
  wrong key serves one draft's part for another: the caller spells the key beside the values it renders
  with (see :mod:`smart_app.planning.sections`), and ``tests/app/test_fragments.py`` checks that two
  patients, drafts or roles never share one.
- Per-request values (CSRF token, session URL, clock times) are always holes, never part of a cached
  text; the nonce never reaches a response (a hole that a template altered, e.g. through a filter, is
  refused when the part is rendered, and a fill without a value for every hole fails).
- Autoescaping stays on: the cached text is the Markup that the autoescaped template produced, and a
  filled value is escaped like ``{{ value }}`` would be (Markup stays as it is).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

from markupsafe import Markup, escape

from smart_app.page_cache import memo

__all__ = ["Fragment", "fragment", "hole"]

_NONCE = secrets.token_hex(16)  # per process: content can never spell a hole
_HOLE = re.compile(rf"\[hole-{_NONCE}-([a-z0-9_]+)\]")
#: rendered parts kept (each a few kB to a few tens of kB; a plan page looked at keeps five: its four
#: sections and the page around them)
SIZE = 512


def hole(name: str) -> Markup:
    """A marker for the per-request value ``name`` (lower-case letters, digits, ``_``) to render a
    cacheable part with; :meth:`Fragment.fill` puts the value there."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"hole names are lower-case letters, digits and _: {name!r}")
    return Markup(f"[hole-{_NONCE}-{name}]")  # noqa: S704 (only [a-z0-9_-] and brackets)


@dataclass(frozen=True)
class Fragment:
    """A rendered part split at its holes: ``parts[0]``, hole name, ``parts[2]``, hole name, ..."""

    parts: tuple[str, ...]

    @classmethod
    def of(cls, rendered: str) -> Fragment:
        parts = tuple(_HOLE.split(rendered))
        if any(_NONCE in text.lower() for text in parts[::2]):  # a hole a template changed (filter, slice)
            raise ValueError("a hole was altered by its template: pass that value unfiltered, or key on it")
        return cls(parts)

    @property
    def holes(self) -> frozenset[str]:
        return frozenset(self.parts[1::2])

    def fill(self, values: Mapping[str, str | Markup]) -> Markup:
        """The part with every hole replaced by its value, escaped (KeyError: a hole without a value)."""
        parts = list(self.parts)
        for index in range(1, len(parts), 2):
            parts[index] = escape(values[parts[index]])
        # the template's autoescaped output and escaped values: what ``{{ value }}`` would have given
        return Markup("".join(parts))  # noqa: S704


def fragment(name: str, key: Hashable | None, render: Callable[[], str]) -> Fragment:
    """The part ``name`` for ``key``: ``render()`` (the template, with holes for per-request values)
    once per key and app process; ``key`` None renders afresh and keeps nothing (a page that shows what
    was posted, or errors)."""
    if key is None:
        return Fragment.of(render())
    found: Fragment = memo("fragments", size=SIZE).get((name, key), lambda: Fragment.of(render()))
    return found
