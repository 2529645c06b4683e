"""The assets, partitioned by video. Read top to bottom, this is the pipeline:

    video_clips        probe, split, one decode pass -> transcoded clips, previews, motion scores
    aesthetic_scores   CLIP + aesthetic MLP per clip, when an aesthetic threshold is set (GPU pool)
    clip_embeddings    Cosmos-Embed1 vectors per passed clip (GPU pool)
    clip_captions      VLM caption per window of each passed clip, through an endpoint
    clip_writer        applies the filters, then writes every directory of the NeMo Curator layout
                       (``core.layout.LAYOUT``: one asset each, in write order)

Each body is a short sequence of calls: the step itself is ``curation_assets.curate`` (no
Dagster there), here are the settings, the logs and the metadata. Every step takes a range of
``videos`` partitions per run and handles each video on its own: a broken video, a storage error,
a model error or a refused key is recorded for that video, every other video of the run is
written and materialised, and the run then fails naming the failed videos and why
(``defs.shared.outcomes``).
"""


import time
from collections.abc import Generator, Iterator
from typing import Any

import dagster as dg

from ... import curate, preflight
from ...core import backfill, head_start, layout, steps, writer
from ...core.model import ClipAnnotations, VideoResult
from ...core.options import STEPS, PipelineOptions
from ...core.outcomes import VideoOutcome
from ...core.pipeline import Progress
from ...core.work import WorkArea
from ...models._weights import ModelWeightsMissing
from ...models.video import MODEL_PARTS
from ...partitions import DatasetMismatch, bind_dataset, run_partition_keys, video_of_key
from ..shared.outcomes import batch_failure, observe_failure, raise_for
from ..shared.policies import PER_VIDEO, retried
from ..shared.resources import AestheticModel, CaptionService, CurationSettings, EmbeddingModel
from ..shared.run_control import RunControl
from ..shared.tags import DATA_VERSION_TAG, ENCODE_STEP_TAGS, GPU_STEP_TAGS, LIGHT_STEP_TAGS
from . import checks
from .io_managers import source_for_key
from .metadata import layout_metadata

STEPS_GROUP = "curation"
LAYOUT_GROUP = "clip_writer_layout"
# A step's failure as a whole (the work area or the output unreachable, a model that did not
# load) is retried (``policies.retried``: a stop never is); a video's failure is kept to it.
STEP_ASSET: dict[str, Any] = dict(**PER_VIDEO, io_manager_key="work_io_manager", group_name=STEPS_GROUP)
# Every asset after video_clips follows its upstream once the automation sensor is on (``automation.eager``).
EAGER = dg.AutomationCondition.eager()


def _of_run(context: dg.AssetExecutionContext, values: dict[str, Any]) -> dict[str, Any]:
    return {key: values[key] for key in run_partition_keys(context)}


def _check_before_work(context: dg.AssetExecutionContext, options: PipelineOptions, embedding_model: EmbeddingModel,
                       aesthetic_model: AestheticModel, caption_service: CaptionService) -> None:
    """Fail the run before any video is decoded when its settings cannot work (``preflight``)."""
    try:
        bind_dataset(context.instance, options.input_path)
    except DatasetMismatch as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    try:  # a caption model without an endpoint is a setting that cannot work, not a retryable failure
        client = caption_service.client(options) if options.generate_captions else None
    except ValueError as exc:
        raise dg.Failure(f"settings that cannot work (nothing was processed):\n- {exc}", allow_retries=False) from None
    found = preflight.problems(options, embedder=embedding_model.embedder(options),
                               scorer=aesthetic_model.scorer(options), caption_client=client)
    if found:
        raise dg.Failure("settings that cannot work (nothing was processed):\n" + "\n".join(f"- {p}" for p in found),
                         allow_retries=False)


@dg.asset(**STEP_ASSET, kinds={"python", "video"}, op_tags=ENCODE_STEP_TAGS)
@retried
def video_clips(context: dg.AssetExecutionContext, settings: CurationSettings, embedding_model: EmbeddingModel,
                aesthetic_model: AestheticModel, caption_service: CaptionService,
                run_control: RunControl) -> dict[str, VideoResult]:
    """Each video split into clips, transcoded in one decode pass, with previews and motion scores.

    Clip bytes go to the video's work folder as each clip finishes (memory stays flat whatever the
    video's length); each video's result is stored as soon as it is done, and a later run of the
    same source with the same settings reuses it instead of transcoding again."""
    options = settings.options()
    _check_before_work(context, options, embedding_model, aesthetic_model, caption_service)
    area = WorkArea.for_options(options)
    keys = run_partition_keys(context)
    results: dict[str, VideoResult] = {}
    for n, key in enumerate(keys, 1):
        run_control.checkpoint()
        results[key] = _clips_of_video(context, run_control, options, area, key, f"[{n}/{len(keys)}]")
    return results


