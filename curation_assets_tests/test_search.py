"""Text-to-clip search without a model: the exact ranking against a brute-force reference, the
memory-mapped cache (validation of what it reads, rebuilt when the parquet set changes), the
gallery's search script kept inert with a hostile query, and the messages when something is
missing."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation_assets.cli import main
from curation_assets.core import layout
from curation_assets.search import cache, rank
from curation_assets.search.gallery_file import search_document, slug, write_search


def brute_force(matrix: np.ndarray, query: np.ndarray, k: int) -> tuple[list[int], np.ndarray]:
    """The reference: every score, sorted by (score descending, row ascending)."""
    scores = matrix.astype(np.float64) @ query.astype(np.float64)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    return order, scores[order]


@pytest.mark.parametrize("half", [False, True], ids=["float32", "float16-scan"])
@pytest.mark.parametrize("n,k,chunk", [(1000, 10, 64), (5000, 50, 1000), (37, 37, 8), (10, 20, 3), (20000, 20, 4096)])
def test_exact_top_k_equals_brute_force(n, k, chunk, half):
    rng = np.random.default_rng(n)
    matrix = rank.normalize(rng.standard_normal((n, 256)))
    if n >= 20000:  # clustered rows: many near-equal scores, where a float16 ranking alone would err
        matrix = rank.normalize(matrix[rng.integers(8, size=n)] + 0.02 * rng.standard_normal((n, 256)))
    for _ in range(5):
        query = rank.normalize(rng.standard_normal(256) if n < 20000 else matrix[0] + 0.05 * rng.standard_normal(256))
        rows, scores = rank.top_k(matrix, query, k, chunk_rows=chunk, half=matrix.astype(np.float16) if half else None)
        ref_rows, ref_scores = brute_force(matrix, query, k)
        assert rows.tolist() == ref_rows
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)


def test_ties_keep_row_order_across_chunks():
    matrix = np.zeros((50, 4), np.float32)
    matrix[:, 0] = 1.0  # every row scores the same
    rows, _ = rank.top_k(matrix, np.array([1, 0, 0, 0], np.float32), 7, chunk_rows=6)
    assert rows.tolist() == list(range(7))


def test_normalize_gives_unit_rows():
    v = rank.normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(v, [[0.6, 0.8], [0.0, 0.0]])


# ---------------------------------------------------------------------------------------------
# The cache


def write_chunk(folder: Path, ids: list, vectors: list, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": pa.array(ids, pa.string()), "embedding": pa.array(vectors, pa.list_(pa.float32()))},
                     schema=layout.EMBEDDING_SCHEMA)
    path = folder / (name or f"{uuid.uuid4()}.parquet")
    pq.write_table(table, path)
    return path


def random_output(tmp_path: Path, files: int = 3, per_file: int = 4, dim: int = 256, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = tmp_path / "out"
    folder = out / layout.CE1_EMBD_PARQUET
    truth: dict[str, np.ndarray] = {}
    for _ in range(files):
        ids = [str(uuid.uuid4()) for _ in range(per_file)]
        vectors = rng.standard_normal((per_file, dim)).astype(np.float32)
        write_chunk(folder, ids, list(vectors))
        truth.update(zip(ids, vectors, strict=True))
    return out, truth


def test_cache_holds_every_clip_normalised_and_is_reused(tmp_path):
    out, truth = random_output(tmp_path)
    m = cache.load_embeddings(str(out), 256)
    assert m.rebuilt and len(m) == 12 and not m.problems
    assert isinstance(m.vectors, np.memmap)
    got = {m.clip_id(i): np.asarray(m.vectors[i]) for i in range(len(m))}
    assert set(got) == set(truth)
    for uid, v in truth.items():
        np.testing.assert_allclose(got[uid], v / np.linalg.norm(v), rtol=1e-6)
    assert (out / "search" / "cache.json").is_file()
    again = cache.load_embeddings(str(out), 256)
    assert not again.rebuilt and again.fingerprint == m.fingerprint


def test_cache_is_rebuilt_when_a_parquet_is_added(tmp_path):
    out, truth = random_output(tmp_path)
    first = cache.load_embeddings(str(out), 256)
    new_id = str(uuid.uuid4())
    target = np.zeros(256, np.float32)
    target[7] = 2.0
    write_chunk(out / layout.CE1_EMBD_PARQUET, [new_id], [target])
    second = cache.load_embeddings(str(out), 256)
    assert second.rebuilt and second.fingerprint != first.fingerprint and len(second) == 13
    rows, scores = rank.top_k(second.vectors, target / 2.0, 1)
    assert second.clip_id(int(rows[0])) == new_id and scores[0] == pytest.approx(1.0)
    names = sorted(p.name for p in (out / "search").iterdir())
    assert names == ["cache.json", f"ids-{second.fingerprint}.bin", f"vectors-{second.fingerprint}.f16",
                     f"vectors-{second.fingerprint}.f32"]
    np.testing.assert_allclose(second.half, second.vectors, atol=1e-3)


def test_corrupt_foreign_and_bad_rows_are_reported_and_skipped(tmp_path):
    out, truth = random_output(tmp_path, files=2)
    folder = out / layout.CE1_EMBD_PARQUET
    (folder / f"{uuid.uuid4()}.parquet").write_bytes(b"PAR1 this is not parquet")
    pq.write_table(pa.table({"clip": ["x"], "vec": [[1.0, 2.0]]}), folder / f"{uuid.uuid4()}.parquet")
    good = str(uuid.uuid4())
    nan = np.ones(256, np.float32)
    nan[3] = np.nan
    write_chunk(folder, ["../../etc/passwd", good, str(uuid.uuid4()), str(uuid.uuid4())],
                [np.ones(256), np.ones(256), np.ones(8), nan])
    (folder / "notes.txt").write_text("hello")
    (folder / ".tmp-partial.parquet").write_bytes(b"half")
    m = cache.load_embeddings(str(out), 256)
    ids = {m.clip_id(i) for i in range(len(m))}
    assert ids == set(truth) | {good}
    text = "\n".join(m.problems)
    assert "not a readable parquet file" in text
    assert "not an embeddings file" in text
    assert "1 row(s) with ids that are not canonical UUIDs" in text
    assert "1 row(s) with vectors that are not 256-d" in text
    assert "1 row(s) with vectors with non-finite or zero values" in text
    assert "notes.txt: not a chunk embeddings file name" in text
    assert ".tmp-partial" not in text


def test_no_embeddings_says_what_is_missing(tmp_path):
    with pytest.raises(cache.NoEmbeddingsError, match=r"has no embedding files.*generate-embeddings on"):
        cache.load_embeddings(str(tmp_path / "out"), 256)
    out, _ = random_output(tmp_path, dim=768)
    with pytest.raises(cache.NoEmbeddingsError, match=r"holds a usable 256-d embedding"):
        cache.load_embeddings(str(out), 256)


def test_cli_without_embeddings_exits_2_naming_the_setting(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    rc = main(["search", "a dog", "--output-path", str(tmp_path / "out"), "--model-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no embeddings to search" in err and "generate_embeddings=on" in err and "docs/models.md" in err


def test_cli_without_manifest_exits_2_naming_the_command(tmp_path, capsys):
    out, _ = random_output(tmp_path)
    rc = main(["search", "a dog", "--output-path", str(out), "--model-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no manifest" in err and f"curation-assets package manifest --output-path {out}" in err


# ---------------------------------------------------------------------------------------------
# The gallery's search script

HOSTILE = "</script><script>alert(1)</script> \u2028\u2029 & <!-- \"quoted\" 'single'"


def test_slug_is_short_lowercase_and_distinct():
    s = slug("A Person   walking a DOG!")
    assert s.startswith("a-person-walking-a-dog-") and len(s) <= 64
    assert all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in slug(HOSTILE))
    assert len(slug("x" * 500)) == 64
    assert slug("dog") != slug("Dog") and slug("???").startswith("search-")


def test_search_script_is_valid_js_and_keeps_a_hostile_query_inert(tmp_path):
    doc = search_document(HOSTILE, "cosmos-embed1-224p", [(str(uuid.uuid4()), 0.83, "ab" * 16)])
    url, link = write_search(str(tmp_path), doc)
    text = Path(url).read_text()
    assert Path(url).parent == tmp_path / "gallery" / "searches"
    assert link == (tmp_path / "gallery" / "index.html").as_uri() + "#search=" + Path(url).stem
    for bad in ("</", "<script", "\u2028", "\u2029", "<!--"):
        assert bad not in text
    assert text.startswith("galleryLoad(") and text.endswith(");\n")
    assert json.loads(text[len("galleryLoad("):-3]) == doc
    assert doc["created"].endswith("Z") and doc["kind"] == "search"
    # node runs the file as a script: it calls galleryLoad with the document, nothing else
    runner = tmp_path / "run.js"
    runner.write_text("let got=null; global.galleryLoad=(d)=>{got=d};\n"
                      f"require({json.dumps(url)});\n"
                      "process.stdout.write(JSON.stringify(got));\n")
    node = subprocess.run(["node", str(runner)], capture_output=True, text=True, timeout=60)
    assert node.returncode == 0, node.stderr
    assert json.loads(node.stdout) == doc


def test_hostile_query_stays_a_string_inside_an_html_page(tmp_path):
    from .browser import Chromium, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium is not installed")
    doc = search_document(HOSTILE, "cosmos-embed1-224p", [])
    url, _ = write_search(str(tmp_path), doc)
    inline = Path(url).read_text()
    page = tmp_path / "gallery" / "page.html"
    page.write_text("<!doctype html><html><body><script>window.alerted=0; window.alert=()=>{window.alerted++};"
                    "window.got=[]; function galleryLoad(d){window.got.push(d.query)}</script>"
                    f"<script>{inline}</script>"
                    f'<script src="searches/{Path(url).name}"></script></body></html>')
    with Chromium(tmp_path) as browser:
        browser.open(page.as_uri())
        assert browser.wait_for("window.got && window.got.length === 2", timeout_s=30)
        assert browser.evaluate("window.alerted") == 0
        assert browser.evaluate("window.got") == [HOSTILE, HOSTILE]


# ---------------------------------------------------------------------------------------------
# The approximate index (the search-index extra)


def test_ann_index_finds_the_exact_top_hits_and_follows_the_cache(tmp_path):
    pytest.importorskip("faiss")
    from curation_assets.search import ann

    out, truth = random_output(tmp_path, files=20, per_file=50, dim=256, seed=3)
    m = cache.load_embeddings(str(out), 256)
    rng = np.random.default_rng(9)
    for _ in range(5):
        target = int(rng.integers(len(m)))
        query = rank.normalize(np.asarray(m.vectors[target]) + 0.05 * rng.standard_normal(256).astype(np.float32))
        rows, scores = ann.top_k(m, query, 5, required=True)
        exact_rows, exact_scores = rank.top_k(m.vectors, query, 5)
        assert rows[0] == exact_rows[0] == target
        np.testing.assert_allclose(scores[0], exact_scores[0], rtol=1e-5)
    first = ann.index_path(m)
    assert first.is_file()
    write_chunk(out / layout.CE1_EMBD_PARQUET, [str(uuid.uuid4())], [np.ones(256)])
    m2 = cache.load_embeddings(str(out), 256)
    ann.top_k(m2, np.ones(256, np.float32) / 16.0, 1, required=True)
    assert ann.index_path(m2).is_file() and not first.exists()  # a new generation, the old index removed


def test_ann_without_the_library_says_how_to_install(tmp_path, monkeypatch):
    from curation_assets.search import ann

    out, _ = random_output(tmp_path)
    m = cache.load_embeddings(str(out), 256)
    monkeypatch.setitem(__import__("sys").modules, "faiss", None)  # the import fails as if not installed
    assert not ann.available() and not ann.worth_it(10**9)
    with pytest.raises(ann.IndexUnavailable, match=r"pip install 'curation-assets\[search-index\]'"):
        ann.top_k(m, np.ones(256, np.float32), 3, required=True)
    rows, _ = ann.top_k(m, np.ones(256, np.float32), 3)
    assert rows is None  # --index auto then searches exactly


def test_float16_scan_keeps_rows_its_rounding_would_lose():
    """Scores packed around a float16 rounding boundary, closer together than float16's error: a
    ranking by the float16 scores alone loses some of the float32 top-k; the rescoring margin keeps
    them."""
    rng = np.random.default_rng(5)
    query = rank.normalize(rng.standard_normal(256))
    boundary = (1843 + 0.5) * 2.0**-11  # between two float16 values near 0.9
    cos = np.concatenate([boundary + rng.uniform(-4e-5, 4e-5, 60), rng.uniform(0.2, 0.85, 2000)])
    other = rng.standard_normal((len(cos), 256))
    other -= np.outer(other @ query, query)  # orthogonal to the query
    other = rank.normalize(other)
    matrix = rank.normalize(cos[:, None] * query + np.sqrt(1 - cos[:, None] ** 2) * other)
    for k in (5, 20, 50):
        rows, scores = rank.top_k(matrix, query, k, chunk_rows=512, half=matrix.astype(np.float16))
        exact_rows, exact_scores = rank.top_k(matrix, query, k, chunk_rows=512)  # float32 (gaps below float64's)
        assert rows.tolist() == exact_rows.tolist()
        np.testing.assert_array_equal(scores, exact_scores)
