"""One video from source bytes to clips with scores and previews: the CPU half of the pipeline.

Data flows one way: probe -> spans -> one decode pass feeding every clip's encoder (and the
preview taps) -> per-clip probe, windows and motion scores -> motion filter. Failures are recorded
on the video or the clip with the spec's error keys; nothing here raises for bad input.

The two parts that need the models (the TransNetV2 splitter, the model-frame tap) are handed in as
:class:`ModelParts` (``models.video.MODEL_PARTS``): core never imports ``curation_assets.models``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import BinaryIO

from . import cancel
from .budget import BUDGET_ERROR_KEY, over_budget, release_video_memory
from .cpus import usable_cores
from .model import Clip, MotionScore, Span, SpilledBytes, VideoMetadata, VideoResult, Window, as_bytes, as_source
from .options import PipelineOptions
from .probe import ProbeError, probe_video
from .split import fixed_stride_spans
from .work import VideoSpill

log = logging.getLogger(__name__)

Opener = Callable[[], AbstractContextManager[BinaryIO]]

# What the reference's motion filter scores a clip whose motion vectors could not be decoded.
MOTION_DECODE_FAILED = MotionScore(global_mean=-1.0, per_patch_min_256=-1.0)


@dataclass
class Progress:
    """A progress tick: one clip of one video finished (or the video itself, with clip=None)."""

    rel_path: str
    clips_done: int
    clips_total: int
    video_seconds: float
    finished: bool = False
    clip_errors: dict[str, int] | None = None  # error key -> clips, on the finished tick


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class ModelParts:
    """What one video's CPU half needs from ``curation_assets.models``, passed in so the import
    goes one way: ``detect_scenes(source, metadata, options)`` gives the TransNetV2 spans and
    ``frame_tap(options)`` the model-frame tap factory of the decode pass (or None)."""

    detect_scenes: Callable[[BinaryIO, VideoMetadata, PipelineOptions], list[Span]] | None = None
    frame_tap: Callable[[PipelineOptions], object | None] | None = None

    def check(self, options: PipelineOptions) -> None:
        """Raise (a programming error, not a video's) when ``options`` need a part not given."""
        if options.splitting_algorithm == "transnetv2" and self.detect_scenes is None:
            raise ValueError("splitting_algorithm=transnetv2 needs ModelParts.detect_scenes "
                             "(pass models=curation_assets.models.video.MODEL_PARTS)")
        if options.model_frames == "source" and options.uses_models and self.frame_tap is None:
            raise ValueError("model_frames=source needs ModelParts.frame_tap "
                             "(pass models=curation_assets.models.video.MODEL_PARTS)")


NO_MODELS = ModelParts()


def plan_spans(opener: Opener, metadata: VideoMetadata, options: PipelineOptions,
               models: ModelParts = NO_MODELS) -> list[Span]:
    """Split a video into spans with the configured algorithm."""
    if options.splitting_algorithm == "fixed_stride":
        return fixed_stride_spans(
            metadata,
            clip_len_s=options.fixed_stride_split_duration,
            clip_stride_s=options.fixed_stride_split_duration,
            min_clip_length_s=options.fixed_stride_min_clip_length_s,
            limit_clips=options.limit_clips,
        )
    models.check(options)
    assert models.detect_scenes is not None
    with opener() as source:
        return models.detect_scenes(source, metadata, options)


def _score_motion(clip: Clip, options: PipelineOptions, out: object = None, pending: Future | None = None) -> None:
    """Motion score of a clip: from ``pending`` (a :func:`_motion_task` started as the clip finished),
    else from ``out``, its cutter's output, when that carries it (stream copy scores motion in the
    decode its previews need), else computed here."""
    from .motion import MotionDecodeError, compute_motion_score, is_low_motion

    if options.motion_filter == "disable":
        return
    if not clip.encoded:
        clip.errors["buffer"] = "empty"
        return
    try:
        clip.motion = _motion_of(out, pending) or compute_motion_score(as_source(clip.encoded))
    except MotionDecodeError as exc:
        # the reference's motion filter gives such a clip the sentinel scores -1 (below both
        # thresholds, so `enable` filters it) and keeps the decode error
        clip.errors["motion_decode"] = exc.key
        clip.motion = MOTION_DECODE_FAILED
        log.info("motion score of clip %s: %s", clip.uuid, exc)
    if options.motion_filter == "enable" and is_low_motion(
        clip.motion,
        global_mean_threshold=options.motion_global_mean_threshold,
        per_patch_min_256_threshold=options.motion_per_patch_min_256_threshold,
    ):
        clip.filtered_by = "motion"


def _motion_task(source) -> object:
    """``compute_motion_score`` for a pool thread: the score, or the MotionDecodeError it raised."""
    from .motion import MotionDecodeError, compute_motion_score

    try:
        return compute_motion_score(source)
    except MotionDecodeError as exc:
        return exc


def _probe_task(data: bytes) -> object:
    """``probe_clip`` for a pool thread (or a spill, before the bytes leave memory): the clip's
    probe, or the exception it raised (recorded on the clip when the clips are assembled, as a
    probe made there would be)."""
    from .transcode import probe_clip

    try:
        return probe_clip(data)
    except Exception as exc:  # noqa: BLE001 - the clip's own error, not the pool's
        return exc


def _motion_of(out: object, pending: Future | None = None):
    """The motion score computed already (by a :func:`_motion_task`, or by the cutter:
    ``stream_copy.CopyClipOutput``), else None; raises the MotionDecodeError recorded."""
    if pending is not None:
        value = pending.result()
        if isinstance(value, Exception):
            raise value
        return value
    error = getattr(out, "motion_error", None)
    if error is not None:
        raise error
    return getattr(out, "motion", None)


def _close_pool(pool: ThreadPoolExecutor | None) -> None:
    """End the motion pool: queued scores are cancelled, a running one finishes its clip."""
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _frame_tap(options: PipelineOptions, models: ModelParts):
    """The model frames to take off the decode pass (``model_frames=source``): a clip tap factory
    for the frames the enabled model steps need, or None."""
    if options.model_frames != "source" or not options.uses_models:
        return None
    assert models.frame_tap is not None  # ModelParts.check
    return models.frame_tap(options)


def _copy_clips(source, spans: list[Span], preview, options: PipelineOptions, clips: dict[Span, Clip],
                source_url: str, on_clip_done, tap=None) -> list:
    """``transcode_encoder == "copy"``: cut without re-encoding (:mod:`.stream_copy`). The clips get the
    spans snapped to the source's keyframes (added to ``clips`` as they finish); spans that snap to
    the same range give one clip."""
    from .stream_copy import copy_clips

    def done(out) -> None:
        clips.setdefault(out.span, Clip(source_video=source_url, span=out.span))
        on_clip_done(out)

    return copy_clips(source, spans, preview, motion=options.motion_filter != "disable", on_clip_done=done, tap=tap)


# Codecs of single pictures: a still image renamed .mp4 opens as a one-frame "video" without a duration.
_IMAGE_CODECS = {"png", "mjpeg", "jpegls", "bmp", "gif", "tiff", "webp", "jpeg2000", "ppm", "pgm", "pam", "qoi"}


def _incomplete_message(source_url: str, metadata: VideoMetadata) -> str:
    """The reference's ``metadata: incomplete``, with what is missing and a likely reason."""
    missing = [name for name in ("width", "height", "framerate", "duration", "num_frames")
               if not getattr(metadata, name)]
    hint = ": a still image, not a video" if metadata.video_codec in _IMAGE_CODECS else ""
    return f"incomplete: {source_url}: no {', '.join(missing)} ({metadata.video_codec} stream{hint})"


# A clip may end this much (seconds, or source frames) before its span before it counts as cut short.
_SHORT_CLIP_TOLERANCE_S = 0.2
_SHORT_CLIP_TOLERANCE_FRAMES = 3


def short_clip_tolerance_s(source_fps: float) -> float:
    """How much shorter than its span a clip may be before it counts as cut short (``truncated``);
    the layout checks apply the same rule."""
    return max(_SHORT_CLIP_TOLERANCE_S, _SHORT_CLIP_TOLERANCE_FRAMES / source_fps)


def _check_clip_length(clip: Clip, metadata: VideoMetadata) -> None:
    """A clip whose video ends well before its span does (the source has fewer frames than its
    header promises: a truncated or damaged file) keeps its bytes and gets a ``truncated`` error
    (a key the reference does not have: it writes such clips silently)."""
    p = clip.probe
    if not clip.encoded or p is None or not p.num_frames or not p.framerate:
        return
    have = p.num_frames / p.framerate
    tolerance = short_clip_tolerance_s(metadata.framerate or p.framerate)
    if clip.span.duration_s - have > tolerance:
        clip.errors["truncated"] = (
            f"{have:.2f} s of video for the span [{clip.span.start_s:.3f}, {clip.span.end_s:.3f}) s: "
            f"the source ends early (truncated or damaged file?)"
        )


def _redact_errors(result: VideoResult) -> VideoResult:
    """Error messages go into documents, materialisation metadata and logs: strip credentials
    (a backend error may quote a signed URL or a key) before anything sees them."""
    from .storage import redact

    result.errors = {k: redact(v) for k, v in result.errors.items()}
    for clip in result.clips:
        if clip.errors:
            clip.errors = {k: redact(v) for k, v in clip.errors.items()}
    return result


def process_video(
    source_url: str,
    rel_path: str,
    opener: Opener,
    options: PipelineOptions,
    *,
    on_progress: ProgressCallback | None = None,
    spill: VideoSpill | None = None,
    models: ModelParts = NO_MODELS,
) -> VideoResult:
    """Probe, split, transcode (one decode pass), preview and motion-score one video.

    ``spill``: where each clip's mp4 and previews are written as soon as the clip is encoded (the
    video's work folder); the result then holds :class:`SpilledBytes` (references) instead of the
    bytes, so memory stays flat however long the video. ``None`` keeps the bytes in memory.
    ``models``: the splitter and frame tap the options need (raises ValueError before any work when
    one is missing).

    Error messages in the result (video and clips) are redacted (``storage.redact``)."""
    models.check(options)
    result = None
    try:
        result = _process_video(source_url, rel_path, opener, options, on_progress=on_progress, spill=spill,
                                models=models)
        return _redact_errors(result)
    finally:
        release_video_memory(result.metadata if result else None)  # the next video starts from the baseline


def _spill(out, clip: Clip, spill: VideoSpill, probes: dict) -> None:
    """Move a finished clip's bytes (and previews) out of memory, probing the clip first."""
    if out.error or not out.data or isinstance(out.data, SpilledBytes):
        return
    probes[out.span] = _probe_task(out.data)  # a failure is recorded on the clip below, as without spilling
    uid = str(clip.uuid)
    out.data = spill.clip(uid, out.data)
    out.previews = {k: spill.preview(uid, k[0], k[1], v) if v else v for k, v in out.previews.items()}
    if out.model_frames:
        out.model_frames = spill.frames(uid, out.model_frames)


def _process_video(
    source_url: str,
    rel_path: str,
    opener: Opener,
    options: PipelineOptions,
    *,
    on_progress: ProgressCallback | None = None,
    spill: VideoSpill | None = None,
    models: ModelParts = NO_MODELS,
) -> VideoResult:
    from .transcode import PreviewOptions, TranscodeOptions, probe_clip, transcode_clips

    started = time.perf_counter()
    if on_progress:
        on_progress(Progress(rel_path, 0, 0, 0.0))
    result = VideoResult(source_video=source_url, rel_path=rel_path, metadata=None, record=options.record())
    try:
        with opener() as source:
            metadata = probe_video(source, name=source_url)
    except ProbeError as exc:
        result.errors[exc.key] = str(exc)
        return result
    except OSError as exc:
        result.errors["download"] = f"{source_url}: cannot read ({exc})"
        return result
    result.metadata = metadata
    if not metadata.is_complete():
        result.errors["metadata"] = _incomplete_message(source_url, metadata)
        return result
    over = over_budget(metadata, options)  # before the scene pass or the transcode decodes a frame
    if over:
        result.errors[BUDGET_ERROR_KEY] = f"{source_url}: {over}"
        return result
    try:
        spans = plan_spans(opener, metadata, options, models)
    except Exception as exc:  # a decode failure in the scene pass is a per-video error
        result.errors["split"] = f"{source_url}: splitting failed ({type(exc).__name__}: {exc})"
        return result
    result.clips = [Clip(source_video=source_url, span=span) for span in spans]
    if not spans:
        if on_progress:
            on_progress(Progress(rel_path, 0, 0, 0.0, finished=True))
        return result

    preview = None
    if options.generate_previews and not options.dry_run:
        # never more preview frames per second than the source has
        assert metadata.framerate is not None  # a video without a frame rate was refused above
        preview = PreviewOptions(target_fps=min(options.preview_target_fps, metadata.framerate),
                                 target_height=options.preview_target_height)
    tap = _frame_tap(options, models)
    topts = TranscodeOptions(encoder=options.transcode_encoder, encoder_threads=options.transcode_encoder_threads,
                             preview=preview, preset=options.transcode_preset,
                             x264_avx512=options.transcode_x264_avx512, tap=tap,
                             decode_positions=options.transcode_decode_positions)
    by_span = {clip.span: clip for clip in result.clips}
    probes: dict = {}  # span -> ClipProbe (or the exception, or a pool's Future of either) of finished clips
    done = 0
    # Motion scores start as each clip finishes, on one thread per core (each decode is
    # single-threaded), so they overlap the encoding of the next clips instead of running one
    # after the other once the last clip is done. Stream copy scores motion in its own decode.
    motion_pool = None
    motion_jobs: dict[Span, Future] = {}
    if options.motion_filter != "disable" and options.transcode_encoder != "copy":
        motion_pool = ThreadPoolExecutor(max_workers=usable_cores(), thread_name_prefix="motion")

    def finished(out) -> None:
        nonlocal done
        cancel.checkpoint()  # a stop request ends the video between two clips
        done += 1
        data = out.data
        if spill is not None:
            _spill(out, by_span[out.span], spill, probes)
        if motion_pool is not None and not out.error and out.data:
            # a local spill is read back from its file; a remote one is scored from the bytes in hand
            source = as_source(out.data) if spill is None or spill.local else as_bytes(data)
            motion_jobs[out.span] = motion_pool.submit(_motion_task, source)
            if spill is None:  # probed beside the next clips' encoding, not one after another at the end
                probes[out.span] = motion_pool.submit(_probe_task, as_bytes(out.data))
        if on_progress:
            on_progress(Progress(rel_path, done, len(spans), out.span.end_s - out.span.start_s))

    try:
        try:
            with ExitStack() as handles:  # a second decode position opens the source again (transcode_clips)
                source = handles.enter_context(opener())
                if options.transcode_encoder == "copy":
                    outputs = _copy_clips(source, spans, preview, options, by_span, source_url, finished, tap)
                else:
                    outputs = transcode_clips(source, spans, topts, on_clip_done=finished,
                                              reopen=lambda: handles.enter_context(opener()))
        except Exception as exc:
            result.errors["transcode"] = f"{source_url}: transcoding failed ({type(exc).__name__}: {exc})"
            for clip in result.clips:
                clip.errors["buffer"] = "empty"
            return result
        if options.transcode_encoder == "copy":  # the snapped clips replace the requested spans
            result.clips = [by_span[out.span] for out in outputs]

        for out in outputs:
            clip = by_span[out.span]
            if out.error or not out.data:
                clip.errors["transcode"] = out.error or "no frames in span"
            else:
                clip.encoded = out.data
                clip.model_frames = out.model_frames
                try:
                    probe = probes.get(out.span)
                    if isinstance(probe, Future):
                        probe = probe.result()
                    if probe is None:
                        probe = probe_clip(as_bytes(out.data))
                    if isinstance(probe, Exception):
                        raise probe
                    clip.probe = probe
                except Exception as exc:
                    clip.errors["transcode"] = f"encoded clip unreadable: {exc}"
            _check_clip_length(clip, metadata)
            clip.windows = [Window(s, e, preview=out.previews.get((s, e))) for s, e in out.windows]
            if preview is not None:
                missing = [w.key for w in clip.windows if not w.preview]
                if missing:
                    detail = getattr(out, "preview_error", None) or "no preview produced"
                    clip.errors.setdefault("preview", f"no preview for window {', '.join(missing)}: {detail}")
            _score_motion(clip, options, out, motion_jobs.pop(out.span, None))
    finally:  # on any way out (a stop, Dagster's interrupt, a failure): queued scores are cancelled
        _close_pool(motion_pool)
    log.info(
        "%s: %d clips (%d filtered by motion) in %.1fs",
        rel_path, len(result.clips), sum(1 for c in result.clips if c.filtered_by == "motion"),
        time.perf_counter() - started,
    )
    if on_progress:
        counts: dict[str, int] = {}
        for clip in result.clips:
            for key in clip.errors:
                counts[key] = counts.get(key, 0) + 1
        on_progress(Progress(rel_path, len(spans), len(spans), 0.0, finished=True, clip_errors=counts))
    return result
