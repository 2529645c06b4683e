"""The upload watcher: what a sensor tick over ``input_path`` should request.

Each :func:`watch_tick` lists the input (see :mod:`.upload_scan`), compares it with the table
the previous tick left (see :mod:`.upload_state`) and returns:

* **requested**: videos to request now, new ones and replaced ones (content identity changed:
  size + mtime locally, ETag + size on object stores), at most ``max_per_tick``, oldest first;
* **carried**: how many more qualified but wait for the next ticks (they need no new settling);
* **settling**: files still being written: a file qualifies once its identity is unchanged
  since the previous tick, or once its mtime is older than ``settle_age_s``;
* **deleted**: videos requested before that are gone (reported once each);
* **skipped**: video-named entries that will never be requested, with the reason.

The table holds every listed video by name, so no video is requested twice for the same content
and none is skipped because others share its timestamp. A cursor that cannot be used (corrupt,
an old format, another input or extension list, a missing state blob) never fails a tick: the
table starts over, and with ``known_keys`` (the partitions that already exist) those videos are
taken as requested instead of being requested again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from . import storage
from .keys import key_from_rel_path

# the defaults are settings (PipelineOptions.watch_*): defined there, once
from .options import DEFAULT_MAX_PER_TICK, DEFAULT_SETTLE_AGE_S, VIDEO_EXTENSIONS
from .upload_scan import LIST_CONCURRENCY, PAGE_SIZE, Scan, Seen, normalize_extensions, scan_local, scan_object_store
from .upload_state import (
    REQUESTED,
    SEEN_NEW,
    SEEN_REPLACED,
    CursorError,
    StateStore,
    WatchState,
    config_digest,
    load_cursor,
    save_cursor,
    with_sweep,
)

__all__ = [
    "DEFAULT_MAX_PER_TICK",
    "DEFAULT_SETTLE_AGE_S",
    "Upload",
    "WatchSettings",
    "WatchTick",
    "watch_tick",
]



@dataclass(frozen=True)
class WatchSettings:
    """How the watcher picks up videos. Refuses values that would do nothing or never pick up."""

    extensions: Sequence[str] = VIDEO_EXTENSIONS
    max_per_tick: int = DEFAULT_MAX_PER_TICK
    settle_age_s: float = DEFAULT_SETTLE_AGE_S
    #: Object stores only: list at most this many pages per tick and go on where the previous
    #: tick stopped (``None``: the whole prefix every tick).
    list_pages_per_tick: int | None = None
    list_concurrency: int = LIST_CONCURRENCY
    #: Keys per listing page (S3's maximum is the default; some S3-compatible stores use fewer).
    list_page_size: int = PAGE_SIZE

    def __post_init__(self) -> None:
        object.__setattr__(self, "extensions", normalize_extensions(self.extensions))
        if not isinstance(self.max_per_tick, int) or self.max_per_tick < 1:
            raise ValueError(f"max_per_tick must be a positive integer, got {self.max_per_tick!r}")
        if not self.settle_age_s >= 0:
            raise ValueError(f"settle_age_s must be >= 0 seconds, got {self.settle_age_s!r}")
        if self.list_pages_per_tick is not None and (
            not isinstance(self.list_pages_per_tick, int) or self.list_pages_per_tick < 1
        ):
            raise ValueError("list_pages_per_tick must be a positive integer or None, "
                             f"got {self.list_pages_per_tick!r}")
        if not isinstance(self.list_page_size, int) or not 1 <= self.list_page_size <= PAGE_SIZE:
            raise ValueError(f"list_page_size must be 1..{PAGE_SIZE}, got {self.list_page_size!r}")
        if not isinstance(self.list_concurrency, int) or self.list_concurrency < 1:
            raise ValueError(f"list_concurrency must be a positive integer, got {self.list_concurrency!r}")


@dataclass(frozen=True)
class Upload:
    """A video to request: its path under the input, partition key and what was seen."""

    rel_path: str
    key: str
    size: int
    mtime: float
    etag: str | None
    replaced: bool
    #: Digest of the content identity (hex): with the key it names this content, e.g. in a
    #: run_key, so a replaced video's new request is not taken for the old one.
    content_id: str


@dataclass
class WatchTick:
    """One tick's decisions and the cursor to store for the next one."""

    cursor: str
    requested: list[Upload] = field(default_factory=list)
    carried: int = 0
    settling: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    #: Why the table started over this tick (``None``: the cursor was used).
    reset: str | None = None
    #: Videos taken as already requested on a fresh start because their partition exists.
    adopted: int = 0
    #: Videos listed this tick, and the table's size after it.
    listed: int = 0
    tracked: int = 0
    list_requests: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def new(self) -> list[Upload]:
        return [u for u in self.requested if not u.replaced]

    @property
    def replaced(self) -> list[Upload]:
        return [u for u in self.requested if u.replaced]

    @property
    def deleted_keys(self) -> list[str]:
        return [key_from_rel_path(r) for r in self.deleted]

    def summary(self) -> str:
        """One line for the tick log."""
        parts = [f"{len(self.new)} new", f"{len(self.replaced)} replaced"]
        if self.carried:
            parts.append(f"{self.carried} waiting for the next ticks")
        if self.settling:
            parts.append(f"{len(self.settling)} still being written")
        if self.deleted:
            parts.append(f"{len(self.deleted)} deleted")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        line = f"{', '.join(parts)} ({self.listed} videos listed, {self.list_requests} listing requests)"
        if self.reset:
            line += f"; started over: {self.reset}"
        return line


