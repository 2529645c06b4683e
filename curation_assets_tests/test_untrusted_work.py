"""The work area and the writer's names are untrusted (issue 18): a stored step value refers to
bytes only inside its own work folder and only for the output it was made for; every name the
writer derives passes the readers' component check; a claimed chunk count is bounded by the
documents that exist. Real videos, real transcodes and writes, real files planted as victims."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from curation_assets.cli import run_pipeline
from curation_assets.core import filters, layout, layout_read, steps, storage, writer
from curation_assets.core.options import PipelineOptions, step_digest
from curation_assets.core.work import WorkArea
from curation_assets.models import video

from .layout_checks import all_files, check_layout
from .video_factory import make_video

CLIPS = steps.CLIPS_STEP


def _options(videos: Path, out: Path, **kw) -> PipelineOptions:
    base = dict(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=2.0,
                fixed_stride_min_clip_length_s=1.0, generate_embeddings="off", generate_previews=True)
    return PipelineOptions(**{**base, **kw})


def _curate(source: str, rel: str, options: PipelineOptions, area: WorkArea) -> tuple[bool, writer.WriteReport]:
    """The transcode step (reusing a stored value when it may) and the writer, as the assets run
    them: ``(reused, report)``."""
    result, reused = video.clips_of_video(source, rel, options, area)
    prepared = steps.prepare_write(result, {}, options)
    assert prepared.writable, prepared.failure
    filters.annotate_and_filter(result, options)
    files = layout.video_files(result, options.output_path, upload_clips=options.upload_clips,
                               chunk_budget=options.chunk_duration_budget, pipeline=options.record())
    return reused, writer.write_video(result, files, options.output_path, area)


def _leaves(doc: Any, path: tuple = ()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, i))
    elif isinstance(doc, str):
        yield path, doc


def _set(doc: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def curated(tmp_path, request):
    """Two videos written once into one output; ``a``'s stored transcode value is what gets tampered.
    With ``request.param`` true the value also holds the model steps' frames (embeddings on: the
    transcode spills them; no model is needed for that)."""
    videos = tmp_path / "in"
    (videos / "sub").mkdir(parents=True)
    make_video(videos / "sub" / "a.mp4", seconds=2, fps=25, width=128, height=96)
    make_video(videos / "b.mp4", seconds=2, fps=25, width=128, height=96)
    out = tmp_path / "out"
    options = _options(videos, out, generate_embeddings="on" if getattr(request, "param", False) else "off")
    area = WorkArea.for_options(options)
    for rel in ("sub/a.mp4", "b.mp4"):
        _curate(str(videos / rel), rel, options, area)
    return videos, out, options, area


@pytest.mark.parametrize("curated", [False, True], ids=["clips_and_previews", "with_model_frames"], indirect=True)
def test_every_path_in_a_tampered_stored_value_is_refused_and_touches_nothing_outside(curated, tmp_path, caplog):
    videos, out, options, area = curated
    source, rel = str(videos / "sub" / "a.mp4"), "sub/a.mp4"
    other_source = str(videos / "b.mp4")
    value_file = Path(area.value_url(source, CLIPS, step_digest(options, CLIPS)))
    b_files = {f: (out / f).read_bytes() for f in all_files(out)
               if f in (layout.video_file("b.mp4"), layout.chunk_file("b.mp4", 0))}
    b_ids = json.loads((out / layout.chunk_file("b.mp4", 0)).read_text())["clips"]
    b_files |= {f: (out / f).read_bytes() for f in all_files(out) if any(uid in f for uid in b_ids)}
    assert len(b_files) >= 4

    victims = tmp_path / "victims"
    victims.mkdir()
    stored = json.loads(value_file.read_text())
    fields = [(path, text) for path, text in _leaves(stored) if "/" in text]
    named = {path for path, _ in fields}
    # the byte references of the clip and of its preview, the rel_path, every source_video and the
    # identity are all among the enumerated fields
    assert {("value", "rel_path"), ("value", "source_video"), ("value", "clips", 0, "source_video"),
            ("value", "clips", 0, "encoded", "url"), ("value", "clips", 0, "encoded", "alternates", 0),
            ("value", "clips", 0, "encoded", "alternates", 1), ("output",), ("source",),
            ("value", "clips", 0, "windows", 0, "preview", "url"),
            ("value", "clips", 0, "windows", 0, "preview", "alternates", 0)} <= named, sorted(named, key=str)
    frames = stored["value"]["clips"][0]["model_frames"]
    assert (frames is not None) == (options.generate_embeddings == "on")
    assert frames is None or ("value", "clips", 0, "model_frames", "url") in named
    sizes = {".mp4": stored["value"]["clips"][0]["encoded"]["size"],
             ".webp": stored["value"]["clips"][0]["windows"][0]["preview"]["size"],
             ".npz": frames["size"] if frames else 0}

    def victim_for(text: str) -> Path:
        """A file outside the work area and the output of the size the field's bytes have (a move
        by size would take it)."""
        suffix = Path(text).suffix
        path = victims / f"victim{suffix or '.bin'}"
        path.write_bytes(os.urandom(sizes.get(suffix, 100)))
        return path

    tried = 0
    for path, text in fields:
        variants: list[str] = []
        if text.startswith("/"):
            victim = victim_for(text)
            parent = Path(text).parent
            ups = len(parent.relative_to(tmp_path).parts) if parent.is_relative_to(tmp_path) else 0
            variants += [str(victim), f"{parent}/{'../' * ups}victims/{victim.name}"]  # plain, and by ../
            if text == source:
                variants.append(other_source)  # another video's source: its clip names
        else:  # a relative name: the rel_path
            (victims / "x.mp4.json").write_text("precious")
            variants += ["../../victims/x.mp4", "sub/../../../victims/x.mp4", str(victims / "x.mp4"), "b.mp4"]
        for bad in variants:
            tried += 1
            doc = json.loads(value_file.read_text())
            _set(doc, path, bad)
            value_file.write_text(json.dumps(doc))
            before = _digests(victims)
            in_settings_record = path[:2] == ("value", "pipeline")  # a record of settings, never a path read
            caplog.clear()
            if not in_settings_record:
                assert area.load(source, CLIPS, step_digest(options, CLIPS)) is None, (path, bad)
                field = ".".join(str(p) for p in path[1:] if not isinstance(p, int)) or path[0]
                assert field.split(".")[-1] in caplog.text, (path, caplog.text)
            reused, report = _curate(source, rel, options, area)
            assert not (reused and not in_settings_record), (path, bad)
            assert _digests(victims) == before, (path, bad)
            assert {f: (out / f).read_bytes() for f in b_files if (out / f).exists()} == b_files, (path, bad)
            summary = check_layout(out, videos, ["sub/a.mp4", "b.mp4"])
            assert summary["sub/a.mp4"]["passed"] == 1 and summary["b.mp4"]["passed"] == 1, (path, bad)
            assert "errors" not in json.loads((out / layout.video_file(rel)).read_text())
    assert tried >= 2 * len(fields)


def test_the_writer_checks_every_name_before_writing(curated, tmp_path):
    videos, out, options, area = curated
    source = str(videos / "sub" / "a.mp4")
    result, _ = video.clips_of_video(source, "sub/a.mp4", options, area)
    (tmp_path / "x.mp4.json").write_text("precious")
    before = {f: (out / f).read_bytes() for f in all_files(out)}
    for rel, why in (("../../x.mp4", r"has a '\.\.' segment"), ("../x.mp4", r"has a '\.\.' segment"),
                     ("/etc/x.mp4", "is absolute"), ("s3://other/x.mp4", "is a URL"), ("sub//a.mp4", "has an empty path segment")):
        result.rel_path = rel
        files = layout.video_files(result, options.output_path, pipeline=options.record())
        with pytest.raises(ValueError, match=why):
            writer.write_video(result, files, options.output_path, area)
        with pytest.raises(ValueError, match=why):
            writer.write_failure_document(result, ("write", "x"), options.output_path, area, options.record())
    result.rel_path = "sub/a.mp4"
    result.clips[0].source_video = str(videos / "b.mp4")  # would write onto b's clip names
    files = layout.video_files(result, options.output_path, pipeline=options.record())
    with pytest.raises(ValueError, match="another source video"):
        writer.write_video(result, files, options.output_path, area)
    assert (tmp_path / "x.mp4.json").read_text() == "precious"
    assert {f: (out / f).read_bytes() for f in all_files(out)} == before


def test_a_symlink_put_in_place_of_spilled_bytes_is_never_moved(curated, tmp_path):
    videos, out, options, area = curated
    source = str(videos / "sub" / "a.mp4")
    result, reused = video.clips_of_video(source, "sub/a.mp4", options, area, reuse=False)
    assert not reused
    spilled = Path(result.clips[0].encoded.path)
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(os.urandom(spilled.stat().st_size))
    spilled.unlink()
    spilled.symlink_to(secret)
    filters.annotate_and_filter(result, options)
    files = layout.video_files(result, options.output_path, pipeline=options.record())
    with pytest.raises(ValueError, match="symbolic link"):
        writer.write_video(result, files, options.output_path, area)
    assert secret.exists() and not (out / layout.clip_file(result.clips[0])).is_symlink()
    # and the transcode step does not reuse a value whose bytes are a link: it makes them again
    assert video.clips_of_video(source, "sub/a.mp4", options, area)[1] is False


@pytest.mark.slow
def test_two_outputs_sharing_one_work_path_never_see_each_others_values(tmp_path):
    videos = tmp_path / "in"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_video(videos / name, seconds=2, fps=25, width=128, height=96)
    work = tmp_path / "shared-work"
    outs = {name: tmp_path / name for name in ("A", "B")}
    done: set[str] = set()
    for name in ("A", "B", "A"):
        report = io.StringIO()
        rc = run_pipeline(_options(videos, outs[name], work_path=str(work)), home=str(tmp_path / "home"), stream=report)
        assert rc == 0 and "FAILED" not in report.getvalue(), report.getvalue()
        done.add(name)
        for each in sorted(done):  # the output written before keeps every file its documents list
            summary = check_layout(outs[each], videos, ["a.mp4", "b.mp4"])
            assert all(v["passed"] == 1 for v in summary.values()), (name, each, summary)
    folders = {d.name for d in (work / "videos").iterdir()}
    assert len(folders) == 4  # a work folder per output and video


def test_a_claimed_chunk_count_costs_only_the_documents_that_exist(curated, monkeypatch):
    videos, out, options, area = curated
    source, rel = str(videos / "sub" / "a.mp4"), "sub/a.mp4"
    doc_path = out / layout.video_file(rel)
    doc = json.loads(doc_path.read_text())
    doc["num_clip_chunks"] = 100_000
    doc_path.write_text(json.dumps(doc))
    reads: list[str] = []
    real_read = storage.read_bytes

    def counting(url):
        reads.append(url)
        return real_read(url)

    monkeypatch.setattr(storage, "read_bytes", counting)
    chunk_reads = lambda: sum(1 for u in reads if "/processed_clip_chunks/" in u)  # noqa: E731
    video = layout_read.read_video_layout(str(out), rel, source)
    assert chunk_reads() <= 20, chunk_reads()  # of 100,000 claimed
    assert any("100000" in p for p in video.problems) and len(video.clips) == 1
    reads.clear()
    _, report = _curate(source, rel, options, area)
    assert chunk_reads() <= 20, chunk_reads()  # of 100,000 claimed
    assert any("claim 100000 chunks" in p for p in report.problems), report.problems
    monkeypatch.undo()
    assert json.loads(doc_path.read_text())["num_clip_chunks"] == 1
    check_layout(out, videos, ["sub/a.mp4", "b.mp4"])


def test_a_claimed_chunk_count_on_object_storage_costs_only_the_documents_that_exist(curated, s3_bucket, monkeypatch):
    """The same bound where each probe is a request (moto's S3 server)."""
    from curation_assets.core.model import VideoResult

    videos, out, options, _ = curated
    source, rel = str(videos / "sub" / "a.mp4"), "sub/a.mp4"
    base = f"{s3_bucket}/out"
    for f in all_files(out):
        if not f.startswith("_work/"):
            storage.write_bytes_atomic(f"{base}/{f}", (out / f).read_bytes())
    doc = json.loads((out / layout.video_file(rel)).read_text())
    storage.write_bytes_atomic(f"{base}/{layout.video_file(rel)}", json.dumps({**doc, "num_clip_chunks": 100_000}).encode())
    asked: list[str] = []
    real_many, real_read = layout_read._read_many, storage.read_bytes

    def many(output_path, rels):
        asked.extend(rels)
        return real_many(output_path, rels)

    def read(url):
        asked.append(url)
        return real_read(url)

    monkeypatch.setattr(layout_read, "_read_many", many)
    monkeypatch.setattr(storage, "read_bytes", read)
    video = layout_read.read_video_layout(base, rel, source)
    assert sum(1 for r in asked if "processed_clip_chunks/" in r) <= 20 and len(video.clips) == 1
    asked.clear()
    owned = writer.previous_files(base, VideoResult(source, rel, None), WorkArea(f"{s3_bucket}/work", base))
    assert sum(1 for r in asked if "processed_clip_chunks/" in r) <= 20
    assert any("claim 100000 chunks" in p for p in owned.problems) and len(owned.clips) == 1


@pytest.mark.slow
def test_a_cli_rerun_over_a_tampered_work_area_ends_complete_and_touches_nothing_outside(tmp_path):
    videos = tmp_path / "in"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=2, fps=25, width=128, height=96)
    out = tmp_path / "out"
    options = _options(videos, out)
    assert run_pipeline(options, home=str(tmp_path / "home"), stream=io.StringIO()) == 0
    area, source = WorkArea.for_options(options), str(videos / "a.mp4")
    value_file = Path(area.value_url(source, CLIPS, step_digest(options, CLIPS)))
    doc = json.loads(value_file.read_text())
    clip = doc["value"]["clips"][0]
    victim = tmp_path / "victim.mp4"
    victim.write_bytes(os.urandom(clip["encoded"]["size"]))  # of the clip's size: a move by size would take it
    clip["encoded"]["url"] = f"{area.bytes_dir(source)}/{'0' * 16}/../../../../../../victim.mp4"
    clip["encoded"]["alternates"][0] = str(victim)
    value_file.write_text(json.dumps(doc))
    before = victim.read_bytes()
    report = io.StringIO()
    assert run_pipeline(options, home=str(tmp_path / "home"), stream=report) == 0, report.getvalue()
    assert victim.read_bytes() == before
    check_layout(out, videos, ["a.mp4"])
    stored = json.loads(value_file.read_text())["value"]["clips"][0]["encoded"]  # computed again
    assert ".." not in stored["url"] and stored["alternates"][0] == str(out / "clips" / Path(stored["url"]).name)


