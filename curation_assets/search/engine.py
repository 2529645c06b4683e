"""One text-to-clip search: the output's checks, the cached vectors, the ranking, the manifest join.

Everything that can be refused is checked before the model loads (seconds): the embeddings and
the manifest exist, the variant matches the output's. The query is embedded by the caller's
``embed`` (the model's text tower) so the search itself runs without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.documents import UUID_RE
from ..packaging import manifest
from . import ann, rank
from .cache import (
    EmbeddingMatrix,
    NoEmbeddingsError,
    embeddings_folder,
    list_parquet,
    load_embeddings,
    missing_embeddings_message,
)
from .cli import INDEX_MODES  # spelled where the parser (built by every command) reads it
from .results import (
    SearchUsageError,
    Variant,
    choose_variant,
    manifest_present,
    missing_manifest_message,
    preview_of,
    read_rows,
    recorded_variants,
)


@dataclass(frozen=True)
class Hit:
    rank: int
    clip_uuid: str
    score: float
    row: dict[str, Any] | None  # the manifest row (None: the clip is not in the manifest)

    @property
    def fragment(self) -> str | None:
        return manifest.fragment_name(self.row["rel_path"]) if self.row and self.row.get("rel_path") else None

    def as_json(self) -> dict[str, Any]:
        row = self.row or {}
        passed = row.get("passed")
        return {"rank": self.rank, "clip_uuid": self.clip_uuid, "score": round(self.score, 6),
                "source_video": row.get("source_video"), "rel_path": row.get("rel_path"),
                "span_start_s": row.get("span_start_s"), "span_end_s": row.get("span_end_s"),
                "preview": preview_of(self.row), "clip": row.get("clip_url"), "passed": passed,
                "filtered_by": row.get("filtered_by"), "fragment": self.fragment, "in_manifest": self.row is not None}


@dataclass
class Prepared:
    """An output checked and loaded for searching: its variant and its cached vectors."""

    output_path: str
    variant: Variant
    matrix: EmbeddingMatrix


@dataclass
class Outcome:
    query: str
    variant: str
    method: str
    num_clips: int
    hits: list[Hit]
    problems: list[str] = field(default_factory=list)
    cache_rebuilt: bool = False

    @property
    def not_in_manifest(self) -> int:
        return sum(1 for h in self.hits if h.row is None)


def prepare(output_path: str, asked_variant: str | None = None) -> Prepared:
    """Check the output can be searched and load (or rebuild) its vector cache; raises
    :class:`NoEmbeddingsError` or :class:`SearchUsageError` with what to do."""
    files, _ = list_parquet(output_path)
    if not files:
        raise NoEmbeddingsError(missing_embeddings_message(
            output_path, f"{embeddings_folder(output_path)}/ has no embedding files"))
    if not manifest_present(output_path):
        raise SearchUsageError(missing_manifest_message(output_path))
    variant = choose_variant(output_path, asked_variant, recorded_variants(output_path))
    return Prepared(output_path, variant, load_embeddings(output_path, variant.dim))


def search(prepared: Prepared, query: str, embed: Callable[[str], np.ndarray], k: int,
           index: str = "auto") -> Outcome:
    """The ``k`` clips nearest to ``query``; ``embed`` gives its text vector."""
    if index not in INDEX_MODES:
        raise SearchUsageError(f"unknown index mode {index!r}; choose one of {', '.join(INDEX_MODES)}")
    matrix = prepared.matrix
    vector = rank.normalize(np.asarray(embed(query), dtype=np.float32).reshape(-1))
    if vector.shape[0] != matrix.dim:
        raise SearchUsageError(f"the text tower gives {vector.shape[0]}-d vectors but the output's clips are "
                               f"{matrix.dim}-d ({prepared.variant.name}): the model folder holds another variant")
    use_ann = index == "ann" or (index == "auto" and ann.worth_it(len(matrix)))
    if use_ann:
        rows, scores = ann.top_k(matrix, vector, k, required=index == "ann")
        method = ann.METHOD if rows is not None else "exact"
    if not use_ann or rows is None:
        rows, scores = rank.top_k(matrix.vectors, vector, k, half=matrix.half)
        method = "exact"
    pairs = [(matrix.clip_id(int(r)), float(s)) for r, s in zip(rows, scores, strict=True)]
    pairs = [(uid, s) for uid, s in pairs if UUID_RE.match(uid)]  # the cache's files are read back, not trusted
    found = read_rows(prepared.output_path, [uid for uid, _ in pairs])
    hits = [Hit(i + 1, uid, s, found.get(uid)) for i, (uid, s) in enumerate(pairs)]
    return Outcome(query, prepared.variant.name, method, len(matrix), hits, list(matrix.problems), matrix.rebuilt)


__all__ = ["Hit", "INDEX_MODES", "NoEmbeddingsError", "Outcome", "Prepared", "SearchUsageError", "prepare", "search"]