def _usable_name(input_url: str, rel: str) -> str | None:
    """Why ``rel`` cannot become a partition the pipeline can read back, or ``None``."""
    try:
        key = key_from_rel_path(rel)
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    try:
        storage.resolve_under(input_url, rel)
    except ValueError as e:
        return f"name refused: {e}"
    return None if key else "empty name"


def _exclusions(input_url: str, exclude: Iterable[str]) -> list[str]:
    out = []
    for url in exclude:
        try:
            rel = storage.relative_to(input_url, storage.normalize_url(url))
        except ValueError:
            continue  # not inside the input: nothing to leave out
        if rel == "":
            raise ValueError("the output folder is the input folder: every output clip would be taken for a new video")
        out.append(rel)
    return out


def watch_tick(
    input_path: str,
    cursor: str | None,
    settings: WatchSettings | None = None,
    *,
    store: StateStore | None = None,
    store_key: str = "uploads",
    known_keys: Callable[[], Iterable[str]] | None = None,
    exclude: Iterable[str] = (),
    now: float | None = None,
) -> WatchTick:
    """Decide one tick. ``cursor``: what the previous tick returned (anything else starts
    over). ``store``/``store_key``: where tables too big for the cursor live. ``known_keys``:
    called on a fresh start only, the partition keys that exist already. ``exclude``: folders
    (URLs) inside the input not to watch, e.g. the output. Listing or state-store failures
    raise :class:`~.storage.StorageError`; the cursor then stays as it was."""
    settings = settings or WatchSettings()
    input_url = storage.normalize_url(input_path)
    local = storage.is_local(input_url)
    if settings.list_pages_per_tick is not None and local:
        raise ValueError("list_pages_per_tick applies to object stores; a local folder is walked whole every tick")
    digest = config_digest([input_url, *settings.extensions])
    now = time.time() if now is None else now

    reset: str | None = None
    previous_slot: int | None = None
    if cursor is None or cursor == "":
        state, reset = WatchState(rows={}), "no cursor yet"
    else:
        try:
            state, previous_slot = load_cursor(cursor, digest, store=store, store_key=store_key)
        except CursorError as e:
            state, reset = WatchState(rows={}), str(e)
        # a store that cannot be read now (StorageError) fails the tick: starting over on a
        # passing outage would forget what was requested

    excluded = _exclusions(input_url, exclude)
    scan: Scan
    if local:
        scan = scan_local(input_url, settings.extensions, excluded)
    else:
        scan = scan_object_store(
            input_url,
            settings.extensions,
            known=state.sorted_names(),
            exclude=excluded,
            max_pages=settings.list_pages_per_tick,
            sweep_after=state.sweep_after,
            page_size=settings.list_page_size,
            concurrency=settings.list_concurrency,
        )
    return _decide(input_url, cursor, state, previous_slot, scan, settings, digest, reset, known_keys, store,
                   store_key, now)


