"""What the domains share: resources, policies (partitions, backfill, retries), tag names, executors,
and how a batch's per-video outcomes become Dagster events and one failure."""
