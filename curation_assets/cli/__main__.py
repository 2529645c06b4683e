"""`python -m curation_assets.cli ...`, as the `curation-assets` console script."""

import sys

from . import main

sys.exit(main())
