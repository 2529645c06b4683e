"""``curation-assets`` with timers around the pipeline's own functions: the CPU seconds of each part
of one CLI run, for ``reference_race.py``. The code measured is not changed; its functions are
wrapped for the run. Not imported by the package.

    python benchmarks/instrumented_cli.py PARTS.json run --video-dir ... (the CLI's own arguments)

Writes ``PARTS.json`` at exit: per part the CPU seconds (``process`` parts: every thread of the
process while the call ran, for steps that run alone; ``thread`` parts: the calling thread only,
summed over calls made on pool or encoder threads while other work runs):

``startup``     process CPU until the CLI's ``main`` is entered (interpreter and imports it needs first)
``probe``       ``core.probe.probe_video`` of the source (thread)
``video_clips`` ``core.pipeline.process_video``: split, decode, encode, previews, tap, motion (process,
                less the CLI's own threads: the first video begins on a thread of its own while the
                main thread builds the definitions and starts the run, ``core.head_start``)
``previews``    ``PreviewCollector.add`` + ``finish``: scaling the kept frames, WebP encoding (thread)
``tap``         the model-frame tap's ``add`` + ``finish`` (thread; 0 when no model step is on)
``motion``      ``core.motion.compute_motion_score`` per clip (thread)
``writing``     ``core.writer.write_video`` (process)
``checks``      ``core.layout_checks.check_video`` (process)
``total``       the whole process, at exit
"""

from __future__ import annotations

import atexit
import functools
import json
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_cpu: dict[str, float] = defaultdict(float)
_calls: dict[str, int] = defaultdict(int)
_lock = threading.Lock()
# large libraries a curation run without model steps has no use for: listed in the output when it loaded them
HEAVY = {"torch", "transformers", "pandas", "scipy", "cv2", "sklearn"}


def _add(part: str, seconds: float) -> None:
    with _lock:
        _cpu[part] += seconds
        _calls[part] += 1


def _timed(fn, part: str, clock):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(part, clock() - start)

    return wrapper


# the threads that set up and drive the run (Dagster's work), never the transcode's
_SETUP_THREADS = ("MainThread", "curation-run")


def _setup_threads_cpu() -> float:
    total = 0.0
    for thread in threading.enumerate():
        if thread.name in _SETUP_THREADS and thread.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except OSError:  # ended between the listing and the reading
                pass
    return total


def transcode_clock() -> float:
    """Process CPU less that of the CLI's own threads: what the transcode's threads (its own, its
    encoders', decoders', motion and preview work) used while it ran beside the run's setup. A setup
    thread started meanwhile counts from 0, so its whole CPU is left out."""
    return time.process_time() - _setup_threads_cpu()


def _wrap(obj, name: str, part: str, clock) -> None:
    setattr(obj, name, _timed(getattr(obj, name), part, clock))


def _tap_wrapping(factory_of):
    """``pipeline._frame_tap`` returning taps whose ``add``/``finish`` are timed."""

    @functools.wraps(factory_of)
    def wrapper(*args, **kwargs):
        factory = factory_of(*args, **kwargs)
        if factory is None:
            return None

        def make(*args, **kwargs):
            tap = factory(*args, **kwargs)
            for name in ("add", "finish"):
                setattr(tap, name, _timed(getattr(tap, name), "tap", time.thread_time))
            return tap

        return make

    return wrapper


def install() -> None:
    from curation_assets.core import layout_checks, motion, pipeline, previews, writer

    _wrap(pipeline, "probe_video", "probe", time.thread_time)
    _wrap(pipeline, "process_video", "video_clips", transcode_clock)
    _wrap(previews.PreviewCollector, "add", "previews", time.thread_time)
    _wrap(previews.PreviewCollector, "finish", "previews", time.thread_time)
    _wrap(motion, "compute_motion_score", "motion", time.thread_time)
    _wrap(writer, "write_video", "writing", time.process_time)
    _wrap(layout_checks, "check_video", "checks", time.process_time)
    pipeline._frame_tap = _tap_wrapping(pipeline._frame_tap)
    from curation_assets.core import steps

    steps.process_video = pipeline.process_video  # bound by name at its import


def main() -> int:
    out = Path(sys.argv[1])
    atexit.register(lambda: out.write_text(json.dumps({"cpu_s": dict(_cpu), "calls": dict(_calls),
                                                        "total_cpu_s": time.process_time(),
                                                        "heavy_modules": sorted(HEAVY & set(sys.modules))})))
    from curation_assets.cli import main as cli_main

    install()
    _cpu["startup"] = time.process_time()
    return cli_main(sys.argv[2:])


if __name__ == "__main__":
    from curation_assets.cli import leave

    leave(main())  # as the console script ends (the parts file is written by an atexit function)
