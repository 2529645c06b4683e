"""Packaging reads a clip only when it is a regular file inside the output of the size its
``metas/v0`` document records (issue 18): a link in ``clips/`` to a file outside the output, a
folder link leading out, or a file of another size is left out and reported per clip."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pytest

from curation_assets.cli import main as package_main
from curation_assets.core.layout_read import read_video_layout
from curation_assets.packaging import clip_trust, manifest, shards

from .packaging_fixtures import (  # noqa: F401 - fixtures
    VIDEOS,
    packaging_inputs,
    packaging_models,
    write_layout,
    written_layout,
)


@pytest.fixture
def out(written_layout, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(written_layout, copy)
    return copy


def _passed_clips(out: Path) -> list:
    return [c for rel in VIDEOS for c in read_video_layout(str(out), rel).clips if c.passed and c.clip_url]


def _members(dest: Path) -> dict[str, bytes]:
    found = {}
    for shard in dest.rglob("*.tar"):
        with tarfile.open(shard) as tar:
            for m in tar:
                found[m.name] = tar.extractfile(m).read()
    return found


def test_a_link_out_of_the_output_and_a_wrong_size_clip_are_not_packaged_and_are_reported(out, tmp_path, capsys):
    linked, resized, *kept = _passed_clips(out)
    assert kept, "the fixture has a third passed clip that stays"
    secret = tmp_path / "secret.mp4"  # outside the output, of exactly the clip's size
    secret.write_bytes(os.urandom(Path(linked.clip_url).stat().st_size))
    Path(linked.clip_url).unlink()
    Path(linked.clip_url).symlink_to(secret)
    with open(resized.clip_url, "ab") as f:
        f.write(b"\0" * 10)
    assert package_main(["package", "shards", "--output-path", str(out), "--no-energon", "--num-groups", "1"]) == 1
    text = capsys.readouterr().out
    line = next(l for l in text.splitlines() if linked.uuid in l)
    assert "not packaged" in line and "symbolic link" in line, text
    line = next(l for l in text.splitlines() if resized.uuid in l)
    assert "not packaged" in line and "its metas/v0 document says" in line, text
    assert '"untrusted": 2' in text, text
    members = _members(out / "webdataset" / "default")
    assert not any(name.startswith((linked.uuid, resized.uuid)) for name in members)
    assert secret.read_bytes() not in members.values()
    assert {f"{c.uuid}.mp4" for c in kept} <= set(members)


def test_a_folder_link_leading_out_of_the_output_is_not_followed(out, tmp_path):
    clips = _passed_clips(out)
    outside = tmp_path / "elsewhere"
    shutil.move(str(out / "clips"), outside)  # the same bytes, but reached through a link out of the output
    (out / "clips").symlink_to(outside, target_is_directory=True)
    videos = [read_video_layout(str(out), rel) for rel in VIDEOS]
    result = shards.build_shards(videos, str(out / "webdataset" / "default"), shards.ShardSettings(num_groups=1))
    assert result.index["skipped"]["untrusted"] == len(clips)
    assert all(any(c.uuid in p and "leads outside" in p for p in result.problems) for c in clips), result.problems


def _link_a_clip_outside_and_write_the_manifest(out: Path, tmp_path: Path):
    """The first passed clip replaced by a link to a file of its size outside the output; the
    manifest fragments written after (what the shards asset plans from). Returns that clip."""
    linked = _passed_clips(out)[0]
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(os.urandom(Path(linked.clip_url).stat().st_size))
    Path(linked.clip_url).unlink()
    Path(linked.clip_url).symlink_to(secret)
    for rel in VIDEOS:
        manifest.write_fragment(str(out), read_video_layout(str(out), rel))
    return linked


def test_the_asset_path_reports_too(out, tmp_path):
    """The shards asset plans from the manifest (``build_shards_from_manifest``): the same rule,
    the same per-clip problems, which the asset puts in its metadata."""
    linked = _link_a_clip_outside_and_write_the_manifest(out, tmp_path)
    digests = manifest.fragment_digests(str(out), list(VIDEOS)).digests
    result = shards.build_shards_from_manifest(str(out), digests, str(tmp_path / "dest"),
                                               shards.ShardSettings(num_groups=1))
    assert result.index["skipped"]["untrusted"] == 1
    assert any(linked.uuid in p and "symbolic link" in p for p in result.problems), result.problems


def test_read_clip_on_object_storage_checks_the_key_and_the_size(out, s3_bucket):
    import dataclasses

    from curation_assets.core import storage

    clip = _passed_clips(out)[0]
    data = Path(clip.clip_url).read_bytes()
    base = f"{s3_bucket}/curated"
    url = f"{base}/clips/{clip.uuid}.mp4"
    storage.write_bytes_atomic(url, data)
    remote = dataclasses.replace(clip, clip_url=url)
    assert clip_trust.read_clip(base, remote) == data
    storage.write_bytes_atomic(url, data + b"x")
    with pytest.raises(clip_trust.UntrustedClip, match="metas/v0 document says"):
        clip_trust.read_clip(base, remote)
    with pytest.raises(clip_trust.UntrustedClip, match="is not inside"):
        clip_trust.read_clip(f"{s3_bucket}/other", remote)


@pytest.mark.slow
def test_the_shards_asset_names_the_untrusted_clip_in_its_metadata(out, tmp_path, packaging_inputs, packaging_models):
    import dagster as dg

    from curation_assets.core.keys import key_from_rel_path
    from curation_assets.definitions import build_definitions
    from curation_assets.defs.packaging import assets as pkg
    from curation_assets.defs.shared.resources import CurationSettings
    from curation_assets.partitions import VIDEOS_PARTITION_NAME

    from .packaging_fixtures import options_for

    linked = _link_a_clip_outside_and_write_the_manifest(out, tmp_path)
    options = options_for(packaging_inputs, str(out), packaging_models)
    defs = build_definitions(CurationSettings.from_options(options), packaging=pkg.PackagingSettings(num_groups=1))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, [key_from_rel_path(r) for r in VIDEOS])
        defs.resolve_job_def(pkg.PACKAGE_JOB_NAME).execute_in_process(instance=instance, raise_on_error=False)
        (record,) = instance.fetch_materializations(dg.AssetKey("webdataset_shards"), limit=1).records
        md = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    assert md["skipped"]["untrusted"] == 1 and md["num_problems"] >= 1, md
    assert any(linked.uuid in p and "symbolic link" in p for p in md["problems"]), md["problems"]
    members = _members(out / "webdataset" / "default")
    assert f"{linked.uuid}.mp4" not in members and (tmp_path / "secret.mp4").read_bytes() not in members.values()
