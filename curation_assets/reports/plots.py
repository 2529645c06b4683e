"""The data card's images: histograms drawn with matplotlib's Agg backend into PNG bytes.

Only numbers and labels this module chooses reach a figure: names read from the output (models,
sources) never do, so no untrusted text is parsed as matplotlib mathtext. The figure objects are
made directly (``matplotlib.figure.Figure``), not through pyplot, so no global state or GUI
backend is touched and the card can be drawn from any thread.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # noqa: E402 - before any figure exists; a no-op once chosen
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

#: Figure size in inches at :data:`DPI`: 720 x 360 pixels, readable in a page and in GitHub.
SIZE = (8.0, 4.0)
DPI = 90
PASSED_COLOR = "#2f7ed8"
FILTERED_COLOR = "#c0c0c0"


def histogram_png(edges: Sequence[float], passed: Sequence[int], filtered: Sequence[int], *, title: str,
                  xlabel: str) -> bytes:
    """A histogram of ``len(edges) - 1`` bins, passed clips stacked under filtered ones, as PNG."""
    if len(edges) != len(passed) + 1 or len(passed) != len(filtered):
        raise ValueError(f"{len(edges)} edges for {len(passed)} / {len(filtered)} counts")
    fig = Figure(figsize=SIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lefts = list(edges[:-1])
    widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    ax.bar(lefts, list(passed), width=widths, align="edge", color=PASSED_COLOR, edgecolor="white",
           linewidth=0.5, label="passed")
    ax.bar(lefts, list(filtered), width=widths, bottom=list(passed), align="edge", color=FILTERED_COLOR,
           edgecolor="white", linewidth=0.5, label="filtered")
    ax.set_title(title, usetex=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("clips")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.15)  # fixed: tight_layout costs a draw
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


__all__ = ["histogram_png"]
