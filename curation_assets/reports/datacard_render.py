"""The data card drawn from its numbers (``reports.datacard.card_numbers``) as Markdown and as a
self-contained HTML page.

Both are rendered from one list of blocks (:func:`card_blocks`), so they say the same. Every text
that came from the output (model names, sources, settings values, filter reasons) is escaped:
for HTML with ``html.escape``; for Markdown too (Dagster and GitHub render raw HTML in Markdown),
plus the characters Markdown gives a meaning. The page makes no request outside its folder's
parent: inline CSS, images by relative link (``../datacard/*.png``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .datacard import CARD_DIR, DURATION, NA, SCORES

#: Image file of each histogram (under ``<output>/datacard/``): our names, never read ones.
IMAGES = {**{name: f"{name}.png" for name in SCORES}, DURATION: "duration.png"}


@dataclass(frozen=True)
class Block:
    kind: str  # "h1", "h2", "p", "table", "img"
    text: str = ""
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


def _int(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else NA


def _num(x: Any, digits: int = 3) -> str:
    return NA if x is None else f"{x:.{digits}g}"


def _hours(h: float) -> str:
    return f"{h:,.2f} h" if h >= 0.01 or h == 0 else f"{h * 3600:,.1f} s"


def _pct(x: float | None) -> str:
    return NA if x is None else f"{100 * x:.1f} %"


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def card_blocks(numbers: Mapping[str, Any], images: set[str]) -> list[Block]:
    """The card as blocks; ``images``: the histogram names whose image exists."""
    n = numbers
    out = [Block("h1", "Data card"),
           Block("p", f"Output: {n['output_path']}. Made by {n['made_by']['package']} {n['made_by']['version']} "
                      "from the clip manifest and the videos' processed_videos documents.")]
    out.append(Block("h2", "Hours and clips"))
    lacking = f"; {n['videos_without_duration']} without a readable duration" if n["videos_without_duration"] else ""
    missing = (f"; {n['videos_without_fragment']} video(s) without a manifest fragment are not counted"
               if n["videos_without_fragment"] else "")
    out.append(Block("p", f"Source: {_int(n['videos'])} videos, {_hours(n['hours_in'])}{lacking}{missing}."))
    out.append(Block("table", headers=("clips", "count", "duration"), rows=(
        ("in", _int(n["clips_in"]), _hours(n["hours_clips"])),
        ("passed", _int(n["clips_passed"]), _hours(n["hours_passed"])),
        ("filtered", _int(n["clips_filtered"]), _hours(n["hours_filtered"])))))
    out.append(Block("h2", "Filter reasons"))
    if n["filtered_by"]:
        out.append(Block("table", headers=("reason", "clips"),
                         rows=tuple((r, _int(c)) for r, c in n["filtered_by"].items())))
    else:
        out.append(Block("p", "No clip was filtered."))
    out.append(Block("h2", "Scores"))
    for name, (title, _label) in SCORES.items():
        out += _histogram_blocks(title, n["scores"][name], name in images, IMAGES[name])
    out.append(Block("h2", "Clip duration (seconds)"))
    out += _histogram_blocks("Clip duration", n["duration"], DURATION in images, IMAGES[DURATION])
    for key, title in (("resolution", "Resolution"), ("framerate", "Frame rate"), ("codec", "Codec")):
        out.append(Block("h2", title))
        out.append(Block("table", headers=(key, "clips"),
                         rows=tuple((_value(r["value"]), _int(r["clips"])) for r in n[key])))
    out.append(Block("h2", "Captions"))
    if n["caption_coverage"]:
        out.append(Block("p", "Windows of passed clips with a text of each model (captions are made for passed "
                              "clips only)."))
        out.append(Block("table", headers=("model", "kind", "windows with text", "windows", "coverage"),
                         rows=tuple((r["model"], r["kind"], _int(r["windows_with_text"]), _int(r["windows"]),
                                     _pct(r["fraction"])) for r in n["caption_coverage"])))
    else:
        out.append(Block("p", "No caption model was run."))
    out += _dedup_blocks(n)
    if n["errors"]:
        out.append(Block("h2", "Clip errors"))
        out.append(Block("table", headers=("error", "clips"), rows=tuple((r["error"], _int(r["clips"]))
                                                                         for r in n["errors"])))
    out += _settings_blocks(n["settings"])
    out.append(Block("h2", "Sources"))
    common = n["sources"]["common"]
    out.append(Block("p", f"Common prefix: {common}." if common else "The sources share no folder."))
    out.append(Block("table", headers=("prefix", "videos"),
                     rows=tuple((r["prefix"], _int(r["videos"])) for r in n["sources"]["prefixes"])))
    if n["video_problems"]:
        out.append(Block("h2", "Documents not used"))
        out.append(Block("table", headers=("problem",), rows=tuple((p,) for p in n["video_problems"])))
    return out


def _histogram_blocks(title: str, hist: Mapping[str, Any], has_image: bool, image: str) -> list[Block]:
    total = hist["scored"] + hist["not_scored"]
    if not hist["scored"]:
        return [Block("p", f"{title}: {NA} for all {_int(total)} clips (not computed).")]
    text = (f"{title}: {_int(hist['scored'])} of {_int(total)} clips have a value"
            + (f" ({NA} for {_int(hist['not_scored'])}: not computed)" if hist["not_scored"] else "")
            + f"; mean {_num(hist['mean'])}, median {_num(hist['median'])}, min {_num(hist['min'])}, "
              f"max {_num(hist['max'])}.")
    blocks = [Block("p", text)]
    if has_image:
        blocks.append(Block("img", text=image, headers=(f"{title} histogram",)))
    return blocks


def _dedup_blocks(n: Mapping[str, Any]) -> list[Block]:
    out = [Block("h2", "Embeddings and dedup"),
           Block("p", f"{_int(n['clips_with_embedding'])} of {_int(n['clips_in'])} clips have an embedding.")]
    d = n["dedup"]
    if d is None:
        out.append(Block("p", "Semantic dedup has not run (no semdedup/ folder)."))
    elif "problem" in d:
        out.append(Block("p", f"Semantic dedup result not used: {d['problem']}"))
    else:
        out.append(Block("p", f"SemDeDup at eps {d['eps']:g}: {_int(d['removed'])} of {_int(d['clips'])} clips "
                              f"removed as near-duplicates, {_int(d['kept'])} kept"
                              + (f", {_int(d['n_clusters'])} clusters" if d["n_clusters"] is not None else "") + "."))
        if d["eps_table"]:
            rows = tuple((f"{r['eps']:g}", _int(r["removed"]), _int(r["kept"])) for r in d["eps_table"])
            out.append(Block("table", headers=("eps", "removed", "kept"), rows=rows))
    return out


def _settings_blocks(sections: list[Mapping[str, Any]]) -> list[Block]:
    out = [Block("h2", "Settings and versions")]
    first: Mapping[str, Any] | None = None
    for s in sections:
        head = f"Settings hash {s['settings_hash'] or NA}: {_int(s['clips'])} clips"
        if s["settings"] is None:
            out.append(Block("p", head + f", from no readable pipeline record ({NA})."))
            continue
        out.append(Block("p", head + f" of {_int(s['videos'])} videos, made by {s['package']} {s['version']}."))
        values = s["settings"]
        if first is None:
            first = values
            rows = tuple((k, _value(v)) for k, v in sorted(values.items()))
        else:
            rows = tuple((k, _value(values.get(k, NA))) for k in sorted(set(values) | set(first))
                         if values.get(k, NA) != first.get(k, NA))
            out.append(Block("p", "Settings that differ from the first hash:"))
        out.append(Block("table", headers=("setting", "value"), rows=rows))
    return out


# ---------------------------------------------------------------------------------------------
# Markdown

_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]|#!~"})


def md_text(text: str) -> str:
    """Text that Markdown shows as it is: HTML escaped, Markdown's characters backslashed, one line."""
    return html.escape(" ".join(str(text).split()), quote=False).translate(_MD_SPECIAL)


