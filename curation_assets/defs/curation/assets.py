"""The assets, partitioned by video. Read top to bottom, this is the pipeline:

    video_clips        probe, split, one decode pass -> transcoded clips, previews, motion scores
    aesthetic_scores   CLIP + aesthetic MLP per clip, when an aesthetic threshold is set (GPU pool)
    clip_embeddings    Cosmos-Embed1 vectors per passed clip (GPU pool)
    clip_captions      VLM caption per window of each passed clip, through an endpoint
    clip_writer        applies the filters, then writes every directory of the NeMo Curator layout:
                       clips (+filtered_clips), previews, metas/v0, ce1_embd, ce1_embd_parquet,
                       processed_clip_chunks, processed_videos (one asset each)

Every step takes a range of `videos` partitions per run and handles each video on its own
(``core.steps``): a broken video, a storage error, a model error or a refused key is recorded for
that video, every other video of the run is written and materialised, and the run then fails
naming the failed videos and why.
"""


import base64
import time
from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from ... import preflight, run_events
from ...core import backfill, cancel, layout, steps, storage, writer
from ...core.model import UNWRITABLE_FAILURES, ClipAnnotations, VideoResult
from ...core.options import VIDEOS_PER_RUN, PipelineOptions, step_digest
from ...core.pipeline import Progress
from ...core.work import WorkArea
from ...models import stages
from ...models._weights import ModelWeightsMissing
from ...partitions import DatasetMismatch, bind_dataset, videos_partitions
from ..shared.placement import ENCODE_STEP_TAGS, GPU_STEP_TAGS, LIGHT_STEP_TAGS
from ..shared.resources import AestheticModel, CaptionService, CurationSettings, EmbeddingModel
from ..shared.retries import retried
from . import checks
from .io_managers import ASSET_DIRECTORIES, source_for_key
from .metadata import clip_table

BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=VIDEOS_PER_RUN)
# A step that fails as a whole (the work area or the output unreachable, a model that did not
# load) is tried again after 5, 15 and 35 s (``@retried``: a stop is never retried, so no step
# carries Dagster's retry_policy, see ``defs.retries``). Failures of single videos are kept to
# their video and raised with allow_retries=False: trying the whole batch again would not change
# them (the backfill schedule requests failed videos again later).
LAYOUT_GROUP = "clip_writer_layout"
# What every intermediate (per-step) asset shares: video partitions in ranges, values kept
# per video in the work area.
STEP_ASSET: dict[str, Any] = dict(partitions_def=videos_partitions, backfill_policy=BACKFILL_POLICY,
                                  io_manager_key="work_io_manager", group_name="curation")


def _partition_keys(context: dg.AssetExecutionContext) -> list[str]:
    return list(context.partition_keys) if context.has_partition_key_range or context.has_partition_key else []


def _rel_path(options: PipelineOptions, source: str) -> str:
    try:
        return storage.relative_to(options.input_path, source)
    except ValueError:
        return ""


def _check_before_work(context: dg.AssetExecutionContext, options: PipelineOptions, embedding_model: EmbeddingModel,
                       aesthetic_model: AestheticModel, caption_service: CaptionService) -> None:
    """Fail the run before any video is decoded when its settings cannot work (``preflight``)."""
    try:
        bind_dataset(context.instance, options.input_path)
    except DatasetMismatch as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    found = preflight.problems(options, embedder=embedding_model.embedder(options),
                               scorer=aesthetic_model.scorer(options),
                               caption_client=caption_service.client(options) if options.generate_captions else None)
    if found:
        raise dg.Failure("settings that cannot work (nothing was processed):\n" + "\n".join(f"- {p}" for p in found),
                         allow_retries=False)


