"""The ``data_card`` asset through a real materialisation: the code location's own definitions and
resources over a real written layout; its key numbers are numeric metadata (what Dagster plots
across materialisations), equal to the card's, plus the card as Markdown and paths to its files."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from curation_assets.core.keys import key_from_rel_path
from curation_assets.definitions import build_definitions
from curation_assets.defs.packaging.assets import PACKAGING_GROUP
from curation_assets.defs.packaging.datacard import DATA_CARD
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.partitions import VIDEOS_PARTITION_NAME
from curation_assets.reports import datacard

from .datacard_fixtures import HOSTILE_MODEL, VIDEOS, write_card_layout
from .packaging_fixtures import build_models, make_inputs, options_for


@pytest.fixture(scope="module")
def layout_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datacard-asset")
    inputs, models = make_inputs(root / "in", VIDEOS), build_models(root / "models")
    write_card_layout(inputs, str(root / "out"), models)
    return root


def _materialise(root, out, keys):
    defs = build_definitions(CurationSettings.from_options(options_for(root / "in", str(out), root / "models")))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, keys)
        result = dg.materialize(defs.assets, selection=[DATA_CARD], instance=instance, resources=defs.resources,
                                raise_on_error=False)
        records = instance.fetch_materializations(dg.AssetKey(DATA_CARD), limit=10).records
    return result, [r.asset_materialization.metadata for r in records]


def test_the_data_card_asset_records_its_numbers_as_numeric_metadata(layout_root, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(layout_root / "out", out)
    keys = [key_from_rel_path(r) for r in VIDEOS]
    result, [md] = _materialise(layout_root, out, keys)
    assert result.success
    numbers = datacard.card_numbers(str(out))
    ints = {"clips_in": 4, "clips_passed": 2, "clips_filtered": 2, "filtered_by_motion": 1,
            "filtered_by_aesthetic": 1, "aesthetic_score_scored": 3, "videos": 3}
    for key, value in ints.items():
        assert isinstance(md[key], dg.IntMetadataValue) and md[key].value == value, key
    for key in ("hours_in", "hours_passed", "hours_filtered", "aesthetic_score_mean",
                "caption_coverage_caption_qwen", datacard.metadata_key(f"caption_coverage_caption_{HOSTILE_MODEL}")):
        assert isinstance(md[key], dg.FloatMetadataValue), key
    assert md["hours_in"].value == pytest.approx(numbers["hours_in"])
    assert md["aesthetic_score_mean"].value == pytest.approx(numbers["scores"]["aesthetic_score"]["mean"])
    assert md[datacard.metadata_key(f"caption_coverage_caption_{HOSTILE_MODEL}")].value == 0.5
    assert isinstance(md["card"], dg.MarkdownMetadataValue) and "| passed | 2 |" in md["card"].value
    assert md["datacard_md"].value == str(out / datacard.CARD_MD) and (out / datacard.CARD_MD).exists()
    assert md["num_videos"].value == 3 and md["num_videos_without_manifest"].value == 0
    card_def = build_definitions().resolve_assets_def(DATA_CARD)
    assert card_def.group_names_by_key[dg.AssetKey(DATA_CARD)] == PACKAGING_GROUP


def test_the_data_card_asset_fails_naming_the_manifest_when_there_is_none(layout_root, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    result, mds = _materialise(layout_root, out, [key_from_rel_path(r) for r in VIDEOS])
    assert not result.success and not mds
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "package manifest" in failure.step_failure_data.error.message
