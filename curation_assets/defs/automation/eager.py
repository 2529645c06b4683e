"""Declarative automation, as an option: what is downstream follows what is upstream.

Every asset downstream of ``video_clips`` gets ``AutomationCondition.eager()``: once a video's
upstream partition is materialised (or a partition first appears), that video's downstream
partitions are requested, nothing else. The automation sensor that evaluates the conditions is
stopped until turned on (Automation tab), like the upload sensor and the backfill schedule, so
nothing runs unasked. It complements the upload sensor: with both on, videos the sensor requests
run whole in one run and the automation sensor has nothing left to do for them; a video whose
``video_clips`` was materialised alone (a run from the UI) gets the rest requested.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dagster as dg

AUTOMATION_SENSOR_NAME = "curation_automation_sensor"


def eager_downstream(assets: Iterable[Any], roots: set[dg.AssetKey]) -> list[Any]:
    """``assets`` with ``AutomationCondition.eager()`` on every spec not in ``roots``."""
    return list(dg.map_asset_specs(
        lambda spec: (spec if spec.key in roots
                      else spec.replace_attributes(automation_condition=dg.AutomationCondition.eager())),
        assets))


def build_automation_sensor(target: dg.AssetSelection) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR_NAME, target=target, default_status=dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=30,
        description="Evaluates the assets' automation conditions (downstream follows upstream).")


__all__ = ["AUTOMATION_SENSOR_NAME", "build_automation_sensor", "eager_downstream"]