@dg.asset(**STEP_ASSET, kinds={"python", "video"}, op_tags=ENCODE_STEP_TAGS)
@retried
def video_clips(context: dg.AssetExecutionContext, settings: CurationSettings, embedding_model: EmbeddingModel,
                aesthetic_model: AestheticModel, caption_service: CaptionService) -> dict[str, VideoResult]:
    """Each video split into clips, transcoded in one decode pass, with previews and motion scores.

    Clip bytes go to the video's work folder as each clip finishes (memory stays flat whatever the
    video's length); each video's result is stored as soon as it is done, and a later run of the
    same source with the same settings reuses it instead of transcoding again."""
    options = settings.options()
    _check_before_work(context, options, embedding_model, aesthetic_model, caption_service)
    area = WorkArea.for_options(options)
    results: dict[str, VideoResult] = {}
    keys = _partition_keys(context)
    for n, key in enumerate(keys, 1):
        cancel.checkpoint()
        started = time.perf_counter()
        source = source_for_key(options.input_path, key)
        rel = _rel_path(options, source)
        if not rel:
            results[key] = steps.failed(source, key, "key", f"partition key {key!r} names no video under input_path",
                                        options)
            context.log.error(f"[{n}/{len(keys)}] {key!r}: refused (not a video under input_path)")
            continue
        context.log.info(f"[{n}/{len(keys)}] {rel}: processing")

        def on_progress(p: Progress, _n=n) -> None:
            run_events.emit(p)
            if not p.finished and (options.verbose or (p.clips_total and p.clips_done == p.clips_total)):
                context.log.info(f"[{_n}/{len(keys)}] {p.rel_path}: clip {p.clips_done}/{p.clips_total}")

        result, reused = steps.clips_of_video(source, rel, options, area, on_progress=on_progress)
        if reused:
            run_events.emit(Progress(rel, len(result.clips), len(result.clips), 0.0, finished=True, clip_errors={}))
            context.log.info(f"[{n}/{len(keys)}] {rel}: reused the clips of an earlier run (same source and settings)")
        results[key] = result
        elapsed = time.perf_counter() - started
        duration = result.metadata.duration if result.metadata and result.metadata.duration else 0.0
        if result.errors:
            context.log.error(f"{rel}: {'; '.join(f'{k}: {v}' for k, v in result.errors.items())}")
        context.add_asset_metadata(
            {
                "source": dg.MetadataValue.path(source),
                "num_clips": len(result.clips),
                "num_clips_transcoded": sum(1 for c in result.clips if c.encoded),
                "reused": reused,
                "video_duration_s": round(duration, 3),
                "wall_time_s": round(elapsed, 3),
                "video_seconds_per_second": round(duration / elapsed, 3) if elapsed > 0 and not reused else 0.0,
                "errors": dg.MetadataValue.json(result.errors),
            },
            partition_key=key,
        )
    return results


def _stamp(out: dict[str, ClipAnnotations], video_clips: dict[str, VideoResult], options: PipelineOptions,
           step: str) -> dict[str, ClipAnnotations]:
    """Record which settings and which clips each value was computed from (checked by the writer)."""
    for key, ann in out.items():
        ann.digest = step_digest(options, step)
        ann.clips_key = video_clips[key].stage_key
    return out


def _skipped(keys: list[str], note: str) -> dict[str, ClipAnnotations]:
    return {key: ClipAnnotations(note=note) for key in keys}


def _run_stage(keys: list[str], video_clips: dict[str, VideoResult], stage, what: str) -> dict[str, ClipAnnotations]:
    """``stage`` over the videos that have clips to look at, each failure kept to its video."""
    usable = {k: video_clips[k] for k in keys if steps.usable(video_clips[k])}
    out = _skipped([k for k in keys if k not in usable], "no clips (the video failed or could not be read)")
    if usable:
        out.update(steps.isolated(stage, usable, what))
    return out


def _report(context: dg.AssetExecutionContext, out: dict[str, ClipAnnotations], what: str) -> None:
    for key, ann in out.items():
        md: dict[str, Any] = {f"num_{what}": len(ann.values), "num_clip_errors": len(ann.errors)}
        if ann.note:
            md["note"] = ann.note
        if ann.video_error:
            md["video_error"] = ann.video_error
            context.log.error(f"{key}: {ann.video_error}")
        if ann.errors:
            md["clip_errors"] = dg.MetadataValue.json({uid: list(err) for uid, err in list(ann.errors.items())[:50]})
        context.add_asset_metadata(md, partition_key=key)