def _decide(
    input_url: str,
    cursor: str | None,
    state: WatchState,
    previous_slot: int | None,
    scan: Scan,
    settings: WatchSettings,
    digest: str,
    reset: str | None,
    known_keys: Callable[[], Iterable[str]] | None,
    store: StateStore | None,
    store_key: str,
    now: float,
) -> WatchTick:
    rows = dict(state.rows)
    tick = WatchTick(cursor="", reset=reset, skipped=list(scan.skipped), unreadable=list(scan.unreadable))
    tick.listed = len(scan.files)
    tick.list_requests = scan.requests
    known: set[str] = set()
    if reset is not None and known_keys is not None:
        known = set(known_keys())

    settle_ns = int(settings.settle_age_s * 1e9)
    now_ns = int(now * 1e9)
    candidates: list[tuple[int, str, Seen, bool]] = []
    for rel, seen in scan.files.items():
        ident = seen.identity()
        prev = rows.get(rel)
        if prev is None:
            why = _usable_name(input_url, rel)
            if why is not None:
                tick.skipped.append((rel, why))
                continue
            if known and key_from_rel_path(rel) in known:
                rows[rel] = (ident, REQUESTED)
                tick.adopted += 1
                continue
            status = SEEN_NEW
            stable = False
        else:
            prev_ident, status = prev
            if status == REQUESTED:
                if prev_ident == ident:
                    continue
                status, stable = SEEN_REPLACED, False
            else:
                stable = prev_ident == ident
        old_enough = now_ns - seen.mtime_ns >= settle_ns
        if stable or old_enough:
            candidates.append((seen.mtime_ns, rel, seen, status == SEEN_REPLACED))
        else:
            tick.settling.append(rel)
        rows[rel] = (ident, status)

    # deletions: rows of listed ranges that the listing did not find
    gone = [rel for rel in state.rows if rel not in scan.files and scan.covers(rel)]
    requested_gone = [rel for rel in gone if state.rows[rel][1] != SEEN_NEW]
    if requested_gone and not scan.files and scan.covered == [(None, None)]:
        tick.warnings.append(
            f"the input lists no videos at all while {len(requested_gone)} were requested before: "
            "not taken for deletions (an unmounted disk or a wrong prefix?)"
        )
    else:
        for rel in gone:
            del rows[rel]
        for rel in sorted(requested_gone):
            if _usable_name(input_url, rel) is None:  # names read back from the table are untrusted
                tick.deleted.append(rel)
            else:
                tick.warnings.append(f"dropped an unusable name from the table: {storage.redact(rel)!r}")

    candidates.sort(key=lambda c: (c[0], c[1]))
    for mtime_ns, rel, seen, replaced in candidates[: settings.max_per_tick]:
        rows[rel] = (rows[rel][0], REQUESTED)
        tick.requested.append(
            Upload(rel, key_from_rel_path(rel), seen.size, mtime_ns / 1e9, seen.etag, replaced, seen.identity().hex())
        )
    tick.carried = max(0, len(candidates) - settings.max_per_tick)
    tick.settling.sort()

    tick.tracked = len(rows)
    if reset is None and cursor and rows == state.rows:
        # the table is unchanged: no encoding, no store write
        tick.cursor = cursor if scan.sweep_after == state.sweep_after else with_sweep(cursor, scan.sweep_after)
    else:
        new_state = WatchState(rows=rows, sweep_after=scan.sweep_after)
        tick.cursor, _slot = save_cursor(new_state, digest, previous_slot=previous_slot, store=store,
                                         store_key=store_key)
    return tick