def _clips_of_video(context: dg.AssetExecutionContext, run_control: RunControl, options: PipelineOptions,
                    area: WorkArea, key: str, counter: str) -> VideoResult:
    """One video's transcode step (``core.steps.clips_of_video``), its progress and its metadata."""
    started = time.perf_counter()
    video = video_of_key(options.input_path, key)
    if video is None:
        context.log.error(f"{counter} {key!r}: refused (not a video under input_path)")
        return steps.failed(source_for_key(options.input_path, key), key, "key",
                            f"partition key {key!r} names no video under input_path", options)
    source, rel = video
    context.log.info(f"{counter} {rel}: processing")

    def on_progress(p: Progress) -> None:
        run_control.progress(p)
        if not p.finished and (options.verbose or (p.clips_total and p.clips_done == p.clips_total)):
            context.log.info(f"{counter} {p.rel_path}: clip {p.clips_done}/{p.clips_total}")

    # the CLI begins its first video before the run starts (core.head_start): the step takes that work over
    head = head_start.claim(source, rel, options)
    with run_control.watching():  # a stop is honoured while the video waits on a lock or decodes
        if head is not None:
            started = min(started, head.started_at)
            result, reused = head.take(on_progress)
        else:
            result, reused = steps.clips_of_video(source, rel, options, area, on_progress=on_progress,
                                                  models=MODEL_PARTS)
    if reused:
        run_control.progress(Progress(rel, len(result.clips), len(result.clips), 0.0, finished=True, clip_errors={}))
        context.log.info(f"{counter} {rel}: reused the clips of an earlier run (same source and settings)")
    elapsed = time.perf_counter() - started
    duration = result.metadata.duration if result.metadata and result.metadata.duration else 0.0
    if result.errors:
        context.log.error(f"{rel}: {'; '.join(f'{k}: {v}' for k, v in result.errors.items())}")
    context.add_asset_metadata({
        "source": dg.MetadataValue.path(source),
        "num_clips": len(result.clips),
        "num_clips_transcoded": sum(1 for c in result.clips if c.encoded),
        "reused": reused,
        "began_before_run": head is not None,
        "video_duration_s": round(duration, 3),
        "wall_time_s": round(elapsed, 3),
        "video_seconds_per_second": round(duration / elapsed, 3) if elapsed > 0 and not reused else 0.0,
        "errors": dg.MetadataValue.json(result.errors),
    }, partition_key=key)
    return result


def _report(context: dg.AssetExecutionContext, out: dict[str, ClipAnnotations],
            what: str) -> dict[str, ClipAnnotations]:
    """Each video's count of values and errors on its partition; a video's failure in the log."""
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
    return out


def _notice(context: dg.AssetExecutionContext, run_control: RunControl, message: str) -> None:
    context.log.warning(message)
    run_control.notice(message)


@dg.asset(**STEP_ASSET, pool="gpu", kinds={"pytorch"}, op_tags=GPU_STEP_TAGS, automation_condition=EAGER)
@retried
def aesthetic_scores(context: dg.AssetExecutionContext, settings: CurationSettings, aesthetic_model: AestheticModel,
                     video_clips: dict[str, VideoResult]) -> dict[str, ClipAnnotations]:
    """CLIP ViT-L/14 + LAION aesthetic MLP score per clip, when an aesthetic threshold is set."""
    options, results = settings.options(), _of_run(context, video_clips)
    if options.aesthetic_threshold is None:
        return _report(context, curate.skipped_step(results, options, "aesthetic_scores"),
                       "aesthetic_scores")
    scorer = aesthetic_model.scorer(options)
    try:
        scorer.resolve()
    except ModelWeightsMissing as exc:
        raise dg.Failure(f"aesthetic_threshold is set but the weights are missing: {exc}",
                         allow_retries=False) from None
    return _report(context, curate.aesthetic_step(results, options, scorer), "aesthetic_scores")


