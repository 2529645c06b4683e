"""The clip gallery at scale: a synthetic manifest of ``--videos`` x ``--clips`` clips (default
10k x 10 = 100k), written as manifest fragments by the manifest's own writer
(``curation_assets_tests/gallery_fixtures.py``), then:

- ``full build``: ``build_gallery(output)`` (every fragment file and the index), target < 60 s;
- ``one video``: one video's manifest fragment rewritten, ``build_gallery(output, [rel])``,
  target < 1 s (median of ``--tries`` videos);
- ``first page``: the page opened from ``file://`` in headless Chromium, navigation start to the
  first page of cards rendered (the page's ``galleryFirstPageMs``), target < 1 s (median of
  ``--tries`` openings); also the size of the compact index it loads.

Prints measured vs target; appends a record to ``benchmarks/results.jsonl``.

    python benchmarks/gallery_benchmark.py [--videos 10000] [--clips 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import DEFAULT_RESULTS, append_record, git_commit, peak_rss_mb  # noqa: E402

from curation_assets.gallery import site  # noqa: E402
from curation_assets_tests.browser import Chromium  # noqa: E402
from curation_assets_tests.gallery_fixtures import synthetic_rel, write_synthetic_video  # noqa: E402

TARGETS = {"full_build_s": 60.0, "one_video_s": 1.0, "first_page_s": 1.0}


def first_page_s(out: Path, workdir: Path, tries: int) -> tuple[list[float], int]:
    """Navigation start to the first page rendered, per opening of the page (the same browser)."""
    times, cards = [], 0
    with Chromium(workdir) as browser:
        for i in range(tries):
            browser.open((out / "gallery" / "index.html").as_uri() + f"?try={i}")
            if not browser.wait_for("window.galleryFirstPageMs !== undefined", 120):
                raise RuntimeError("the page did not render")
            times.append(browser.evaluate("window.galleryFirstPageMs") / 1000.0)
            cards = browser.evaluate("document.querySelectorAll('article.card').length")
    return times, cards


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--clips", type=int, default=10, help="clips per video")
    parser.add_argument("--tries", type=int, default=3, help="one-video updates and page openings (median)")
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary folder, removed)")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS))
    args = parser.parse_args()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="gallery-bench-"))
    out = base / "out"
    try:
        t = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda i: write_synthetic_video(str(out), synthetic_rel(i), args.clips), range(args.videos)))
        print(f"manifest: {args.videos} videos x {args.clips} clips written in {time.perf_counter() - t:.1f} s "
              "(setup, not measured)")

        build = site.build_gallery(str(out))
        full = build.seconds
        ones = []
        for k in range(args.tries):  # a different video each time, its fragment rewritten first
            rel = synthetic_rel((args.videos // 2 + k) % args.videos)
            write_synthetic_video(str(out), rel, args.clips, seed=1)
            t = time.perf_counter()
            one = site.build_gallery(str(out), videos=[rel])
            ones.append(time.perf_counter() - t)
            assert one.written == [site.manifest.fragment_name(rel)] and one.clips == build.clips
        index_mb = (out / "gallery" / "index.js").stat().st_size / 1e6
        pages, cards = first_page_s(out, base, args.tries)
        one_s, page_s = statistics.median(ones), statistics.median(pages)
        print(f"one video, each try: {', '.join(f'{v:.2f}' for v in ones)} s; "
              f"first page, each try: {', '.join(f'{v:.2f}' for v in pages)} s (medians below)")

        figures = {"full_build_s": full, "one_video_s": one_s, "first_page_s": page_s}
        print(f"gallery of {build.videos} videos, {build.clips} clips; index.js {index_mb:.1f} MB; "
              f"first page shows {cards} cards; load {os.getloadavg()[0]:.2f}")
        print(f"{'measure':<14} {'measured':>10} {'target':>8} {'ratio':>7}")
        for name, value in figures.items():
            print(f"{name:<14} {value:>9.2f}s {TARGETS[name]:>7.1f}s {value / TARGETS[name]:>7.2f}")
        append_record(args.results, {"benchmark": "gallery", "commit": git_commit(), "videos": args.videos,
                                     "clips": build.clips, "index_mb": round(index_mb, 2), "cards": cards,
                                     "peak_rss_mb": round(peak_rss_mb(), 1), "loadavg": os.getloadavg()[0],
                                     **{k: round(v, 3) for k, v in figures.items()}})
        return 0 if all(figures[k] <= TARGETS[k] for k in TARGETS) else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
