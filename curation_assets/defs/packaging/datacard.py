"""``data_card``: the dataset's data card as an asset (issue 21). Thin: ``reports.datacard`` makes it.

It depends on ``clip_manifest`` (every ``videos`` partition, read as the other dataset assets read
it: the fragments of exactly those videos) and reads ``semdedup/`` when dedup has run, without
depending on ``semantic_dedup``, so a card never waits for (or triggers) a dedup run. Its key
numbers are numeric metadata, so Dagster's own plots show them across materialisations.
"""

from typing import Any

import dagster as dg

from ...core import storage
from ...reports import datacard
from .assets import PACKAGING_GROUP, CurationSettings, ManifestInput, videos_md

DATA_CARD = "data_card"


def _metadata(card: datacard.WrittenCard) -> dict[str, Any]:
    md: dict[str, Any] = {}
    for key, value in datacard.metadata_numbers(card.numbers).items():
        md[key] = dg.MetadataValue.float(value) if isinstance(value, float) else dg.MetadataValue.int(value)
    md["card"] = dg.MetadataValue.md(card.markdown)
    md["datacard_md"] = dg.MetadataValue.path(card.md_url)
    md["datacard_html"] = dg.MetadataValue.path(card.html_url)
    md["datacard_json"] = dg.MetadataValue.path(card.json_url)
    return md


def datacard_assets() -> list[Any]:
    """The ``data_card`` asset (training_packages group)."""

    @dg.asset(name=DATA_CARD, group_name=PACKAGING_GROUP, ins={"clip_manifest": dg.AssetIn(key="clip_manifest")},
              kinds={"markdown"})
    def data_card(context: dg.AssetExecutionContext, settings: CurationSettings,
                  clip_manifest: ManifestInput) -> dg.MaterializeResult:
        """``datacard.md``, ``gallery/datacard.html``, ``datacard/*.png`` and ``datacard/datacard.json``:
        hours and clips in and out, filter reasons, distributions, score histograms, caption
        coverage, dedup, settings and versions, sources (docs/datacard.md)."""
        output_path = settings.options().output_path
        read = clip_manifest.read(columns=datacard.READ_COLUMNS)
        try:
            card = datacard.write_datacard(output_path, read.table, missing_videos=len(read.missing))
        except datacard.NoManifestError as exc:
            raise dg.Failure(str(exc)) from None
        for problem in card.numbers["video_problems"]:
            context.log.warning(problem)
        context.log.info(f"data card: {storage.redact(card.md_url)}")
        return dg.MaterializeResult(metadata={**_metadata(card), **videos_md(read, clip_manifest, context.instance)})

    return [data_card]


__all__ = ["DATA_CARD", "datacard_assets"]