@dg.asset(**STEP_ASSET, pool="gpu", kinds={"pytorch"}, op_tags=GPU_STEP_TAGS, automation_condition=EAGER)
@retried
def clip_embeddings(context: dg.AssetExecutionContext, settings: CurationSettings, embedding_model: EmbeddingModel,
                    run_control: RunControl, video_clips: dict[str, VideoResult],
                    aesthetic_scores: dict[str, ClipAnnotations]) -> dict[str, ClipAnnotations]:
    """Cosmos-Embed1 embedding per passed clip. Weights missing: a failure when embeddings were
    asked for explicitly (generate_embeddings=on), a note and no embeddings in auto mode."""
    options, results = settings.options(), _of_run(context, video_clips)
    if options.generate_embeddings == "off":
        return _report(context, curate.skipped_step(results, options, "clip_embeddings"), "embeddings")
    embedder = embedding_model.embedder(options)
    try:
        embedder.resolve()
    except ModelWeightsMissing as exc:
        if options.generate_embeddings == "on":
            raise dg.Failure(f"embeddings requested but the weights are missing: {exc}", allow_retries=False) from None
        _notice(context, run_control, f"embeddings skipped: {exc}")
        return _report(context, curate.skipped_step(results, options, "clip_embeddings", f"embeddings skipped: {exc}"),
                       "embeddings")
    context.log.info(f"embedding with {embedder.variant} on {embedder.device} ({embedder.dtype})")
    return _report(context, curate.embedding_step(results, options, embedder, aesthetic_scores), "embeddings")


@dg.asset(**STEP_ASSET, kinds={"openai"}, op_tags=LIGHT_STEP_TAGS, automation_condition=EAGER)
@retried
def clip_captions(context: dg.AssetExecutionContext, settings: CurationSettings, caption_service: CaptionService,
                  video_clips: dict[str, VideoResult],
                  aesthetic_scores: dict[str, ClipAnnotations]) -> dict[str, ClipAnnotations]:
    """A caption per window of every passed clip from a vision-language model endpoint, and
    optionally an enhanced caption from a text model (generate_captions / enhance_captions)."""
    options, results = settings.options(), _of_run(context, video_clips)
    if not options.generate_captions:
        return _report(context, curate.skipped_step(results, options, "clip_captions"), "captioned_clips")
    client = caption_service.client(options)
    context.log.info(f"captioning with {client!r}")
    return _report(context, curate.caption_step(results, options, client, aesthetic_scores), "captioned_clips")


# ---------------------------------------------------------------------------------------------
# The layout: one asset per directory (``core.layout.LAYOUT``), each depending only on the steps
# that feed it.


def build_clip_writer(blocking_checks: bool = True) -> dg.AssetsDefinition:
    """The writer with its layout checks (``defs.checks``); ``blocking_checks``: a failing check
    fails the step (``checks_block_downstream``, chosen when the definitions are built)."""
    return dg.multi_asset(
        name="clip_writer",
        specs=[
            dg.AssetSpec(key=asset.key, description=asset.description, deps=list(asset.upstream),
                         group_name=LAYOUT_GROUP, partitions_def=PER_VIDEO["partitions_def"], skippable=True,
                         automation_condition=EAGER).with_io_manager_key("layout_io_manager")
            for asset in layout.LAYOUT
        ],
        check_specs=checks.layout_check_specs(blocking_checks),
        ins={name: dg.AssetIn(key=name) for name in STEPS},
        backfill_policy=PER_VIDEO["backfill_policy"],
        can_subset=False,
        op_tags=LIGHT_STEP_TAGS,
    )(retried(_clip_writer))


