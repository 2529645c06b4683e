"""The run diff's rules on small hand-made snapshots (fast): span grouping of a re-split, which
fields make a clip "changed", the caps of the text, and a snapshot file read back with nothing
trusted (another Parquet file, a settings record whose hash does not match)."""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation_assets.core.options import settings_digest
from curation_assets.packaging import manifest
from curation_assets.reports import diff as diffs
from curation_assets.reports import diff_text, snapshot

SETTINGS = {"fixed_stride_split_duration": 2.0, "motion_filter": "disable"}
HASH = settings_digest(SETTINGS)


def _row(rel: str, start: float, end: float, **values) -> dict:
    row = {"clip_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rel}_{start}_{end}")), "rel_path": rel,
           "span_start_s": start, "span_end_s": end, "passed": True, "filtered_by": None,
           "motion_global_mean": 0.01, "motion_per_patch_min_256": 0.001, "aesthetic_score": 4.0,
           "width": 256, "height": 256, "settings_hash": HASH, "caption_models": ["qwen"],
           "enhanced_caption_models": []}
    return {**row, **values}


def _snap(rows: list[dict], settings: dict | None = None, name: str = "out") -> snapshot.Snapshot:
    table = snapshot.snapshot_table_from(pa.Table.from_pylist(rows, schema=snapshot.SCHEMA))
    records = {settings_digest(s): {"version": "1", "settings": s} for s in [settings or SETTINGS]}
    return snapshot.Snapshot(table, records, name, name)


def test_respans_group_overlapping_spans_and_leave_lone_spans_alone():
    clip = lambda s, e: diffs.Clip(f"{s}-{e}", s, e)  # noqa: E731
    groups = diffs.respans([clip(0, 10), clip(20, 22)], [clip(0, 5), clip(5, 10), clip(30, 31)])
    assert [([(c.start, c.end) for c in o], [(c.start, c.end) for c in n]) for o, n in groups] == [
        ([(0, 10)], [(0, 5), (5, 10)]), ([(20, 22)], []), ([], [(30, 31)])]


def test_a_clip_with_the_same_id_is_changed_by_exactly_the_fields_that_differ():
    old = [_row("v.mp4", 0, 2), _row("v.mp4", 2, 4), _row("w.mp4", 0, 2)]
    new = [_row("v.mp4", 0, 2, aesthetic_score=3.0, passed=False, filtered_by="aesthetic"),
           _row("v.mp4", 2, 4, caption_models=[]), _row("w.mp4", 0, 2, aesthetic_score=4.0 + 1e-13)]
    d = diffs.diff_snapshots(_snap(old), _snap(new))
    (video,) = d.videos_changed
    assert [c.fields for c in video.changed] == [
        {"passed": (True, False), "filtered_by": (None, "aesthetic"), "aesthetic_score": (4.0, 3.0)},
        {"caption_models": (["qwen"], [])}]
    assert d.videos_unchanged == 1 and not video.added and not video.removed and not d.settings
    text = diff_text.render(d)
    assert "changed" in text and "caption_models ['qwen'] -> []" in text


def test_settings_and_scores_are_compared():
    other = {**SETTINGS, "fixed_stride_split_duration": 3.0}
    old = [_row("v.mp4", 0, 2, aesthetic_score=float(a)) for a in range(5)]
    new = [_row("v.mp4", 0, 2, aesthetic_score=None, settings_hash=settings_digest(other))]
    d = diffs.diff_snapshots(_snap(old[:1]), _snap(new, other))
    assert d.settings == {"fixed_stride_split_duration": ([2.0], [3.0])} and d.videos_settings_changed == 1
    stats = diffs.distribution([float(a) for a in range(5)] + [None])
    assert stats == {"count": 5, "mean": 2.0, "p10": float(np.percentile(range(5), 10)), "p50": 2.0,
                     "p90": float(np.percentile(range(5), 90))}
    assert diffs.distribution([None])["mean"] is None
    # two outputs differ in their paths: listed, but no video counts as written with other settings
    here, moved = {**SETTINGS, "output_path": "/here"}, {**SETTINGS, "output_path": "/elsewhere"}
    d = diffs.diff_snapshots(_snap([_row("v.mp4", 0, 2, settings_hash=settings_digest(here))], here),
                             _snap([_row("v.mp4", 0, 2, settings_hash=settings_digest(moved))], moved))
    assert d.settings == {"output_path": (["/here"], ["/elsewhere"])} and d.videos_settings_changed == 0


