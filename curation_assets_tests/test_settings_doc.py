"""The README's settings table is the one settings definition's, and every setting is in it."""

from __future__ import annotations

from pathlib import Path

from curation_assets import settings_doc
from curation_assets.core.options import PipelineOptions, location_settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_table_is_generated_from_the_settings():
    text = README.read_text(encoding="utf-8")
    assert settings_doc.render(text) == text, "stale: run `python -m curation_assets.settings_doc README.md`"


def test_every_setting_has_a_row_with_its_flag_and_default():
    table = settings_doc.settings_table()
    rows = {line.split("|")[1].strip().strip("`"): line for line in table.splitlines()[2:]}
    assert set(rows) == set(PipelineOptions.field_names())
    assert "`--video-dir`" in rows["input_path"] and "| data/videos |" in rows["input_path"]
    assert "`--no-generate-previews`" in rows["generate_previews"] and "| on |" in rows["generate_previews"]
    for name in location_settings():
        assert "(code location only)" in rows[name]
