"""Credentials never leak: AWS keys (from the environment, used against the S3 server) and the
caption endpoint's API key must not appear in the Dagster event log, materialisation metadata,
run config or tags, error messages, the CLI report or any output file, even when a backend
failure's own message contains them (the failures are injected to prove the redaction is wired in,
not only that well-behaved libraries stay quiet)."""

from __future__ import annotations

import io
import json

import dagster as dg
import pytest
import s3fs

from curation_assets.cli import run_pipeline
from curation_assets.core.options import PipelineOptions
from curation_assets.defs.shared.resources import CaptionService

from .model_fixtures import ChatServer
from .test_object_storage import download_tree, upload_tree
from .video_factory import make_video

ACCESS_KEY_ID = "AKIAFAKEMOTO0123TEST"  # shaped like a real key id
SECRET_ACCESS_KEY = "fAkE/Moto+Secret-Key-7c1d9e0b4a2f8e6d5c3b1a09"
CAPTION_KEY_ENV = "CURATION_TEST_CAPTION_KEY"
CAPTION_KEY = "sk-leak-check-caption-key-41f9c2d7e8"
SECRETS = (ACCESS_KEY_ID, SECRET_ACCESS_KEY, CAPTION_KEY)

LEAKY_MESSAGE = (
    f"AccessDenied: request by {ACCESS_KEY_ID} signed with secret {SECRET_ACCESS_KEY}; "
    f"Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20250101/us-east-1/s3/aws4_request; "
    f"aws_secret_access_key={SECRET_ACCESS_KEY}"
)


def unauthorized_echo(server: ChatServer, rec) -> tuple[int, object]:
    """What OpenAI-style endpoints do with a wrong key: a 401 whose body repeats the key."""
    auth = rec.headers.get("Authorization", "")
    return 401, {"error": {"message": f"Incorrect API key provided: {auth.removeprefix('Bearer ')}",
                           "type": "invalid_request_error"}}


