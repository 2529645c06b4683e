"""The cyclic garbage collector paused through the CLI's start-up, then the start-up's objects frozen.

Importing Dagster, building the definitions and opening the instance leave a few hundred thousand
objects that live as long as the process. While they pile up, the collector walks them again and
again (a full pass each time the long-lived objects grew by a quarter), for nothing: they are
module state, not garbage. ``pause`` stops the collector where the console script begins;
``resume`` (once the instance is open, before the first run) moves every object there is into the
permanent generation (``gc.freeze``: never scanned again; the little cyclic garbage the imports
leave stays with them) and starts the collector again, so the cycles the runs make are collected
as usual. The first video's transcode, begun beside the start-up, makes next to no cyclic
garbage, so a long wait for another CLI's instance lock piles none up. Figures:
docs/performance.md.

Only the console script pauses it (``console_main``): a Python caller's process, a notebook, the
code server, is not the CLI's to freeze; there ``resume`` does nothing.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Stop the collector for the start-up (the console script's first act)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Freeze what the start-up left and start the collector again; a no-op unless ``pause`` stopped it."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
