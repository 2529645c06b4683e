"""The README stays a short entry: its picture of the asset graph is the code location's graph
(drawn by ``curation_assets.docs_graph``), it stays under 200 lines, and the names its Python
example imports exist."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import dagster as dg
import pytest

from curation_assets import docs_graph

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_picture_is_the_code_locations_asset_graph():
    text = README.read_text(encoding="utf-8")
    assert docs_graph.render(text) == text, "stale: run `python -m curation_assets.docs_graph --write`"


def test_the_picture_has_a_subgraph_per_group_and_an_edge_per_dependency():
    @dg.asset(group_name="first")
    def source(): ...

    @dg.asset(group_name="first", deps=[source])
    def step(): ...

    @dg.asset(key=["metas", "v0"], group_name="second", deps=[source, step])
    def document(): ...

    drawn = docs_graph.mermaid(dg.Definitions(assets=[document, step, source]))
    assert drawn == "\n".join([
        "```mermaid", "flowchart LR",
        "  subgraph first", '    source["source"]', '    step["step"]', "  end",
        "  subgraph second", '    metas_v0["metas/v0"]', "  end",
        "  source --> step & metas_v0",
        "  step --> metas_v0",
        "```"])


def test_render_refuses_a_readme_without_the_markers():
    with pytest.raises(ValueError, match="asset-graph:begin"):
        docs_graph.render("# a readme without the block\n", dg.Definitions())


def test_the_readme_is_under_200_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines: move reference text to docs/"


def test_the_python_example_names_what_exists():
    """Every name the README's Python example imports, and every attribute it takes of them."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "the README has no Python example"
    names: dict[str, object] = {}
    for block in blocks:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    found = getattr(module, alias.name, None)
                    names[alias.asname or alias.name] = (found if found is not None
                                                         else importlib.import_module(f"{node.module}.{alias.name}"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    names[alias.asname or alias.name] = importlib.import_module(alias.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names:
                assert hasattr(names[node.value.id], node.attr), f"{node.value.id}.{node.attr} does not exist"
    assert len(names) >= 5
