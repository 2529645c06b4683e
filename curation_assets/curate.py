"""The curation steps over a run's videos, in order, without Dagster: what each asset body calls.

    clips_of_videos   the transcode step of each video (``core.steps.clips_of_video``)
    aesthetic_step    CLIP + aesthetic MLP per clip                  (``models.stages``)
    embedding_step    Cosmos-Embed1 per clip that passed the filters
    caption_step      VLM captions per window of each passed clip
    write_one         one video's files of the layout, or why it is not written

Each takes ``{partition key: value}`` and handles each video on its own: a video that fails is
that video's (its ``ClipAnnotations.video_error``, its ``VideoResult.errors``, its
``core.outcomes.VideoOutcome``), and every other video goes on. It sits above ``core`` and
``models`` (it uses both; neither uses it), so a test runs the pipeline as the assets do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .core import filters, layout, steps, storage, writer
from .core.model import UNWRITABLE_FAILURES, ClipAnnotations, VideoResult
from .core.options import STEPS, PipelineOptions, step_digest
from .core.outcomes import VideoFailed, VideoOutcome
from .core.work import WorkArea
from .models import stages

NO_CLIPS = "no clips (the video failed or could not be read)"
#: model step -> the note its value carries when the setting turns it off (``skipped_step``)
OFF_NOTES = {"aesthetic_scores": "aesthetic filter off (no aesthetic_threshold)",
             "clip_embeddings": "embeddings off (generate_embeddings=off)",
             "clip_captions": "captions off (generate_captions=false)"}
Stage = Callable[[dict[str, VideoResult]], dict[str, ClipAnnotations]]


def skipped(keys: list[str], note: str) -> dict[str, ClipAnnotations]:
    """A step that computed nothing for these videos, and why (``note``)."""
    return {key: ClipAnnotations(note=note) for key in keys}


def _stamp(out: dict[str, ClipAnnotations], results: dict[str, VideoResult], options: PipelineOptions,
           step: str) -> dict[str, ClipAnnotations]:
    """Record which settings and which clips each value was computed from (checked by the writer)."""
    for key, ann in out.items():
        ann.digest = step_digest(options, step)
        ann.clips_key = results[key].stage_key
    return out


def run_stage(results: dict[str, VideoResult], stage: Stage, what: str) -> dict[str, ClipAnnotations]:
    """``stage`` over the videos that have clips to look at, each failure kept to its video."""
    usable = {k: r for k, r in results.items() if steps.usable(r)}
    out = skipped([k for k in results if k not in usable], NO_CLIPS)
    if usable:
        out.update(steps.isolated(stage, usable, what))
    return out


def with_filters_applied(results: dict[str, VideoResult], options: PipelineOptions,
                         aesthetics: dict[str, ClipAnnotations]) -> dict[str, VideoResult]:
    """Every video with the motion and aesthetic filters applied (filtered clips marked, not
    removed); the model steps after the aesthetic one take the clips that passed."""
    return {k: filters.apply_filters(r, options, aesthetics.get(k)) for k, r in results.items()}


def aesthetic_step(results: dict[str, VideoResult], options: PipelineOptions,
                   scorer: Any) -> dict[str, ClipAnnotations]:
    """The ``aesthetic_scores`` step with a loaded scorer."""
    out = run_stage(results, lambda r: stages.score_aesthetics(r, scorer), "aesthetic scoring")
    return _stamp(out, results, options, "aesthetic_scores")


def embedding_step(results: dict[str, VideoResult], options: PipelineOptions, embedder: Any,
                   aesthetics: dict[str, ClipAnnotations]) -> dict[str, ClipAnnotations]:
    """The ``clip_embeddings`` step with a loaded embedder, over the clips that passed."""
    out = run_stage(with_filters_applied(results, options, aesthetics), lambda r: stages.embed(r, embedder),
                    "embedding")
    return _stamp(out, results, options, "clip_embeddings")


def caption_step(results: dict[str, VideoResult], options: PipelineOptions, client: Any,
                 aesthetics: dict[str, ClipAnnotations]) -> dict[str, ClipAnnotations]:
    """The ``clip_captions`` step through a caption client, over the clips that passed."""
    out = run_stage(with_filters_applied(results, options, aesthetics),
                    lambda r: stages.caption(r, client, enhance=options.enhance_captions), "captioning")
    return _stamp(out, results, options, "clip_captions")


def skipped_step(results: dict[str, VideoResult], options: PipelineOptions, step: str,
                 note: str | None = None) -> dict[str, ClipAnnotations]:
    """A model step that is off (or has no weights, in auto mode) for every video of the run;
    ``note`` None: the step's setting turned it off (``OFF_NOTES``)."""
    return _stamp(skipped(list(results), OFF_NOTES[step] if note is None else note), results, options, step)


