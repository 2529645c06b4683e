"""Dagster's own limits with many ``videos`` dynamic partitions, on a real SQLite instance.

Prints figures; not a test. For each size (default 10,000 and 100,000 partitions), in a fresh
temporary ``DAGSTER_HOME`` (empty ``dagster.yaml``: SQLite storage, queued run coordinator) with
the repository ``curation_assets.definitions`` loaded in-process:

``add``        adding the keys as the sensor does, in requests of ``--batch`` keys (the watcher's
               default tick cap), and the time per request at the end (the table is full then);
``list``       ``instance.get_dynamic_partitions("videos")``, what a sensor tick reads;
``events``     the first ``--materialized`` partitions given a materialisation of every asset
               (runless events stored in batches, so statuses have something to count);
``ui``         the GraphQL queries the UI sends, through ``dagster_graphql`` in-process: the asset
               page's partition bar (``PartitionHealthQuery``: keys + ``assetPartitionStatuses``)
               and the graph's ``partitionStats`` for every asset (``AssetGraphLiveQuery``'s
               fragment), each cold (first) and warm (second call);
``backfill``   the UI's ``launchPartitionBackfill`` mutation over all partitions of every asset,
               then the first backfill daemon iteration (``execute_backfill_iteration``), which
               plans and submits the first runs (queued, never executed), stopped after
               ``--iteration-limit`` seconds if it has not finished.

    python benchmarks/partition_scale.py                    # 10k and 100k
    python benchmarks/partition_scale.py --sizes 10000      # one size
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from measure import DEFAULT_RESULTS, append_record, cpu_self, git_commit, peak_rss_mb  # noqa: E402

PARTITION_HEALTH_QUERY = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
      }
    }
  }
}
"""

PARTITION_STATS_QUERY = """
query AssetGraphLiveQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys, loadMaterializations: true) {
    id
    assetKey { path }
    partitionStats { numMaterialized numMaterializing numPartitions numFailed }
  }
}
"""

LAUNCH_BACKFILL_MUTATION = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def store_materializations(instance, asset_keys, partition_keys) -> None:
    """Runless materialisations of every asset for ``partition_keys``, stored in batches (set-up
    only: one event at a time costs tens of ms each on SQLite)."""
    import dagster as dg
    # private: Dagster has no public way to store a runless materialisation in batches (set-up only)
    from dagster._core.events import StepMaterializationData
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    batch = []
    for k in partition_keys:
        for ak in asset_keys:
            event = dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.ASSET_MATERIALIZATION.value,
                event_specific_data=StepMaterializationData(materialization=dg.AssetMaterialization(asset_key=ak, partition=k)),
                job_name=RUNLESS_JOB_NAME,
            )
            batch.append(dg.EventLogEntry(user_message="", level=logging.INFO, job_name=RUNLESS_JOB_NAME,
                                       run_id=RUNLESS_RUN_ID, error_info=None, timestamp=time.time(),
                                       step_key=None, dagster_event=event))
            if len(batch) >= 1000:
                instance.event_log_storage.store_event_batch(batch)
                batch = []
    if batch:
        instance.event_log_storage.store_event_batch(batch)


