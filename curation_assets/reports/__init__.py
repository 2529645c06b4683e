"""Reports on a written dataset: the data card and the diff between two runs."""