def _clip_writer(context: dg.AssetExecutionContext, settings: CurationSettings, run_control: RunControl,
                 video_clips: dict[str, VideoResult],
                 aesthetic_scores: dict[str, ClipAnnotations], clip_embeddings: dict[str, ClipAnnotations],
                 clip_captions: dict[str, ClipAnnotations]):
    """Write each video's files of the NeMo Curator clip-writer layout (``curate.write_one``),
    record a materialisation of every layout asset for each video written, then its layout checks."""
    options = settings.options()
    blocking = any(spec.blocking for spec in context.assets_def.check_specs)
    area = WorkArea.for_options(options)
    outcomes: list[VideoOutcome] = []
    check_failed: dict[str, str] = {}
    deferred: list[str] = []  # videos another run is writing: written after the rest of the batch
    for key in _write_order(run_partition_keys(context), deferred):
        run_control.checkpoint()  # between two videos: a video's write is never cut in the middle
        annotations = {step: values.get(key) for step, values in
                       zip(STEPS[1:], (aesthetic_scores, clip_embeddings, clip_captions), strict=True)}
        with run_control.watching():  # a stop is honoured while the write waits for another run's lock
            done = curate.write_one(key, video_clips[key], annotations, options, area,
                                    defer_if_busy=key not in deferred)
        if done.deferred:
            deferred.append(key)
            context.log.info(f"{done.result.rel_path}: another run is writing this video; it is written after the "
                             "rest of the batch")
            continue
        outcomes.append(done.outcome)
        if not done.outcome.ok:
            _record_failure(context, done)
            continue
        yield from _materialise(context, done, options, annotations)
        failing = yield from _check(context, key, done.result, options, blocking)
        if failing:
            check_failed[key] = failing
    for output_name in context.assets_def.check_specs_by_output_name:  # the checks' outputs, once per step
        if output_name in context.op_execution_context.selected_output_names:
            yield dg.Output(None, output_name=output_name)
    failing_checks = check_failed if blocking else {}
    raise_for(batch_failure(outcomes, "failed (their partitions failed; the others were written)",
                            also=failing_checks,
                            also_what="written but failing their layout checks (checks_block_downstream)",
                            metadata={"failed_checks": dg.MetadataValue.json(failing_checks)}))


def _write_order(keys: list[str], deferred: list[str]) -> Iterator[str]:
    """``keys``, then the ones put in ``deferred`` meanwhile: one video that another run holds
    waits alone, after the rest of the batch (up to ``writer.LOCK_WAIT_S``, a stop honoured)."""
    yield from keys
    yield from deferred


def _materialise(context: dg.AssetExecutionContext, done: curate.Write, options: PipelineOptions,
                 annotations: dict[str, ClipAnnotations | None]) -> Iterator[dg.AssetMaterialization]:
    """A materialisation of every layout asset for a written video, tagged with its data version."""
    assert done.report is not None
    version = {DATA_VERSION_TAG: backfill.data_version(options.record())}
    note = getattr(annotations[STEPS[2]], "note", None)
    for asset in layout.LAYOUT:
        yield dg.AssetMaterialization(asset_key=list(asset.key), partition=done.outcome.key, tags=version,
                                      metadata=layout_metadata(asset, done.result, done.report, options.output_path,
                                                               note, options.caption_models))
    report = done.report
    context.log.info(f"{done.result.rel_path}: wrote {sum(report.files.values())} files, removed "
                     f"{sum(report.removed.values())} stale"
                     + (f" (problems: {'; '.join(report.problems)})" if report.problems else ""))
    if options.log_stats:
        context.log.info(f"{done.result.rel_path}: clip stats {writer.clip_stats(done.result)}")


def _check(context: dg.AssetExecutionContext, key: str, result: VideoResult, options: PipelineOptions,
           blocking: bool) -> Generator[Any, None, str]:
    """The layout checks of a written video (their evaluations); returns what failed, or ''."""
    outcomes = checks.check_written_video(options.output_path, result.rel_path, result.source_video)
    yield from checks.evaluations(context.instance, key, outcomes, blocking)
    failing = [f"{name}: {outcome.summary()}" for name, outcome in outcomes.items() if not outcome.passed]
    if not failing:
        return ""
    context.log.error(f"{result.rel_path}: layout checks failed: " + "; ".join(failing))
    return "layout checks failed: " + "; ".join(failing)


def _record_failure(context: dg.AssetExecutionContext, done: curate.Write) -> None:
    """A failed video: in the run log and on each layout asset's partition (an observation); its
    ``processed_videos`` document says so when ``write_one`` could write it."""
    outcome, rel = done.outcome, done.result.rel_path
    context.log.error(f"{rel or outcome.key}: not written: {outcome.error}: {outcome.message}")
    if done.document_problem:
        context.log.error(f"{rel}: its processed_videos document could not be written either: {done.document_problem}")
    observe_failure(context, outcome, (asset.key for asset in layout.LAYOUT),
                    error_document_written=done.document_written)
