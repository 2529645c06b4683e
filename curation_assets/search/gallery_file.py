"""A search's results as a gallery page's script: ``<output>/gallery/searches/<slug>.js``.

The gallery is static and has no model, so the CLI embeds the query and leaves the ranking where
the page can load it with a ``<script>`` tag (which works from ``file://``, unlike fetch):
``galleryLoad({"kind": "search", "query", "model", "created", "results": [{"clip_uuid", "score",
"fragment"}]})``. The document is JSON with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, so a
query such as ``</script><script>...`` stays a string wherever the script is put.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core import storage

GALLERY_DIR = "gallery"
SEARCHES_DIR = "searches"
SLUG_MAX = 64
_HASH_CHARS = 8


def slug(query: str) -> str:
    """``[a-z0-9-]``, at most 64 characters: the query's words, then a short hash of the whole
    query (two queries that read alike still get two files)."""
    digest = hashlib.sha256(query.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    words = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")
    words = words[: SLUG_MAX - _HASH_CHARS - 1].rstrip("-") or "search"
    return f"{words}-{digest}"


_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(document: Any) -> str:
    """JSON safe inside a ``<script>``: the characters HTML or old JavaScript treat specially,
    escaped (still the same JSON value)."""
    text = json.dumps(document, ensure_ascii=False, allow_nan=False)
    return re.sub("[<>&\u2028\u2029]", lambda m: _ESCAPES[m.group(0)], text)


def search_document(query: str, model: str, results: Sequence[tuple[str, float, str]],
                    created: dt.datetime | None = None) -> dict[str, Any]:
    when = (created or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return {"kind": "search", "query": query, "model": model,
            "created": when.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "results": [{"clip_uuid": uid, "score": round(float(score), 6), "fragment": fragment}
                        for uid, score, fragment in results]}


def write_search(output_path: str, document: dict[str, Any]) -> tuple[str, str]:
    """Write the script atomically; returns ``(its URL, the gallery link that opens it)``."""
    name = slug(document["query"])
    url = storage.join(output_path, GALLERY_DIR, SEARCHES_DIR, f"{name}.js")
    storage.write_text_atomic(url, f"galleryLoad({script_json(document)});\n")
    index = storage.join(output_path, GALLERY_DIR, "index.html")
    link = Path(storage.local_path(index)).as_uri() if storage.is_local(index) else index
    return url, f"{link}#search={name}"


__all__ = ["GALLERY_DIR", "SEARCHES_DIR", "script_json", "search_document", "slug", "write_search"]
