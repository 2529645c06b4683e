"""``clip_gallery``: each video's cards in the clip gallery (``gallery/``), downstream of its
``clip_manifest`` partition. Thin: the site is written by ``gallery.site.build_gallery``, one video
at a time (a video whose fragment cannot be shown fails only its own partition), each
materialisation linking that video's view of the gallery.
"""

import functools
from typing import Any

import dagster as dg

from ...core import storage
from ...core.outcomes import VideoFailed, VideoOutcome, one_video
from ...gallery import site
from ...packaging import manifest
from ...partitions import source_url_for_key
from ..shared.outcomes import batch_failure, report_written
from ..shared.policies import PER_VIDEO
from ..shared.resources import CurationSettings
from .assets import PACKAGING_GROUP


def _metadata(output_path: str, rel_path: str, build: site.GalleryBuild) -> dict[str, Any]:
    fragment = manifest.fragment_name(rel_path)
    view = site.page_url(output_path, fragment)
    md: dict[str, Any] = {
        "gallery": dg.MetadataValue.url(view),
        "gallery_index": dg.MetadataValue.path(site.page_url(output_path)),
        "num_videos_in_gallery": build.videos,
        "num_clips_in_gallery": build.clips,
    }
    if fragment in build.removed:
        md["note"] = "the video has no manifest fragment (removed, or no clips): it left the gallery"
    return md


def _build_video(input_path: str, output_path: str, key: str) -> tuple[str, site.GalleryBuild]:
    """The video's cards and index line: ``(rel path, build)``; a key that would leave the input
    is refused (as the manifest's IO manager refuses it)."""
    rel = storage.relative_to(input_path, source_url_for_key(input_path, key))
    build = site.build_gallery(output_path, [rel])
    if build.problems:
        raise VideoFailed("gallery", "; ".join(build.problems), reason="; ".join(build.problems))
    return rel, build


def gallery_assets() -> list[Any]:
    """The gallery asset (registered by ``defs/location.py``)."""

    @dg.asset(**PER_VIDEO, group_name=PACKAGING_GROUP, deps=["clip_manifest"], kinds={"html"},
              automation_condition=dg.AutomationCondition.eager())
    def clip_gallery(context: dg.AssetExecutionContext, settings: CurationSettings) -> dg.MaterializeResult:
        """The video's cards (``gallery/data/<fragment>.js``) and its line of the gallery's index;
        the page itself is written with the first video."""
        options = settings.options()
        output_path = options.output_path
        outcomes: list[VideoOutcome] = []
        done: dict[str, dict[str, Any]] = {}
        for key in context.partition_keys:
            built, outcome = one_video(key, functools.partial(_build_video, options.input_path, output_path, key))
            outcomes.append(outcome)
            if built is None:
                context.log.error(f"{key}: not in the gallery: {outcome.reason}")
                continue
            done[key] = _metadata(output_path, *built)
        report_written(context, "clip_gallery", done, batch_failure(
            outcomes, "are not in the gallery (their partitions failed; the others were written)", allow_retries=True))
        return dg.MaterializeResult()

    return [clip_gallery]


__all__ = ["gallery_assets"]
