"""docs/settings.md's tables are the settings sections' own, and every setting of the three
sections (pipeline, training packages, caption service) has its row."""

from __future__ import annotations

from pathlib import Path

import pytest

from curation_assets import settings_doc
from curation_assets.core.caption_settings import CaptionSection
from curation_assets.core.options import PipelineOptions, location_settings
from curation_assets.packaging.settings import PackagingSection

PAGE = Path(__file__).resolve().parents[1] / settings_doc.DOC


def _rows(table: str) -> dict[str, str]:
    return {line.split("|")[1].strip().strip("`"): line for line in table.splitlines()[2:]}


def test_the_settings_page_is_generated_from_the_settings():
    text = PAGE.read_text(encoding="utf-8")
    assert settings_doc.render(text) == text, "stale: run `python -m curation_assets.settings_doc`"


def test_every_setting_has_a_row_with_its_flag_and_default():
    rows = _rows(settings_doc.settings_table())
    assert set(rows) == set(PipelineOptions.field_names())
    assert "`--video-dir`" in rows["input_path"] and "| data/videos |" in rows["input_path"]
    assert "`--no-generate-previews`" in rows["generate_previews"] and "| on |" in rows["generate_previews"]
    assert "| .mp4, .mov, .avi, .mkv, .webm |" in rows["video_extensions"]
    for name in location_settings():
        assert "(code location only)" in rows[name]


def test_packaging_and_caption_settings_have_their_rows():
    page = PAGE.read_text(encoding="utf-8")
    for block, section, prefix in (("packaging-settings", PackagingSection, "CURATION_PACKAGE_"),
                                   ("caption-settings", CaptionSection, "CURATION_CAPTION_")):
        table = settings_doc.BLOCKS[block]()
        assert f"`{prefix}<NAME>`" in table.splitlines()[0]
        assert set(_rows(table)) == set(section.model_fields)
        assert table in page
    packaging = _rows(settings_doc.BLOCKS["packaging-settings"]())
    assert "| 2.0, 5.0, 10.0, 20.0 |" in packaging["length_edges_s"] and "| 16 |" in packaging["num_groups"]


def test_a_page_without_a_block_is_refused():
    with pytest.raises(ValueError, match="caption-settings:begin"):
        settings_doc.render("<!-- settings:begin -->\n<!-- settings:end -->\n"
                            "<!-- packaging-settings:begin -->\n<!-- packaging-settings:end -->\n")
