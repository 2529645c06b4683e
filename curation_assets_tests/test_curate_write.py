"""The writer's per-video decisions without Dagster (``curate.write_one``), the per-video outcome
(``core.outcomes``) and the one failure a batch's outcomes make (``defs.shared.outcomes``)."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from curation_assets import curate
from curation_assets.core import cancel, layout, steps
from curation_assets.core.options import PipelineOptions
from curation_assets.core.outcomes import VideoFailed, VideoOutcome, failed_reasons, one_video
from curation_assets.core.work import WorkArea
from curation_assets.defs.shared.outcomes import batch_failure

from .video_factory import make_video


def _options(tmp_path, **kw) -> PipelineOptions:
    base = dict(input_path=str(tmp_path / "in"), output_path=str(tmp_path / "out"), fixed_stride_split_duration=2.0,
                fixed_stride_min_clip_length_s=1.0, generate_embeddings="off", generate_previews=False)
    return PipelineOptions(**{**base, **kw})


def _clips(tmp_path, name: str, options: PipelineOptions, area: WorkArea):
    source = str(tmp_path / "in" / name)
    result, _ = steps.clips_of_video(source, name, options, area)
    return result


def test_write_one_writes_a_video_and_documents_an_unreadable_one(tmp_path):
    (tmp_path / "in").mkdir()
    make_video(tmp_path / "in" / "a.mp4", seconds=3, fps=25, width=160, height=96)
    (tmp_path / "in" / "broken.mp4").write_bytes(b"not a video at all")
    options = _options(tmp_path)
    area = WorkArea.for_options(options)

    done = curate.write_one("a.mp4", _clips(tmp_path, "a.mp4", options, area), {}, options, area)
    assert done.outcome.ok and not done.deferred and done.report is not None
    assert done.report.files[layout.PROCESSED_VIDEOS] == 1 and done.report.files[layout.CLIPS] == 2

    broken = curate.write_one("broken.mp4", _clips(tmp_path, "broken.mp4", options, area), {}, options, area)
    assert not broken.outcome.ok and broken.outcome.documented and broken.document_written
    doc = json.loads((tmp_path / "out" / layout.video_file("broken.mp4")).read_text())
    assert doc["errors"] and broken.outcome.reason == "; ".join(f"{k}: {v}" for k, v in doc["error_details"].items())


def test_write_one_refuses_stale_values_and_a_failed_step_and_documents_the_failure(tmp_path):
    (tmp_path / "in").mkdir()
    make_video(tmp_path / "in" / "a.mp4", seconds=3, fps=25, width=160, height=96)
    options = _options(tmp_path)
    area = WorkArea.for_options(options)
    result = _clips(tmp_path, "a.mp4", options, area)

    other = _options(tmp_path, fixed_stride_split_duration=1.5)
    stale = curate.write_one("a.mp4", result, {}, other, area)
    assert stale.outcome.error == "stale" and "changed: fixed_stride_split_duration" in stale.outcome.message
    assert not stale.outcome.documented and not (tmp_path / "out" / layout.video_file("a.mp4")).exists()

    failed_step = curate.skipped_step({"a.mp4": result}, options, "clip_embeddings", "")
    failed_step["a.mp4"].video_error = "embedding failed: RuntimeError: out of memory"
    done = curate.write_one("a.mp4", result, {"clip_embeddings": failed_step["a.mp4"]}, options, area)
    assert (done.outcome.error, done.outcome.reason) == ("embeddings", "embeddings: embedding failed: RuntimeError: "
                                                                       "out of memory")
    assert done.outcome.documented  # no good output was there: the document records the failure
    doc = json.loads((tmp_path / "out" / layout.video_file("a.mp4")).read_text())
    assert doc["error_details"]["embeddings"].startswith("embedding failed")


def test_one_video_keeps_a_failure_to_its_video_and_lets_a_stop_through():
    value, ok = one_video("a", lambda: 1)
    assert value == 1 and ok.ok
    _, refused = one_video("b", lambda: (_ for _ in ()).throw(VideoFailed("source", "gone", reason="refused: gone")))
    _, broken = one_video("c", lambda: {}["missing"])
    assert (refused.error, refused.reason) == ("source", "refused: gone")
    assert (broken.error, broken.reason) == ("error", "KeyError: 'missing'")
    assert failed_reasons([ok, refused, broken]) == {"b": "refused: gone", "c": "KeyError: 'missing'"}

    def stopped():
        raise cancel.Interrupted("stop")

    with pytest.raises(cancel.Interrupted, match="stop"):
        one_video("d", stopped)


def test_batch_failure_names_each_failed_video_once():
    outcomes = [VideoOutcome("a"), VideoOutcome.failed("b", "write", "disk full"), VideoOutcome.failed("c", "key", "x")]
    failure = batch_failure(outcomes, "failed (their partitions failed; the others were written)",
                            also={"a": "layout checks failed: x"}, also_what="written but failing their layout checks")
    assert isinstance(failure, dg.Failure) and not failure.allow_retries
    assert failure.description == ("2 video(s) failed (their partitions failed; the others were written);\n"
                                   "1 video(s) written but failing their layout checks:\n"
                                   "- b: write: disk full\n- c: key: x\n- a: layout checks failed: x")
    assert failure.metadata["failed_partitions"].value == {"b": "write: disk full", "c": "key: x"}
    assert batch_failure([VideoOutcome("a")], "not removed") is None
