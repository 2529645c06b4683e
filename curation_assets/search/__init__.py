"""Text-to-clip search over a curated output (Dagster-free): :mod:`.cache` keeps the clips'
Cosmos-Embed1 vectors memory-mapped under ``<output>/search/``, :mod:`.rank` ranks them exactly,
:mod:`.ann` is the optional approximate index, :mod:`.engine` joins the results to the manifest,
:mod:`.gallery_file` leaves them for the gallery and :mod:`.cli` is ``curation-assets search``."""
