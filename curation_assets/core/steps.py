"""What each step of the pipeline does for one video, and how a failure stays that video's.

The Dagster assets call these per video partition; they hold no Dagster code so they can be
tested alone:

- :func:`clips_of_video`: the transcode step, reusing a finished result of the same source and
  settings from the work area (a killed batch resumes at video granularity);
- :func:`isolated`: runs a model stage over a run's videos batched together, and, when it raises,
  again per video (``outcomes.one_video``), so an exception costs only the videos it belongs to;
- :func:`prepare_write`: checks that every step's value of a video is there, is current for the
  settings, and did not fail, before the writer touches the video's files.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from . import sources, storage
from .model import UNWRITABLE_FAILURES, ClipAnnotations, SpilledBytes, VideoResult
from .options import STEPS, PipelineOptions, settings_digest, step_digest, step_settings_changed
from .outcomes import one_video
from .pipeline import NO_MODELS, ModelParts, ProgressCallback, process_video
from .work import VideoSpill, WorkArea, result_doc, result_value

log = logging.getLogger(__name__)

CLIPS_STEP = STEPS[0]


def stage_key(options: PipelineOptions, source_url: str, info: storage.FileInfo) -> str:
    """What a transcode result depends on: the source's content identity and the step's settings."""
    return settings_digest({"step": step_digest(options, CLIPS_STEP), "source": source_url, "file": info.as_dict()})


def failed(source_url: str, rel_path: str, key: str, message: str, options: PipelineOptions) -> VideoResult:
    """A result that records a step failure of one video."""
    return VideoResult(source_video=source_url, rel_path=rel_path, metadata=None,
                       errors={key: storage.redact(message)}, record=options.record())


def _bytes_in_place(result: VideoResult, area: WorkArea) -> bool:
    """Every spilled file the later steps will read (clips, previews, the models' frames) is still
    there, as a regular file of the work area or the output: a result whose frames went with a
    finished write is not reused, or the model steps would see other pixels than a fresh run; a
    link put in place of a file is never followed."""
    refs = ([c.encoded for c in result.clips] + [c.model_frames for c in result.clips]
            + [w.preview for c in result.clips for w in c.windows])
    for ref in refs:
        if isinstance(ref, SpilledBytes):
            where = ref.locate()
            if where is None:
                return False
            problem = area.bytes_problem(result.source_video, where)
            if problem:
                log.warning("work area: a stored clip reference is refused (%s); the clips are made again",
                            storage.redact(problem))
                return False
    return True


def clips_of_video(source_url: str, rel_path: str, options: PipelineOptions, area: WorkArea, *,
                   reuse: bool = True, on_progress: ProgressCallback | None = None,
                   models: ModelParts = NO_MODELS) -> tuple[VideoResult, bool]:
    """The transcode step for one video: ``(result, reused)``. Never raises: a missing source or a
    storage error becomes the result's ``source`` / ``storage`` error. ``models``: the parts of
    ``curation_assets.models`` the options need (``models.video.MODEL_PARTS``)."""
    try:
        rel_path.encode("utf-8")
    except UnicodeEncodeError:
        return failed(source_url, rel_path.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), "name",
                      "the file name is not valid UTF-8 (the layout's documents and clip ids are UTF-8 text): "
                      "rename it", options), False
    try:
        problem = sources.source_problem(options.input_path, source_url)
        if problem:
            return failed(source_url, rel_path, "source", f"{rel_path}: {problem}", options), False
        info = storage.file_info(source_url)
        if info is None:
            return failed(source_url, rel_path, "source", f"{rel_path}: no such video under input_path "
                          "(deleted, or a stale partition key)", options), False
        key = stage_key(options, source_url, info)
        digest = step_digest(options, CLIPS_STEP)
        if reuse:
            doc = area.load(source_url, CLIPS_STEP, digest)
            if doc is not None and doc.get("kind") == "clips" and doc["value"].get("stage_key") == key:
                previous = result_value(doc["value"])
                if previous.rel_path != rel_path:  # the partition's own path, never the stored one
                    log.warning("work area: the stored video_clips value of %s names another rel_path; "
                                "it is computed again", rel_path)
                elif _bytes_in_place(previous, area):
                    previous.record = options.record()  # the writer's record: this run's settings
                    return previous, True
        spill = VideoSpill(area, source_url, area.output)
        # held while the transcode writes into its spill folder: a writer's cleanup leaves it alone
        with storage.lock(area.token_lock_url(source_url, spill.token), shared=True):
            result = process_video(source_url, rel_path, lambda: storage.open_input(source_url), options,
                                   on_progress=on_progress, spill=spill, models=models)
            result.stage_key = key
            area.save(source_url, CLIPS_STEP, digest, {"kind": "clips", "value": result_doc(result)})
        return result, False
    except Exception as exc:  # noqa: BLE001 - any failure of this video (storage, a bug) is this video's
        log.exception("video_clips failed for %s", rel_path)
        return failed(source_url, rel_path, "storage", f"{rel_path}: {type(exc).__name__}: {exc}", options), False


def usable(result: VideoResult) -> bool:
    """A result whose clips the model steps should see (not a failed or unreadable video)."""
    return result.metadata is not None and not any(k in result.errors for k in (*UNWRITABLE_FAILURES, "storage"))


def isolated(stage: Callable[[dict[str, VideoResult]], dict[str, ClipAnnotations]], results: dict[str, VideoResult],
             what: str) -> dict[str, ClipAnnotations]:
    """``stage`` over all videos at once (batched across them); if it raises, once per video, so
    the exception is recorded only for the videos it belongs to (``video_error``)."""
    try:
        return stage(results)
    except Exception:  # noqa: BLE001 - retried per video below
        log.warning("%s failed for a batch of %d videos; retrying them one by one", what, len(results), exc_info=True)
    out: dict[str, ClipAnnotations] = {}
    for key, result in results.items():
        values, outcome = one_video(key, functools.partial(stage, {key: result}))
        if values is not None:
            out.update(values)
        else:  # this video's failure, kept in its value: the writer fails its partition (prepare_write)
            out[key] = ClipAnnotations(video_error=f"{what} failed: {outcome.message}")
    return out


@dataclass
class Prepared:
    """A video ready for the writer, or the reason it must not be written (``failure``)."""

    result: VideoResult
    failure: tuple[str, str] | None = None  # (error key, message)

    @property
    def writable(self) -> bool:
        return self.failure is None


def prepare_write(result: VideoResult, annotations: dict[str, ClipAnnotations | None],
                  options: PipelineOptions) -> Prepared:
    """Check one video's step values before writing it (``annotations``: step name -> value)."""
    for key in UNWRITABLE_FAILURES + ("storage",):
        if key in result.errors:
            return Prepared(result, (key, result.errors[key]))
    record = result.record or {}
    changed = step_settings_changed(options, CLIPS_STEP, record.get("settings", {}))
    if changed or record.get("version") != options.record()["version"]:
        what = f" (changed: {', '.join(changed)})" if changed else " (another version of curation-assets)"
        return Prepared(result, ("stale", f"video_clips of {result.rel_path} was made with other settings{what}: "
                                          "materialize video_clips and the steps after it for this video again"))
    for step in STEPS[1:]:
        ann = annotations.get(step)
        if ann is None:
            continue
        if ann.video_error:
            return Prepared(result, (step.removeprefix("clip_"), ann.video_error))
        if ann.digest != step_digest(options, step) or (ann.clips_key and ann.clips_key != result.stage_key):
            return Prepared(result, ("stale", f"{step} of {result.rel_path} was computed for other settings or other "
                                              f"clips: materialize {step} (and the steps after it) for this video "
                                              "again"))
    return Prepared(result)
