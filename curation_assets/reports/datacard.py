"""The data card of a written dataset: what is in it, how it was made, from the files it wrote.

Everything comes from the clip manifest (``packaging.manifest``: its reader, its columns), each
video's ``processed_videos`` document (source duration, the pipeline record: settings and
version), and ``semdedup/summary.json`` when dedup ran. The numbers are one dict
(:func:`card_numbers`, also written as ``datacard/datacard.json`` for scripts); the Markdown
card, its HTML twin and the histogram images are drawn from that dict (``reports.datacard_render``,
``reports.plots``), so the three say the same.

Honest nulls: a score that was not computed is null in the manifest and is counted as "n/a" here,
never averaged in as a zero; a video whose document cannot be read adds nothing to the source
hours and is counted as such. Every document read back is validated before a number is used.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import __version__
from ..core import layout, storage
from ..core.documents import is_count, is_number, is_text_list, video_unusable
from ..core.options import settings_digest
from ..gallery.site import DATACARD_FILE, GALLERY_DIR
from ..packaging import dedup, manifest

CARD_MD = "datacard.md"
CARD_DIR = "datacard"
CARD_JSON = "datacard.json"
#: The HTML card, in the gallery's folder so the gallery can link it (its images: ``../datacard/``).
CARD_HTML = f"{GALLERY_DIR}/{DATACARD_FILE}"
#: Histogram bins of each score and of the clip duration.
BINS = 20
#: Rows of a distribution table before the rest is summed as "other".
TOP = 15
#: Source prefixes listed before the rest is summed.
TOP_PREFIXES = 20
NA = "n/a"

#: The manifest columns the card reads (checked against ``manifest.COLUMNS`` when imported).
READ_COLUMNS = ["clip_uuid", "source_video", "rel_path", "duration_s", "width", "height", "framerate",
                "video_codec", "motion_global_mean", "motion_per_patch_min_256", "aesthetic_score", "passed",
                "filtered_by", "errors", "windows", "embedding_url", "settings_hash"]
_unknown = [c for c in READ_COLUMNS if c not in manifest.COLUMNS]
if _unknown:  # a renamed manifest column must fail here, not as an empty card
    raise ImportError(f"reports.datacard reads manifest columns that do not exist: {_unknown}")
#: The score histograms: manifest column -> (title, axis label).
SCORES = {
    "motion_global_mean": ("Motion score (global mean)", "motion_global_mean"),
    "motion_per_patch_min_256": ("Motion score (per-patch minimum)", "motion_per_patch_min_256"),
    "aesthetic_score": ("Aesthetic score", "aesthetic_score"),
}
DURATION = "duration_s"


class NoManifestError(RuntimeError):
    """The output has no clip manifest (or it holds no clip): there is nothing to describe."""


def no_manifest_message(output_path: str) -> str:
    return (f"{storage.redact(storage.join(output_path, manifest.MANIFEST_DIR))}: no clip manifest (or it holds no "
            f"clip); {manifest.how_to_write(output_path)}, then build the data card again")


# ---------------------------------------------------------------------------------------------
# Distributions


def _value_counts(values: pa.Array | pa.ChunkedArray) -> list[tuple[Any, int]]:
    """(value, count) by count descending then value; nulls counted under None, last."""
    counts = pc.value_counts(values)
    pairs = [(v, int(c)) for v, c in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                                          strict=True)]
    known = sorted(((v, c) for v, c in pairs if v is not None), key=lambda p: (-p[1], str(p[0])))
    nulls = [(None, c) for v, c in pairs if v is None]
    return known + nulls


def _top(pairs: list[tuple[Any, int]], top: int = TOP) -> list[dict[str, Any]]:
    """Rows ``{value, clips}``: the ``top`` most common values, the rest as "other", nulls as n/a."""
    known = [(v, c) for v, c in pairs if v is not None]
    rows = [{"value": v, "clips": c} for v, c in known[:top]]
    rest = sum(c for _v, c in known[top:])
    if rest:
        rows.append({"value": f"other ({len(known) - top} values)", "clips": rest})
    nulls = sum(c for v, c in pairs if v is None)
    if nulls:
        rows.append({"value": NA, "clips": nulls})
    return rows


def _resolution(table: pa.Table) -> list[dict[str, Any]]:
    w, h = table.column("width"), table.column("height")
    both = pc.and_(pc.is_valid(w), pc.is_valid(h))
    text = pc.if_else(both, pc.binary_join_element_wise(pc.cast(w, pa.string()), pc.cast(h, pa.string()), "x"),
                      pa.scalar(None, pa.string()))
    return _top(_value_counts(text))


def _framerate(table: pa.Table) -> list[dict[str, Any]]:
    rate = pc.cast(table.column("framerate"), pa.float64())
    return _top(_value_counts(pc.round(pc.if_else(pc.is_finite(rate), rate, pa.scalar(None, pa.float64())), 3)))


def histogram(values: np.ndarray, passed: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """A histogram of the finite ``values`` (NaN is null; an infinite value, which no scorer gives,
    counts as not scored): edges, counts, passed counts, and how many had a value (``scored``)
    and how many not (``not_scored``)."""
    ok = np.isfinite(values)
    scored, kept = values[ok], passed[ok]
    out: dict[str, Any] = {"scored": int(ok.sum()), "not_scored": int((~ok).sum())}
    if not len(scored):
        return {**out, "edges": [], "counts": [], "passed_counts": [], "mean": None, "min": None, "max": None,
                "median": None}
    lo, hi = float(scored.min()), float(scored.max())
    edges = np.histogram_bin_edges(scored, bins=bins, range=(lo, hi) if hi > lo else None)
    counts, _ = np.histogram(scored, bins=edges)
    passed_counts, _ = np.histogram(scored[kept], bins=edges)
    return {**out, "edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
            "passed_counts": [int(c) for c in passed_counts], "mean": float(scored.mean()), "min": lo, "max": hi,
            "median": float(np.median(scored))}


def _floats(table: pa.Table, column: str) -> np.ndarray:
    return pc.fill_null(pc.cast(table.column(column), pa.float64()), math.nan).to_numpy()


# ---------------------------------------------------------------------------------------------
# Captions, errors


def caption_coverage(table: pa.Table, configured: Mapping[str, Iterable[str]]) -> list[dict[str, Any]]:
    """Per caption model and enhancement model: windows of passed clips with a non-empty text of
    that model / windows of passed clips. ``configured``: ``{"caption": models, "enhanced":
    models}`` the pipeline records asked for (listed even where no window has their text)."""
    passed = table.filter(table.column("passed"))
    windows = pc.list_flatten(passed.column("windows"))
    num_windows = len(windows)
    rows = []
    for kind, field in (("caption", "captions"), ("enhanced", "enhanced_captions")):
        texts = pc.struct_field(windows, field) if num_windows else pa.array([], pa.list_(pa.string()))
        found: dict[str, int] = {}
        if num_windows:
            parent = pc.list_parent_indices(texts)
            flat = pc.list_flatten(texts)
            model, text = pc.struct_field(flat, "model"), pc.struct_field(flat, "text")
            has = pc.fill_null(pc.greater(pc.utf8_length(text), 0), False)
            pairs = pa.table({"w": parent, "m": model}).filter(pc.and_(has, pc.is_valid(model)))
            grouped = pairs.group_by("m").aggregate([("w", "count_distinct")])
            found = dict(zip(grouped.column("m").to_pylist(), grouped.column("w_count_distinct").to_pylist(),
                             strict=True))
        names = list(dict.fromkeys([*configured.get(kind, ()), *sorted(found)]))
        for name in names:
            k = int(found.get(name, 0))
            rows.append({"model": name, "kind": kind, "windows_with_text": k, "windows": num_windows,
                         "fraction": k / num_windows if num_windows else None})
    return rows


def _errors(table: pa.Table) -> list[dict[str, Any]]:
    keys = pc.struct_field(pc.list_flatten(table.column("errors")), "key")
    return [{"error": k, "clips": c} for k, c in _value_counts(keys) if k is not None]


# ---------------------------------------------------------------------------------------------
# The videos' documents


@dataclass(frozen=True)
class VideoDoc:
    """What the card takes from one ``processed_videos`` document, validated."""

    rel_path: str
    duration_s: float | None  # None: the document has no usable duration
    record: Mapping[str, Any] | None  # the pipeline record, when its hash matches its settings
    problem: str | None = None


def pipeline_record(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The document's pipeline record when it is one: a version, settings whose hash it carries."""
    record = doc.get("pipeline")
    if not isinstance(record, Mapping):
        return None
    settings = record.get("settings")
    if not (isinstance(record.get("version"), str) and isinstance(settings, dict)):
        return None
    try:
        if record.get("settings_hash") != settings_digest(settings):
            return None
    except (TypeError, ValueError):
        return None
    return record


