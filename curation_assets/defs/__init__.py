"""The Dagster layer: assets, IO managers, resources, sensors. Thin by design."""

import warnings

import dagster as dg

# Backfill policies and pools are marked beta in Dagster 1.13; we rely on both deliberately.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
