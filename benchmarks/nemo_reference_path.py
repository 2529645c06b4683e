"""NeMo Curator 1.4.0's own CPU path on one video, part by part: run by ``reference_race.py`` with the
interpreter of a separate environment that has ``nemo-curator`` installed from PyPI (never imported
by this project, which does not depend on it).

The stages are NeMo Curator's own classes, called the way its tests call them (``setup()`` then
``process()`` on a ``VideoTask``, no Ray): ``VideoReaderStage``'s metadata read
(``Video.populate_metadata``), ``FixedStrideExtractorStage`` (10 s clips, 10 s stride, 2 s minimum),
``ClipTranscodingStage`` with ``encoder="libx264"`` (1.4.0 lists only ``h264_nvenc``,
``libvpx-vp9`` and ``libopenh264``; libx264 is added to its list for this comparison, so the ffmpeg
command it builds is its own with ``-c:v libx264`` and x264's defaults: preset medium, crf 23; its
defaults otherwise: ``-threads 1`` per clip, all clips in one ffmpeg process),
``MotionVectorDecodeStage`` + ``MotionFilterStage`` (``score_only``) with their defaults, and
``ClipWriterStage`` (clips, metas, processed_videos; no previews, embeddings or captions: the
issue's reference run).

Prints one JSON object: per part the wall seconds and CPU seconds (this process's CPU plus the
ffmpeg children it waited for), the clip count and the scores.

    /path/to/nemo-venv/bin/python benchmarks/nemo_reference_path.py VIDEO OUTPUT_DIR [--clip-seconds 10]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import time


def _cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("output")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    args = parser.parse_args()

    parts: dict[str, dict[str, float]] = {}

    def timed(name: str, fn):
        w, c = time.perf_counter(), _cpu()
        value = fn()
        parts[name] = {"wall_s": time.perf_counter() - w, "cpu_s": _cpu() - c}
        return value

    w0, c0 = time.perf_counter(), _cpu()

    def start_up():
        import nemo_curator.stages.video.clipping.clip_extraction_stages as extraction
        from nemo_curator.stages.video.filtering.motion_filter import MotionFilterStage, MotionVectorDecodeStage
        from nemo_curator.stages.video.io.clip_writer import ClipWriterStage
        from nemo_curator.tasks.video import Video, VideoTask

        # libx264 is not in 1.4.0's list (licensing); allowed for this comparison only
        extraction.SUPPORTED_ENCODERS = (*extraction.SUPPORTED_ENCODERS, "libx264")
        return extraction, MotionVectorDecodeStage, MotionFilterStage, ClipWriterStage, Video, VideoTask

    extraction, MotionVectorDecodeStage, MotionFilterStage, ClipWriterStage, Video, VideoTask = timed("start-up", start_up)
    video_path = pathlib.Path(args.video).resolve()

    def probe():
        video = Video(input_video=video_path, source_bytes=video_path.read_bytes())
        video.populate_metadata()
        return VideoTask(dataset_name="bench", data=video)

    task = timed("probe", probe)
    split = extraction.FixedStrideExtractorStage(clip_len_s=args.clip_seconds, clip_stride_s=args.clip_seconds,
                                                 min_clip_length_s=2.0, limit_clips=0)
    task = timed("split", lambda: split.process(task))
    transcode = extraction.ClipTranscodingStage(encoder="libx264")
    transcode.setup()
    tasks = timed("transcode", lambda: transcode.process(task))
    tasks = tasks if isinstance(tasks, list) else [tasks]
    decode = MotionVectorDecodeStage()
    motion = MotionFilterStage(score_only=True)

    def motion_all():
        return [motion.process(decode.process(t)) for t in tasks]

    tasks = timed("motion vectors", motion_all)
    writer = ClipWriterStage(output_path=str(pathlib.Path(args.output).resolve()), input_path=str(video_path.parent),
                             upload_clips=True, dry_run=False, generate_embeddings=False, generate_previews=False,
                             generate_captions=False)
    writer.setup()
    timed("writing", lambda: [writer.process(t) for t in tasks])
    clips = [c for t in tasks for c in (*t.data.clips, *t.data.filtered_clips)]
    print(json.dumps({
        "parts": parts,
        "total": {"wall_s": time.perf_counter() - w0, "cpu_s": _cpu() - c0},
        "clips": len(clips),
        "settings": {"encoder": "libx264", "encoder_threads": transcode.encoder_threads,
                     "encode_batch_size": transcode.encode_batch_size,
                     "motion_decode_threads": int(decode.num_cpus_per_worker)},
        "scores": sorted([str(c.uuid), c.motion_score_global_mean, c.motion_score_per_patch_min_256] for c in clips),
    }))


if __name__ == "__main__":
    main()
