"""The assets, partitioned by video. Read top to bottom, this is the pipeline:

    video_clips        probe, split, one decode pass -> transcoded clips, previews, motion scores
    aesthetic_scores   CLIP + aesthetic MLP per clip, when a threshold is set (GPU pool)
    clip_embeddings    Cosmos-Embed1 vectors per passed clip (GPU pool)
    clip_captions      VLM caption per window of each passed clip, through an endpoint
    clip_writer        applies the filters, then writes every directory of the NeMo Curator layout:
                       clips (+filtered_clips), previews, metas/v0, ce1_embd, ce1_embd_parquet,
                       processed_clip_chunks, processed_videos

Every asset takes a range of `videos` partitions per run and handles each video on its own: a
broken video is recorded, and fails only its own partition.
"""

import time
from typing import Any

import dagster as dg

from .. import progress
from ..core import layout, storage
from ..core.model import ClipAnnotations, VideoResult, as_bytes
from ..core.pipeline import Progress, process_video
from ..models import stages
from ..models._weights import ModelWeightsMissing
from ..partitions import source_url_for_key, videos_partitions
from .io_managers import ASSET_DIRECTORIES, WRITE_ORDER, ClipLayoutIOManager, WorkIOManager
from .resources import AestheticModel, CaptionService, CurationSettings, EmbeddingModel

VIDEOS_PER_RUN = 16
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=VIDEOS_PER_RUN)
LAYOUT_GROUP = "clip_writer_layout"
# What every intermediate (per-step) asset shares: video partitions in ranges, values kept
# per video by the work IO manager.
STEP_ASSET: dict[str, Any] = dict(partitions_def=videos_partitions, backfill_policy=BACKFILL_POLICY,
                                  io_manager_key="work_io_manager", group_name="curation")


def _partition_keys(context: dg.AssetExecutionContext) -> list[str]:
    return list(context.partition_keys) if context.has_partition_key_range or context.has_partition_key else []


@dg.asset(
    **STEP_ASSET,
    kinds={"python", "video"},
)
def video_clips(context: dg.AssetExecutionContext, settings: CurationSettings,
                work_io_manager: dg.ResourceParam[WorkIOManager]) -> dict[str, VideoResult]:
    """Each video split into clips, transcoded in one decode pass, with previews and motion scores.

    Clip bytes go to files next to the stored value as each clip finishes (memory stays flat
    whatever the video's length); the value passed to the next assets holds their paths."""
    options = settings.options()
    input_path = storage.normalize_url(options.input_path)
    results: dict[str, VideoResult] = {}
    keys = _partition_keys(context)
    for n, key in enumerate(keys, 1):
        started = time.perf_counter()
        try:
            url = source_url_for_key(input_path, key)
        except ValueError as exc:
            raise dg.Failure(f"partition key {key!r} refused: {exc}") from None
        rel = storage.relative_to(input_path, url)
        context.log.info(f"[{n}/{len(keys)}] {rel}: processing")

        def on_progress(p: Progress, _n=n) -> None:
            progress.emit(p)
            if p.finished:
                return
            if options.verbose or (p.clips_total and p.clips_done == p.clips_total):  # not the 0/0 start tick
                context.log.info(f"[{_n}/{len(keys)}] {p.rel_path}: clip {p.clips_done}/{p.clips_total}")

        result = process_video(url, rel, lambda u=url: storage.open_input(u), options, on_progress=on_progress,
                               spill_dir=work_io_manager.spill_dir(context.assets_def.key, key))
        elapsed = time.perf_counter() - started
        results[key] = result
        duration = result.metadata.duration if result.metadata and result.metadata.duration else 0.0
        if result.errors:
            context.log.error(f"{rel}: {'; '.join(f'{k}: {v}' for k, v in result.errors.items())}")
        context.add_asset_metadata(
            {
                "source": dg.MetadataValue.path(url),
                "num_clips": len(result.clips),
                "num_clips_transcoded": sum(1 for c in result.clips if c.encoded),
                "video_duration_s": round(duration, 3),
                "wall_time_s": round(elapsed, 3),
                "video_seconds_per_second": round(duration / elapsed, 3) if elapsed > 0 else 0.0,
                "errors": dg.MetadataValue.json(result.errors),
            },
            partition_key=key,
        )
    return results


def _skipped(keys: list[str], note: str) -> dict[str, ClipAnnotations]:
    return {key: ClipAnnotations(note=note) for key in keys}


