"""Automation: the upload sensor, the backfill schedule and eager downstream materialisation."""