def read_video_doc(output_path: str, rel_path: str, source_video: str | None) -> VideoDoc:
    """One video's document, validated: its source must be the manifest's, its duration a number."""
    rel = layout.video_file(rel_path)
    try:
        url = storage.resolve_under(output_path, rel)
        doc = json.loads(storage.read_bytes(url))
    except (ValueError, UnicodeDecodeError) as exc:
        return VideoDoc(rel_path, None, None, f"{rel}: unusable ({exc})")
    except storage.StorageError as exc:
        return VideoDoc(rel_path, None, None, f"{rel}: {storage.redact(exc)}")
    if not isinstance(doc, dict):
        return VideoDoc(rel_path, None, None, f"{rel}: not a JSON object")
    bad = video_unusable(doc)
    if bad is None and source_video is not None and doc["video"] != source_video:
        bad = "its video is not the manifest's source_video"
    if bad:
        return VideoDoc(rel_path, None, None, f"{rel}: {bad}")
    duration = doc.get("duration")
    known = is_number(duration) and duration >= 0 and math.isfinite(duration)
    return VideoDoc(rel_path, float(duration) if is_number(duration) and known else None, pipeline_record(doc))


def read_video_docs(output_path: str, videos: Mapping[str, str | None], workers: int = 16) -> list[VideoDoc]:
    """The documents of ``videos`` (rel path -> source video), read concurrently."""
    if not videos:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(videos)))) as pool:
        return list(pool.map(lambda item: read_video_doc(output_path, *item), sorted(videos.items())))


