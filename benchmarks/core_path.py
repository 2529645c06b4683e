"""The curation work of one ``curation-assets run``, without Dagster: the floor under the CLI.

``reference_race.py --core`` times this beside the whole CLI, so the table says how much of our
run is the work itself (the same steps the assets call, in the same order: ``core.steps``'s
transcode step, the model steps passed through as they are when off, ``curate.write_one``, the
layout checks) and how much is Dagster's run around it (importing Dagster, the instance, the run
and its event log). It writes the same files as the CLI with the same flags (the race compares
their sha256). Not a user's entry point: without the instance nothing records what was written.

    python benchmarks/core_path.py run --video-dir DIR --output-path OUT [the CLI's flags]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str]) -> int:
    from curation_assets import curate
    from curation_assets.cli import build_parser
    from curation_assets.cli.arguments import options_from_args
    from curation_assets.core import layout_checks, sources, steps
    from curation_assets.core.dataset import video_of_key
    from curation_assets.core.keys import key_from_rel_path
    from curation_assets.core.options import STEPS
    from curation_assets.core.work import WorkArea
    from curation_assets.models.video import MODEL_PARTS

    args = build_parser().parse_args(argv)
    options = options_from_args(args)
    options = options.replace(input_path=sources.canonical_input(options.input_path))
    if options.generate_embeddings != "off" or options.generate_captions or options.aesthetic_threshold is not None:
        raise SystemExit("core_path.py measures runs with the model steps off (the race's settings)")
    area = WorkArea.for_options(options)
    failed = 0
    for rel in sources.scan_videos(options.input_path, options.video_extensions).videos:
        key = key_from_rel_path(rel)
        video = video_of_key(options.input_path, key)
        assert video is not None, rel
        source = video[0]
        result, _ = steps.clips_of_video(source, rel, options, area, models=MODEL_PARTS)
        results = {key: result}
        annotations = {step: curate.skipped_step(results, options, step)[key] for step in STEPS[1:]}
        done = curate.write_one(key, result, annotations, options, area)
        outcomes = layout_checks.check_video(options.output_path, rel, result.source_video) if done.outcome.ok else {}
        ok = done.outcome.ok and all(o.passed for o in outcomes.values())
        failed += not ok
        print(f"{rel}: {len(result.clips)} clips, {'written' if done.outcome.ok else done.outcome.error}, "
              f"checks {'passed' if ok else 'failed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    from curation_assets.cli import leave

    leave(main(sys.argv[1:]))
