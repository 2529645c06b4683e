"""The writer in core (``core.writer``), without Dagster: listings independent of the output's size,
moves instead of copies, an interrupted write completed by the next one, and previous documents
treated as untrusted."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from curation_assets.core import layout, storage, temp_files, writer
from curation_assets.core.model import clip_uuid
from curation_assets.core.options import PipelineOptions
from curation_assets.models.video import process_video
from curation_assets.core.work import VideoSpill, WorkArea

from .layout_checks import all_files, check_layout, work_files
from .video_factory import make_video


def _process(video: Path, input_dir: Path, out: str, area: WorkArea, **overrides):
    settings = dict(input_path=str(input_dir), output_path=out, fixed_stride_split_duration=2.0,
                    fixed_stride_min_clip_length_s=1.0, generate_embeddings="off")
    options = PipelineOptions(**{**settings, **overrides})
    rel = storage.relative_to(str(input_dir), str(video))
    result = process_video(str(video), rel, lambda: open(video, "rb"), options,
                           spill=VideoSpill(area, str(video), out))
    files = layout.video_files(result, out, upload_clips=options.upload_clips, dry_run=options.dry_run,
                               chunk_budget=options.chunk_duration_budget, pipeline=options.record())
    return result, files


@pytest.fixture()
def video(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return make_video(folder / "a.mp4", seconds=5, fps=25, width=256, height=256, audio=True)


def _count_listings(monkeypatch) -> list[str]:
    """Record every directory listing made through the storage layer or the os module."""
    listed: list[str] = []
    real_find, real_scandir, real_listdir, real_walk = storage._find_files, os.scandir, os.listdir, os.walk

    def find(fs, path):
        listed.append(path)
        return real_find(fs, path)

    def scandir(path="."):
        listed.append(str(path))
        return real_scandir(path)

    def listdir(path="."):
        listed.append(str(path))
        return real_listdir(path)

    def walk(top, *a, **k):
        listed.append(str(top))
        return real_walk(top, *a, **k)

    monkeypatch.setattr(storage, "_find_files", find)
    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "walk", walk)
    return listed


def test_listings_do_not_depend_on_what_else_the_output_holds(video, tmp_path, monkeypatch):
    counts = []
    for crowded in (False, True):
        out = tmp_path / f"out{int(crowded)}"
        area = WorkArea(str(out / "_work"), str(out))
        if crowded:  # 1,000 files of other videos in the shared flat folders
            for d in (layout.CLIPS, layout.METAS):
                (out / d).mkdir(parents=True)
                for i in range(500):
                    (out / d / f"{uuid.uuid4()}.{'mp4' if d == layout.CLIPS else 'json'}").write_bytes(b"x")
        for _ in range(2):  # a first write, then a re-write over it
            result, files = _process(video, video.parent, str(out), area)
            listed = _count_listings(monkeypatch)
            writer.write_video(result, files, str(out), area)
            monkeypatch.undo()
            counts.append(len(listed))
            shared = {str(out / d) for d in layout.ALL_DIRECTORIES}
            assert not shared & {p.rstrip("/") for p in listed}, listed
    assert counts[:2] == counts[2:], counts


def test_clips_are_moved_not_copied_and_the_work_area_keeps_no_bytes(video, tmp_path):
    out = tmp_path / "out"
    area = WorkArea(str(out / "_work"), str(out))
    result, files = _process(video, video.parent, str(out), area)
    spilled = result.clips[0].encoded
    inode = os.stat(spilled.path).st_ino
    writer.write_video(result, files, str(out), area)
    target = out / layout.clip_file(result.clips[0])
    assert os.stat(target).st_ino == inode  # the same file, renamed
    assert not any(f.endswith((".mp4", ".webp")) for f in work_files(out))
    check_layout(out, video.parent, ["a.mp4"])
    # the reference kept by the step value still finds the bytes (for a writer-only re-run)
    assert spilled.locate() == str(target) and spilled.read() == target.read_bytes()


def test_a_write_killed_midway_is_completed_by_the_next_whatever_its_settings(video, tmp_path, monkeypatch):
    out = tmp_path / "out"
    area = WorkArea(str(out / "_work"), str(out))
    result, files = _process(video, video.parent, str(out), area)
    real_put = writer._put

    def put(output_path, rel, data, *checks):
        if rel.startswith(layout.METAS):
            raise KeyboardInterrupt("killed writing metas")  # the process dies after the clips and previews
        return real_put(output_path, rel, data, *checks)

    monkeypatch.setattr(writer, "_put", put)
    with pytest.raises(KeyboardInterrupt, match="killed writing metas"):
        writer.write_video(result, files, str(out), area)
    monkeypatch.undo()
    written = all_files(out)
    assert any(f.startswith("clips/") for f in written) and not any(f.startswith("processed_") for f in written)
    # the next write has other settings: other spans, other ids; the killed write's clips must go
    result2, files2 = _process(video, video.parent, str(out), area, fixed_stride_split_duration=5.0)
    assert not {str(c.uuid) for c in result.clips} & {str(c.uuid) for c in result2.clips}
    writer.write_video(result2, files2, str(out), area)
    check_layout(out, video.parent, ["a.mp4"])
    assert sorted(all_files(out)) == sorted(rel for d in files2.files.values() for rel in d)


def test_leftover_temporary_files_are_found_by_name(video, tmp_path):
    out = tmp_path / "out"
    area = WorkArea(str(out / "_work"), str(out))
    result, files = _process(video, video.parent, str(out), area)
    planted = []
    for rel in (layout.clip_file(result.clips[0]), layout.video_file("a.mp4")):
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        leftover = target.parent / temp_files.temp_name_for(str(target))
        leftover.write_bytes(b"half a file")
        planted.append(leftover)
    unrelated = out / layout.CLIPS / temp_files.temp_file_name()  # someone else's: never touched
    unrelated.write_bytes(b"not ours")
    writer.write_video(result, files, str(out), area)
    assert not any(p.exists() for p in planted)
    assert unrelated.exists()


def _chunk_path(out: Path) -> Path:
    return out / layout.chunk_file("a.mp4", 0)


def test_tampered_documents_never_remove_what_the_video_does_not_own(video, tmp_path):
    out = tmp_path / "out"
    area = WorkArea(str(out / "_work"), str(out))
    result, files = _process(video, video.parent, str(out), area)
    writer.write_video(result, files, str(out), area)
    # another video's files, and a file outside the output
    other = make_video(video.parent / "b.mp4", seconds=3, fps=25, width=256, height=256)
    r_other, f_other = _process(other, video.parent, str(out), area)
    writer.write_video(r_other, f_other, str(out), area)
    before_other = {f for f in all_files(out) if any(str(c.uuid) in f for c in r_other.clips)} | {
        layout.video_file("b.mp4"), layout.chunk_file("b.mp4", 0)}
    outside = tmp_path / "somewhere" / "x.mp4"
    outside.parent.mkdir()
    outside.write_bytes(b"precious")
    (tmp_path / "somewhere" / "x").mkdir()
    (tmp_path / "somewhere" / "x" / "y.webp").write_bytes(b"precious")

    chunk = json.loads(_chunk_path(out).read_text())
    chunk["clips"] += ["../../somewhere/x", "", "/etc/passwd", str(r_other.clips[0].uuid), 7, None,
                       str(uuid.uuid4()).upper()]
    chunk["filtered_clips"] = ["../../../somewhere/x", str(r_other.clips[1].uuid)]
    _chunk_path(out).write_text(json.dumps(chunk))
    # and a forged meta claiming b's clip for a (wrong span for a's source: its id does not verify)
    forged = json.loads((out / layout.METAS / f"{r_other.clips[0].uuid}.json").read_text())
    forged["source_video"] = str(video)
    (out / layout.METAS / f"{r_other.clips[0].uuid}.json").write_text(json.dumps(forged))

    result2, files2 = _process(video, video.parent, str(out), area, fixed_stride_split_duration=5.0)
    report = writer.write_video(result2, files2, str(out), area)
    assert outside.read_bytes() == b"precious" and (tmp_path / "somewhere" / "x" / "y.webp").exists()
    assert all((out / f).exists() for f in before_other), "another video's files were removed"
    assert report.problems and "not this video's" in report.problems[0]


def test_previous_ids_are_verified_against_the_source_and_span(tmp_path):
    source = "/data/in/a.mp4"
    uid = str(clip_uuid(source, 0, 50))
    meta = {"span_uuid": uid, "source_video": source, "duration_span": [0.0, 2.0], "framerate_source": 25.0}
    assert layout_read_verified(uid, source, meta) == (0, 50)
    assert layout_read_verified(uid, "/data/in/b.mp4", {**meta, "source_video": "/data/in/b.mp4"}) is None
    assert layout_read_verified(uid, source, {**meta, "duration_span": [2.0, 4.0]}) is None
    assert layout_read_verified(uid.upper(), source, {**meta, "span_uuid": uid.upper()}) is None
    assert layout_read_verified("../x", source, {**meta, "span_uuid": "../x"}) is None


def layout_read_verified(uid, source, meta):
    from curation_assets.core.layout_read import verified_span

    return verified_span(uid, source, meta)


def test_a_second_writer_of_the_same_video_waits_for_the_first(video, tmp_path):
    out = tmp_path / "out"
    area = WorkArea(str(out / "_work"), str(out))
    result, files = _process(video, video.parent, str(out), area)
    with storage.lock(area.lock_url(str(video))) as held:
        assert held
        with pytest.raises(writer.VideoBusy, match="another run"):
            writer.write_video(result, files, str(out), area, lock_wait_s=0.2)
    writer.write_video(result, files, str(out), area)  # free again
    check_layout(out, video.parent, ["a.mp4"])
