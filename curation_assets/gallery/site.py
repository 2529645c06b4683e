"""Writing the gallery: a static site under ``<output>/gallery/`` that needs no server of ours.

    gallery/index.html, gallery.js, gallery.css   the page (package data, ``gallery/static/``)
    gallery/index.js                              the compact index: a summary per video
    gallery/data/<manifest fragment name>.js      one video's cards, loaded by the page on demand
    gallery/searches/<slug>.js                    written by ``curation-assets search``

A page opened from ``file://`` cannot ``fetch()`` in Chromium, so every data file is a script
that calls ``galleryLoad({...})`` and the page adds ``<script>`` tags as it needs them; the same
files work from any static web server or object store. Writes go through ``core.storage``
(whole-file puts, temporary name + rename locally).

The index is derived, never the only copy: each fragment file carries its video's summary. An
update reads the index, keeps the entries whose manifest fragment and data file still exist, adds
the summaries of data files it does not list (a concurrent run's video), writes it, and lists
``data/`` again: a data file that appeared meanwhile and is missing from what it wrote makes it go
round once more. A run whose data file lands after that listing reads the index after this write,
so no entry is lost, on a local disk or an object store alike (object stores have no locks,
``storage.lock`` would not cover them).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pyarrow.parquet as pq

from ..core import storage
from ..packaging import manifest
from . import data

GALLERY_DIR = "gallery"
DATA_DIR = "data"
SEARCHES_DIR = "searches"
INDEX_FILE = "index.js"
PAGE_FILE = "index.html"
DATACARD_FILE = "datacard.html"
STATIC_FILES = ("index.html", "gallery.js", "gallery.css")
LOADER = "galleryLoad"
SLUG_RE = re.compile(r"^[a-z0-9-]{1,64}$")
_ROUNDS = 5
_WORKERS = 8


def gallery_dir(output_path: str) -> str:
    return storage.join(output_path, GALLERY_DIR)


def data_url(output_path: str, fragment: str) -> str:
    return storage.join(gallery_dir(output_path), DATA_DIR, f"{fragment}.js")


def index_url(output_path: str) -> str:
    return storage.join(gallery_dir(output_path), INDEX_FILE)


def page_url(output_path: str, fragment: str | None = None) -> str:
    """Where the page is, as a browser opens it: a ``file://`` URL for a local output, the object
    store's URL otherwise; with ``fragment``, the view of that one video."""
    url = storage.join(gallery_dir(output_path), PAGE_FILE)
    if storage.is_local(url):
        import pathlib

        url = pathlib.Path(storage.local_path(url)).resolve().as_uri()
    return f"{url}#video={fragment}" if fragment else url


def search_url(output_path: str, slug: str) -> str:
    """The result file of a search (the contract with ``curation-assets search``)."""
    if not SLUG_RE.match(slug):
        raise ValueError(f"search slug {slug!r} is not [a-z0-9-]{{1,64}}")
    return storage.join(gallery_dir(output_path), SEARCHES_DIR, f"{slug}.js")


def script(value: Any) -> bytes:
    """A data file: one ``galleryLoad(...)`` call with ``value`` as JSON: ASCII, and ``<``, ``>``,
    ``&`` escaped too (they occur only inside strings), so no text can end a script or read as
    markup whichever way the file is served or inlined."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f"{LOADER}({text});\n".encode()


def read_script(raw: bytes) -> Any:
    """The value of a data file written by :func:`script`; ValueError for anything else."""
    text = raw.decode("utf-8").strip()
    prefix, suffix = f"{LOADER}(", ");"
    if not (text.startswith(prefix) and text.endswith(suffix)):
        raise ValueError("not a gallery data file")
    return json.loads(text[len(prefix):-len(suffix)])


def write_search(output_path: str, slug: str, results: dict[str, Any]) -> str:
    """Write a search result page's data (``{"kind": "search", ...}``); returns its URL."""
    url = search_url(output_path, slug)
    storage.write_bytes_atomic(url, script({**results, "kind": "search"}))
    return url


@dataclass
class GalleryBuild:
    """What a build did."""

    output_path: str
    videos: int = 0  # videos in the index after the build
    clips: int = 0
    written: list[str] = field(default_factory=list)  # fragments (re)written
    removed: list[str] = field(default_factory=list)  # fragments of videos no longer in the manifest
    problems: list[str] = field(default_factory=list)  # manifest fragments that could not be read
    seconds: float = 0.0

    @property
    def url(self) -> str:
        return page_url(self.output_path)