# ---------------------------------------------------------------------------------------------
# The writer, one video at a time


@dataclass
class Write:
    """One video's write: its outcome, the result as written, and what was written."""

    outcome: VideoOutcome
    result: VideoResult
    report: writer.WriteReport | None = None
    deferred: bool = False  # another run is writing it now: try it again after the rest of the batch
    document_problem: str | None = None  # the failure could not be recorded in its document either

    @property
    def document_written(self) -> bool:
        return self.outcome.documented


def write_one(key: str, result: VideoResult, annotations: dict[str, ClipAnnotations | None], options: PipelineOptions,
              area: WorkArea, *, defer_if_busy: bool = True) -> Write:
    """Write one video's files of the layout, or decide why not (``annotations``: model step ->
    value). In order: the step values are current and did not fail (``steps.prepare_write``);
    another run writing it defers it (``defer_if_busy``); the filters and annotations go onto the
    clips; its files are written (``core.writer``); an unreadable video is documented as the
    reference does, and failed. A failed video's ``processed_videos`` document records the failure
    when it can (never over a good output of an earlier run)."""
    prepared = steps.prepare_write(result, annotations, options)
    result = prepared.result
    if prepared.writable and defer_if_busy and area.writer_busy(result.source_video):
        return Write(VideoOutcome(key), result, deferred=True)
    try:
        if prepared.failure is not None:
            raise VideoFailed(*prepared.failure)
        report = _write(result, annotations, options, area)
        if result.metadata is None:  # nothing could be read as video: documented as the reference does, failed
            error, message = next(iter(result.errors.items()), ("metadata", "unreadable"))
            raise VideoFailed(error, message, reason="; ".join(f"{k}: {v}" for k, v in result.errors.items()),
                              documented=True)
    except VideoFailed as failure:
        outcome = VideoOutcome.of(key, failure)
        problem = None
        if not outcome.documented and result.rel_path and outcome.error not in (*UNWRITABLE_FAILURES, "stale", "busy"):
            try:
                documented = writer.write_failure_document(result, (failure.error, failure.message),
                                                           options.output_path, area, options.record())
            except Exception as exc:  # noqa: BLE001 - the output is not writable either: said, not raised
                documented, problem = False, storage.redact(exc)
            outcome = VideoOutcome.failed(key, failure.error, failure.message, reason=outcome.reason,
                                          documented=documented)
        return Write(outcome, result, document_problem=problem)
    return Write(VideoOutcome(key), result, report)


def _write(result: VideoResult, annotations: dict[str, ClipAnnotations | None], options: PipelineOptions,
           area: WorkArea) -> writer.WriteReport:
    filters.annotate_and_filter(result, options, aesthetics=annotations.get(STEPS[1]),
                               embeddings=annotations.get(STEPS[2]), captions=annotations.get(STEPS[3]))
    # the settings are lists; the frozen config holds tuples
    captions = layout.CaptionConfig(tuple(options.caption_models), tuple(options.enhanced_caption_models))
    files = layout.video_files(result, options.output_path, captions=captions, upload_clips=options.upload_clips,
                               dry_run=options.dry_run, chunk_budget=options.chunk_duration_budget,
                               pipeline=options.record())
    try:
        return writer.write_video(result, files, options.output_path, area, max_workers=options.max_workers,
                                  remove_stale=not options.dry_run)
    except writer.VideoBusy as exc:  # another run held it all along: its write stands
        raise VideoFailed("busy", str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a storage error of this video
        raise VideoFailed("write", storage.redact(f"{type(exc).__name__}: {exc}")) from None


__all__ = ["OFF_NOTES", "Write", "aesthetic_step", "caption_step", "embedding_step", "run_stage", "skipped",
           "skipped_step", "with_filters_applied", "write_one"]
