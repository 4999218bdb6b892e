"""Where a config's values came from: positions and the tree that holds them.

Apart from the reader (`yamlpos`), which needs PyYAML: a config read from the
cache (`configcache`) is checked against an empty tree, with no YAML at all.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Mark(NamedTuple):
    """A 1-based line and column in the source text (a tuple: cheap to hash and
    sort when a hostile file yields 100,000s of problems)."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


_NO_ENTRIES: dict[Any, Any] = {}  # shared by scalars and sequences; never written to
_NO_ITEMS: list[Any] = []


class YNode:
    """One value in the document and where it starts.

    `entries` (mappings) maps each key to (where the key is, the value's node);
    `items` (sequences) holds the items' nodes. Aliased values are shared, not
    copied. `size` and `height` are of the fully expanded value. A plain class
    with slots: a 10,000-endpoint config has 70,000 of them.
    """

    __slots__ = ("kind", "mark", "entries", "items", "source", "size", "height")

    def __init__(self, kind: str, mark: Mark) -> None:
        self.kind = kind  # "map" | "seq" | "scalar"
        self.mark = mark
        self.entries: dict[Any, tuple[Mark, YNode]] = {} if kind == "map" else _NO_ENTRIES
        self.items: list[YNode] = [] if kind == "seq" else _NO_ITEMS
        self.source: str | None = None  # a plain scalar's text, when YAML read it as something else
        self.size = 1
        self.height = 1

    def child(self, key: Any) -> tuple[Mark | None, YNode] | None:
        """The child under a location element (a list index or a mapping key)."""
        if self.kind == "seq":
            if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(self.items):
                return None, self.items[key]
            return None
        if self.kind == "map":
            try:
                if key in self.entries:
                    return self.entries[key]
            except TypeError:  # an unhashable location element
                return None
            # pydantic reports odd keys (None, 1.5) by their str()
            for k, entry in self.entries.items():
                if not isinstance(k, str) and str(k) == str(key):
                    return entry
        return None