class NoManifestError(FileNotFoundError):
    """The output has no manifest to show."""


def _write_static(output_path: str) -> None:
    """The page's own files, written only when they differ (an unchanged build touches none)."""
    folder = gallery_dir(output_path)
    for name in STATIC_FILES:
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        url = storage.join(folder, name)
        try:
            if storage.read_bytes(url) == body:
                continue
        except storage.StorageNotFoundError:
            pass
        storage.write_bytes_atomic(url, body)


def _names(folder: str, suffix: str) -> set[str]:
    """The fragment names of ``folder``'s ``<32 hex><suffix>`` files (one listing of the folder's own
    files: ``storage.file_names``)."""
    pattern = re.compile(r"([0-9a-f]{32})" + re.escape(suffix))
    return {m.group(1) for m in map(pattern.fullmatch, storage.file_names(folder)) if m}


def manifest_fragments(output_path: str) -> set[str]:
    """The fragment names (without ``.parquet``) of the manifest's files (``manifest.fragment_urls``)."""
    return {url.rsplit("/", 1)[-1].removesuffix(".parquet") for url in manifest.fragment_urls(output_path)}


def _data_fragments(output_path: str) -> set[str]:
    return _names(storage.join(gallery_dir(output_path), DATA_DIR), ".js")


def read_index(output_path: str) -> dict[str, dict[str, Any]]:
    """The index's valid entries by fragment ({} when there is none or it is unreadable)."""
    try:
        value = read_script(storage.read_bytes(index_url(output_path)))
    except (storage.StorageNotFoundError, ValueError, UnicodeDecodeError):
        return {}
    videos = value.get("videos") if isinstance(value, dict) else None
    return {e["f"]: e for e in videos or [] if data.valid_summary(e)}


def _summary_of_file(output_path: str, fragment: str) -> dict[str, Any] | None:
    try:
        value = read_script(storage.read_bytes(data_url(output_path, fragment)))
    except (storage.StorageNotFoundError, ValueError, UnicodeDecodeError):
        return None
    entry = value.get("summary") if isinstance(value, dict) else None
    return entry if isinstance(entry, dict) and data.valid_summary(entry) and entry["f"] == fragment else None


def _write_index(output_path: str, entries: dict[str, dict[str, Any]]) -> None:
    has_card = storage.exists(storage.join(gallery_dir(output_path), DATACARD_FILE))
    value = {"kind": "index", "version": 1, "created": datetime.now(UTC).isoformat(timespec="seconds"),
             "datacard": DATACARD_FILE if has_card else None,
             "videos": sorted(entries.values(), key=lambda e: (e["name"], e["f"]))}
    storage.write_bytes_atomic(index_url(output_path), script(value))