def _notice(context: dg.AssetExecutionContext, message: str) -> None:
    context.log.warning(message)
    run_events.emit(run_events.Notice(message))


@dg.asset(**STEP_ASSET, pool="gpu", kinds={"pytorch"}, op_tags=GPU_STEP_TAGS)
@retried
def aesthetic_scores(context: dg.AssetExecutionContext, settings: CurationSettings, aesthetic_model: AestheticModel,
                     video_clips: dict[str, VideoResult]) -> dict[str, ClipAnnotations]:
    """CLIP ViT-L/14 + LAION aesthetic MLP score per clip, when an aesthetic threshold is set."""
    options = settings.options()
    keys = _partition_keys(context)
    if options.aesthetic_threshold is None:
        out = _skipped(keys, "aesthetic filter off (no aesthetic_threshold)")
    else:
        scorer = aesthetic_model.scorer(options)
        try:
            scorer.resolve()
        except ModelWeightsMissing as exc:
            raise dg.Failure(f"aesthetic_threshold is set but the weights are missing: {exc}",
                             allow_retries=False) from None
        out = _run_stage(keys, video_clips, lambda r: stages.score_aesthetics(r, scorer), "aesthetic scoring")
    _report(context, out, "aesthetic_scores")
    return _stamp(out, video_clips, options, "aesthetic_scores")


def _with_filters_applied(options: PipelineOptions, video_clips: dict[str, VideoResult],
                  aesthetic_scores: dict[str, ClipAnnotations], keys: list[str]) -> dict[str, VideoResult]:
    """Every video with the motion and aesthetic filters applied (filtered clips marked, not removed);
    the model stages then take the clips that passed."""
    return {k: stages.apply_filters(video_clips[k], options, aesthetic_scores.get(k)) for k in keys}


@dg.asset(**STEP_ASSET, pool="gpu", kinds={"pytorch"}, op_tags=GPU_STEP_TAGS)
@retried
def clip_embeddings(context: dg.AssetExecutionContext, settings: CurationSettings, embedding_model: EmbeddingModel,
                    video_clips: dict[str, VideoResult],
                    aesthetic_scores: dict[str, ClipAnnotations]) -> dict[str, ClipAnnotations]:
    """Cosmos-Embed1 embedding per passed clip. Weights missing: a failure when embeddings were
    asked for explicitly (generate_embeddings=on), a note and no embeddings in auto mode."""
    options = settings.options()
    keys = _partition_keys(context)
    if options.generate_embeddings == "off":
        out = _skipped(keys, "embeddings off (generate_embeddings=off)")
    else:
        embedder = embedding_model.embedder(options)
        try:
            embedder.resolve()
        except ModelWeightsMissing as exc:
            if options.generate_embeddings == "on":
                raise dg.Failure(f"embeddings requested but the weights are missing: {exc}",
                                 allow_retries=False) from None
            note = f"embeddings skipped: {exc}"
            _notice(context, note)
            out = _skipped(keys, note)
        else:
            context.log.info(f"embedding with {embedder.variant} on {embedder.device} ({embedder.dtype})")
            filtered = _with_filters_applied(options, video_clips, aesthetic_scores, keys)
            out = _run_stage(keys, filtered, lambda r: stages.embed(r, embedder), "embedding")
    _report(context, out, "embeddings")
    return _stamp(out, video_clips, options, "clip_embeddings")