def timed(fn, *args, **kwargs) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def measure_size(n: int, batch: int, materialized: int, iteration_limit: float) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"partition_scale_{n}_"))
    (home / "dagster.yaml").write_text("")
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster_graphql.cli import execute_query

    from curation_assets.definitions import defs
    from curation_assets.partitions import VIDEOS_PARTITION_NAME

    rec: dict[str, Any] = {"partitions": n}
    keys = [f"camera_{i // 1000:03d}/clip_{i:07d}.mp4" for i in range(n)]
    asset_keys = sorted(defs.resolve_asset_graph().get_all_asset_keys())
    try:
        with dg.DagsterInstance.get() as instance:
            t0 = time.perf_counter()
            last = []
            for i in range(0, n, batch):
                dt, _ = timed(instance.add_dynamic_partitions, VIDEOS_PARTITION_NAME, keys[i : i + batch])
                last.append(dt)
            rec["add_s"] = round(time.perf_counter() - t0, 2)
            rec["add_last_request_s"] = round(sum(last[-5:]) / len(last[-5:]), 3)
            print(f"[{n}] added {n} partitions in requests of {batch}: {rec['add_s']} s "
                  f"(last requests {rec['add_last_request_s']} s each)", flush=True)

            dt, got = timed(instance.get_dynamic_partitions, VIDEOS_PARTITION_NAME)
            assert len(got) == n
            rec["get_dynamic_partitions_s"] = round(dt, 3)
            print(f"[{n}] get_dynamic_partitions: {dt:.3f} s", flush=True)

            m = min(n, materialized)
            t0 = time.perf_counter()
            store_materializations(instance, asset_keys, keys[:m])
            rec["materialized"] = m
            rec["materialize_events_s"] = round(time.perf_counter() - t0, 1)
            print(f"[{n}] {m} partitions x {len(asset_keys)} assets materialised (runless events): "
                  f"{rec['materialize_events_s']} s", flush=True)

            origin = InProcessCodeLocationOrigin(
                LoadableTargetOrigin(module_name="curation_assets.definitions", working_directory=str(HERE.parent)),
                location_name="curation_assets",
            )
            with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as wpc:
                for label in ("cold", "warm"):
                    dt, res = timed(execute_query, wpc, PARTITION_HEALTH_QUERY, {"assetKey": {"path": ["video_clips"]}})
                    node = res["data"]["assetNodeOrError"]
                    assert len(node["partitionKeysByDimension"][0]["partitionKeys"]) == n, res.get("errors")
                    assert len(node["assetPartitionStatuses"]["materializedPartitions"]) == m
                    rec[f"ui_partition_health_{label}_s"] = round(dt, 3)
                    dt, res = timed(execute_query, wpc, PARTITION_STATS_QUERY,
                                    {"assetKeys": [{"path": list(k.path)} for k in asset_keys]})
                    stats = [x["partitionStats"] for x in res["data"]["assetNodes"]]
                    assert all(s["numPartitions"] == n and s["numMaterialized"] == m for s in stats), stats[:1]
                    rec[f"ui_partition_stats_{label}_s"] = round(dt, 3)
                    print(f"[{n}] UI {label}: partition bar (PartitionHealthQuery) "
                          f"{rec[f'ui_partition_health_{label}_s']} s, partitionStats of {len(asset_keys)} assets "
                          f"{rec[f'ui_partition_stats_{label}_s']} s", flush=True)

                params = {"allPartitions": True, "assetSelection": [{"path": list(k.path)} for k in asset_keys],
                          "title": f"benchmark {n}"}
                dt, res = timed(execute_query, wpc, LAUNCH_BACKFILL_MUTATION, {"backfillParams": params})
                out = res["data"]["launchPartitionBackfill"] if res.get("data") else res
                rec["backfill_launch_s"] = round(dt, 2)
                rec["backfill_launch_result"] = out.get("__typename") if isinstance(out, dict) else str(out)[:200]
                print(f"[{n}] launchPartitionBackfill (all partitions, {len(asset_keys)} assets): {dt:.2f} s "
                      f"-> {rec['backfill_launch_result']} {out.get('message', '') if isinstance(out, dict) else ''}",
                      flush=True)
                if rec["backfill_launch_result"] == "LaunchBackfillSuccess":
                    rec.update(first_iteration(instance, wpc, iteration_limit, n))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return rec


def first_iteration(instance, wpc, limit: float, n: int) -> dict[str, Any]:
    """Run the backfill daemon's iteration in a thread; report its time or what it did by ``limit``."""
    from dagster._daemon.backfill import execute_backfill_iteration

    log = logging.getLogger("partition_scale.backfill")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    done = threading.Event()
    errors: list[str] = []

    def _run() -> None:
        try:
            for err in execute_backfill_iteration(wpc, log):
                if err is not None:
                    errors.append(str(err.message)[:300])
        except Exception as e:  # noqa: BLE001 - reported, the benchmark goes on
            errors.append(f"{type(e).__name__}: {e}"[:300])
        finally:
            done.set()

    t0 = time.perf_counter()
    threading.Thread(target=_run, daemon=True).start()
    finished = done.wait(limit)
    dt = time.perf_counter() - t0
    runs = instance.get_runs_count()
    out = {"backfill_iteration_s": round(dt, 1), "backfill_iteration_finished": finished,
           "backfill_runs_after_iteration": runs, "backfill_iteration_errors": errors[:3]}
    state = "finished" if finished else f"still running at the {limit:.0f} s limit"
    print(f"[{n}] first backfill daemon iteration: {dt:.1f} s, {state}; {runs} runs submitted (queued)"
          + (f"; errors: {errors[:1]}" if errors else ""), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--batch", type=int, default=500, help="keys per add request (the tick cap)")
    ap.add_argument("--materialized", type=int, default=1000, help="partitions given materialisations")
    ap.add_argument("--iteration-limit", type=float, default=120.0, help="seconds to let the daemon iteration run")
    ap.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = ap.parse_args()
    logging.getLogger("dagster").setLevel(logging.WARNING)
    import dagster
    record: dict[str, Any] = {"benchmark": "partition_scale", "commit": git_commit(), "time": time.time(),
                              "dagster": dagster.__version__, "batch": args.batch, "sizes": []}
    for n in args.sizes:
        record["sizes"].append(measure_size(n, args.batch, args.materialized, args.iteration_limit))
    if len(record["sizes"]) > 1:
        a, b = record["sizes"][0], record["sizes"][-1]
        scale = b["partitions"] / a["partitions"]
        print(f"\n{b['partitions']} vs {a['partitions']} partitions ({scale:.0f}x):")
        for k in ("add_s", "get_dynamic_partitions_s", "ui_partition_health_warm_s", "ui_partition_stats_warm_s",
                  "backfill_launch_s"):
            if a.get(k) and b.get(k):
                print(f"  {k}: {b[k] / a[k]:.1f}x")
    record["cpu_s"] = round(cpu_self(), 1)
    record["peak_rss_mb"] = round(peak_rss_mb(), 1)
    append_record(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