# The video whose write fails sorts first, then between the others: a failure that lost the rest
# of its batch (the videos after it) shows as a missing document. (Named to sort last, it once hid
# exactly that.)
@pytest.mark.parametrize("leaky_write", ["a leaky write.mp4", "h leaky write.mp4"], ids=["first", "middle"])
def test_credentials_never_appear_in_logs_metadata_config_errors_or_outputs(tmp_path, s3_bucket, s3_server,
                                                                           monkeypatch, capsys, caplog, leaky_write):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv(CAPTION_KEY_ENV, CAPTION_KEY)
    caplog.set_level("INFO")  # the CLI's most verbose level (--verbose)

    local = tmp_path / "videos"
    local.mkdir()
    make_video(local / "good.mp4", seconds=2, fps=25, width=256, height=256, audio=False)
    make_video(local / "leaky read.mp4", seconds=2, fps=25, width=256, height=256, audio=False)
    make_video(local / leaky_write, seconds=2, fps=25, width=256, height=256, audio=False)
    (local / "noise.mp4").write_bytes(b"\x00\x01garbage" * 300)
    s3_in, s3_out = f"{s3_bucket}/in", f"{s3_bucket}/out"
    upload_tree(s3_server, local, s3_in)

    # Backend failures whose own text carries the credentials: reading one source, writing one file.
    real_open = s3fs.S3FileSystem.open

    def open_or_fail(self, path, *args, **kwargs):
        if "leaky read" in path:
            raise PermissionError(LEAKY_MESSAGE)
        return real_open(self, path, *args, **kwargs)

    real_pipe = s3fs.S3FileSystem._pipe_file

    async def pipe_or_fail(self, path, *args, **kwargs):
        if leaky_write in path:
            raise PermissionError(LEAKY_MESSAGE)
        return await real_pipe(self, path, *args, **kwargs)

    home = tmp_path / "home"
    options = PipelineOptions(input_path=s3_in, output_path=s3_out, fixed_stride_split_duration=2.0,
                              generate_embeddings="off", generate_previews=False, generate_captions=True)
    report = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, ChatServer(default=unauthorized_echo) as server:
        patch.setattr(s3fs.S3FileSystem, "open", open_or_fail)
        patch.setattr(s3fs.S3FileSystem, "_pipe_file", pipe_or_fail)
        s3fs.S3FileSystem.clear_instance_cache()  # sync wrappers are bound per instance
        service = CaptionService(base_url=server.base_url, api_key_env=CAPTION_KEY_ENV, backoff_s=0.01, timeout_s=10)
        assert CAPTION_KEY not in json.dumps(service.model_dump())  # the config holds the variable's name only
        try:
            rc = run_pipeline(options, home=str(home), stream=report, caption_service=service)
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
        assert server.received and all(r.headers.get("Authorization") == f"Bearer {CAPTION_KEY}"
                                       for r in server.received)
    text = report.getvalue()
    assert rc == 1, text

    # The injected failures did happen, were reported, and came out redacted.
    mirror = tmp_path / "mirror"
    download_tree(s3_server, s3_out, mirror)
    leaky_doc = json.loads((mirror / "processed_videos" / "leaky read.mp4.json").read_text())
    assert "download" in leaky_doc["errors"] and "***" in leaky_doc["error_details"]["download"]
    assert "AccessDenied" in leaky_doc["error_details"]["download"]
    good_meta = [json.loads(p.read_text()) for p in (mirror / "metas" / "v0").glob("*.json")]
    assert good_meta and all("HTTP 401" in m["error_details"]["qwen_caption"] for m in good_meta)
    assert not (mirror / "processed_videos" / f"{leaky_write}.json").exists()
    names = sorted(p.name for p in local.iterdir())
    assert names.index(leaky_write) < names.index("noise.mp4")  # videos after it in the batch...
    documented = sorted(p.name for p in (mirror / "processed_videos").iterdir())
    assert documented == ["good.mp4.json", "leaky read.mp4.json", "noise.mp4.json"]  # ...are all written

    # Everything a user or the UI can see: every event of every run (logs, materialisations and
    # their metadata, step failures with their errors), run config and tags, the instance's files,
    # the report, captured output and log records, every output object.
    seen = [text, capsys.readouterr().out, capsys.readouterr().err, caplog.text]
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert runs
        for run in runs:
            seen.append(dg.serialize_value(run))
            seen.append(json.dumps(run.run_config) + json.dumps(run.tags))
            for record in instance.all_logs(run.run_id):
                seen.append(dg.serialize_value(record))
            for record in instance.get_records_for_run(run.run_id).records:
                seen.append(dg.serialize_value(record))
        failure_text = "".join(s for s in seen if "STEP_FAILURE" in s)
        assert "AccessDenied" in failure_text and "***" in failure_text  # the write failure is in the event log
    for path in home.rglob("*"):
        if path.is_file():
            seen.append(path.read_bytes().decode("latin-1"))
    for path in mirror.rglob("*"):
        if path.is_file():
            seen.append(path.read_bytes().decode("latin-1"))
    everything = "\n".join(seen)
    assert "leaky read.mp4" in everything and "Incorrect API key provided" in everything
    for secret in SECRETS:
        assert secret not in everything, f"{secret[:6]}... leaked"


def test_redaction_of_video_level_errors_in_the_core():
    """Errors recorded by process_video are redacted before they reach any document or log."""
    from curation_assets.models.video import process_video

    class Leaky:
        def __enter__(self):
            raise OSError(LEAKY_MESSAGE)

        def __exit__(self, *exc):
            return False

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        result = process_video("s3://b/in/x.mp4", "x.mp4", Leaky, PipelineOptions())
    message = " ".join(result.errors.values())
    assert "download" in result.errors and "***" in message
    for secret in SECRETS:
        assert secret not in message
