"""Per-process memos of what pages compute from content alone, so a page reload recomputes nothing
that did not change.

A plan page is reloaded after every edit and every few minutes while the clinician checks it; its
plan, drug checks, step table and SVG timeline depend only on the draft (and the app's protocol
library, fixed for the app's life), and the screening of the allergy list only on the drug and the
list. :class:`Memo` keeps such results by a key that **is** the content (a digest of the draft's
stored JSON, the allergy list's JSON): a changed draft or list has another key, so nothing is ever
invalidated by hand and nothing stale can be served; old entries fall out of a bounded LRU.

What is memoized must be immutable (frozen dataclasses, tuples, strings): the same object serves
several requests and threads. Nothing here holds a token; the entries do hold chart data (a plan, an
allergy screening) in this process's memory only, for at most :data:`SIZE` recent keys, like the
session store's short chart cache but never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from flask import current_app

__all__ = ["SIZE", "Memo", "content_key", "memo"]

T = TypeVar("T")

#: entries kept per memo (each a draft's plan views, or a screening): a few hundred active drafts
SIZE = 512
_EXTENSION = "fhir_desens.page_cache"


class Memo(Generic[T]):
    """A bounded, thread-safe LRU of computed values. ``get(key, compute)`` computes outside the lock
    (two threads may compute the same value once each; both answers are equal)."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        value = compute()
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def memo(name: str, size: int = SIZE) -> Memo[Any]:
    """The app's memo called ``name`` (one per app, so tests with several apps never share one), keeping
    ``size`` entries (the size its first use asked for)."""
    memos: dict[str, Memo[Any]] = current_app.extensions.setdefault(_EXTENSION, {})
    found = memos.get(name)
    if found is None:
        found = memos.setdefault(name, Memo(size))
    return found


def content_key(value: Any) -> str:
    """A digest of ``value``'s JSON (keys sorted; a draft's record is plain JSON, as the session store
    keeps it): equal content, equal key."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
