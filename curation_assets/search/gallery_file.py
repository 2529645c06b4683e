"""A search's results as a gallery page's script: ``<output>/gallery/searches/<slug>.js``.

The gallery is static and has no model, so the CLI embeds the query and leaves the ranking where
the page can load it with a ``<script>`` tag (which works from ``file://``, unlike fetch):
``galleryLoad({"kind": "search", "query", "model", "created", "results": [{"clip_uuid", "score",
"fragment"}]})``. The file is written by the gallery's own writer (``gallery.site.script``: ASCII JSON with ``<``,
``>`` and ``&`` escaped), so a query such as ``</script><script>...`` stays a string wherever the
script is put.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from typing import Any

SLUG_MAX = 64
_HASH_CHARS = 8


def slug(query: str) -> str:
    """``[a-z0-9-]``, at most 64 characters: the query's words, then a short hash of the whole
    query (two queries that read alike still get two files)."""
    digest = hashlib.sha256(query.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    words = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")
    words = words[: SLUG_MAX - _HASH_CHARS - 1].rstrip("-") or "search"
    return f"{words}-{digest}"


def search_document(query: str, model: str, results: Sequence[tuple[str, float, str]],
                    created: dt.datetime | None = None) -> dict[str, Any]:
    when = (created or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return {"kind": "search", "query": query, "model": model,
            "created": when.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "results": [{"clip_uuid": uid, "score": round(float(score), 6), "fragment": fragment}
                        for uid, score, fragment in results]}


def write_search(output_path: str, document: dict[str, Any]) -> tuple[str, str]:
    """Write the script atomically, in the gallery's own data-file form (``gallery.site``: one
    writer of the contract); returns ``(its URL, the gallery link that opens it)``."""
    from ..gallery import site

    name = slug(document["query"])
    url = site.write_search(output_path, name, document)
    return url, f"{site.page_url(output_path)}#search={name}"


__all__ = ["search_document", "slug", "write_search"]