def test_the_component_rule_for_stored_urls(tmp_path):
    from curation_assets.core import urls

    base = str(tmp_path / "w" / "bytes")
    assert urls.is_inside(base, f"{base}/t/x.mp4") and not urls.is_inside(base, f"{base}/../../victim")
    assert not urls.is_inside(base, f"{base}-sibling/x.mp4")  # a string prefix, not a parent
    assert urls.key_under(base, f"{base}/t/x.mp4") == "t/x.mp4"
    canonical, inside = "is not a canonical path under", "is not inside"
    for bad, why in ((f"{base}/t/../t/x.mp4", canonical), (f"{base}//t/x.mp4", canonical), (f"{base}/./t/x.mp4", canonical),
                     (f"{base}/../bytes/t/x.mp4", canonical), ("/etc/passwd", inside), (base, canonical),
                     (7, "must be a string, got int")):
        with pytest.raises(ValueError, match=why):
            urls.key_under(base, bad)
    assert urls.key_under("s3://b/w", "s3://b/w/t/x.mp4") == "t/x.mp4"
    for bad in ("s3://other/w/t/x.mp4", "s3://b/w/../x.mp4", "file:///b/w/t/x.mp4"):
        with pytest.raises(ValueError, match="is not inside 's3://b/w'"):
            urls.key_under("s3://b/w", bad)
    (tmp_path / "w" / "bytes" / "t").mkdir(parents=True)
    (tmp_path / "secret").write_bytes(b"s")
    (tmp_path / "w" / "bytes" / "t" / "x.mp4").write_bytes(b"x")
    (tmp_path / "w" / "bytes" / "t" / "link.mp4").symlink_to(tmp_path / "secret")
    (tmp_path / "w" / "bytes" / "out").symlink_to(tmp_path, target_is_directory=True)
    assert urls.regular_file_problem(base, f"{base}/t/x.mp4") is None
    assert "symbolic link" in urls.regular_file_problem(base, f"{base}/t/link.mp4")
    assert "leads outside" in urls.regular_file_problem(base, f"{base}/out/secret")
    assert "not a regular file" in urls.regular_file_problem(base, f"{base}/t")
    assert urls.regular_file_problem("s3://b/w", "s3://b/w/t/x.mp4") is None
