"""The clip gallery (issue 21): a static site over the manifest, see ``site.py``."""
