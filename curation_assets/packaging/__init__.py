"""Training packages built from a written clip layout: the clip manifest, WebDataset shards with
Megatron-Energon metadata, and semantic dedup (SemDeDup). Plain Python, no Dagster import."""
