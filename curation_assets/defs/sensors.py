"""A sensor that turns newly uploaded videos into partitions and runs.

Each tick lists ``input_path``, adds the keys Dagster does not know yet (at most
``MAX_NEW_KEYS_PER_TICK``; the rest wait for the next tick) and requests batched runs over
them as partition ranges, so per-run overhead is paid once per batch.
"""

from __future__ import annotations

import dagster as dg

from ..core import storage
from ..partitions import VIDEOS_PARTITION_NAME, discover_video_keys, videos_partitions
from .assets import VIDEOS_PER_RUN
from .packaging import CURATION_SELECTION
from .resources import options_from_env

MAX_NEW_KEYS_PER_TICK = 500
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def batched(keys: list[str], size: int) -> list[list[str]]:
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def run_requests_for(keys: list[str], asset_selection: list[dg.AssetKey] | None = None) -> list[dg.RunRequest]:
    """One run per batch of consecutive new keys, as a partition range."""
    requests = []
    for batch in batched(keys, VIDEOS_PER_RUN):
        tags = {RANGE_START_TAG: batch[0], RANGE_END_TAG: batch[-1]}
        requests.append(dg.RunRequest(run_key=f"videos:{batch[0]}...{batch[-1]}:{len(batch)}", tags=tags,
                                      asset_selection=asset_selection))
    return requests


@dg.sensor(
    name="new_videos_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    asset_selection=CURATION_SELECTION,
    description="Adds a `videos` partition for every new file under input_path and materialises it.",
)
def new_videos_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    input_path = storage.normalize_url(options_from_env().input_path)
    known = set(context.instance.get_dynamic_partitions(VIDEOS_PARTITION_NAME))
    new_keys = [k for k in discover_video_keys(input_path) if k not in known]
    if not new_keys:
        return dg.SensorResult(skip_reason=f"no new videos under {input_path}")
    taken = new_keys[:MAX_NEW_KEYS_PER_TICK]
    context.log.info(f"{len(new_keys)} new videos under {input_path}; adding {len(taken)} this tick")
    return dg.SensorResult(
        run_requests=run_requests_for(taken),
        dynamic_partitions_requests=[videos_partitions.build_add_request(list(taken))],
        cursor=str(len(known) + len(taken)),
    )
