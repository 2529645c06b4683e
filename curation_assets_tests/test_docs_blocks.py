"""Every code block of README.md and docs/*.md that a user would run is run here as written, or
skipped with the reason written below (and the docs say what the block needs).

Blocks are the fenced ```bash / ```sh / ```console / ```python ones. A shell block is split into
commands (``\\`` continuations joined, comments dropped); each command is run by ``bash`` in one
folder (``home``) with the environment's ``curation-assets``, ``python`` and ``energon`` first on
``PATH``, or matches a :data:`SKIP` rule. ``export`` lines set the environment of the commands after
them. A python block runs in a fresh interpreter in ``home`` (or is run as written by the test
:data:`ELSEWHERE` names). Paths are replaced by :data:`PLACEHOLDERS` only, the same way in every
block; relative paths (``data/videos``, ``data/outputs``) are what they say, under ``home``:

- ``data/videos``, ``data/outputs``: ``curation-assets demo --video-limit 1`` run in ``home`` (the
  demo's own footage and output); the README's Python block runs in a folder of its own whose
  ``data/videos`` holds the demo's ``bikes.mp4`` (it names it), as after ``make demo``.
- ``/data/raw``: small videos made by ``video_factory``; ``s3://raw-uploads/2025`` holds them too,
  on the tests' local S3 server (``s3_server``), whose endpoint and fake keys stand in for the
  docs' ``http://minio.local:9000`` and ``...``.
- ``/data/curated``: in docs/training-packages.md an output with embeddings and captions (the
  packaging fixtures' layout, written with the Cosmos-Embed1 stand-in and the stage's caption
  values: the "output that has them" the docs name); elsewhere the output ``/data/raw`` is run into.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from curation_assets.cli.demo import sample_footage

from . import test_dg_project, test_packaging_energon
from .packaging_fixtures import packaging_inputs, packaging_models, written_layout  # noqa: F401 - fixtures
from .video_factory import make_video

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN_LANGUAGES = ("bash", "sh", "console", "python")
BIN = Path(sys.executable).parent

#: Commands not run here, by the pattern of the command line, and why (what they need).
SKIP: list[tuple[str, str]] = [
    (r"^make (demo|test|dev)\b", "make targets (re)install the environment; `make demo` is `curation-assets demo`, "
                                 "run by test_demo.py::test_the_demo_as_make_demo_runs_it"),
    (r"^pip install ", "installs packages from the network"),
    (r"^/opt/nemo-venv/bin/pip install ", "installs NeMo Curator from the network"),
    (r"^python -m venv ", "creates NeMo Curator's environment for benchmarks/reference_race.py"),
    (r"^huggingface-cli download ", "downloads model weights from the Hugging Face Hub"),
    (r"^pytest( |$)", "the test suite itself"),
    (r"^python benchmarks/", "benchmarks print figures in minutes to tens of minutes (some need a GPU or NeMo "
                             "Curator); docs/performance.md says so per script"),
    (r"(^| )dg dev$", "starts the Dagster UI server"),
    (r"^dg (check|list) defs$", "run by test_dg_project.py::test_dg_check_and_list_defs"),
    (r"^export (DAGSTER_HOME|DAGSTER_PG_|DAGSTER_CELERY_|CURATION_EXECUTOR)", "deployment: a PostgreSQL instance, "
                                                                             "a Celery broker"),
    (r"^dagster-webserver |^dagster instance concurrency ", "deployment: servers on a PostgreSQL instance"),
    (r"^(CUDA_VISIBLE_DEVICES=0 )?celery ", "deployment: Celery workers on a Redis broker"),
    (r"^(docker|helm) ", "deployment: a container registry and a Kubernetes cluster"),
    (r"^curation-assets search ", "needs the Cosmos-Embed1 weights' text tower and an output curated with embeddings; "
                                  "test_search_planted.py runs the same command with the stand-in"),
    (r"^python -m http\.server ", "starts a web server that serves until stopped (docs/gallery.md)"),
    (r"^aws s3 website ", "needs a real S3 bucket with website hosting (docs/gallery.md)"),
    (r"--caption-(model-)?endpoint ", "needs the OpenAI-compatible caption servers it names (docs/models.md says so); "
                                     "test_captions_models.py runs the same flags against two local servers"),
]
#: Python blocks run as written by another test (the block's first line -> that test).
ELSEWHERE = {
    "from megatron.energon import WorkerConfig, get_loader, get_train_dataset":
        (test_packaging_energon, "test_the_docs_energon_code_runs_as_written"),
}
RUN_COMMAND = re.compile(r"^(\w+=\S+ )*(curation-assets|python -m|energon) |^export ")


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository
    line: int
    language: str
    text: str

    @property
    def commands(self) -> list[str]:
        joined = re.sub(r"\\\n\s*", " ", self.text)
        lines = (re.sub(r"(^|\s+)#.*$", "", line).strip() for line in joined.splitlines())  # comments dropped
        return [c for c in lines if c]


def blocks() -> list[Block]:
    found = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):
            if m.group(1) in RUN_LANGUAGES:
                found.append(Block(str(path.relative_to(REPO)), text.count("\n", 0, m.start()) + 1, m.group(1),
                                   m.group(2)))
    return found


def skip_reason(command: str) -> str | None:
    reasons = [reason for pattern, reason in SKIP if re.search(pattern, command)]
    assert len(reasons) <= 1, f"{command!r} matches several rules"
    return reasons[0] if reasons else None


def test_every_block_is_run_or_skipped_for_a_reason():
    """A new block (or command) the rules do not cover fails here until it is classified."""
    found = blocks()
    assert len(found) >= 15 and {b.doc for b in found} >= {"README.md", "docs/training-packages.md"}
    for block in found:
        if block.language == "python":
            first = block.text.splitlines()[0]
            if first in ELSEWHERE:
                module, name = ELSEWHERE[first]
                assert callable(getattr(module, name)), f"{module.__name__}.{name} is gone"
            continue
        for command in block.commands:
            assert skip_reason(command) or RUN_COMMAND.search(command), \
                f"{block.doc}:{block.line}: {command!r} is neither run nor skipped"
    assert callable(test_dg_project.test_dg_check_and_list_defs)


# ---------------------------------------------------------------------------------------------
# running the blocks


@dataclass
class Home:
    folder: Path
    placeholders: dict[str, str]  # the docs' path -> the test's (README.md and docs other than packaging)
    packaging: dict[str, str]  # the same for docs/training-packages.md
    env: dict[str, str]


@pytest.fixture(scope="module")
def home(tmp_path_factory, s3_server, written_layout) -> Home:  # noqa: F811 - a fixture
    folder = tmp_path_factory.mktemp("docs-home")
    raw = folder / "raw"
    raw.mkdir()
    for name, size in (("one.mp4", (160, 120)), ("two.mp4", (128, 96))):
        make_video(raw / name, seconds=3, fps=25, width=size[0], height=size[1], audio=False)
    for bucket in ("raw-uploads", "datasets"):
        s3_server.make_bucket(bucket)
    for video in raw.iterdir():
        s3_server.client().upload_file(str(video), "raw-uploads", f"2025/{video.name}")
    packaged = folder / "packaged"
    shutil.copytree(written_layout, packaged)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DAGSTER_HOME", "CURATION_"))}
    # the user's AWS environment is the test server's (the README's s3:// line assumes one: running.md)
    env.update(s3_server.env, PYTHONPATH=str(REPO), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    demo = _bash("curation-assets demo --video-limit 1 --no-generate-previews", folder, env)
    assert "load the shards:" in demo.stdout, demo.stdout
    common = {"/data/raw": str(raw), "http://minio.local:9000": s3_server.endpoint_url,
              "AWS_ACCESS_KEY_ID=...": "AWS_ACCESS_KEY_ID=testing",
              "AWS_SECRET_ACCESS_KEY=...": "AWS_SECRET_ACCESS_KEY=testing"}
    return Home(folder, {**common, "/data/curated": str(folder / "curated")},
                {**common, "/data/curated": str(packaged)}, env)


def _bash(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    run = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"{command}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
    return run


def _substitute(text: str, table: dict[str, str]) -> str:
    for placeholder, value in table.items():
        text = text.replace(placeholder, value)
    return text


def _run_shell_block(block: Block, home: Home) -> list[str]:
    """Each command of the block in order; returns the outputs of the commands run."""
    table = home.packaging if block.doc == "docs/training-packages.md" else home.placeholders
    env = dict(home.env)
    outputs = []
    for command in block.commands:
        if skip_reason(command):
            continue
        command = _substitute(command, table)
        if command.startswith("export "):
            env.update(part.split("=", 1) for part in shlex.split(command)[1:])
            continue
        out = _bash(command, home.folder, env).stdout
        shards = re.search(r"^shards: train (\d+) samples", out, flags=re.M)
        assert shards is None or int(shards.group(1)) > 0, f"{block.doc}:{block.line}: {command}: an empty dataset"
        outputs.append(out)
    return outputs


@pytest.mark.slow
def test_the_shell_blocks_run_as_written(home):
    ran = {}
    for block in blocks():
        if block.language != "python":
            ran[f"{block.doc}:{block.line}"] = _run_shell_block(block, home)
    assert sum(len(v) for v in ran.values()) >= 9, ran.keys()
    curated = Path(home.placeholders["/data/curated"])
    assert sorted(p.name for p in (curated / "processed_videos").iterdir()) == ["one.mp4.json", "two.mp4.json"]
    dedup_out = "\n".join(o for v in ran.values() for o in v if o.startswith("dedup:"))
    assert re.search(r"dedup: \d+ of [1-9]\d* clips are duplicates", dedup_out), dedup_out


@pytest.mark.slow
def test_the_python_blocks_run_as_written(home, tmp_path):
    ran = 0
    for block in blocks():
        if block.language != "python" or block.text.splitlines()[0] in ELSEWHERE:
            continue
        cwd = home.folder
        table = home.packaging if block.doc == "docs/training-packages.md" else home.placeholders
        if block.doc == "README.md":  # a folder after the demo, with only the footage the block names
            cwd = tmp_path / "readme"
            (cwd / "data" / "videos").mkdir(parents=True)
            (bikes,) = [p for p in sample_footage() if p.name == "bikes.mp4"]
            shutil.copyfile(bikes, cwd / "data" / "videos" / "bikes.mp4")
        script = tmp_path / f"block-{ran}.py"
        script.write_text(_substitute(block.text, table))
        run = subprocess.run([sys.executable, str(script)], cwd=cwd, env=home.env, capture_output=True, text=True,
                             timeout=900)
        assert run.returncode == 0, f"{block.doc}:{block.line}\n{run.stderr[-3000:]}"
        if block.doc == "README.md":
            assert (cwd / "data" / "outputs" / "processed_videos" / "bikes.mp4.json").exists()
        ran += 1
    assert ran == 3  # README.md, docs/training-packages.md (the layout reader), docs/datacard.md
