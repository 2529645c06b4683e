"""``core.pipeline.process_video`` without Dagster: the ids one video's clips get, and what a
failure of the whole video leaves in its result."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from curation_assets.core.layout import video_doc
from curation_assets.core.options import PipelineOptions
from curation_assets.models.video import process_video

from .layout_checks import reference_fixed_stride_ids
from .test_probe import make_constant_rate_video
from .video_factory import make_video


def _process(path: Path, **settings):
    options = PipelineOptions(input_path=str(path.parent), output_path=str(path.parent / "out"),
                              generate_previews=False, **settings)
    return process_video(str(path), path.name, lambda: open(path, "rb"), options)


def test_ntsc_source_gets_the_reference_clip_ids(tmp_path):
    """2 s spans at 29.97 fps: ``int(seconds * fps)`` and ``round`` give different frames (59 or
    60), and the printed duration gives 598 frames, not 599: the ids are the reference's."""
    source = make_constant_rate_video(tmp_path / "ntsc.mov", 599, Fraction(30000, 1001))
    result = _process(source, fixed_stride_split_duration=2.0, motion_filter="disable")
    assert not result.errors
    assert (result.metadata.num_frames, result.metadata.duration) == (598, 19.986633)
    expected = reference_fixed_stride_ids(str(source), 598, 30000 / 1001, 2.0, 2.0)
    assert len(expected) == 9  # the last 1.95 s is under the 2 s minimum
    assert [str(c.uuid) for c in result.clips] == list(expected)
    assert all(c.encoded and not c.errors for c in result.clips)


def _zero_media_data(path: Path) -> None:
    """Overwrite the payload of every ``mdat`` box with zeros: the index (``moov``) still opens and
    probes, no packet decodes."""
    data = bytearray(path.read_bytes())
    pos = 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), bytes(data[pos + 4 : pos + 8])
        assert size >= 8, "a box size this test does not handle"
        if kind == b"mdat":
            data[pos + 8 : pos + size] = bytes(size - 8)
        pos += size
    path.write_bytes(data)


def test_a_source_that_probes_but_does_not_decode_fails_as_transcode(tmp_path):
    source = make_video(tmp_path / "blank data.mp4", seconds=5.0, audio=False)
    _zero_media_data(source)
    result = _process(source, fixed_stride_split_duration=2.0)
    assert result.metadata is not None and result.metadata.is_complete()  # it probed
    assert list(result.errors) == ["transcode"]
    assert str(source) in result.errors["transcode"] and "no video frame could be decoded" in result.errors["transcode"]
    # the spans were planned; each clip is recorded without bytes, as the reference does
    assert len(result.clips) == 2
    assert all(c.errors == {"buffer": "empty"} and not c.encoded for c in result.clips)
    doc = video_doc(result, 1)
    assert doc["errors"] == ["transcode"] and doc["num_frames"] == 125
