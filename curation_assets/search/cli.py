"""``curation-assets search "a person walking a dog" --output-path X``: text-to-clip search.

``add_search_parser(subparsers)`` adds the command to the project's parser and ``run_search(args)``
runs it: the query is embedded with Cosmos-Embed1's text tower (loaded as the pipeline loads the
video tower), clips are ranked by cosine similarity against the output's ``ce1_embd_parquet``
(cached, memory-mapped: :mod:`.cache`), and joined to the manifest. Exit 0 with results, 2 when
something is missing (embeddings, manifest, weights) or mismatched (the variant), 1 when the
model fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from ..core import storage
from ..core.options import EMBEDDING_ALGORITHMS, PipelineOptions

if TYPE_CHECKING:
    from .engine import Outcome

#: ``engine.INDEX_MODES`` (the engine, the models and pyarrow load when the command runs, not with
#: the parser every command builds)
INDEX_MODES = ("auto", "exact", "ann")


def _variant(value: str) -> str:
    from ..models.embeddings import normalize_variant

    try:
        return normalize_variant(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def add_search_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    model_dir = PipelineOptions.model_fields["model_dir"].default
    p = subparsers.add_parser(
        "search", help="find clips by text (Cosmos-Embed1's text tower against ce1_embd_parquet)",
        description="Rank an output's clips by cosine similarity between the query's Cosmos-Embed1 text embedding "
                    "and the clips' embeddings (docs/search.md). Needs the embeddings (curated with "
                    "generate_embeddings=on), the manifest (`curation-assets package manifest`) and the weights.")
    p.add_argument("query", help="the text to search for")
    p.add_argument("--output-path", required=True, help="the curated output folder or s3:// prefix (required)")
    p.add_argument("--top-k", type=_positive, default=20, help="how many clips to list (default: 20)")
    p.add_argument("--json", action="store_true", help="print one JSON document for scripts (default: a table)")
    p.add_argument("--model-dir", default=model_dir,
                   help=f"folder holding nvidia/Cosmos-Embed1-<variant>/, as the pipeline's model_dir "
                        f"(default: {model_dir})")
    p.add_argument("--embedding-algorithm", type=_variant, default=None, metavar="VARIANT",
                   help=f"the Cosmos-Embed1 variant ({', '.join(EMBEDDING_ALGORITHMS)}); it must be the one the "
                        "output was embedded with (default: read from the output's pipeline record)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where the text tower runs (default: cuda when available, else cpu)")
    p.add_argument("--index", choices=INDEX_MODES, default="auto",
                   help="exact: brute force; ann: the approximate index (pip install 'curation-assets[search-index]'); "
                        "auto: the index only beyond what exact search serves (default: auto)")
    p.add_argument("--no-gallery", action="store_true",
                   help="do not write the results page script under <output>/gallery/searches/ (default: written)")
    return p


def _embedder(args: argparse.Namespace, variant: str) -> Any:
    from ..models.embeddings import CosmosEmbedder

    return CosmosEmbedder(variant, model_dir=args.model_dir, device=args.device, batch_size=1)


def run_search(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    stream = stream or sys.stdout
    from ..models._weights import ModelLoadError, ModelWeightsMissing
    from .ann import IndexUnavailable
    from .engine import NoEmbeddingsError, SearchUsageError, prepare, search
    from .gallery_file import search_document, write_search

    try:
        prepared = prepare(args.output_path, args.embedding_algorithm)
        embedder = _embedder(args, prepared.variant.name)
        embedder.resolve()  # missing weights: the pipeline's message, before torch is imported
        outcome = search(prepared, args.query, lambda q: embedder.embed_texts([q])[0], args.top_k, args.index)
    except ModelWeightsMissing as exc:  # the pipeline's message, and where the weights are explained
        print(f"search: error: {exc}. The text tower is part of the same checkpoint as the clips' video tower; "
              "docs/models.md says how to get it", file=sys.stderr)
        return 2
    except (NoEmbeddingsError, SearchUsageError, IndexUnavailable) as exc:
        print(f"search: error: {exc}", file=sys.stderr)
        return 2
    except storage.StorageError as exc:
        print(f"search: error: {storage.redact(exc)}", file=sys.stderr)
        return 2
    except ModelLoadError as exc:
        print(f"search: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a stop, not a failure: the cache's temporary files are already removed
        print("search: stopped", file=sys.stderr)
        return 130
    link = None
    if not args.no_gallery:
        shown = [(h.clip_uuid, h.score, h.fragment) for h in outcome.hits if h.fragment]
        _, link = write_search(args.output_path, search_document(args.query, outcome.variant, shown))
    if args.json:
        json.dump(_json(outcome, link), stream, indent=1)
        stream.write("\n")
    else:
        _print_table(outcome, link, stream)
    return 0


def _json(outcome: Outcome, link: str | None) -> dict[str, Any]:
    return {"query": outcome.query, "model": outcome.variant, "method": outcome.method,
            "num_clips": outcome.num_clips, "results": [h.as_json() for h in outcome.hits],
            "problems": outcome.problems, "gallery": link}


def _span(hit: Any) -> str:
    row = hit.row or {}
    start, end = row.get("span_start_s"), row.get("span_end_s")
    return "-" if start is None or end is None else f"{start:.2f}-{end:.2f}s"


def _print_table(outcome: Outcome, link: str | None, stream: TextIO) -> None:
    from .results import preview_of

    for p in outcome.problems:
        print(f"search: {p}", file=stream)
    print(f"search: {len(outcome.hits)} of {outcome.num_clips} clips for {outcome.query!r} "
          f"({outcome.variant}, {outcome.method})", file=stream)
    print(f"{'rank':>4}  {'clip_uuid':36}  {'score':>6}  {'span':>13}  status    source / preview", file=stream)
    for h in outcome.hits:
        row = h.row or {}
        status = "-" if h.row is None else "passed" if row.get("passed") else f"filtered:{row.get('filtered_by')}"
        print(f"{h.rank:>4}  {h.clip_uuid:36}  {h.score:6.3f}  {_span(h):>13}  {status:8}  "
              f"{row.get('source_video') or '(not in the manifest)'}", file=stream)
        preview = preview_of(h.row)
        if preview:
            print(f"{'':>4}  {'':36}  {'':>6}  {'':>13}  {'':8}  {preview}", file=stream)
    if outcome.not_in_manifest:
        print(f"search: {outcome.not_in_manifest} result(s) are not in the manifest; write it again with "
              "`curation-assets package manifest`", file=stream)
    if link:
        print(f"gallery: {link}", file=stream)


__all__ = ["add_search_parser", "run_search"]
