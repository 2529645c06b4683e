"""`curation-assets run | demo`: headless curation through the same Dagster assets the UI shows
(the demo then packages its output as `curation-assets package manifest|shards` does).

Flags take the names of NeMo Curator's `video_split_clip_example.py`, so an existing command
line works. Runs go through a Dagster instance under ``DAGSTER_HOME`` (default ``.dagster_home``)
so they appear in `dagster dev` afterwards; videos are processed in batched runs (partition
ranges), paying per-run overhead once per batch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from ..core import storage
from . import startup_gc
from .arguments import DEMO_INPUT_PATH, UsageError, add_pipeline_arguments, caption_section_from_args, options_from_args
from .demo import copy_demo_footage, package_demo_output
from .runner import dagster_home, run_pipeline
from .stop import StopOnSignal

__all__ = ["StopOnSignal", "UsageError", "build_parser", "console_main", "dagster_home", "leave", "main",
           "options_from_args", "run_pipeline"]


#: The commands beside run and demo, each (its module, the function adding its parser, its runner):
#: a module's heavy imports wait until its command runs.
TOOLS: dict[str, tuple[str, str, str]] = {
    "package": ("..packaging.cli", "add_package_parser", "run_package"),
    "gallery": ("..gallery.cli", "add_gallery_parser", "run_gallery"),
    "search": ("..search.cli", "add_search_parser", "run_search"),
    "datacard": ("..reports.datacard_cli", "add_datacard_parser", "run_datacard"),
    "diff": ("..reports.diff_cli", "add_diff_parser", "run_diff"),
    "snapshot": ("..reports.diff_cli", "add_diff_parser", "run_diff"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="curation-assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_pipeline_arguments(sub.add_parser("run", help="curate every video under --video-dir"))
    add_pipeline_arguments(sub.add_parser("demo", help=f"copy sample footage to {DEMO_INPUT_PATH}, curate it and "
                                                       "package the output (manifest, WebDataset shards)"),
                           demo=True)
    for module, add, _run in dict.fromkeys(TOOLS.values()):  # diff and snapshot share one module
        getattr(importlib.import_module(module, __package__), add)(sub)
    return parser


def console_main() -> NoReturn:
    """The ``curation-assets`` console script and ``python -m curation_assets.cli``: :func:`main`,
    then :func:`leave`. The garbage collector waits out the start-up (:mod:`.startup_gc`)."""
    startup_gc.pause()
    leave(main())


def leave(status: int) -> NoReturn:
    """End the process with ``status`` as a normal exit would, less the interpreter's teardown.

    Tearing down the modules a run has loaded (Dagster, SQLAlchemy, PyAV, ...) took about 0.8 s of
    one core after the summary was printed, with nothing left to do: every file and every Dagster
    record is written and closed by then. What a normal exit does that matters is done here, in its
    order: the other threads are joined (with the thread pools' own exit hooks), the ``atexit``
    functions run (logging's flush among them) and the standard streams are flushed."""
    import atexit
    import threading

    threading._shutdown()  # type: ignore[attr-defined]  # what Py_Finalize calls first: join non-daemon threads
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be said there
            pass
    os._exit(status)


def _ignore_stop_signals() -> None:
    """The interpreter's exit puts Python's own signal handlers back to the default (death by the
    signal): an ignored signal stays ignored."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in TOOLS:  # no Dagster to load: the collector is back for the command's own work
        startup_gc.resume()
        module, _add, run = TOOLS[args.command]
        return int(getattr(importlib.import_module(module, __package__), run)(args))
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        os.environ.setdefault("DAGSTER_CLI_LOG_LEVEL", "WARNING")
        logging.getLogger("dagster").setLevel(logging.WARNING)
    try:
        if args.command == "demo":
            video_dir = getattr(args, "input_path", DEMO_INPUT_PATH)
            copied = copy_demo_footage(Path(video_dir))
            print(f"demo footage in {video_dir}: {', '.join(p.name for p in copied)}")
        options = options_from_args(args)
        rc = run_pipeline(options, video_limit=args.video_limit, videos_per_run=args.videos_per_run,
                          home=args.dagster_home, caption_service=caption_section_from_args(args))
        startup_gc.resume()  # already done where the run began its work; not where it ended before
        if args.command == "demo" and rc != 130:  # the whole story: the packages of what was written
            rc = max(rc, package_demo_output(options.output_path, build_parser().parse_args))
        if rc == 130:  # stopped: the process leaves with 130, which a further signal must not turn
            _ignore_stop_signals()  # into death by SIGINT while the interpreter exits
        return rc
    except (UsageError, storage.StorageError) as exc:
        # storage errors (missing input prefix or bucket, access denied) carry redacted messages
        print(f"curation-assets: error: {storage.redact(exc)}", file=sys.stderr)
        return 2
