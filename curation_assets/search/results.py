"""What a search needs from the output besides the vectors: the embedding variant it was written
with, and the manifest rows (source, span, preview, passed/filtered) of the clips found.

The variant is read back from the pipeline records of the videos' ``processed_videos`` documents:
one document per distinct ``settings_hash`` of the manifest (so a 100k-video output costs a few
reads), its ``pipeline.settings.embedding_algorithm`` checked against the known variants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..core import layout, storage
from ..core.layout_read import read_json
from ..models.embeddings import EMBEDDING_DIMS, VARIANTS
from ..packaging import manifest

#: The manifest columns a result shows.
RESULT_COLUMNS = ["clip_uuid", "source_video", "rel_path", "span_start_s", "span_end_s", "passed", "filtered_by",
                  "windows", "clip_url"]


class SearchUsageError(ValueError):
    """The search cannot run as asked (what is missing or mismatched is in the message; exit 2)."""


def missing_manifest_message(output_path: str) -> str:
    return (f"no manifest in {storage.join(output_path, manifest.MANIFEST_DIR)}/: search joins its results to the "
            f"clip manifest for their source, span and preview; {manifest.how_to_write(output_path)}")


def read_rows(output_path: str, clip_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The manifest rows of these clips, by uuid (one filtered dataset scan)."""
    if not clip_ids:
        return {}
    ds = manifest.ds
    table = manifest.read_manifest(output_path, columns=RESULT_COLUMNS,
                                   filter=ds.field("clip_uuid").isin(pa.array(list(clip_ids), pa.string())))
    return {row["clip_uuid"]: row for row in table.to_pylist()}


def manifest_present(output_path: str) -> bool:
    return bool(manifest.fragment_urls(output_path))


def recorded_variants(output_path: str) -> set[str]:
    """The embedding variants the output's pipeline records name (empty: no record says)."""
    table = manifest.read_manifest(output_path, columns=["rel_path", "settings_hash"])
    one_per_hash: dict[Any, str] = {}
    for rel, digest in zip(table.column("rel_path").to_pylist(), table.column("settings_hash").to_pylist(),
                           strict=True):
        if isinstance(rel, str):
            one_per_hash.setdefault(digest, rel)
    found: set[str] = set()
    for rel in one_per_hash.values():
        doc = read_json(storage.join(output_path, layout.video_file(rel)))
        pipeline = doc.get("pipeline") if isinstance(doc, Mapping) else None
        settings = pipeline.get("settings") if isinstance(pipeline, Mapping) else None
        value = settings.get("embedding_algorithm") if isinstance(settings, Mapping) else None
        if isinstance(value, str) and value in VARIANTS:
            found.add(value)
    return found


@dataclass(frozen=True)
class Variant:
    name: str
    dim: int
    source: str  # where the name came from, for messages


def choose_variant(output_path: str, asked: str | None, recorded: set[str]) -> Variant:
    """The variant to embed the query with: the one the output was written with. A different one
    asked for is refused (its text vectors live in another space), as are mixed outputs."""
    if len(recorded) > 1:
        names = ", ".join(sorted(recorded))
        raise SearchUsageError(f"the output's clips were embedded with several variants ({names}): their vectors are "
                               "not comparable; re-curate them with one embedding_algorithm")
    if recorded:
        (name,) = recorded
        if asked is not None and asked != name:
            raise SearchUsageError(
                f"--embedding-algorithm {asked} does not match the variant the output was embedded with ({name}, "
                f"from its pipeline record): a {asked} text vector cannot be compared with {name} clip vectors; "
                f"drop the flag or pass --embedding-algorithm {name}")
        return Variant(name, EMBEDDING_DIMS[name], "the pipeline record")
    if asked is not None:
        return Variant(asked, EMBEDDING_DIMS[asked], "--embedding-algorithm")
    dims = {EMBEDDING_DIMS[v] for v in VARIANTS}
    by_dim = {d: [v for v in VARIANTS if EMBEDDING_DIMS[v] == d] for d in dims}
    unique = [vs[0] for vs in by_dim.values() if len(vs) == 1]
    if len(unique) == 1:  # no record: the one variant of its size, if the vectors have it (checked by the caller)
        return Variant(unique[0], EMBEDDING_DIMS[unique[0]], "the default (no pipeline record names one)")
    raise SearchUsageError("the output's pipeline records name no embedding variant: pass --embedding-algorithm")


def preview_of(row: Mapping[str, Any] | None) -> str | None:
    """The clip's first window's preview (the manifest's absolute location), None when it has none."""
    for window in (row or {}).get("windows") or []:
        if window.get("preview_url"):
            return str(window["preview_url"])
    return None


__all__ = ["RESULT_COLUMNS", "SearchUsageError", "Variant", "choose_variant", "manifest_present",
           "missing_manifest_message", "preview_of", "read_rows", "recorded_variants"]
