"""Packaging: the clip manifest, WebDataset shards and semantic dedup built on the layout."""