def render_markdown(blocks: list[Block], image_prefix: str = f"{CARD_DIR}/") -> str:
    lines: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            lines += [f"# {md_text(b.text)}", ""]
        elif b.kind == "h2":
            lines += [f"## {md_text(b.text)}", ""]
        elif b.kind == "p":
            lines += [md_text(b.text), ""]
        elif b.kind == "img":
            lines += [f"![{md_text(b.headers[0])}]({image_prefix}{b.text})", ""]
        elif b.kind == "table":
            lines.append("| " + " | ".join(md_text(h) for h in b.headers) + " |")
            lines.append("|" + "---|" * len(b.headers))
            lines += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in b.rows]
            lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# HTML

_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
th{background:#f4f4f4}td:not(:first-child){font-variant-numeric:tabular-nums}img{max-width:100%;display:block}
h2{margin-top:2rem;border-bottom:1px solid #eee}"""


def render_html(blocks: list[Block], image_prefix: str = f"../{CARD_DIR}/") -> str:
    """A page with no script and no request outside ``image_prefix``; every text escaped."""
    e = html.escape
    parts = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
             '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src \'self\'; '
             'style-src \'unsafe-inline\'">',
             f"<title>Data card</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2", "p"):
            parts.append(f"<{b.kind}>{e(b.text)}</{b.kind}>")
        elif b.kind == "img":
            parts.append(f'<img src="{e(image_prefix + b.text)}" alt="{e(b.headers[0])}">')
        elif b.kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in b.headers)
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


__all__ = ["IMAGES", "Block", "card_blocks", "md_text", "render_html", "render_markdown"]
