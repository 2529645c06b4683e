"""The tag names of the code location, each spelled once: where a step runs (op tags) and what a
run is (run tags, read by the sensor, the schedule, the CLI and the UI).

Where each step runs beyond one machine: its Celery queue and its Kubernetes pod.

The measured split (README, "where the GPU step should run"): re-encoding is two orders of
magnitude slower than one GPU's embedding rate, so the CPU steps run on many CPU workers and the
model steps on few GPU workers. The assets carry that as op tags, read by Dagster's own engines:

- ``dagster-celery/queue``: dagster-celery sends a step to that queue (the others go to Celery's
  default queue, ``dagster``), so a worker started with ``-Q gpu`` runs only the model steps;
- ``dagster-k8s/config``: ``k8s_job_executor`` builds each step's pod from it, merged over the
  executor's ``step_k8s_config``; ``per_step_k8s_config`` in the run config overrides it per
  deployment (values under ``deploy/kubernetes/``).

The multiprocess executor of a single machine ignores both tags.
"""

from __future__ import annotations

from typing import Any

CELERY_QUEUE_TAG = "dagster-celery/queue"
K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_QUEUE = "gpu"
# The node label and taint of GPU nodes as NVIDIA's GPU operator sets them.
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

# The model steps: one GPU, and cores for the clip decoding that feeds it (it, not the GPU, sets
# the embedding rate at 720p).
GPU_STEP_K8S: dict[str, Any] = {
    "container_config": {"resources": {"requests": {"cpu": "8", "memory": "24Gi", "nvidia.com/gpu": "1"},
                                       "limits": {"memory": "48Gi", "nvidia.com/gpu": "1"}}},
    "pod_spec_config": {"node_selector": GPU_NODE_SELECTOR, "tolerations": GPU_TOLERATIONS},
}
# The transcode step encodes on every core it gets (one video at a time, all encoder threads):
# sized for a 16-core CPU node; memory stays flat with the video's length.
ENCODE_STEP_K8S: dict[str, Any] = {
    "container_config": {"resources": {"requests": {"cpu": "16", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}},
}
# Captions (HTTP calls to an endpoint) and the writer (storage I/O): a small pod each.
LIGHT_STEP_K8S: dict[str, Any] = {
    "container_config": {"resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}},
}

GPU_STEP_TAGS: dict[str, Any] = {CELERY_QUEUE_TAG: GPU_QUEUE, K8S_CONFIG_TAG: GPU_STEP_K8S}
ENCODE_STEP_TAGS: dict[str, Any] = {K8S_CONFIG_TAG: ENCODE_STEP_K8S}
LIGHT_STEP_TAGS: dict[str, Any] = {K8S_CONFIG_TAG: LIGHT_STEP_K8S}

# ---------------------------------------------------------------------------------------------
# Runs: the jobs that are requested, and the tags on every run the sensor, the schedule and the
# CLI request.

CURATE_JOB_NAME = "curate_videos"
REMOVE_JOB_NAME = "remove_deleted_videos"
REMOVE_OP_NAME = "remove_deleted_video_outputs"  # its run config names the deleted videos' keys
# Dagster's own tags of a partition-range run (one run over consecutive partitions).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Who asked for a run and why, and how many videos it has.
REQUESTED_BY_TAG = "curation_assets/requested_by"
REASON_TAG = "curation_assets/reason"
VIDEOS_TAG = "curation_assets/videos"
# Dagster's data-version tag of a materialisation: the one asset-event tag Dagster indexes per
# partition (``get_latest_tags_by_partition``); the writer sets it to ``core.backfill.data_version``
# and the backfill schedule reads it. Public read side: ``AssetMaterialization.data_version``
# (test_dagster_layer checks the two agree).
DATA_VERSION_TAG = "dagster/data_version"
