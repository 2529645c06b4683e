"""The one document schema (``core.documents``): what the writer writes passes both questions (may
it be used, does it match the spec), and each broken rule is named by the question that asks it."""

from __future__ import annotations

import copy

from curation_assets.core import documents as d
from curation_assets.core import layout

from .test_keys_split_layout import make_result

CAPTIONS = layout.CaptionConfig(("qwen",), ())


def _written():
    result = make_result(2)
    clip = result.clips[0]
    meta = layout.clip_meta_doc(clip, result.metadata, "/out", CAPTIONS)
    chunk = layout.chunk_doc(result, 0, result.clips, CAPTIONS)
    video = layout.video_doc(result, 1)
    return result, clip, meta, chunk, video


def test_the_writers_documents_pass_both_questions():
    result, clip, meta, chunk, video = _written()
    assert d.meta_unusable(meta, str(clip.uuid), result.source_video) is None
    assert d.meta_departures(meta, CAPTIONS.caption_models, ()) == []
    assert d.video_unusable(video) is None
    assert d.video_departures(video) == []
    assert d.chunk_unusable(chunk, 0, result.source_video) is None
    assert d.chunk_clip_ids(chunk) == [(str(c.uuid), True) for c in result.clips]


def test_a_meta_that_cannot_be_used_is_refused_with_the_reason():
    result, clip, meta, _, _ = _written()
    uid, source = str(clip.uuid), result.source_video
    for edit, why in [
        (lambda m: m.update(span_uuid="x"), "span_uuid is not the clip's id"),
        (lambda m: m["windows"][0].update(start_frame=-1), "window frames -1, 249"),
        (lambda m: m["windows"][0].update(qwen_caption=3), "window qwen_caption is not text"),
        (lambda m: m.update(num_bytes=True), "num_bytes True is not a count"),
        (lambda m: m.update(motion_score={"global_mean": "0"}), "motion_score is not"),
    ]:
        broken = copy.deepcopy(meta)
        edit(broken)
        assert (d.meta_unusable(broken, uid, source) or "").startswith(why), why


def test_a_usable_meta_is_still_held_to_the_spec():
    """A zero width passes the reader's gate (a count) but not the spec (a positive integer); keys
    out of order or unknown, and a window that does not start at frame 0, are departures only."""
    result, clip, meta, _, _ = _written()
    broken = {"zzz": 1, **copy.deepcopy(meta)}
    broken["width"] = 0
    broken["windows"][0]["start_frame"] = 5
    assert d.meta_unusable(broken, str(clip.uuid), result.source_video) is None
    found = d.meta_departures(broken, CAPTIONS.caption_models, ())
    assert "keys not in the spec: 'zzz'" in found
    assert "width 0 is not a positive integer" in found
    assert any(f.startswith("window 0 starts at frame 5, expected 0") for f in found), found


def test_video_and_chunk_rules():
    result, _, _, chunk, video = _written()
    assert d.video_unusable({**video, "num_clip_chunks": d.MAX_CHUNKS + 1}).startswith("num_clip_chunks 100001")
    assert d.video_departures({**video, "duration": "5"}) == ["duration '5' has the wrong type"]
    assert d.video_departures({**video, "errors": ["x"]}) == [
        "error_details does not give a message for exactly the keys in errors"]
    assert d.chunk_unusable(chunk, 1, result.source_video) == "clip_chunk_index 0, expected 1"
    bad = {**chunk, "filtered_clips": ["../x"]}
    assert d.chunk_unusable(bad, 0, result.source_video).startswith("filtered_clips holds ids that are not canonical")