@dg.asset(**STEP_ASSET, kinds={"openai"}, op_tags=LIGHT_STEP_TAGS)
@retried
def clip_captions(context: dg.AssetExecutionContext, settings: CurationSettings, caption_service: CaptionService,
                  video_clips: dict[str, VideoResult],
                  aesthetic_scores: dict[str, ClipAnnotations]) -> dict[str, ClipAnnotations]:
    """A caption per window of every passed clip from a vision-language model endpoint, and
    optionally an enhanced caption from a text model (generate_captions / enhance_captions)."""
    options = settings.options()
    keys = _partition_keys(context)
    if not options.generate_captions:
        out = _skipped(keys, "captions off (generate_captions=false)")
    else:
        client = caption_service.client(options)
        context.log.info(f"captioning with {client.model} at {client.base_url}")
        filtered = _with_filters_applied(options, video_clips, aesthetic_scores, keys)
        out = _run_stage(keys, filtered, lambda r: stages.caption(r, client, enhance=options.enhance_captions),
                         "captioning")
    _report(context, out, "captioned_clips")
    return _stamp(out, video_clips, options, "clip_captions")


# ---------------------------------------------------------------------------------------------
# The layout: one asset per directory, each depending only on the steps that feed it.

_ALL = ("video_clips", "aesthetic_scores", "clip_embeddings", "clip_captions")
_CLIPS_AND_FILTER = ("video_clips", "aesthetic_scores")  # which clips pass decides clips/ vs filtered_clips/
# output name -> (asset key, upstream steps, description)
WRITER_ASSETS: dict[str, tuple[list[str], tuple[str, ...], str]] = {
    "clips": (["clips"], _CLIPS_AND_FILTER,
              "Passed clips (clips/) and filtered clips (filtered_clips/), one mp4 per clip."),
    "previews": (["previews"], _CLIPS_AND_FILTER, "Animated WebP preview per window of each passed clip."),
    "metas_v0": (["metas", "v0"], _ALL, "Per-clip metadata JSON (passed and filtered clips)."),
    "ce1_embd": (["ce1_embd"], ("clip_embeddings",), "Cosmos-Embed1 embedding per passed clip (pickle, (1, D))."),
    "ce1_embd_parquet": (["ce1_embd_parquet"], ("clip_embeddings",),
                         "Embeddings per clip chunk (parquet: id, embedding)."),
    "processed_clip_chunks": (["processed_clip_chunks"], _ALL, "Per-chunk statistics JSON."),
    "processed_videos": (["processed_videos"], ("video_clips",), "Video-level metadata JSON (errors included)."),
}
WRITE_ORDER = ("clips", "previews", "metas/v0", "ce1_embd", "ce1_embd_parquet", "processed_clip_chunks",
               "processed_videos")


def _directory_metadata(asset: str, result: VideoResult, report: writer.WriteReport, output_path: str,
                        embeddings_note: str | None, captions: tuple[str, ...] = ()) -> dict[str, Any]:
    directories = ASSET_DIRECTORIES[asset]
    md: dict[str, Any] = {
        "files_written": sum(report.files.get(d, 0) for d in directories),
        "bytes_written": sum(report.bytes.get(d, 0) for d in directories),
        "stale_files_removed": sum(report.removed.get(d, 0) for d in directories),
        "location": dg.MetadataValue.path(storage.join(output_path, directories[0])),
    }
    if asset == "clips":
        md.update({k: v for k, v in writer.clip_stats(result).items() if k != "num_clips_with_webp"})
        md["num_clips_filtered"] = sum(1 for c in result.clips if not c.passed)
        md.update(clip_table(result, captions))
        md["filtered_location"] = dg.MetadataValue.path(storage.join(output_path, layout.FILTERED_CLIPS))
    elif asset == "previews":
        md["num_previews"] = md["files_written"]
        first = next((w.preview for c in result.clips if c.passed for w in c.windows if w.preview), None)
        if first is not None and len(first) < 400_000:
            data = first.read() if hasattr(first, "read") else first
            md["preview"] = dg.MetadataValue.md(f"![preview](data:image/webp;base64,{base64.b64encode(data).decode()})")
    elif asset in ("ce1_embd", "ce1_embd_parquet"):
        md["num_clips_with_embeddings"] = sum(1 for c in result.clips if c.passed and c.embedding is not None)
        if not md["num_clips_with_embeddings"]:
            md["note"] = embeddings_note or "no embeddings were computed for this video"
    elif asset == "metas/v0":
        md["num_metas"] = md["files_written"]
        md["num_clips_with_errors"] = sum(1 for c in result.clips if c.errors)
    elif asset == "processed_videos":
        md["errors"] = dg.MetadataValue.json(result.errors)
        md["num_total_clips"] = len(result.clips)
        md["video_duration_s"] = round(result.metadata.duration or 0.0, 3) if result.metadata else 0.0
    if report.problems:
        md["problems"] = dg.MetadataValue.json(report.problems)
    return md