def _update_index(output_path: str, changed: dict[str, dict[str, Any] | None],
                  base: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Merge ``changed`` (fragment -> summary, None: gone) into the index (or into ``base``, a full
    build's entries) as the module docstring says; returns what was written last."""
    entries: dict[str, dict[str, Any]] = {}
    unreadable: set[str] = set()  # data files without a valid summary: rebuilt by the next full build
    for _ in range(_ROUNDS):
        in_manifest = manifest_fragments(output_path)  # listed here: a video may have come since the build began
        files = _data_fragments(output_path)
        previous = base if base is not None else read_index(output_path)
        entries = {f: e for f, e in previous.items() if f in in_manifest and f in files}
        for fragment in sorted((files & in_manifest) - entries.keys() - changed.keys()):
            entry = _summary_of_file(output_path, fragment)
            if entry is not None:
                entries[fragment] = entry
            else:
                unreadable.add(fragment)
        for fragment, entry in changed.items():
            if entry is None:
                entries.pop(fragment, None)
            else:
                entries[fragment] = entry
        _write_index(output_path, entries)
        late = (_data_fragments(output_path) & in_manifest) - entries.keys() - changed.keys() - unreadable
        if not late:
            break
        base = None  # another run wrote meanwhile: merge again from what is there now
    return entries


def _read_video(output_path: str, fragment: str) -> tuple[str, list[dict[str, Any]]]:
    """One manifest fragment's ``(rel path, rows)``; ValueError when its rows are not those of the
    one video its name is the hash of."""
    url = storage.join(output_path, manifest.MANIFEST_DIR, f"{fragment}.parquet")
    table = pq.ParquetFile(io.BytesIO(storage.read_bytes(url))).read(columns=data.CARD_COLUMNS, use_threads=False)
    rows = table.to_pylist()
    rels = {r.get("rel_path") for r in rows}
    rel = rels.pop() if len(rels) == 1 else None
    if not isinstance(rel, str) or manifest.fragment_name(rel) != fragment:
        raise ValueError("its rows are not those of the one video its name stands for")
    return rel, rows


def _unreadable(output_path: str, fragment: str, exc: Exception) -> str:
    url = storage.join(output_path, manifest.MANIFEST_DIR, f"{fragment}.parquet")
    why = storage.redact(f"{type(exc).__name__}: {exc}")[:300]
    return f"{url}: unreadable, its video is not in the gallery ({why})"


def _show_videos(output_path: str, fragments: Iterable[str], dedup_info: data.Dedup | None
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """Each fragment read, made into its cards and written as its data file, 8 at a time (small
    files: the time is per file, and reading, writing and the cards overlap). A fragment that
    cannot be read is named in the problems and left out, the others are shown. ``dedup_info``
    None: SemDeDup's result for these videos' clips, read once they are read."""
    names = sorted(fragments)

    def read(fragment: str) -> tuple[str, list[dict[str, Any]]] | str:
        try:
            return _read_video(output_path, fragment)
        except Exception as exc:  # noqa: BLE001 - this video's problem
            return _unreadable(output_path, fragment, exc)

    def show(fragment: str, video: tuple[str, list[dict[str, Any]]] | str | None) -> dict[str, Any] | str:
        video = read(fragment) if video is None else video
        if isinstance(video, str):
            return video
        payload = data.video_payload(video[0], video[1], known or data.Dedup.empty())
        storage.write_bytes_atomic(data_url(output_path, payload["fragment"]), script(payload))
        return payload

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        if dedup_info is None:  # a few videos: read them, then the dedup rows of their clips
            videos = list(pool.map(read, names))
            ids = [r["clip_uuid"] for v in videos if not isinstance(v, str) for r in v[1]]
            known = data.read_dedup(output_path, ids)
            results = list(pool.map(show, names, videos))
        else:
            known = dedup_info
            results = list(pool.map(show, names, [None] * len(names)))
    return [r for r in results if not isinstance(r, str)], [r for r in results if isinstance(r, str)]


def build_gallery(output_path: str, videos: Iterable[str] | None = None) -> GalleryBuild:
    """Build ``<output>/gallery/``: every video of the manifest (``videos=None``), or only the
    fragments of ``videos`` (relative paths) and the index. A video without a manifest fragment
    (removed, or no clips) drops out; one whose fragment cannot be read is left out and named in
    ``problems``. Raises :class:`NoManifestError` when there is no manifest."""
    start = time.perf_counter()
    folder = storage.join(output_path, manifest.MANIFEST_DIR)
    present = manifest_fragments(output_path) if storage.exists(folder) else set()
    if not present:
        raise NoManifestError(f"{folder}: no manifest fragments to show; {manifest.how_to_write(output_path)}")
    build = GalleryBuild(output_path)
    _write_static(output_path)
    wanted = present if videos is None else {manifest.fragment_name(r) for r in videos}
    payloads, build.problems = _show_videos(output_path, wanted & present,
                                            data.read_dedup(output_path) if videos is None else None)
    build.written = [p["fragment"] for p in payloads]
    shown = {p["fragment"] for p in payloads}
    failed = (wanted & present) - shown
    if videos is None:  # every data file of a video not shown now goes
        build.removed = sorted(_data_fragments(output_path) - shown)
    else:
        build.removed = sorted((wanted - present) | failed)
    storage.remove_files([data_url(output_path, f) for f in build.removed])
    changed: dict[str, dict[str, Any] | None] = {p["fragment"]: p["summary"] for p in payloads}
    changed.update({f: None for f in build.removed})
    entries = _update_index(output_path, changed, base={} if videos is None else None)
    build.videos = len(entries)
    build.clips = sum(e["clips"] for e in entries.values())
    build.seconds = time.perf_counter() - start
    return build


__all__ = ["DATA_DIR", "DATACARD_FILE", "GALLERY_DIR", "GalleryBuild", "INDEX_FILE", "NoManifestError", "SEARCHES_DIR",
           "SLUG_RE", "build_gallery", "data_url", "gallery_dir", "index_url", "manifest_fragments", "page_url",
           "read_index", "read_script", "script", "search_url", "write_search"]
