"""The README's picture of the asset graph, drawn from the code location itself.

A Mermaid ``flowchart`` (GitHub renders it) of the Definitions' asset graph: one subgraph per
asset group, one edge per dependency. ``python -m curation_assets.docs_graph --write`` rewrites
the block between the ``<!-- asset-graph:begin -->`` / ``<!-- asset-graph:end -->`` markers of
README.md; ``--check`` exits 1 when it is stale; with neither it prints the block. A test fails
when the README's block differs from the graph, so the picture cannot drift from the code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import dagster as dg

BEGIN, END = "<!-- asset-graph:begin -->", "<!-- asset-graph:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"


def _node_id(key: dg.AssetKey) -> str:
    """A Mermaid node id for an asset key (``metas/v0`` -> ``metas_v0``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join(key.path))


def _in_order(graph) -> list[dg.AssetKey]:
    """Every materialisable asset, upstream before downstream, ties by name: a stable drawing."""
    keys = {key for key in graph.get_all_asset_keys() if graph.get(key).is_materializable}
    name = dg.AssetKey.to_user_string
    order: list[dg.AssetKey] = []
    placed: set[dg.AssetKey] = set()
    while len(order) < len(keys):
        ready = sorted((k for k in keys - placed if graph.get(k).parent_keys & keys <= placed), key=name)
        if not ready:
            raise ValueError(f"the asset graph has a cycle among {sorted(map(name, keys - placed))}")
        order.extend(ready)
        placed.update(ready)
    return order


def mermaid(defs: dg.Definitions) -> str:
    """The asset graph as a Mermaid flowchart: groups as subgraphs, in the order their first asset
    appears upstream to downstream; each asset's dependencies as one edge line per upstream asset."""
    graph = defs.resolve_asset_graph()
    order = _in_order(graph)
    groups: dict[str, list[dg.AssetKey]] = {}
    for key in order:
        groups.setdefault(graph.get(key).group_name or "default", []).append(key)
    lines = ["```mermaid", "flowchart LR"]
    for group, members in groups.items():
        lines.append(f"  subgraph {group}")
        lines.extend(f'    {_node_id(k)}["{k.to_user_string()}"]' for k in members)
        lines.append("  end")
    position = {key: i for i, key in enumerate(order)}
    for parent in order:
        children = sorted((k for k in graph.get(parent).child_keys if k in position), key=position.__getitem__)
        if children:
            lines.append(f"  {_node_id(parent)} --> {' & '.join(_node_id(k) for k in children)}")
    lines.append("```")
    return "\n".join(lines)


def code_location() -> dg.Definitions:
    """The project's Definitions (a ``@dg.definitions`` function is called to load them)."""
    from . import definitions

    loaded = definitions.defs
    return loaded if isinstance(loaded, dg.Definitions) else loaded()


def render(readme: str, defs: dg.Definitions | None = None) -> str:
    """``readme`` with the block between the markers replaced by the current graph."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {BEGIN} ... {END} block")
    block = mermaid(defs if defs is not None else code_location())
    return f"{readme[:start + len(BEGIN)]}\n{block}\n{readme[end:]}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(mermaid(code_location()))
        return 0
    text = README.read_text(encoding="utf-8")
    fresh = render(text)
    if args == ["--check"]:
        if fresh != text:
            print(f"{README.name}: the asset graph is stale: run `python -m curation_assets.docs_graph --write`")
            return 1
        return 0
    if args == ["--write"]:
        README.write_text(fresh, encoding="utf-8")
        return 0
    print("usage: python -m curation_assets.docs_graph [--write | --check]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