def _report(context: dg.AssetExecutionContext, out: dict[str, ClipAnnotations], what: str) -> None:
    for key, ann in out.items():
        md: dict[str, Any] = {f"num_{what}": len(ann.values), "num_clip_errors": len(ann.errors)}
        if ann.note:
            md["note"] = ann.note
        if ann.errors:
            md["clip_errors"] = dg.MetadataValue.json({uid: list(err) for uid, err in list(ann.errors.items())[:50]})
        context.add_asset_metadata(md, partition_key=key)


def _notice(context: dg.AssetExecutionContext, message: str) -> None:
    context.log.warning(message)
    progress.emit(progress.Notice(message))


@dg.asset(
    **STEP_ASSET,
    pool="gpu",
    kinds={"pytorch"},
)
def aesthetic_scores(
    context: dg.AssetExecutionContext, settings: CurationSettings, aesthetic_model: AestheticModel,
    video_clips: dict[str, VideoResult],
) -> dict[str, ClipAnnotations]:
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
            raise dg.Failure(f"aesthetic_threshold is set but the weights are missing: {exc}") from None
        out = stages.score_aesthetics({k: video_clips[k] for k in keys}, scorer)
    _report(context, out, "aesthetic_scores")
    return out


def _passed_after_filters(options, video_clips, aesthetic_scores, keys) -> dict[str, VideoResult]:
    return {k: stages.annotate(video_clips[k], options, aesthetics=aesthetic_scores.get(k)) for k in keys}


@dg.asset(
    **STEP_ASSET,
    pool="gpu",
    kinds={"pytorch"},
)
def clip_embeddings(
    context: dg.AssetExecutionContext, settings: CurationSettings, embedding_model: EmbeddingModel,
    video_clips: dict[str, VideoResult], aesthetic_scores: dict[str, ClipAnnotations],
) -> dict[str, ClipAnnotations]:
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
                raise dg.Failure(f"embeddings requested but the weights are missing: {exc}") from None
            note = f"embeddings skipped: {exc}"
            _notice(context, note)
            out = _skipped(keys, note)
        else:
            context.log.info(f"embedding with {embedder.variant} on {embedder.device} ({embedder.dtype})")
            out = stages.embed(_passed_after_filters(options, video_clips, aesthetic_scores, keys), embedder)
    _report(context, out, "embeddings")
    return out


@dg.asset(
    **STEP_ASSET,
    kinds={"openai"},
)
def clip_captions(
    context: dg.AssetExecutionContext, settings: CurationSettings, caption_service: CaptionService,
    video_clips: dict[str, VideoResult], aesthetic_scores: dict[str, ClipAnnotations],
) -> dict[str, ClipAnnotations]:
    """A caption per window of every passed clip from a vision-language model endpoint, and
    optionally an enhanced caption from a text model (generate_captions / enhance_captions)."""
    options = settings.options()
    keys = _partition_keys(context)
    if not options.generate_captions:
        out = _skipped(keys, "captions off (generate_captions=false)")
    else:
        client = caption_service.client(options)
        context.log.info(f"captioning with {client.model} at {client.base_url}")
        out = stages.caption(_passed_after_filters(options, video_clips, aesthetic_scores, keys), client,
                             enhance=options.enhance_captions)
    _report(context, out, "captioned_clips")
    return out


# Output name -> (asset key, description): one asset per directory of the layout.
WRITER_ASSETS: dict[str, tuple[list[str], str]] = {
    "clips": (["clips"], "Passed clips (clips/) and filtered clips (filtered_clips/), one mp4 per clip."),
    "previews": (["previews"], "Animated WebP preview per clip window."),
    "metas_v0": (["metas", "v0"], "Per-clip metadata JSON (passed and filtered clips)."),
    "ce1_embd": (["ce1_embd"], "Cosmos-Embed1 embedding per passed clip (pickle, shape (1, D))."),
    "ce1_embd_parquet": (["ce1_embd_parquet"], "Embeddings per clip chunk (parquet: id, embedding)."),
    "processed_clip_chunks": (["processed_clip_chunks"], "Per-chunk statistics JSON."),
    "processed_videos": (["processed_videos"], "Video-level metadata JSON (errors included)."),
}