def test_the_text_caps_each_list_unless_full():
    old = [_row(f"v{i:02d}.mp4", 0, 2) for i in range(diffs.SHOWN + 5)]
    new = [_row(f"v{i:02d}.mp4", 0, 3) for i in range(diffs.SHOWN + 5)]
    d = diffs.diff_snapshots(_snap(old), _snap(new))
    short, full = diff_text.render(d), diff_text.render(d, full=True)
    assert "... 5 more videos (--full shows all)" in short and "v14.mp4" not in short
    assert "more videos" not in full and "v14.mp4: clips +1 -1" in full
    assert short.splitlines()[2].startswith("videos: 0 added, 0 removed, 15 changed")


def test_a_file_name_with_control_characters_is_shown_escaped():
    d = diffs.diff_snapshots(_snap([]), _snap([_row("evil\x1b[2J.mp4", 0, 2)]))
    text = diff_text.render(d)
    assert "\x1b" not in text and "'evil\\x1b[2J.mp4'" in text


def test_a_snapshot_reads_back_and_a_tampered_one_is_not_trusted(tmp_path):
    snap = _snap([_row("v.mp4", 0, 2), _row("v.mp4", 2, 4, passed=False, filtered_by="motion")])
    url = snapshot.write_snapshot(str(tmp_path), snap)
    assert snapshot.list_snapshots(str(tmp_path)) == [url] and not list((tmp_path / "snapshots").glob(".*"))
    back = snapshot.read_snapshot(url)
    assert back.table.equals(snap.table) and back.settings == snap.settings and back.created
    assert diffs.diff_snapshots(back, snap).identical
    # settings whose hash is not theirs: left out, with a problem
    table = pq.read_table(url)
    header = json.loads(table.schema.metadata[snapshot.METADATA_KEY])
    header["settings"][HASH]["settings"]["fixed_stride_split_duration"] = 9.0
    forged = tmp_path / "forged.parquet"
    pq.write_table(table.replace_schema_metadata({snapshot.METADATA_KEY: json.dumps(header).encode()}), forged)
    read = snapshot.read_snapshot(str(forged))
    assert read.settings == {} and "not a settings record of that hash" in read.problems[0]
    # another Parquet file, and one missing a column
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="other.parquet: not a snapshot of format 1"):
        snapshot.read_snapshot(str(tmp_path / "other.parquet"))
    buf = io.BytesIO()
    pq.write_table(table.drop_columns(["aesthetic_score"]), buf)
    (tmp_path / "short.parquet").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="columns missing or of another type: aesthetic_score"):
        snapshot.read_snapshot(str(tmp_path / "short.parquet"))
    holed = table.set_column(table.schema.get_field_index("rel_path"), "rel_path",
                             pa.array([None, "v.mp4"], pa.string()))
    pq.write_table(holed, tmp_path / "holed.parquet")
    with pytest.raises(ValueError, match="holed.parquet: snapshot rows without rel_path"):
        snapshot.read_snapshot(str(tmp_path / "holed.parquet"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="junk.parquet: not a Parquet file"):
        snapshot.read_snapshot(str(tmp_path / "junk.parquet"))


def test_an_output_without_a_manifest_is_refused_naming_the_command(tmp_path):
    with pytest.raises(snapshot.NoManifestError, match="curation-assets package manifest --output-path"):
        snapshot.snapshot_of(str(tmp_path))


def test_an_unreadable_fragment_is_left_out_with_a_problem_and_the_other_videos_are_kept(tmp_path):
    folder = tmp_path / manifest.MANIFEST_DIR
    folder.mkdir()
    good = {**_row("good.mp4", 0, 2), "windows": [{"start_frame": 0, "end_frame": 5, "preview_url": None,
                                                   "captions": [{"model": "qwen", "text": "a dog"},
                                                                {"model": "other", "text": ""}],
                                                   "enhanced_captions": []}]}
    pq.write_table(pa.Table.from_pylist([good], schema=manifest.SCHEMA),
                   folder / f"{manifest.fragment_name('good.mp4')}.parquet")
    broken = folder / f"{manifest.fragment_name('broken.mp4')}.parquet"
    broken.write_bytes(b"cut short")
    (folder / "notes.parquet").write_bytes(b"not a fragment name: not read")
    snap = snapshot.snapshot_of(str(tmp_path))
    assert snap.table.column("rel_path").to_pylist() == ["good.mp4"]
    assert snap.table.column("caption_models").to_pylist() == [["qwen"]]  # an empty text is no caption
    assert any(str(broken) in p and "not read" in p for p in snap.problems)
    assert not any("notes.parquet" in p for p in snap.problems)
