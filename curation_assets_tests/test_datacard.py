"""The data card (issue 21) on a real written layout: its numbers equal the manifest's, computed
here independently with pyarrow/pandas from the files; its images are real PNGs; its Markdown and
HTML escape the hostile names the layout carries; dedup results and unreadable documents are
reported as they are.
"""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation_assets.cli import main
from curation_assets.core import layout
from curation_assets.packaging import dedup, manifest
from curation_assets.reports import datacard
from curation_assets.reports.datacard_render import IMAGES

from .datacard_fixtures import CAPTION_MODELS, HOSTILE_MODEL, HOSTILE_SOURCE, make_card_inputs, write_card_layout
from .packaging_fixtures import build_models


@pytest.fixture(scope="module")
def card_layout(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(inputs, models, output): written once for the module; copy the output to change it."""
    root = tmp_path_factory.mktemp("datacard")
    inputs, models = make_card_inputs(root / "in"), build_models(root / "models")
    write_card_layout(inputs, str(root / "out"), models)
    return inputs, models, root / "out"


@pytest.fixture
def out(card_layout, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(card_layout[2], copy)
    return copy


def _manifest(out: Path) -> pd.DataFrame:
    files = sorted((out / manifest.MANIFEST_DIR).glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()


def _video_docs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / layout.PROCESSED_VIDEOS).rglob("*.json"))]


def _windows_with_text(df: pd.DataFrame, model: str, field: str) -> tuple[int, int]:
    with_text = windows = 0
    for row in df[df["passed"]].itertuples():
        for window in row.windows:
            windows += 1
            with_text += any(c["model"] == model and c["text"] for c in window[field])
    return with_text, windows


def test_the_cards_numbers_equal_the_manifests(out):
    card = datacard.write_datacard(str(out))
    n = card.numbers
    df = _manifest(out)
    passed = df["passed"].astype(bool)
    assert n["clips_in"] == len(df) == 4
    assert (n["clips_passed"], n["clips_filtered"]) == (int(passed.sum()), int((~passed).sum())) == (2, 2)
    assert n["hours_passed"] == pytest.approx(df.loc[passed, "duration_s"].sum() / 3600)
    assert n["hours_filtered"] == pytest.approx(df.loc[~passed, "duration_s"].sum() / 3600)
    assert n["hours_in"] == pytest.approx(sum(d["duration"] for d in _video_docs(out)) / 3600)
    assert n["hours_in"] > 0 and n["videos"] == df["rel_path"].nunique() == 3
    assert n["filtered_by"] == df.loc[~passed, "filtered_by"].value_counts().to_dict() == {"motion": 1, "aesthetic": 1}
    assert n["clips_with_embedding"] == int(df["embedding"].notna().sum())
    for name in datacard.SCORES:
        hist, values = n["scores"][name], df[name]
        assert (hist["scored"], hist["not_scored"]) == (int(values.notna().sum()), int(values.isna().sum()))
        assert sum(hist["counts"]) == hist["scored"] and len(hist["edges"]) == len(hist["counts"]) + 1
        assert sum(hist["passed_counts"]) == int(values[passed].notna().sum())
        assert hist["mean"] == pytest.approx(values.mean())  # pandas skips the nulls: so must the card
    assert n["scores"]["aesthetic_score"]["not_scored"] == 1  # the honest null: not a zero
    assert n["scores"]["aesthetic_score"]["min"] == 3.0
    coverage = {(r["kind"], r["model"]): (r["windows_with_text"], r["windows"]) for r in n["caption_coverage"]}
    assert coverage == {("caption", m): _windows_with_text(df, m, "captions") for m in CAPTION_MODELS} | {
        ("enhanced", "qwen_lm"): _windows_with_text(df, "qwen_lm", "enhanced_captions")}
    assert coverage[("caption", HOSTILE_MODEL)] == (1, 2)  # on a.mp4's passed clip only
    resolution = {r["value"]: r["clips"] for r in n["resolution"]}
    assert resolution == (df["width"].astype(str) + "x" + df["height"].astype(str)).value_counts().to_dict()
    assert {r["value"]: r["clips"] for r in n["codec"]} == df["video_codec"].value_counts().to_dict()
    docs = _video_docs(out)
    assert [(s["settings_hash"], s["clips"], s["videos"]) for s in n["settings"]] == [
        (docs[0]["pipeline"]["settings_hash"], 4, 3)]
    assert n["settings"][0]["settings"] == docs[0]["pipeline"]["settings"]
    assert n["settings"][0]["version"] == docs[0]["pipeline"]["version"]
    assert n["dedup"] is None and n["videos_without_duration"] == 0
    assert json.loads((out / datacard.CARD_DIR / datacard.CARD_JSON).read_text()) == n
    assert "| passed | 2 |" in card.markdown and "| aesthetic | 1 |" in card.markdown
    assert "n/a for 1: not computed" in card.markdown


def test_the_images_are_real_pngs_and_linked(out):
    card = datacard.write_datacard(str(out))
    assert sorted(Path(u).name for u in card.image_urls) == sorted(IMAGES.values())
    for url in card.image_urls:
        with Image.open(url) as image:
            assert image.format == "PNG" and 400 <= image.width <= 2000 and 200 <= image.height <= 1200
            assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something was drawn
        name = Path(url).name
        assert f"]({datacard.CARD_DIR}/{name})" in card.markdown
        assert f'src="../{datacard.CARD_DIR}/{name}"' in Path(card.html_url).read_text()


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_the_card_escapes_hostile_names_in_markdown_and_html(out):
    card = datacard.write_datacard(str(out))
    page = Path(card.html_url).read_text()
    parser = _Tags()
    parser.feed(page)
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table", "thead", "tbody", "tr",
               "th", "td", "img"}
    assert {t for t, _ in parser.tags} <= allowed  # no <script>, no tag from a name
    assert [a["src"] for t, a in parser.tags if t == "img"] == [f"../{datacard.CARD_DIR}/{p}"
                                                                  for p in IMAGES.values()]
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page  # the model name, as text
    assert "&lt;img src=y onerror=alert(3)&gt; &amp; &#x27;q&#x27;|*/" in page  # the source folder, as text
    md = card.markdown
    assert "<" not in md.replace("&lt;", "") and "&lt;img src=x onerror" in md
    assert "\\|\\*m\\*" in md  # a | in a name cannot split a Markdown table cell
    assert HOSTILE_SOURCE.split("/")[0] not in md


def test_the_page_opens_in_chromium_with_no_request_outside_the_output(out, tmp_path):
    from .browser import Chromium, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium is not installed")
    card = datacard.write_datacard(str(out))
    with Chromium(tmp_path) as browser:
        browser.open(Path(card.html_url).as_uri())
        assert browser.wait_for("document.readyState === 'complete' && [...document.images].length === "
                                f"{len(IMAGES)} && [...document.images].every(i => i.complete && i.naturalWidth > 0)",
                                timeout_s=30)
        # every link the page has, resolved by the browser (file:// loads make no resource timing entries)
        links = browser.evaluate("[...document.querySelectorAll('[src],[href]')].map(e => e.src || e.href)")
        assert len(links) == len(IMAGES) and all(u.startswith((out / datacard.CARD_DIR).as_uri() + "/") for u in links)
        assert browser.evaluate("document.querySelectorAll('script').length") == 0
        assert HOSTILE_MODEL in browser.text()  # shown as the text it is
        browser.screenshot(tmp_path / "datacard.png")


def test_dedup_results_are_on_the_card_and_a_bad_summary_is_said_so(out):
    summary = dedup.run_semdedup(str(out), dedup.DedupSettings(eps=0.01))
    removed = pq.read_table(out / dedup.DEDUP_DIR / "duplicates.parquet").num_rows
    d = datacard.write_datacard(str(out)).numbers["dedup"]
    assert (d["eps"], d["clips"], d["removed"], d["kept"]) == (0.01, summary["num_clips"], removed,
                                                               summary["num_clips"] - removed)
    assert {r["eps"] for r in d["eps_table"]} >= set(dedup.DEFAULT_EPS_GRID)
    (out / dedup.DEDUP_DIR / "summary.json").write_text('{"num_clips": 2, "num_duplicates": 9, "eps": 0.01}')
    card = datacard.write_datacard(str(out))
    assert "not a dedup summary" in card.numbers["dedup"]["problem"] and "result not used" in card.markdown


def test_an_unreadable_video_document_adds_no_hours_and_is_named(out):
    whole = datacard.write_datacard(str(out)).numbers["hours_in"]
    doc = out / layout.video_file("a.mp4")
    duration = json.loads(doc.read_text())["duration"]
    doc.write_text("<b>not json")
    n = datacard.write_datacard(str(out)).numbers
    assert n["videos_without_duration"] == 1 and n["hours_in"] == pytest.approx(whole - duration / 3600)
    assert n["clips_in"] == 4  # the clips are the manifest's
    assert any(p.startswith(layout.video_file("a.mp4")) for p in n["video_problems"])
    assert "<b>" not in Path(out / datacard.CARD_HTML).read_text()


def test_an_image_without_data_is_removed_and_said_n_a(out):
    datacard.write_datacard(str(out))
    image = out / datacard.CARD_DIR / IMAGES["aesthetic_score"]
    assert image.exists()
    table = datacard.read_card_table(str(out))
    table = table.set_column(table.schema.get_field_index("aesthetic_score"), "aesthetic_score",
                             pa.nulls(table.num_rows, pa.float64()))
    card = datacard.write_datacard(str(out), table)
    assert not image.exists() and "Aesthetic score: n/a for all 4 clips" in card.markdown
    assert "aesthetic_score_mean" not in datacard.metadata_numbers(card.numbers)  # not a zero


def test_an_edited_manifest_with_infinite_numbers_still_gives_a_valid_card(out):
    table = datacard.read_card_table(str(out))
    for name in ("duration_s", "framerate", "motion_global_mean"):
        values = table.column(name).to_pylist()
        table = table.set_column(table.schema.get_field_index(name), name,
                                 pa.array([float("inf")] + values[1:], table.schema.field(name).type))
    n = datacard.write_datacard(str(out), table).numbers
    assert json.loads((out / datacard.CARD_DIR / datacard.CARD_JSON).read_text()) == n
    assert n["duration"]["not_scored"] == 1 and n["scores"]["motion_global_mean"]["not_scored"] == 1
    assert {r["value"]: r["clips"] for r in n["framerate"]} == {25.0: 3, "n/a": 1}


def test_histogram_bins_hold_every_value_once():
    values = np.array([0.0, 1.0, np.nan, 1.0, 5.0, np.inf])
    hist = datacard.histogram(values, np.array([True, False, True, True, False, True]), bins=4)
    assert hist["counts"] == [3, 0, 0, 1] and hist["passed_counts"] == [2, 0, 0, 0]
    assert (hist["scored"], hist["not_scored"]) == (4, 2)
    same = datacard.histogram(np.array([2.0, 2.0]), np.array([True, True]))
    assert sum(same["counts"]) == 2


def test_source_prefixes():
    got = datacard.source_prefixes(["s3://b/in/x.mp4", "s3://b/in/cam1/y.mp4", "s3://b/in/cam1/d/z.mp4"])
    assert got == {"common": "s3://b/in/", "prefixes": [{"prefix": "s3://b/in/cam1/", "videos": 2},
                                                         {"prefix": "s3://b/in/", "videos": 1}]}


def test_the_cli_writes_the_card_or_says_which_command_writes_the_manifest(out, tmp_path, capsys):
    assert main(["datacard", "--output-path", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((out / datacard.CARD_DIR / datacard.CARD_JSON).read_text())
    assert printed["clips_in"] == 4 and printed == written
    assert main(["datacard", "--output-path", str(out)]) == 0
    assert str(out / datacard.CARD_MD) in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["datacard", "--output-path", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no clip manifest" in err and "curation-assets package manifest --output-path" in err
    assert not (empty / datacard.CARD_MD).exists()


def test_the_card_on_s3(out, s3_bucket):
    from curation_assets.core import storage

    fs, _ = storage.get_fs(s3_bucket)
    dest = f"{s3_bucket}/card-out"
    fs.put(str(out) + "/", storage.get_fs(dest)[1], recursive=True)
    local = datacard.write_datacard(str(out)).numbers
    card = datacard.write_datacard(dest)
    assert {k: v for k, v in card.numbers.items() if k != "output_path"} == {
        k: v for k, v in local.items() if k != "output_path"}
    assert json.loads(storage.read_bytes(card.json_url)) == card.numbers
    assert storage.read_bytes(card.md_url).decode() == card.markdown
    assert card.html_url == f"{dest}/{datacard.CARD_HTML}" and b"<table>" in storage.read_bytes(card.html_url)
    for url in card.image_urls:
        assert url.startswith(f"{dest}/{datacard.CARD_DIR}/") and storage.read_bytes(url).startswith(b"\x89PNG")


def test_a_gallery_built_before_the_card_links_it_once_the_card_is_written(out):
    """The gallery's index says whether the card is there; writing the card afterwards rewrites the
    index (and nothing else of the gallery), so the link appears without a gallery rebuild."""
    from curation_assets.gallery import site

    for stale in (out / datacard.CARD_HTML, out / datacard.CARD_MD):
        stale.unlink(missing_ok=True)
    site.build_gallery(str(out))
    index = out / site.GALLERY_DIR / site.INDEX_FILE
    assert site.read_script(index.read_bytes())["datacard"] is None
    fragments = {p: p.read_bytes() for p in (out / site.GALLERY_DIR / site.DATA_DIR).glob("*.js")}
    datacard.write_datacard(str(out))
    assert site.read_script(index.read_bytes())["datacard"] == site.DATACARD_FILE
    assert fragments and all(p.read_bytes() == b for p, b in fragments.items())
