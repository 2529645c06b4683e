"""`python -m curation_assets.cli ...`, as the `curation-assets` console script."""

from . import console_main

console_main()
