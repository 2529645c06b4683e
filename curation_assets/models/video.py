"""One video's CPU half with the model parts it needs: the pipeline's composition point.

``core.pipeline`` takes the TransNetV2 splitter and the model-frame tap as :class:`ModelParts`
so that core never imports this package; :data:`MODEL_PARTS` is the one place they are bound,
and :func:`process_video` / :func:`clips_of_video` are the core functions with them bound (what
the ``video_clips`` asset, the benchmarks and the tests call).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..core import pipeline, steps
from ..core.options import PipelineOptions
from ..core.pipeline import ModelParts
from .scene_detection import detect_for_options


def _frame_tap(options: PipelineOptions) -> Any:
    """The clip tap factory for the frames the enabled model steps need, or None."""
    from .tap import frame_request  # the model modules (torch) load only when a tap is wanted

    request = frame_request(options)
    return request.tap if request is not None else None


MODEL_PARTS = ModelParts(detect_scenes=detect_for_options, frame_tap=_frame_tap)

process_video = partial(pipeline.process_video, models=MODEL_PARTS)
clips_of_video = partial(steps.clips_of_video, models=MODEL_PARTS)