def build_clip_writer(blocking_checks: bool = True) -> dg.AssetsDefinition:
    """The writer with its layout checks (``defs.checks``); ``blocking_checks``: a failing check
    fails the step (``checks_block_downstream``, chosen when the definitions are built)."""
    return dg.multi_asset(
        name="clip_writer",
        specs=[
            dg.AssetSpec(key=key, description=description, deps=list(upstream), group_name=LAYOUT_GROUP,
                         partitions_def=videos_partitions, skippable=True).with_io_manager_key("layout_io_manager")
            for key, upstream, description in WRITER_ASSETS.values()
        ],
        check_specs=checks.layout_check_specs(blocking_checks),
        ins={name: dg.AssetIn(key=name) for name in _ALL},
        backfill_policy=BACKFILL_POLICY,
        can_subset=False,
        op_tags=LIGHT_STEP_TAGS,
    )(retried(_clip_writer))


def _clip_writer(context: dg.AssetExecutionContext, settings: CurationSettings, video_clips: dict[str, VideoResult],
                 aesthetic_scores: dict[str, ClipAnnotations], clip_embeddings: dict[str, ClipAnnotations],
                 clip_captions: dict[str, ClipAnnotations]):
    """Write each video's files of the NeMo Curator clip-writer layout (``core.writer``), record a
    materialisation of every layout asset for each video written, then its layout checks."""
    options = settings.options()
    blocking = any(spec.blocking for spec in context.assets_def.check_specs)
    version = {DATA_VERSION_TAG: backfill.data_version(options.record())}
    check_failed: dict[str, str] = {}
    area = WorkArea.for_options(options)
    record = options.record()
    captions = layout.CaptionConfig(options.caption_models, options.enhanced_caption_models)
    failed: dict[str, str] = {}
    busy: list[str] = []  # videos another run is writing: written after the rest of the batch
    for key in _write_order(_partition_keys(context), busy):
        cancel.checkpoint()  # between two videos: a video's write is never cut in the middle
        anns = {"aesthetic_scores": aesthetic_scores.get(key), "clip_embeddings": clip_embeddings.get(key),
                "clip_captions": clip_captions.get(key)}
        prepared = steps.prepare_write(video_clips[key], anns, options)
        result = prepared.result
        if prepared.writable and key not in busy and area.writer_busy(result.source_video):
            busy.append(key)
            context.log.info(f"{result.rel_path}: another run is writing this video; it is written after the rest "
                             "of the batch")
            continue
        try:
            if not prepared.writable:
                raise _VideoFailed(*prepared.failure)  # type: ignore[misc]  # set whenever not writable
            stages.annotate_and_filter(result, options, aesthetics=anns["aesthetic_scores"],
                                       embeddings=anns["clip_embeddings"], captions=anns["clip_captions"])
            files = layout.video_files(result, options.output_path, captions=captions,
                                       upload_clips=options.upload_clips, dry_run=options.dry_run,
                                       chunk_budget=options.chunk_duration_budget, pipeline=record)
            try:
                report = writer.write_video(result, files, options.output_path, area, max_workers=options.max_workers,
                                            remove_stale=not options.dry_run)
            except writer.VideoBusy as exc:  # another run held it all along: its write stands
                raise _VideoFailed("busy", str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - a storage error of this video
                raise _VideoFailed("write", storage.redact(f"{type(exc).__name__}: {exc}")) from None
            if result.metadata is None:  # nothing could be read as video: documented as the reference does, failed
                raise _VideoFailed(*next(iter(result.errors.items()), ("metadata", "unreadable")), documented=True)
        except _VideoFailed as failure:
            failed[key] = "; ".join(f"{k}: {v}" for k, v in result.errors.items()) if failure.documented \
                else f"{failure.key}: {failure.message}"
            _record_failure(context, key, result, failure, options, area, record)
            continue
        note = getattr(anns["clip_embeddings"], "note", None)
        for asset in WRITE_ORDER:
            yield dg.AssetMaterialization(asset_key=asset.split("/"), partition=key, tags=version,
                                          metadata=_directory_metadata(asset, result, report, options.output_path, note,
                                                                       options.caption_models))
        written = sum(report.files.values())
        context.log.info(f"{result.rel_path}: wrote {written} files, removed {sum(report.removed.values())} stale"
                         + (f" (problems: {'; '.join(report.problems)})" if report.problems else ""))
        if options.log_stats:
            context.log.info(f"{result.rel_path}: clip stats {writer.clip_stats(result)}")
        outcomes = checks.check_written_video(options.output_path, result.rel_path, result.source_video)
        yield from checks.evaluations(context.instance, key, outcomes, blocking)
        failing = [f"{name}: {outcome.summary()}" for name, outcome in outcomes.items() if not outcome.passed]
        if failing:
            context.log.error(f"{result.rel_path}: layout checks failed: " + "; ".join(failing))
            check_failed[key] = "layout checks failed: " + "; ".join(failing)
    for output_name in context.assets_def.check_specs_by_output_name:  # the checks' outputs, once per step
        if output_name in context.op_execution_context.selected_output_names:
            yield dg.Output(None, output_name=output_name)
    if failed or (blocking and check_failed):
        lines = [f"{len(failed)} video(s) failed (their partitions failed; the others were written)"] if failed else []
        if blocking and check_failed:
            lines.append(f"{len(check_failed)} video(s) written but failing their layout checks "
                         "(checks_block_downstream)")
        raise dg.Failure(
            description=";\n".join(lines) + ":\n"
            + "\n".join(f"- {key}: {why}" for key, why in {**failed, **check_failed}.items()),
            metadata={"failed_partitions": dg.MetadataValue.json(failed),
                      "failed_checks": dg.MetadataValue.json(check_failed if blocking else {})},
            allow_retries=False,
        )


clip_writer = build_clip_writer()


def _write_order(keys: list[str], busy: list[str]):
    """``keys``, then the ones put in ``busy`` meanwhile: one video that another run holds waits
    alone, after the rest of the batch (up to ``writer.LOCK_WAIT_S``, a stop honoured)."""
    yield from keys
    yield from busy


class _VideoFailed(Exception):
    """One video's failure; ``documented``: its processed_videos document already records it."""

    def __init__(self, key: str, message: str, documented: bool = False):
        super().__init__(message)
        self.key, self.message, self.documented = key, message, documented


def _record_failure(context: dg.AssetExecutionContext, key: str, result: VideoResult, failure: _VideoFailed,
                    options: PipelineOptions, area: WorkArea, record: dict[str, Any]) -> None:
    """A failed video: in the run log, on each layout asset's partition (an observation), and in its
    ``processed_videos`` document when that can still be written and no good output is there."""
    context.log.error(f"{result.rel_path or key}: not written: {failure.key}: {failure.message}")
    documented = failure.documented
    if not documented and result.rel_path and failure.key not in (*UNWRITABLE_FAILURES, "stale", "busy"):
        try:
            documented = writer.write_failure_document(result, (failure.key, failure.message), options.output_path,
                                                       area, record)
        except Exception as exc:  # noqa: BLE001 - the output is not writable either: the log and metadata say so
            context.log.error(f"{result.rel_path}: its processed_videos document could not be written either: "
                              f"{storage.redact(exc)}")
    for asset in WRITE_ORDER:
        context.log_event(dg.AssetObservation(asset_key=asset.split("/"), partition=key, metadata={
            "failed": True, "error": f"{failure.key}: {failure.message}", "error_document_written": documented}))
