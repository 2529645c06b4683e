"""What the settings resources cost a run, now that nothing in Dagster is patched to memoise their
config schemas (issue 22; the patch was ``memoise_resource_schemas``).

Prints figures; not a test. Three measurements, each the best of ``--rounds``:

``construct``   one ``CurationSettings()``, ``PackagingSettings()`` and ``CaptionService()`` each
                (Dagster derives a resource's config schema at every construction and copy);
``init``        a one-op run whose op takes the ``settings`` resource, bound as ``definitions.py``
                binds it (``configure_at_launch``, with an IO manager that depends on it by key),
                the run's own ``settings`` config given, as the launchpad gives it;
``video``       the curate job over ``--videos`` tiny videos (2 s of 128x96 each, fixed stride, no
                previews or embeddings) in one ranged run: a whole small ``execute_in_process``.

For ``init`` and ``video`` a cProfile pass counts the calls of Dagster's schema inference
(``infer_schema_from_config_class``, and the memo's wrapper where the tree has it) and the seconds
spent in them (the profiler slows them down: read the seconds as an upper bound). ``--tree DIR``
measures another checkout too (e.g. the main branch, with the patch): both trees in subprocesses,
alternately, each figure the best of its tree's alternations, so both come from one invocation on
one machine under the same load:

    python benchmarks/resource_copy.py
    python benchmarks/resource_copy.py --tree /path/to/main --rounds 5
"""

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_FUNCTIONS = ("infer_schema_from_config_class", "infer_schema")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _best(rounds: int, once) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - start)
    return best


def _schema_profile(once) -> tuple[int, float]:
    """(calls, cumulative seconds) of Dagster's schema inference during ``once()``: the memo's
    wrapper where the tree installs one (every call goes through it), else Dagster's function."""
    profile = cProfile.Profile()
    profile.runcall(once)
    found: dict[str, list[float]] = {"memo": [0, 0.0], "dagster": [0, 0.0]}
    for (path, _line, name), (_cc, ncalls, _tt, cumtime, _callers) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        kind = "memo" if name == "infer_schema" and "workarounds" in path else \
            "dagster" if name in SCHEMA_FUNCTIONS and "pythonic_config" in path else None
        if kind:
            found[kind][0] += ncalls
            found[kind][1] += cumtime
    calls, seconds = found["memo"] if found["memo"][0] else found["dagster"]
    return int(calls), seconds


def measure(rounds: int, videos_per_run: int) -> dict[str, Any]:
    import dagster as dg

    from curation_assets.core.keys import key_from_rel_path
    from curation_assets.core.options import PipelineOptions
    from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
    from curation_assets.defs.curation.io_managers import WorkIOManager
    from curation_assets.defs.shared.resources import CaptionService, CurationSettings
    from curation_assets.partitions import VIDEOS_PARTITION_NAME

    sys.path.append(str(HERE.parent))  # the tests' video factory, after the tree measured
    from curation_assets_tests.video_factory import make_video

    try:
        from curation_assets.defs.shared.resources import PackagingSettings
    except ImportError:  # a tree where it lives beside the packaging assets
        from curation_assets.defs.packaging.assets import PackagingSettings

    out: dict[str, Any] = {"videos": videos_per_run}
    out["construct_ms"] = {cls.__name__: _best(rounds * 10, cls) * 1e3
                           for cls in (CurationSettings, PackagingSettings, CaptionService)}

    with tempfile.TemporaryDirectory(prefix="h1-resource-copy-") as tmp:
        videos, target = Path(tmp) / "in", Path(tmp) / "out"
        videos.mkdir()
        bound = CurationSettings.configure_at_launch()

        @dg.op(out=dg.Out(io_manager_key="work_io_manager"))
        def uses_settings(settings: CurationSettings) -> None:
            assert settings.options().output_path == str(target)

        @dg.job(resource_defs={"settings": bound, "work_io_manager": WorkIOManager(settings=bound)})
        def one_op():
            uses_settings()

        config = {**QUIET, "resources": {"settings": {"config": {"input_path": str(videos), "output_path": str(target)}}}}

        def init_run() -> None:
            assert one_op.execute_in_process(run_config=config).success

        init_run()  # warm: imports, first schema derivations
        out["init_run_ms"] = _best(rounds, init_run) * 1e3
        out["init_schema_calls"], seconds = _schema_profile(init_run)
        out["init_schema_ms"] = seconds * 1e3

        names = [f"v{i}.mp4" for i in range(videos_per_run)]
        for name in names:
            make_video(videos / name, seconds=2, fps=25, width=128, height=96)
        options = PipelineOptions(input_path=str(videos), output_path=str(target), fixed_stride_split_duration=1.0,
                                  fixed_stride_min_clip_length_s=0.5, generate_embeddings="off",
                                  generate_previews=False)
        job = build_definitions(CurationSettings.from_options(options)).resolve_job_def(CURATE_JOB_NAME)
        keys = [key_from_rel_path(name) for name in names]
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, keys)

            def video_run() -> None:
                assert job.execute_in_process(instance=instance, run_config=QUIET, tags={
                    "dagster/asset_partition_range_start": keys[0],
                    "dagster/asset_partition_range_end": keys[-1]}).success

            video_run()
            out["video_run_ms"] = _best(rounds, video_run) * 1e3
            out["video_schema_calls"], seconds = _schema_profile(video_run)
            out["video_schema_ms"] = seconds * 1e3
    return out


def _in_tree(tree: Path, rounds: int, videos: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, __file__, "--json", "--rounds", str(rounds), "--videos", str(videos)], env=env, cwd=str(tree),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _print(name: str, figures: dict[str, Any]) -> None:
    construct = ", ".join(f"{k} {v:.2f}" for k, v in figures["construct_ms"].items())
    print(f"{name}:\n  construct (ms): {construct}\n"
          f"  one-op run: {figures['init_run_ms']:.1f} ms; schema inference {figures['init_schema_calls']} calls, "
          f"{figures['init_schema_ms']:.1f} ms (profiled)\n"
          f"  {figures['videos']} tiny videos, one run: {figures['video_run_ms']:.1f} ms; schema inference {figures['video_schema_calls']} "
          f"calls, {figures['video_schema_ms']:.1f} ms (profiled)")


def _best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's lowest over ``runs`` (the least disturbed by the machine's other load)."""
    best = dict(runs[0])
    for run in runs[1:]:
        for key, value in run.items():
            if isinstance(value, dict):
                best[key] = {k: min(v, best[key][k]) for k, v in value.items()}
            elif key.endswith("_ms"):
                best[key] = min(value, best[key])
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--videos", type=int, default=4, help="videos in the curate run (one partition range)")
    parser.add_argument("--tree", type=Path, help="also measure this checkout (e.g. main); both trees then run in "
                                                  "subprocesses, alternately, --alternations times")
    parser.add_argument("--alternations", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print this tree's figures as one JSON line")
    args = parser.parse_args()
    if args.json or not args.tree:
        figures = measure(args.rounds, args.videos)
        if args.json:
            print(json.dumps(figures))
        else:
            _print(f"{HERE.parent} (this tree)", figures)
        return 0
    trees: dict[str, list[dict[str, Any]]] = {str(args.tree.resolve()): [], f"{HERE.parent} (this tree)": []}
    for _ in range(args.alternations):
        for name, runs in trees.items():
            runs.append(_in_tree(Path(name.split(" ")[0]), args.rounds, args.videos))
    for name, runs in trees.items():
        _print(name, _best_of(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
