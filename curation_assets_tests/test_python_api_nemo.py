"""NeMo Curator's getting-started names (issue 19): ClipFrameExtractionStage with its enums, the
executors, the caption and Cosmos-Embed1 stages' tutorial parameters. Each is mapped onto the
settings or refused by name; the enums and signatures are NeMo Curator 1.4.0's."""

from __future__ import annotations

import re
import warnings

import pytest

from curation_assets import (
    CaptionEnhancementStage,
    CaptionGenerationStage,
    CaptionPreparationStage,
    ClipAestheticFilterStage,
    ClipFrameExtractionStage,
    ClipTranscodingStage,
    ClipWriterStage,
    CosmosEmbed1EmbeddingStage,
    CosmosEmbed1FrameCreationStage,
    FixedStrideExtractorStage,
    FrameExtractionPolicy,
    FramePurpose,
    Pipeline,
    RayDataExecutor,
    VideoReader,
    XennaExecutor,
)

EMBED_AND_SCORE = [FramePurpose.EMBEDDINGS, FramePurpose.AESTHETICS]


def test_enums_are_nemos():
    # utils/decoder_utils.py of NeMo Curator 1.4.0
    assert {m.name: m.value for m in FrameExtractionPolicy} == {"first": 0, "middle": 1, "last": 2, "sequence": 3}
    assert {m.name: m.value for m in FramePurpose} == {"AESTHETICS": 1, "EMBEDDINGS": 2}


def _writer(tmp_path, **kw):
    values = dict(output_path=str(tmp_path / "out"), input_path=str(tmp_path / "videos"), upload_clips=True,
                  dry_run=False, generate_embeddings=True, generate_previews=False, generate_captions=False,
                  embedding_algorithm="cosmos-embed1-336p")
    return ClipWriterStage(**{**values, **kw})


def _tutorial(tmp_path, purposes=EMBED_AND_SCORE, writer=None) -> Pipeline:
    """NeMo's "Complete Pipeline Example" stages, in its order."""
    models = str(tmp_path / "models")
    p = Pipeline(name="full_video_curation", description="Complete video curation workflow")
    p.add_stage(VideoReader(input_video_path=str(tmp_path / "videos")))
    p.add_stage(FixedStrideExtractorStage(clip_len_s=10.0, clip_stride_s=10.0, min_clip_length_s=2.0, limit_clips=0))
    p.add_stage(ClipTranscodingStage(encoder="libx264"))
    p.add_stage(ClipFrameExtractionStage(extraction_policies=(FrameExtractionPolicy.sequence,),
                                         extract_purposes=purposes))
    p.add_stage(ClipAestheticFilterStage(model_dir=models, score_threshold=3.5))
    p.add_stage(CosmosEmbed1FrameCreationStage(model_dir=models, variant="336p", target_fps=2.0))
    p.add_stage(CosmosEmbed1EmbeddingStage(model_dir=models, variant="336p"))
    p.add_stage(writer or _writer(tmp_path))
    return p


def test_the_tutorial_pipeline_maps_onto_the_settings(tmp_path):
    o = _tutorial(tmp_path).options()
    assert (o.splitting_algorithm, o.fixed_stride_split_duration, o.fixed_stride_min_clip_length_s) == \
        ("fixed_stride", 10.0, 2.0)
    assert (o.transcode_encoder, o.aesthetic_threshold, o.aesthetic_reduction) == ("libx264", 3.5, "min")
    assert (o.embedding_algorithm, o.generate_embeddings) == ("cosmos-embed1-336p", "on")
    assert o.model_dir == str(tmp_path / "models") and o.model_frames == "source"
    # the stages' variant and the writer's algorithm must agree
    with pytest.raises(ValueError, match=r"ClipWriterStage sets embedding_algorithm='cosmos-embed1-448p' but "
                                         r"CosmosEmbed1EmbeddingStage set 'cosmos-embed1-336p'"):
        _tutorial(tmp_path, writer=_writer(tmp_path, embedding_algorithm="cosmos-embed1-448p")).options()


