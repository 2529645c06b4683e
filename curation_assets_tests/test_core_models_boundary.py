"""The import graph goes one way: ``curation_assets.models`` may import ``core``, core never
imports models (nor any other module of the package but core and the package's version). Read
from the sources with ``ast``, so an import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import curation_assets

PACKAGE = Path(curation_assets.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (relative imports resolved against its package)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _package_imports(folder: str) -> dict[str, set[str]]:
    return {str(p.relative_to(PACKAGE)): {m for m in _imports(p) if m.startswith("curation_assets")}
            for p in sorted((PACKAGE / folder).rglob("*.py"))}


def test_core_imports_nothing_of_the_package_but_core():
    graph = _package_imports("core")
    assert "curation_assets.core.pipeline" in graph["core/steps.py"]  # the reader resolves relative imports
    outside = {path: sorted(m for m in mods if m.split(".")[1:2] not in ([], ["core"], ["__version__"]))
               for path, mods in graph.items()}
    assert {p: m for p, m in outside.items() if m} == {}


def test_models_import_core_not_the_dagster_layer():
    graph = _package_imports("models")
    assert any(m.startswith("curation_assets.core") for mods in graph.values() for m in mods)
    wrong = {p: sorted(m for m in mods if m.startswith(("curation_assets.defs", "curation_assets.cli")))
             for p, mods in graph.items()}
    assert {p: m for p, m in wrong.items() if m} == {}


def test_the_cli_reaches_the_dagster_layer_only_through_the_code_locations_public_face():
    """The CLI launches runs like any other client: through ``curation_assets.definitions``
    (``build_definitions``, the job names, the run tags, the resources it binds), never a module of
    ``defs/`` (a domain's internals may move without the CLI noticing)."""
    graph = _package_imports("cli")
    assert any(m == "curation_assets.definitions" for mods in graph.values() for m in mods)
    inside = {p: sorted(m for m in mods if m.startswith("curation_assets.defs")) for p, mods in graph.items()}
    assert {p: m for p, m in inside.items() if m} == {}


def test_core_asks_for_the_model_parts_it_is_not_given(tmp_path):
    """Core's pipeline gets the TransNetV2 splitter and the model-frame tap from its caller
    (``models.video.MODEL_PARTS``); settings that need one it was not given are refused before any
    work, naming what to pass, rather than silently running without it."""
    from curation_assets.core.options import PipelineOptions
    from curation_assets.core.pipeline import process_video
    from curation_assets.models.video import MODEL_PARTS

    def never_opened():
        raise AssertionError("opened")

    scenes = PipelineOptions(splitting_algorithm="transnetv2", generate_embeddings="off")
    with pytest.raises(ValueError, match="transnetv2 needs ModelParts.detect_scenes .*MODEL_PARTS"):
        process_video("a.mp4", "a.mp4", never_opened, scenes)
    with pytest.raises(ValueError, match="model_frames=source needs ModelParts.frame_tap"):
        process_video("a.mp4", "a.mp4", never_opened, PipelineOptions(generate_embeddings="on"))
    process_video("a.mp4", "a.mp4", lambda: open(tmp_path / "missing.mp4", "rb"),
                  PipelineOptions(generate_embeddings="off"))  # no model part needed: runs (a read error)
    assert MODEL_PARTS.detect_scenes is not None and MODEL_PARTS.frame_tap is not None
    MODEL_PARTS.check(scenes)
