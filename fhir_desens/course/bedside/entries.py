"""Entries of the bedside record: what a screen submits and what the store keeps (pure data)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class NewEntry:
    """What a screen submits: ``entry_id`` is generated where the entry was typed."""

    entry_id: str
    session_id: str
    kind: str
    data: Mapping[str, Any]
    author: str

    def same_content(self, stored: Entry) -> bool:
        return (
            stored.session_id == self.session_id
            and stored.kind == self.kind
            and stored.data == json.loads(json.dumps(dict(self.data)))
            and stored.author == self.author
        )


@dataclass(frozen=True)
class Entry:
    """A stored entry; ``seq`` orders the log across the whole store."""

    seq: int
    entry_id: str
    session_id: str
    kind: str
    data: dict[str, Any]
    author: str
    recorded_at: datetime


__all__ = ["Entry", "NewEntry"]