def _settings_sections(docs: list[VideoDoc], clips_by_hash: Mapping[str | None, int]) -> list[dict[str, Any]]:
    """One entry per settings hash the manifest names: version, videos, clips and the settings."""
    by_hash: dict[str, dict[str, Any]] = {}
    for doc in docs:
        if doc.record is None:
            continue
        h = doc.record["settings_hash"]
        entry = by_hash.setdefault(h, {"settings_hash": h, "package": str(doc.record.get("package", "")),
                                       "version": doc.record["version"], "videos": 0,
                                       "settings": dict(doc.record["settings"])})
        entry["videos"] += 1
    out = []
    for h, clips in sorted(clips_by_hash.items(), key=lambda p: (-p[1], str(p[0]))):
        found = by_hash.get(h) if h is not None else None
        out.append({**(found or {"settings_hash": h, "package": None, "version": None, "videos": 0,
                                  "settings": None}), "clips": clips})
    return out


def _configured_models(sections: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"caption": [], "enhanced": []}
    for section in sections:
        s = section["settings"] or {}
        for kind, switch, key in (("caption", "generate_captions", "caption_models"),
                                  ("enhanced", "enhance_captions", "enhanced_caption_models")):
            if s.get(switch) is True and is_text_list(s.get(key)):
                out[kind] += [m for m in s[key] if m not in out[kind]]
    return out


# ---------------------------------------------------------------------------------------------
# Sources, dedup