def test_each_model_stage_needs_its_frame_purpose(tmp_path):
    with pytest.raises(ValueError, match=r"ClipAestheticFilterStage needs FramePurpose.AESTHETICS in "
                                         r"ClipFrameExtractionStage's extract_purposes \(given: EMBEDDINGS\)"):
        _tutorial(tmp_path, purposes=[FramePurpose.EMBEDDINGS]).options()
    with pytest.raises(ValueError, match=r"CosmosEmbed1FrameCreationStage needs FramePurpose.EMBEDDINGS"):
        _tutorial(tmp_path, purposes=[FramePurpose.AESTHETICS]).options()
    # None is NeMo's fallback: the 2 fps frames, which only the embedding stages use
    with pytest.raises(ValueError, match=r"ClipAestheticFilterStage needs FramePurpose.AESTHETICS"):
        _tutorial(tmp_path, purposes=None).options()
    late = Pipeline("late", stages=[ClipAestheticFilterStage(score_threshold=3.5),
                                    ClipFrameExtractionStage(extract_purposes=EMBED_AND_SCORE), _writer(tmp_path)])
    with pytest.raises(ValueError, match=r"ClipAestheticFilterStage comes before ClipFrameExtractionStage"):
        late.options()


def _run_refusal(tmp_path, what: str):
    p = Pipeline("r", stages=[_writer(tmp_path)])
    return p.run(initial_tasks=[]) if what == "initial_tasks" else p.run(checkpoint_path=str(tmp_path / "ck"))


# (stage call, the refused value as the message names it)
REFUSED = [
    (lambda t: ClipFrameExtractionStage(extraction_policies=(FrameExtractionPolicy.middle,)),
     "ClipFrameExtractionStage(extraction_policies=(<FrameExtractionPolicy.middle: 1>,)) is not implemented; "
     "the model steps take the reference's sequence sampling"),
    (lambda t: ClipFrameExtractionStage(extraction_policies=FrameExtractionPolicy.first),  # not in a tuple
     "ClipFrameExtractionStage(extraction_policies=<FrameExtractionPolicy.first: 0>) is not implemented"),
    (lambda t: ClipFrameExtractionStage(target_res=(224, 224)),
     "ClipFrameExtractionStage(target_res=(224, 224)) is not implemented; frames are taken at the clip's resolution"),
    (lambda t: ClipFrameExtractionStage(target_fps=[1, 2]),
     "ClipFrameExtractionStage(target_fps=[1, 2]) is not implemented; each model step samples at its purpose's rate"),
    (lambda t: ClipFrameExtractionStage(extract_purposes=["CAPTIONS"]),
     "ClipFrameExtractionStage(extract_purposes=['CAPTIONS']) is not implemented; CAPTIONS: FramePurpose has "
     "AESTHETICS, EMBEDDINGS"),
    (lambda t: ClipAestheticFilterStage(target_fps=2.0),
     "ClipAestheticFilterStage(target_fps=2.0) is not implemented; aesthetic scores take the reference's 1 fps"),
    (lambda t: CosmosEmbed1FrameCreationStage(variant="336p", target_fps=4.0),
     "CosmosEmbed1FrameCreationStage(target_fps=4.0) is not implemented"),
    (lambda t: CosmosEmbed1EmbeddingStage(texts_to_verify=["a cat"]),
     "CosmosEmbed1EmbeddingStage(texts_to_verify=['a cat']) is not implemented; no text is embedded here"),
    (lambda t: CaptionPreparationStage(prompt_variant="av"),
     "CaptionPreparationStage(prompt_variant='av') is not implemented; give the prompt's text as prompt_text"),
    (lambda t: CaptionPreparationStage(sampling_fps=1.0),
     "CaptionPreparationStage(sampling_fps=1.0) is not implemented; it is fixed at the reference's 2.0"),
    (lambda t: CaptionPreparationStage(window_size=128),
     "CaptionPreparationStage(window_size=128) is not implemented; it is fixed at the reference's 256"),
    (lambda t: CaptionPreparationStage(remainder_threshold=64),
     "CaptionPreparationStage(remainder_threshold=64) is not implemented; it is fixed at the reference's 128"),
    (lambda t: CaptionPreparationStage(generate_previews=False),
     "CaptionPreparationStage(generate_previews=False) is not implemented; previews are "
     "ClipWriterStage(generate_previews=...)"),
    (lambda t: CaptionGenerationStage(max_output_tokens=256),
     "CaptionGenerationStage(max_output_tokens=256) is not implemented; it is fixed at the reference's 512"),
    (lambda t: CaptionGenerationStage(generate_stage2_caption=True),
     "CaptionGenerationStage(generate_stage2_caption=True) is not implemented"),
    (lambda t: CaptionEnhancementStage(prompt_variant="av-surveillance"),
     "CaptionEnhancementStage(prompt_variant='av-surveillance') is not implemented"),
    (lambda t: CaptionEnhancementStage(prompt_text="Summarise."),
     "CaptionEnhancementStage(prompt_text='Summarise.') is not implemented"),
    (lambda t: CaptionEnhancementStage(max_output_tokens=1024),
     "CaptionEnhancementStage(max_output_tokens=1024) is not implemented"),
    (lambda t: Pipeline("e", stages=[CaptionEnhancementStage(captioning_model_variant="nemotron"),
                                     _writer(t)]).options(),
     "CaptionEnhancementStage(captioning_model_variant='nemotron') is not implemented; it must be one of the "
     "writer's caption_models (qwen)"),
    (lambda t: XennaExecutor(ignore_head_node=True),
     "ignore_head_node is not supported by XennaExecutor"),
    (lambda t: _run_refusal(t, "initial_tasks"), "Pipeline.run(initial_tasks=[]) is not implemented"),
    (lambda t: _run_refusal(t, "checkpoint_path"), "Pipeline.run(checkpoint_path="),
]


