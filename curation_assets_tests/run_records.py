"""What a CLI run recorded in its Dagster instance, for tests that assert on results rather than
on the summary table the CLI prints."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


def failed_videos(home: str | Path) -> dict[str, str]:
    """``{video key: why}`` from the step failures of every run in the instance at ``home``: the
    ``failed_partitions`` metadata each curation step's failure carries (``"<error key>: <message>"``)."""
    failed: dict[str, str] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs():
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None or not event.is_step_failure:
                    continue
                user = event.step_failure_data.user_failure_data
                listed = user.metadata.get("failed_partitions") if user is not None else None
                if listed is not None:
                    failed.update({key: str(why) for key, why in listed.value.items()})
    return failed
