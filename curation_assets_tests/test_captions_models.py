"""Ordered caption and enhancement models, each on its own OpenAI-compatible endpoint: two real
chat servers in the test process, the pipeline writing the layout, the CLI and the environment
configuring the models."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from curation_assets.cli import build_parser, main, run_pipeline
from curation_assets.cli.arguments import UsageError, caption_service_from_args
from curation_assets.core import layout
from curation_assets.core.caption_settings import parse_endpoints
from curation_assets.core.layout_read import read_video_layout
from curation_assets.core.options import PipelineOptions
from curation_assets.defs.shared.resources import CaptionService
from curation_assets.packaging.manifest import manifest_table

from .model_fixtures import ChatServer, Received, chat_answer, echo_responder
from .video_factory import make_video

VIDEO = "a.mp4"
REQUIRED = ["--video-dir", "/tmp/q2-in", "--output-path", "/tmp/q2-out"]
KEYS = ["qwen_caption", "nemotron_caption", "qwen_lm_enhanced_caption", "nemotron_lm_enhanced_caption"]


def tagged(server: ChatServer, rec: Received) -> tuple[int, object]:
    """The echo answer prefixed with the served model the request named: which endpoint and
    model wrote a text can be read off the text."""
    status, answer = echo_responder(server, rec)
    text = answer["choices"][0]["message"]["content"]  # type: ignore[index]
    return status, chat_answer(f"[{rec.body['model']}] {text}")


def failing_once(fail_at: int):
    """``tagged``, except the ``fail_at``-th caption request (images in it) gets a 400."""
    seen = {"n": 0}
    lock = threading.Lock()

    def responder(server: ChatServer, rec: Received) -> tuple[int, object]:
        is_caption = isinstance(rec.body["messages"][-1]["content"], list)
        with lock:
            if is_caption:
                seen["n"] += 1
            hit = is_caption and seen["n"] == fail_at
        return (400, {"error": {"message": "refused this window"}}) if hit else tagged(server, rec)

    return responder


def two_model_service(a: ChatServer, b: ChatServer) -> CaptionService:
    """qwen on server a (today's single-model settings), nemotron on server b (its own entry)."""
    return CaptionService(base_url=a.base_url, model="Qwen/VL", enhance_model="Qwen/LM", backoff_s=0.01,
                          timeout_s=10, max_retries=0,
                          endpoints=[f"nemotron={b.base_url}|nvidia/Nemotron-VL",
                                     f"nemotron_lm={b.base_url}|nvidia/Nemotron-LM"])


def options(root: Path, **kw) -> PipelineOptions:
    kw.setdefault("caption_models", ["qwen", "nemotron"])
    kw.setdefault("enhanced_caption_models", ["qwen_lm", "nemotron_lm"])
    return PipelineOptions(input_path=str(root / "in"), output_path=str(root / "out"), fixed_stride_split_duration=2.0,
                           fixed_stride_min_clip_length_s=1.0, generate_embeddings="off", generate_captions=True,
                           enhance_captions=True, **kw)


def metas(out: Path) -> list[dict]:
    chunk = json.loads((out / layout.chunk_file(VIDEO, 0)).read_text())
    return [json.loads((out / layout.METAS / f"{uid}.json").read_text()) for uid in chunk["clips"]]


@pytest.fixture()
def videos(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    make_video(tmp_path / "in" / VIDEO, seconds=5, fps=25, width=256, height=256)
    return tmp_path


@pytest.mark.slow
def test_two_caption_and_two_enhancement_models_give_every_window_both_keys_in_order(videos: Path) -> None:
    with ChatServer(tagged) as a, ChatServer(tagged) as b:
        report = io.StringIO()
        rc = run_pipeline(options(videos), home=str(videos / "home"), stream=report,
                          caption_service=two_model_service(a, b))
        assert rc == 0, report.getvalue()
        # each server saw only its own served models
        assert {r.body["model"] for r in a.received} == {"Qwen/VL", "Qwen/LM"}
        assert {r.body["model"] for r in b.received} == {"nvidia/Nemotron-VL", "nvidia/Nemotron-LM"}
    docs = metas(videos / "out")
    windows = [w for d in docs for w in d["windows"]]
    assert len(docs) == 3 and windows
    for w in windows:
        assert [k for k in w if k.endswith("_caption")] == KEYS
        assert w["qwen_caption"].startswith("[Qwen/VL] images=")
        assert w["nemotron_caption"].startswith("[nvidia/Nemotron-VL] images=")
        # each enhanced caption from its own caption model's text, on its own endpoint
        assert w["qwen_lm_enhanced_caption"] == f"[Qwen/LM] enhanced: {w['qwen_caption']}"
        assert w["nemotron_lm_enhanced_caption"] == f"[nvidia/Nemotron-LM] enhanced: {w['nemotron_caption']}"
    assert all("errors" not in d for d in docs)
    # the chunk document lists the first model's text per window, as the reference's writer does
    chunk = json.loads((videos / "out" / layout.chunk_file(VIDEO, 0)).read_text())
    for d in docs:
        (w,) = d["windows"]
        key = f"{w['start_frame']}_{w['end_frame']}"
        assert chunk["all_windows"][d["span_uuid"]] == {key: w["qwen_caption"]}
        assert chunk["all_windows_enhanced_caption"][d["span_uuid"]] == {key: w["qwen_lm_enhanced_caption"]}
    # the manifest's windows carry every model's caption, in order
    rows = manifest_table(read_video_layout(str(videos / "out"), VIDEO)).to_pylist()
    by_uid = {d["span_uuid"]: d for d in docs}
    for row in rows:
        (mw,) = row["windows"]
        (w,) = by_uid[row["clip_uuid"]]["windows"]
        assert [c["model"] for c in mw["captions"]] == ["qwen", "nemotron"]
        assert [c["text"] for c in mw["captions"]] == [w["qwen_caption"], w["nemotron_caption"]]
        assert [c["model"] for c in mw["enhanced_captions"]] == ["qwen_lm", "nemotron_lm"]


@pytest.mark.slow
def test_one_model_failing_on_one_window_keeps_the_other_models_caption(videos: Path) -> None:
    with ChatServer(tagged) as a, ChatServer(failing_once(2)) as b:
        run_pipeline(options(videos), home=str(videos / "home"), stream=io.StringIO(),
                     caption_service=two_model_service(a, b))
    docs = metas(videos / "out")
    failed = [d for d in docs if "nemotron_caption" not in d["windows"][0]]
    assert len(failed) == 1, [d["windows"] for d in docs]
    (doc,) = failed
    (w,) = doc["windows"]
    assert w["qwen_caption"].startswith("[Qwen/VL]")
    assert w["qwen_lm_enhanced_caption"] == f"[Qwen/LM] enhanced: {w['qwen_caption']}"
    assert "nemotron_lm_enhanced_caption" not in w  # nothing to enhance
    assert doc["errors"] == ["nemotron_caption"]
    assert doc["error_details"]["nemotron_caption"].startswith(f"window {w['start_frame']}_{w['end_frame']}: HTTP 400")
    for other in docs:
        if other is not doc:
            assert [k for k in other["windows"][0] if k.endswith("_caption")] == KEYS
            assert "errors" not in other


@pytest.mark.slow
def test_no_caption_models_means_no_captions(videos: Path) -> None:
    with ChatServer(tagged) as a:
        service = CaptionService(base_url=a.base_url, timeout_s=10)
        assert run_pipeline(options(videos, caption_models=[], enhanced_caption_models=[]),
                            home=str(videos / "home"), stream=io.StringIO(), caption_service=service) == 0
        assert [r for r in a.received if r.path.endswith("/chat/completions")] == []
    for d in metas(videos / "out"):
        assert [k for w in d["windows"] for k in w if k.endswith("caption")] == []


@pytest.mark.slow
def test_the_cli_and_environment_give_each_model_its_endpoint(videos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ChatServer(tagged) as a, ChatServer(tagged) as b:
        # nemotron's caption endpoint from the environment, its enhancer from a flag
        monkeypatch.setenv("CURATION_CAPTION_ENDPOINTS", f"nemotron={b.base_url}|nvidia/Nemotron-VL|NEMO_KEY")
        monkeypatch.setenv("NEMO_KEY", "sk-nemo")
        monkeypatch.setenv("CURATION_CAPTION_MAX_RETRIES", "0")
        rc = main(["run", "--video-dir", str(videos / "in"), "--output-path", str(videos / "out"),
                   "--dagster-home", str(videos / "home"), "--fixed-stride-split-duration", "2",
                   "--fixed-stride-min-clip-length-s", "1", "--no-generate-embeddings", "--generate-captions",
                   "--enhance-captions", "--caption-model", "qwen,nemotron",
                   "--enhance-caption-model", "qwen_lm,nemotron_lm",
                   "--caption-endpoint", a.base_url, "--caption-served-model", "Qwen/VL",
                   "--enhance-served-model", "Qwen/LM",
                   "--caption-model-endpoint", f"nemotron_lm={b.base_url}|nvidia/Nemotron-LM"])
        assert rc == 0
        nemo = [r for r in b.received if r.body.get("model") == "nvidia/Nemotron-VL"]
        assert nemo and all(r.headers.get("Authorization") == "Bearer sk-nemo" for r in nemo)
        assert {r.body["model"] for r in b.received} == {"nvidia/Nemotron-VL", "nvidia/Nemotron-LM"}
        assert {r.body["model"] for r in a.received} == {"Qwen/VL", "Qwen/LM"}
    for d in metas(videos / "out"):
        (w,) = d["windows"]
        assert [k for k in w if k.endswith("_caption")] == KEYS
        assert w["nemotron_lm_enhanced_caption"] == f"[nvidia/Nemotron-LM] enhanced: {w['nemotron_caption']}"


def test_cli_endpoint_flags_build_one_client_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURATION_CAPTION_ENDPOINTS", "nemotron=http://b:9/v1|nvidia/N-VL|NEMO_KEY")
    args = build_parser().parse_args(["run", *REQUIRED, "--caption-endpoint", "http://a:8/v1",
                                      "--caption-model-endpoint", "nemotron_lm=http://c:7/v1|nvidia/N-LM"])
    service = caption_service_from_args(args)
    opts = PipelineOptions(generate_captions=True, enhance_captions=True, caption_models=["qwen", "nemotron"],
                           enhanced_caption_models=["qwen_lm", "nemotron_lm"])
    models = service.client(opts)
    got = [(c.caption_key, c.base_url, c.model, c.api_key_env, c.enhance_key, c.enhance_base_url, c.enhance_model)
           for c in models.clients]
    assert got == [
        ("qwen", "http://a:8/v1", "Qwen/Qwen2.5-VL-7B-Instruct", "CURATION_CAPTION_API_KEY", "qwen_lm",
         "http://a:8/v1", "Qwen/Qwen2.5-7B-Instruct"),
        ("nemotron", "http://b:9/v1", "nvidia/N-VL", "NEMO_KEY", "nemotron_lm", "http://c:7/v1", "nvidia/N-LM"),
    ]
    assert models.enhance == [True, True]
    bad = build_parser().parse_args(["run", *REQUIRED, "--caption-model-endpoint", "nemotron=http://b:9/v1"])
    with pytest.raises(UsageError, match="expected 'name=base_url\\|served_model\\|api_key_env'"):
        caption_service_from_args(bad)


def test_a_second_model_without_an_endpoint_is_refused_by_name() -> None:
    opts = PipelineOptions(generate_captions=True, caption_models=["qwen", "nemotron"],
                           enhanced_caption_models=["qwen_lm"])
    with pytest.raises(ValueError, match="model 'nemotron' has no endpoint"):
        CaptionService().client(opts)
    with pytest.raises(ValueError, match="endpoints names 'x' twice"):
        parse_endpoints(["x=http://h/v1|m", "x=http://h/v1|m"])


def test_more_enhanced_than_caption_models_is_refused() -> None:
    with pytest.raises(ValueError, match="more than caption_models"):
        PipelineOptions(caption_models=["qwen"], enhanced_caption_models=["qwen_lm", "nemotron_lm"])
    with pytest.raises(ValueError, match="name a model twice"):
        PipelineOptions(caption_models=["qwen", "qwen"], enhanced_caption_models=[])


def test_the_cli_refuses_a_caption_model_without_an_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", *REQUIRED, "--generate-captions", "--caption-model", "qwen,nemotron"])
    assert rc == 2
    assert "model 'nemotron' has no endpoint: add an endpoints entry" in capsys.readouterr().err


def test_a_dagster_run_refuses_a_model_without_an_endpoint_once(videos: Path, tmp_path: Path) -> None:
    """Through Dagster (the UI, the sensor) the same refusal fails the run before any video is
    decoded, and it is not retried: no setting changes between tries."""
    import dagster as dg

    from curation_assets.core.keys import key_from_rel_path
    from curation_assets.definitions import CURATE_JOB_NAME, CurationSettings, build_definitions
    from curation_assets.partitions import VIDEOS_PARTITION_NAME

    options = PipelineOptions(input_path=str(videos), output_path=str(tmp_path / "out"), generate_embeddings="off",
                              generate_previews=False, generate_captions=True, caption_models=["qwen", "nemotron"],
                              enhanced_caption_models=[])
    job = build_definitions(CurationSettings.from_options(options),
                            caption_service=CaptionService()).resolve_job_def(CURATE_JOB_NAME)
    key = key_from_rel_path(sorted(p.name for p in videos.iterdir())[0])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, [key])
        result = job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "model 'nemotron' has no endpoint" in failure.step_failure_data.error.message
        assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert not (tmp_path / "out" / layout.CLIPS).exists()
