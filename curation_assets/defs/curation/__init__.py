"""Curation: the per-video steps, the clip writer and its layout checks, their IO managers and jobs."""
