"""Dedup on an output without embeddings (a real curation with ``generate_embeddings=off``) says
so and fails, from the CLI and as the ``semantic_dedup`` asset, instead of a "0 of 0 clips are
duplicates" result that reads as "no duplicates"."""

from __future__ import annotations

import io
from pathlib import Path

import dagster as dg
import pytest

from curation_assets.cli import main as package_main
from curation_assets.core.keys import key_from_rel_path
from curation_assets.definitions import build_definitions
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.packaging import dedup
from curation_assets.partitions import VIDEOS_PARTITION_NAME

from .packaging_fixtures import make_inputs, options_for, packaging_models, write_layout  # noqa: F401 - fixtures

VIDEO = {"a.mp4": dict(seconds=4, width=320, height=256, audio=False)}


@pytest.fixture(scope="module")
def no_embeddings(tmp_path_factory, packaging_models) -> tuple[Path, Path, Path]:
    inputs = make_inputs(tmp_path_factory.mktemp("noemb-in"), VIDEO)
    out = tmp_path_factory.mktemp("noemb-out") / "out"
    write_layout(inputs, str(out), packaging_models, rels=list(VIDEO), generate_embeddings="off")
    assert not (out / "ce1_embd").exists()
    return inputs, out, packaging_models


def _package(*argv: str) -> tuple[int, str]:
    import contextlib

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = package_main(["package", *argv])
    return rc, buf.getvalue()


def test_cli_dedup_without_embeddings_fails_naming_what_is_missing(no_embeddings):
    _, out, _ = no_embeddings
    assert _package("manifest", "--output-path", str(out))[0] == 0
    rc, text = _package("dedup", "--output-path", str(out))
    assert rc == 1, text
    assert "no embeddings" in text and "ce1_embd/" in text and "generate_embeddings=off" in text
    assert "of 0 clips are duplicates" not in text and "eps       duplicates" not in text
    assert not (out / dedup.DEDUP_DIR).exists()  # nothing that could pass for a result


def test_cli_dedup_on_an_empty_manifest_says_write_the_manifest(tmp_path):
    rc, text = _package("dedup", "--output-path", str(tmp_path / "nothing"))
    assert rc == 1 and "no clips in the manifest" in text and "package manifest" in text


def test_run_semdedup_raises_with_counts(no_embeddings):
    _, out, _ = no_embeddings
    _package("manifest", "--output-path", str(out))
    with pytest.raises(dedup.NoEmbeddingsError, match=r"none of the \d+ passed clip\(s\) .* has a ce1_embd/ embedding"):
        dedup.run_semdedup(str(out))


@pytest.mark.slow
def test_semantic_dedup_asset_fails_without_embeddings(no_embeddings):
    inputs, out, models = no_embeddings
    options = options_for(inputs, str(out), models, generate_embeddings="off")
    defs = build_definitions(CurationSettings.from_options(options))
    key = key_from_rel_path("a.mp4")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, [key])
        done = dg.materialize(defs.assets, selection=["clip_manifest"], partition_key=key, instance=instance,
                              resources=defs.resources, raise_on_error=False)
        assert done.success
        result = dg.materialize(defs.assets, selection=["semantic_dedup"], instance=instance,
                                resources=defs.resources, raise_on_error=False)
        assert not result.success
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert len(failures) == 1
        message = failures[0].event_specific_data.error.message
        assert "no embeddings" in message and "generate_embeddings=off" in message, message
        assert not instance.fetch_materializations(dg.AssetKey("semantic_dedup"), limit=1).records
