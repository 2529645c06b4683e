"""Per-video overhead of daemon-launched batched runs, against the CLI's in-process runs.

Prints figures; not a test. The same ``--videos`` short videos (default 16, the default batch,
2 s of 320x240 each: little work per video, so the overhead shows) are curated three ways, each
into a fresh output folder so nothing is reused:

``cli``            ``cli.run_pipeline`` with one batch: one ``execute_in_process`` run over a
                   partition range, in this process (the baseline);
``daemon``         a run of ``curate_videos`` over the same range launched through
                   ``dagster-webserver``'s GraphQL ``launchRun`` on an instance with the queued run
                   coordinator, dequeued and launched by ``dagster-daemon`` (a new process per run),
                   as the sensor's and the schedule's runs are; its executor is the in-process one;
``multiprocess``   the same through a job whose executor starts a process per step (Dagster's
                   default executor), for comparison.

For the launched runs: ``total`` = run created -> run ended (queue wait, launch, code location
load, every step); ``launch`` = created -> started; ``run`` = started -> ended. Overhead per video =
(launched total - cli wall) / videos. Rounds alternate the three ways (``--rounds``) so the
machine's load moves them alike; the lowest total of each way is reported.

    python benchmarks/automation_overhead.py
    python benchmarks/automation_overhead.py --videos 16 --rounds 2
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from measure import DEFAULT_RESULTS, append_record, cpu_self, git_commit, peak_rss_mb  # noqa: E402

LOCATION = "bench"
REPOSITORY = "__repository__"
MULTIPROCESS_JOB = "curate_videos_multiprocess"
# The benchmark's code location: the product's definitions plus the same job with Dagster's
# default per-step-process executor.
LOCATION_CODE = f'''
import dagster as dg
from curation_assets.definitions import build_definitions


multiprocess = dg.define_asset_job("{MULTIPROCESS_JOB}", selection=dg.AssetSelection.all(),
                                   executor_def=dg.multiprocess_executor)
defs = dg.Definitions.merge(build_definitions(), dg.Definitions(jobs=[multiprocess]))
'''
LAUNCH_RUN = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(url: str, query: str, variables: dict) -> dict:
    import requests

    r = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=120)
    r.raise_for_status()
    body = r.json()
    if "errors" in body:
        raise RuntimeError(body["errors"])
    return body["data"]


def _settings(videos: Path, out: Path) -> dict[str, Any]:
    return {"input_path": str(videos), "output_path": str(out), "generate_embeddings": "off"}


def make_videos(folder: Path, n: int, seconds: float) -> list[str]:
    from curation_assets_tests.video_factory import make_video

    folder.mkdir(parents=True, exist_ok=True)
    names = [f"v{i:03d}.mp4" for i in range(n)]
    for name in names:
        if not (folder / name).exists():
            make_video(folder / name, seconds=seconds, fps=25, width=320, height=240, audio=True)
    return names


def run_cli(videos: Path, out: Path, home: Path, n: int) -> dict[str, Any]:
    from curation_assets.cli import run_pipeline
    from curation_assets.core.options import PipelineOptions

    options = PipelineOptions(**_settings(videos, out))
    t0 = time.perf_counter()
    rc = run_pipeline(options, videos_per_run=n, home=str(home), stream=io.StringIO())
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError("the CLI run failed")
    return {"wall_s": round(wall, 2)}


class Services:
    """dagster-webserver and dagster-daemon on a temporary instance (queued run coordinator)."""

    def __init__(self, work: Path, videos: Path):
        self.home = work / "home"
        self.home.mkdir()
        shutil.copyfile(ROOT / ".dagster_home" / "dagster.yaml", self.home / "dagster.yaml")  # the project's instance settings
        (work / "bench_location.py").write_text(LOCATION_CODE)
        (work / "workspace.yaml").write_text(
            f"load_from:\n  - python_file:\n      relative_path: bench_location.py\n      location_name: {LOCATION}\n"
            f"      working_directory: {ROOT}\n")
        self.env = {**os.environ, "DAGSTER_HOME": str(self.home), "CURATION_INPUT_PATH": str(videos),
                    "CURATION_OUTPUT_PATH": str(work / "unused-out"), "PYTHONPATH": str(ROOT)}
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.work = work
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Services:
        import dagster as dg
        import requests

        with dg.DagsterInstance.from_config(str(self.home)):
            pass  # the storage is created once, before two processes would race to create it
        ws = str(self.work / "workspace.yaml")
        daemon = os.path.join(os.path.dirname(sys.executable), "dagster-daemon")  # the documented command
        for name, args in (("webserver", [sys.executable, "-m", "dagster_webserver", "-w", ws, "-h", "127.0.0.1",
                                          "-p", str(self.port)]),
                           ("daemon", [daemon, "run", "-w", ws])):
            log = (self.work / f"{name}.log").open("wb")
            self.procs.append(subprocess.Popen(args, cwd=self.work, env=self.env, stdout=log,
                                               stderr=subprocess.STDOUT))
        deadline = time.time() + 240
        while time.time() < deadline:
            try:
                if requests.get(f"{self.url}/server_info", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(1)
        raise RuntimeError("dagster-webserver did not start: " + (self.work / "webserver.log").read_text()[-2000:])

    def __exit__(self, *exc: Any) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    def launch(self, job: str, keys: list[str], settings: dict[str, Any]) -> str:
        params = {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
                  "runConfigData": {"resources": {"settings": {"config": settings}}},
                  "executionMetadata": {"tags": [{"key": "dagster/asset_partition_range_start", "value": keys[0]},
                                                 {"key": "dagster/asset_partition_range_end", "value": keys[-1]}]}}
        out = _graphql(self.url, LAUNCH_RUN, {"params": params})["launchRun"]
        if out["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(out)
        return out["run"]["runId"]


def wait_run(instance, run_id: str, timeout_s: float = 1800) -> dict[str, Any]:
    import dagster as dg

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        record = instance.get_run_record_by_id(run_id)
        if record.dagster_run.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                                         dg.DagsterRunStatus.CANCELED):
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"run {run_id} did not finish")
    if record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"run {run_id} ended {record.dagster_run.status}")
    created = record.create_timestamp.timestamp()
    return {"total_s": round(record.end_time - created, 2), "launch_s": round(record.start_time - created, 2),
            "run_s": round(record.end_time - record.start_time, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=16, help="videos per batch (the default batch is 16)")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each video")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = ap.parse_args()
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="automation_overhead_"))
    try:
        videos = work / "videos"
        names = make_videos(videos, args.videos, args.seconds)
        from curation_assets.core.keys import key_from_rel_path

        keys = [key_from_rel_path(n) for n in names]
        rows: dict[str, list[dict[str, Any]]] = {"cli": [], "daemon": [], "multiprocess": []}
        with Services(work, videos) as services:
            os.environ["DAGSTER_HOME"] = str(services.home)
            import dagster as dg

            with dg.DagsterInstance.get() as instance:
                instance.add_dynamic_partitions("videos", keys)
                for r in range(args.rounds):
                    for way in ("cli", "daemon", "multiprocess"):
                        out = work / f"out-{way}-{r}"
                        if way == "cli":
                            rec = run_cli(videos, out, work / f"cli-home-{r}", args.videos)
                        else:
                            job = "curate_videos" if way == "daemon" else MULTIPROCESS_JOB
                            rec = wait_run(instance, services.launch(job, keys, _settings(videos, out)))
                        rows[way].append(rec)
                        print(f"round {r + 1} {way}: {json.dumps(rec)}", flush=True)
                        os.environ["DAGSTER_HOME"] = str(services.home)  # the CLI points it at its own home
        cli = min(x["wall_s"] for x in rows["cli"])
        best = {way: min(rows[way], key=lambda x: x["total_s"]) for way in ("daemon", "multiprocess")}
        n = args.videos
        print(f"\n{n} videos of {args.seconds:g} s, one batch (a partition range) per run; lowest of {args.rounds} rounds")
        print(f"  cli (in-process, baseline)      {cli:6.1f} s   {cli / n:5.2f} s/video")
        for way, rec in best.items():
            over = (rec["total_s"] - cli) / n
            print(f"  {way:<14} launched run     {rec['total_s']:6.1f} s   {rec['total_s'] / n:5.2f} s/video "
                  f"(launch {rec['launch_s']:.1f} s, run {rec['run_s']:.1f} s); overhead vs cli {over:+.2f} s/video, "
                  f"{rec['total_s'] / cli:.2f}x")
        record = {"benchmark": "automation_overhead", "commit": git_commit(), "time": time.time(), "videos": n,
                  "seconds_per_video": args.seconds, "rounds": rows, "cli_wall_s": cli,
                  "overhead_per_video_s": {w: round((r["total_s"] - cli) / n, 3) for w, r in best.items()},
                  "load_avg": os.getloadavg(), "cpu_s": round(cpu_self(), 1), "peak_rss_mb": round(peak_rss_mb(), 1)}
        append_record(args.results, record)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