def _directory_metadata(asset: str, result: VideoResult, files: dict[str, bytes], written: dict[str, Any],
                        output_path: str, embeddings_note: str | None) -> dict[str, Any]:
    passed = [c for c in result.clips if c.passed]
    filtered = [c for c in result.clips if not c.passed]
    durations = [c.duration_s for c in result.clips]
    md: dict[str, Any] = {
        "files_written": written["files"],
        "bytes_written": written["bytes"],
        "stale_files_removed": written["removed"],
        "location": dg.MetadataValue.path(storage.join(output_path, ASSET_DIRECTORIES[asset][0])),
    }
    if asset == "clips":
        md.update(
            num_clips_passed=len(passed),
            num_clips_filtered=len(filtered),
            num_clips_filtered_by_motion=sum(1 for c in filtered if c.filtered_by == "motion"),
            num_clips_filtered_by_aesthetic=sum(1 for c in filtered if c.filtered_by == "aesthetic"),
            total_clip_duration_s=round(sum(durations), 3),
            max_clip_duration_s=round(max(durations, default=0.0), 3),
            filtered_location=dg.MetadataValue.path(storage.join(output_path, layout.FILTERED_CLIPS)),
        )
    elif asset == "previews":
        md["num_previews"] = len(files)
        first = next((data for rel, data in sorted(files.items())), None)
        if first is not None and len(first) < 400_000:
            import base64

            data = as_bytes(first)
            md["preview"] = dg.MetadataValue.md(f"![preview](data:image/webp;base64,{base64.b64encode(data).decode()})")
    elif asset in ("ce1_embd", "ce1_embd_parquet"):
        md["num_clips_with_embeddings"] = sum(1 for c in passed if c.embedding is not None)
        if not md["num_clips_with_embeddings"]:
            md["note"] = embeddings_note or "no embeddings were computed for this video"
    elif asset == "metas/v0":
        md["num_metas"] = len(files)
        md["num_clips_with_errors"] = sum(1 for c in result.clips if c.errors)
    elif asset == "processed_videos":
        md["errors"] = dg.MetadataValue.json(result.errors)
        md["num_total_clips"] = len(result.clips)
    return md


@dg.multi_asset(
    outs={
        name: dg.AssetOut(key=key, description=description, io_manager_key="layout_io_manager", is_required=False,
                          group_name=LAYOUT_GROUP)
        for name, (key, description) in WRITER_ASSETS.items()
    },
    partitions_def=videos_partitions,
    backfill_policy=BACKFILL_POLICY,
    required_resource_keys={"layout_io_manager", "settings"},
    can_subset=False,
)
def clip_writer(context: dg.AssetExecutionContext, video_clips: dict[str, VideoResult],
                aesthetic_scores: dict[str, ClipAnnotations], clip_embeddings: dict[str, ClipAnnotations],
                clip_captions: dict[str, ClipAnnotations]):
    """Write each video's files of the NeMo Curator clip-writer layout, one directory per asset."""
    settings: CurationSettings = context.resources.settings
    io: ClipLayoutIOManager = context.resources.layout_io_manager
    options = settings.options()
    output_path = io.output_path
    io.cleanup_temp_files()  # leftovers of killed runs in the flat directories
    captions = layout.CaptionConfig(tuple(options.caption_models), tuple(options.enhanced_caption_models))
    failed: dict[str, str] = {}
    for key in _partition_keys(context):
        result = stages.annotate(
            video_clips[key], options, aesthetics=aesthetic_scores.get(key), embeddings=clip_embeddings.get(key),
            captions=clip_captions.get(key), caption_key=options.caption_models[0],
            enhance_key=options.enhanced_caption_models[0],
        )
        files = layout.video_files(
            result, output_path, captions=captions, upload_clips=options.upload_clips, dry_run=options.dry_run,
            chunk_budget=options.chunk_duration_budget, pipeline=result.settings,
        )
        previous = io.previous_files(result.rel_path, result.source_video)
        io.cleanup_temp_files(result.rel_path, previous, [rel for d in files.files.values() for rel in d])
        unreadable = result.metadata is None
        for asset in WRITE_ORDER:
            subset = {rel: data for d in ASSET_DIRECTORIES[asset] for rel, data in files.files[d].items()}
            written = io.write_video(asset, subset, previous, remove_stale=not options.dry_run)
            if unreadable:
                continue
            yield dg.AssetMaterialization(
                asset_key=asset.split("/"),
                partition=key,
                metadata=_directory_metadata(asset, result, subset, written, output_path,
                                             getattr(clip_embeddings.get(key), "note", None)),
            )
        if unreadable:
            failed[key] = "; ".join(result.errors.values()) or "unreadable"
        context.log.info(
            f"{result.rel_path}: wrote {sum(len(v) for v in files.files.values())} files"
            + (f" (errors: {result.errors})" if result.errors else "")
        )
    if failed:
        raise dg.Failure(
            description="Unreadable videos (their partitions failed; the others were written):\n"
            + "\n".join(f"- {msg}" for msg in failed.values()),
            metadata={"failed_partitions": dg.MetadataValue.json(sorted(failed))},
        )
