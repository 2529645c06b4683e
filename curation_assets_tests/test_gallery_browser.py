"""The gallery opened from ``file://`` in headless Chromium (Debian's ``chromium`` over DevTools),
built from a real written layout, its manifest and its SemDeDup result: one card per clip, a filter
and a sort change which clips are shown (by uuid), every request stays under the output folder, a
hostile caption shows as text, a video's view, a search result page per the search contract, and
paging; the same site from a static web server. Screenshots are kept under the test's tmp_path."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from curation_assets.gallery import site
from curation_assets.packaging import dedup, manifest

from .browser import Chromium, chromium_path
from .gallery_fixtures import synthetic_rel, write_synthetic_video
from .packaging_fixtures import (  # noqa: F401 - fixtures
    VIDEOS,
    packaging_inputs,
    packaging_models,
    written_layout,
)
from .test_gallery import HOSTILE, set_caption, write_manifest

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium")

SHOWN = "[...document.querySelectorAll('article.card')].map(c => c.dataset.uuid)"
READY = "document.body && document.body.dataset.ready"


@pytest.fixture(scope="module")
def site_out(written_layout, tmp_path_factory) -> tuple[Path, str]:  # noqa: F811 - a fixture
    out = tmp_path_factory.mktemp("gallery") / "out"
    shutil.copytree(written_layout, out)
    write_manifest(str(out))
    hostile = set_caption(str(out), "a.mp4", HOSTILE)
    dedup.run_semdedup(str(out))
    site.build_gallery(str(out))
    return out, hostile


@pytest.fixture
def browser(tmp_path):
    with Chromium(tmp_path) as b:
        yield b


def act(browser: Chromium, expression: str) -> None:
    """Run ``expression`` (a change of the page) and wait for the page to render again."""
    before = browser.evaluate(READY)
    browser.evaluate(expression)
    assert browser.wait_for(f"{READY} && document.body.dataset.ready !== {json.dumps(before)}", 30)


def set_field(field: str, value: str, event: str = "change") -> str:
    return (f"(() => {{ const e = document.getElementById({json.dumps(field)}); e.value = {json.dumps(value)}; "
            f"e.dispatchEvent(new Event({json.dumps(event)})); }})()")


def test_the_gallery_from_file_shows_filters_and_sorts_the_manifests_clips(site_out, browser, tmp_path):
    out, hostile = site_out
    rows = manifest.read_manifest(str(out)).to_pylist()
    requests = browser.requests_until(READY, navigate=(out / "gallery" / "index.html").as_uri())
    browser.screenshot(tmp_path / "gallery.png")
    root = out.resolve().as_uri() + "/"
    assert requests and all(u.startswith(root) for u in requests), [u for u in requests if not u.startswith(root)]
    assert any("/previews/" in u for u in requests) and any("/gallery/data/" in u for u in requests)

    shown = browser.evaluate(SHOWN)
    assert sorted(shown) == sorted(r["clip_uuid"] for r in rows)  # passed + filtered, each once
    by_source = sorted(rows, key=lambda r: (r["rel_path"], r["span_start_s"]))
    assert shown == [r["clip_uuid"] for r in by_source]
    without_preview = sum(1 for r in rows if not any(w["preview_url"] for w in r["windows"]))
    assert browser.evaluate("document.querySelectorAll('.preview.placeholder').length") == without_preview >= 1
    assert browser.evaluate("[...document.querySelectorAll('img.preview')].every(i => i.naturalWidth > 0)")

    text = browser.text()  # the hostile caption: text on the page, no element, no script run
    assert HOSTILE in text and hostile in shown
    assert browser.evaluate("window.__pwned === undefined && !document.querySelector('.card img[src=\"x\"]')"
                            " && document.querySelectorAll('.card script').length === 0")
    assert "cluster " in text  # SemDeDup ran: each passed clip names its cluster
    assert "filtered by motion" in text

    act(browser, set_field("f-status", "filtered"))
    assert browser.evaluate(SHOWN) == [r["clip_uuid"] for r in by_source if not r["passed"]]
    act(browser, set_field("f-status", "all"))
    act(browser, set_field("f-sort", "motion-desc"))
    by_motion = sorted(rows, key=lambda r: -r["motion_global_mean"])
    assert browser.evaluate(SHOWN) == [r["clip_uuid"] for r in by_motion] != shown
    captioned = next(r for r in rows if (r["caption"] or "").startswith("v1 caption of"))
    act(browser, set_field("f-text", "v1 CAPTION of " + captioned["clip_uuid"], "input"))
    assert browser.evaluate(SHOWN) == [captioned["clip_uuid"]]
    act(browser, set_field("f-text", "", "input"))
    act(browser, "document.getElementById('f-captioned').click()")
    assert sorted(browser.evaluate(SHOWN)) == sorted(r["clip_uuid"] for r in rows if r["caption"])
    browser.screenshot(tmp_path / "gallery-filtered.png")


def test_a_videos_view_and_a_search_result_page(site_out, browser, tmp_path):
    out, _ = site_out
    rows = manifest.read_manifest(str(out)).to_pylist()
    a_rows = [r["clip_uuid"] for r in sorted(rows, key=lambda r: r["span_start_s"]) if r["rel_path"] == "a.mp4"]
    page = (out / "gallery" / "index.html").as_uri()
    browser.open(f"{page}#video={manifest.fragment_name('a.mp4')}")
    assert browser.wait_for(READY)
    assert browser.evaluate(SHOWN) == a_rows

    picked = [rows[2], rows[0]]  # the contract of `curation-assets search`, in its order
    site.write_search(str(out), "a-dog", {"query": "a dog <b>", "model": "cosmos-embed1", "created": "2026-01-01",
                                          "results": [{"clip_uuid": r["clip_uuid"], "score": s,
                                                       "fragment": manifest.fragment_name(r["rel_path"])}
                                                      for r, s in zip(picked, (0.83, 0.41), strict=True)]})
    act(browser, "location.hash = 'search=a-dog'")
    assert browser.evaluate(SHOWN) == [r["clip_uuid"] for r in picked]
    assert browser.evaluate("[...document.querySelectorAll('.score .value')].map(e => e.textContent)") == \
        ["0.8300", "0.4100"]
    assert "search “a dog <b>”" in browser.text()
    browser.screenshot(tmp_path / "search.png")
    act(browser, "location.hash = 'search=..%2Fa-dog'")  # not a slug: nothing is loaded
    assert browser.evaluate(SHOWN) == []


def test_paging_and_the_datacard_link(tmp_path, browser):
    out = tmp_path / "out"
    for i in range(5):
        write_synthetic_video(str(out), synthetic_rel(i), 12)
    (out / "gallery").mkdir()
    (out / "gallery" / "datacard.html").write_text("<p>the data card</p>")
    site.build_gallery(str(out))
    browser.open((out / "gallery" / "index.html").as_uri())
    assert browser.wait_for(READY)
    assert browser.evaluate("!document.getElementById('datacard').hidden")
    act(browser, set_field("f-size", "24"))
    first = browser.evaluate(SHOWN)
    assert len(first) == 24 and "page 1 of 3" in browser.text()
    act(browser, "document.getElementById('next').click()")
    second = browser.evaluate(SHOWN)
    act(browser, "document.getElementById('next').click()")
    third = browser.evaluate(SHOWN)
    assert len(second) == 24 and len(third) == 12 and len(set(first) | set(second) | set(third)) == 60


def test_the_same_site_from_a_static_web_server(site_out, browser):
    """Served by Python's own static server (what docs/gallery.md shows): the same cards, and every
    request goes to that server, under the output folder it serves."""
    out, _ = site_out
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        root = f"http://127.0.0.1:{server.server_address[1]}/"
        requests = browser.requests_until(READY, navigate=root + "gallery/")
        rows = manifest.read_manifest(str(out), columns=["clip_uuid"]).column("clip_uuid").to_pylist()
        assert sorted(browser.evaluate(SHOWN)) == sorted(rows)
        assert requests and all(u.startswith(root) for u in requests), requests
        assert browser.evaluate("[...document.querySelectorAll('img.preview')].every(i => i.naturalWidth > 0)")
    finally:
        server.shutdown()
        server.server_close()