@pytest.mark.parametrize("call, message", REFUSED, ids=[m.split(" is not")[0][:60] for _, m in REFUSED])
def test_a_refused_value_names_itself(tmp_path, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(tmp_path)


def test_hints_and_executor_config_are_named_in_a_warning():
    with pytest.warns(UserWarning, match=r"CosmosEmbed1EmbeddingStage: gpu_memory_gb have no effect here"):
        CosmosEmbed1EmbeddingStage(variant="336p", gpu_memory_gb=20)
    with pytest.warns(UserWarning, match=r"CaptionGenerationStage: caption_batch_size have no effect here"):
        CaptionGenerationStage(model_variant="qwen", caption_batch_size=8)
    with pytest.warns(UserWarning) as record:
        XennaExecutor(config={"max_workers_per_stage": 4, "ignore_failures": True, "retries": 2})
    (message,) = [str(w.message) for w in record]
    assert message.startswith("XennaExecutor config has no effect here: max_workers_per_stage (worker sizing")
    assert "ignore_failures (a failed video never stops the others here" in message
    assert "retries (not a key XennaExecutor reads)" in message and "pipeline.definitions()" in message
    with pytest.warns(UserWarning, match=r"RayDataExecutor\(ignore_head_node=True\) has no effect here"):
        RayDataExecutor(ignore_head_node=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tutorial's own calls: nothing to warn about
        XennaExecutor()
        RayDataExecutor(config={})
        ClipFrameExtractionStage(extraction_policies=(FrameExtractionPolicy.sequence,), extract_purposes=[
            FramePurpose.EMBEDDINGS, FramePurpose.AESTHETICS])
        CaptionPreparationStage(model_variant="qwen", prompt_variant="default", sampling_fps=2.0, window_size=256)


def test_the_caption_prompt_text_is_the_services_prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATION_CAPTION_BASE_URL", "http://127.0.0.1:9/v1")
    writer = _writer(tmp_path, generate_embeddings=False, generate_captions=True)
    p = Pipeline("c", stages=[CaptionPreparationStage(model_variant="qwen", prompt_text="Name the colours."),
                              CaptionGenerationStage(model_variant="qwen"), writer])
    service = p.definitions().resources["caption_service"]
    assert (service.prompt, service.base_url) == ("Name the colours.", "http://127.0.0.1:9/v1")
    plain = Pipeline("d", stages=[CaptionPreparationStage(model_variant="qwen", prompt_variant="default"),
                                  _writer(tmp_path, generate_embeddings=False, generate_captions=True)])
    assert plain.definitions().resources["caption_service"].prompt == ""  # '': the reference's default prompt