def source_prefixes(sources: Iterable[str], top: int = TOP_PREFIXES) -> dict[str, Any]:
    """The sources' common folder and the videos under each folder one level below it (videos
    directly in it are listed under the folder itself)."""
    split: list[list[str]] = [s.rstrip("/").split("/") for s in sources]
    if not split:
        return {"common": None, "prefixes": []}
    common: list[str] = []
    for parts in zip(*(p[:-1] for p in split), strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    counts: Counter[str] = Counter()
    for path in split:
        below = path[len(common):-1]
        counts["/".join(common + below[:1]) + "/"] += 1
    ranked = sorted(counts.items(), key=lambda x: (-x[1], x[0]))
    rows: list[dict[str, Any]] = [{"prefix": p, "videos": n} for p, n in ranked[:top]]
    if len(ranked) > top:
        rows.append({"prefix": f"other ({len(ranked) - top} prefixes)", "videos": sum(n for _p, n in ranked[top:])})
    return {"common": "/".join(common) + "/" if common else None, "prefixes": rows}


def dedup_numbers(output_path: str) -> dict[str, Any] | None:
    """``semdedup/summary.json`` validated: clips compared, duplicates (removed) at eps, kept, the
    eps table; None when dedup never ran; ``{"problem": ...}`` when the summary is unusable."""
    url = storage.join(dedup.dedup_dir(output_path), "summary.json")
    try:
        doc = json.loads(storage.read_bytes(url))
    except storage.StorageNotFoundError:
        return None
    except (storage.StorageError, ValueError, UnicodeDecodeError) as exc:
        return {"problem": f"{storage.redact(url)}: unreadable ({storage.redact(exc)})"}
    ok = (isinstance(doc, dict) and is_count(doc.get("num_clips")) and is_count(doc.get("num_duplicates"))
          and is_number(doc.get("eps")) and doc["num_duplicates"] <= doc["num_clips"])
    if not ok:
        return {"problem": f"{storage.redact(url)}: not a dedup summary"}
    table = []
    for row in doc.get("eps_table") or []:
        if (isinstance(row, dict) and is_number(row.get("eps")) and is_count(row.get("num_duplicates"))
                and is_count(row.get("num_kept"))):
            table.append({"eps": float(row["eps"]), "removed": row["num_duplicates"], "kept": row["num_kept"]})
    return {"eps": float(doc["eps"]), "clips": doc["num_clips"], "removed": doc["num_duplicates"],
            "kept": doc["num_clips"] - doc["num_duplicates"],
            "n_clusters": doc["n_clusters"] if is_count(doc.get("n_clusters")) else None,
            "without_embedding": doc["num_without_embedding"] if is_count(doc.get("num_without_embedding")) else None,
            "eps_table": table}


# ---------------------------------------------------------------------------------------------
# The card


def read_card_table(output_path: str) -> pa.Table:
    """The manifest columns the card needs, from every fragment under ``<output>/manifest/``."""
    return manifest.read_manifest(output_path, columns=READ_COLUMNS)


def card_numbers(output_path: str, table: pa.Table | None = None, *, missing_videos: int = 0) -> dict[str, Any]:
    """Every number of the card, from the manifest rows (``table``, default: the whole manifest)
    and the documents they name. ``missing_videos``: videos the caller knows have no fragment.
    Raises :class:`NoManifestError` when there is no clip."""
    table = read_card_table(output_path) if table is None else table.select(READ_COLUMNS)
    if table.num_rows == 0:
        raise NoManifestError(no_manifest_message(output_path))
    table = table.combine_chunks()  # a chunk per fragment: each compute call would pay per chunk
    passed = pc.fill_null(table.column("passed"), False).to_numpy(zero_copy_only=False)
    durations = _floats(table, DURATION)
    pairs = table.group_by(["rel_path", "source_video"], use_threads=False).aggregate([])
    videos = dict(zip(pairs.column("rel_path").to_pylist(), pairs.column("source_video").to_pylist(), strict=True))
    docs = read_video_docs(output_path, videos)
    hours_known = [d.duration_s for d in docs if d.duration_s is not None]
    clips_by_hash = dict(_value_counts(table.column("settings_hash")))
    settings = _settings_sections(docs, clips_by_hash)
    reasons = _value_counts(table.filter(pc.invert(table.column("passed"))).column("filtered_by"))
    known_durations = np.where(np.isfinite(durations), durations, 0.0)
    numbers: dict[str, Any] = {
        "output_path": storage.redact(output_path),
        "made_by": {"package": "curation-assets", "version": __version__},
        "videos": len(videos),
        "videos_without_fragment": missing_videos,
        "videos_without_duration": len(docs) - len(hours_known),
        "video_problems": [d.problem for d in docs if d.problem][:50],
        "clips_in": table.num_rows,
        "clips_passed": int(passed.sum()),
        "clips_filtered": int((~passed).sum()),
        "hours_in": sum(hours_known) / 3600.0,
        "hours_clips": float(known_durations.sum()) / 3600.0,
        "hours_passed": float(known_durations[passed].sum()) / 3600.0,
        "hours_filtered": float(known_durations[~passed].sum()) / 3600.0,
        "filtered_by": {(r if r is not None else NA): c for r, c in reasons},
        "clips_with_embedding": table.num_rows - table.column("embedding_url").null_count,
        "clips_with_errors": int(pc.sum(pc.greater(pc.list_value_length(table.column("errors")), 0)).as_py() or 0),
        "errors": _errors(table),
        "resolution": _resolution(table),
        "framerate": _framerate(table),
        "codec": _top(_value_counts(table.column("video_codec"))),
        "duration": histogram(durations, passed),
        "scores": {name: histogram(_floats(table, name), passed) for name in SCORES},
        "caption_coverage": caption_coverage(table, _configured_models(settings)),
        "dedup": dedup_numbers(output_path),
        "settings": settings,
        "sources": source_prefixes(v for v in videos.values() if isinstance(v, str)),
    }
    return numbers


def metadata_key(text: str) -> str:
    """A metadata key from a name read back (a model, a reason): letters, digits, ``_ . -`` only."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:100]


def metadata_numbers(numbers: Mapping[str, Any]) -> dict[str, int | float]:
    """The card's key numbers, flat: what the Dagster asset records as numeric metadata (scores
    and coverage only where they exist: a missing number is left out, never a zero)."""
    out: dict[str, int | float] = {k: numbers[k] for k in ("videos", "clips_in", "clips_passed", "clips_filtered",
                                                             "clips_with_embedding", "clips_with_errors")}
    out.update({k: float(numbers[k]) for k in ("hours_in", "hours_passed", "hours_filtered")})
    for reason, count in numbers["filtered_by"].items():
        out[metadata_key(f"filtered_by_{reason}")] = count
    for name, hist in numbers["scores"].items():
        out[f"{name}_scored"] = hist["scored"]
        if hist["mean"] is not None:
            out[f"{name}_mean"] = hist["mean"]
    for row in numbers["caption_coverage"]:
        if row["fraction"] is not None:
            out[metadata_key(f"caption_coverage_{row['kind']}_{row['model']}")] = row["fraction"]
    if numbers["dedup"] and "problem" not in numbers["dedup"]:
        out["dedup_removed"] = numbers["dedup"]["removed"]
        out["dedup_kept"] = numbers["dedup"]["kept"]
    return out


@dataclass(frozen=True)
class WrittenCard:
    """A data card as written: its numbers and where its files are."""

    numbers: dict[str, Any]
    markdown: str
    md_url: str
    html_url: str
    json_url: str
    image_urls: tuple[str, ...]


def _link_from_gallery(output_path: str) -> None:
    """A gallery built before the card links it from now on (its index says whether the card is
    there; only the index is rewritten)."""
    from ..gallery import site

    if storage.exists(site.index_url(output_path)):
        try:
            site.build_gallery(output_path, videos=[])
        except site.NoManifestError:  # the manifest went since: the gallery is rebuilt with it
            pass


def write_datacard(output_path: str, table: pa.Table | None = None, *, missing_videos: int = 0) -> WrittenCard:
    """Build the card and write it, each file whole under its name (temp name, then rename):
    ``datacard/*.png``, ``datacard/datacard.json``, ``datacard.md`` and ``gallery/datacard.html``.
    An image of an earlier card that this one has no data for is removed (only our names)."""
    from . import plots
    from .datacard_render import IMAGES, card_blocks, render_html, render_markdown

    numbers = card_numbers(output_path, table, missing_videos=missing_videos)
    folder = storage.join(output_path, CARD_DIR)
    hists = {**numbers["scores"], DURATION: numbers["duration"]}
    written, stale = [], []
    for name, image in IMAGES.items():
        url = storage.join(folder, image)
        hist = hists[name]
        if not hist["scored"]:
            stale.append(url)
            continue
        filtered = [t - p for t, p in zip(hist["counts"], hist["passed_counts"], strict=True)]
        title, label = SCORES.get(name, ("Clip duration", "seconds"))
        storage.write_bytes_atomic(url, plots.histogram_png(hist["edges"], hist["passed_counts"], filtered,
                                                            title=title, xlabel=label))
        written.append(url)
    storage.remove_files([u for u in stale if storage.exists(u)])
    blocks = card_blocks(numbers, {name for name, image in IMAGES.items() if storage.join(folder, image) in written})
    markdown = render_markdown(blocks)
    json_url = storage.join(folder, CARD_JSON)
    md_url = storage.join(output_path, CARD_MD)
    html_url = storage.join(output_path, CARD_HTML)
    storage.write_text_atomic(json_url, json.dumps(numbers, indent=2, sort_keys=True, allow_nan=False) + "\n")
    storage.write_text_atomic(md_url, markdown)
    storage.write_text_atomic(html_url, render_html(blocks))
    _link_from_gallery(output_path)
    return WrittenCard(numbers, markdown, md_url, html_url, json_url, tuple(written))


__all__ = [
    "CARD_DIR",
    "CARD_HTML",
    "CARD_JSON",
    "CARD_MD",
    "NoManifestError",
    "WrittenCard",
    "READ_COLUMNS",
    "SCORES",
    "caption_coverage",
    "card_numbers",
    "dedup_numbers",
    "histogram",
    "metadata_key",
    "metadata_numbers",
    "no_manifest_message",
    "pipeline_record",
    "read_card_table",
    "read_video_doc",
    "source_prefixes",
    "write_datacard",
]
