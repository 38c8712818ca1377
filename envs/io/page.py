"""The demo page: each demo section writes its files and a ``section.json`` manifest into its own
folder, and ``index.html`` is rebuilt from every manifest found there.

``python -m generative demo``, ``python -m agents demo`` and ``python -m vision3d demo`` all write
into one output folder, so the page grows as packages add sections. Sections are ordered by the
notes' section number (generative §1-10, agents §11, vision3d §12, bodies §13), and every picture
has a caption that tells the reader what they look at (or listen to: ``kind: "audio"``, a WAV file). A section may also show a table (``kind: "table"``
with ``columns`` and ``rows`` of text; its ``file``, e.g. the Markdown or JSON it came from, is linked).
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypedDict

from envs.io.files import atomic_write_text


class Item(TypedDict, total=False):
    """One picture, video or table of a section."""

    kind: Literal["image", "video", "audio", "table"]
    file: str  # relative to the section's folder (a table's source file, linked under it)
    caption: str
    wide: bool  # span the page's width (strips and grids)
    columns: list[str]  # a table's header
    rows: list[list[str]]  # a table's cells, one list per row, as many as columns


def section_key(section: str) -> tuple[int, ...]:
    """``"11.3"`` -> ``(11, 3)``: sections sort by the notes' numbering."""
    try:
        return tuple(int(part) for part in str(section).split("."))
    except ValueError:
        raise ValueError(f"section must be a notes section number such as '11.3', got {section!r}") from None


def write_section(folder: str | os.PathLike[str], section: str, title: str, text: str, items: Sequence[Item]) -> Path:
    """Write ``folder/section.json`` for the notes section ``section`` (e.g. ``"12.1"``); returns its path."""
    section_key(section)
    for i, item in enumerate(items):
        if item.get("kind") not in ("image", "video", "audio", "table") or not item.get("file") or not item.get("caption"):
            raise ValueError(f"items[{i}] needs kind 'image', 'video', 'audio' or 'table', a file and a caption, got {item}")
        if item["kind"] == "table":
            columns, rows = item.get("columns") or [], item.get("rows") or []
            if not columns or not rows or any(len(row) != len(columns) for row in rows):
                raise ValueError(f"items[{i}]: a table needs columns and rows of {len(columns)} cells each, "
                                 f"got rows of {sorted({len(row) for row in rows})} cells")
    manifest = {"section": str(section), "title": title, "text": text, "items": list(items)}
    path = Path(folder) / "section.json"
    atomic_write_text(path, json.dumps(manifest, indent=1))
    return path


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(folder: str, item: Item) -> str:
    src = html.escape(f"{folder}/{item['file']}")
    if item["kind"] == "table":
        caption = f'{html.escape(item["caption"])} (<a href="{src}">{html.escape(Path(item["file"]).name)}</a>)'
        return f"<figure class=wide>{_table(item['columns'], item['rows'])}<figcaption>{caption}</figcaption></figure>"
    if item["kind"] == "video":
        media = f'<video src="{src}" controls loop muted autoplay playsinline></video>'
    elif item["kind"] == "audio":
        media = f'<audio src="{src}" controls preload="none"></audio>'
    else:
        media = f'<a href="{src}"><img src="{src}" loading="lazy" alt="{html.escape(item["caption"][:120])}"></a>'
    wide = " class=wide" if item.get("wide") else ""
    return f"<figure{wide}>{media}<figcaption>{html.escape(item['caption'])}</figcaption></figure>"


def write_index(out: str | os.PathLike[str]) -> Path:
    """Rebuild ``out/index.html`` from every ``*/section.json`` below ``out``, in notes order."""
    out = Path(out)
    sections = []
    for manifest in sorted(out.glob("*/section.json")):
        data = json.loads(manifest.read_text())
        sections.append((section_key(data["section"]), manifest.parent.name, data))
    parts, toc = [], []
    for _, folder, data in sorted(sections, key=lambda x: (x[0], x[1])):
        anchor = html.escape(folder)
        title = html.escape(f"§{data['section']} {data['title']}")
        toc.append(f'<li><a href="#{anchor}">{title}</a></li>')
        figures = "".join(_figure(folder, item) for item in data["items"])
        parts.append(f'<section id="{anchor}"><h2>{title}</h2><p>{html.escape(data["text"])}</p>'
                     f"<div class=grid>{figures}</div></section>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>machine-perception demo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}}
.grid{{display:flex;flex-wrap:wrap;gap:1.4em;align-items:flex-start}}figure{{margin:0;max-width:640px}}
figure.wide{{max-width:100%;flex-basis:100%}}img,video{{max-width:100%;border:1px solid #ddd}}
figcaption{{font-size:.95em;color:#444;margin-top:.3em}}
table{{border-collapse:collapse;font-size:.95em}}th,td{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}
th{{background:#f4f4f4}}td:nth-child(-n+2),th:nth-child(-n+2){{text-align:left}}section{{border-top:1px solid #ccc;margin-top:2em}}</style></head>
<body><h1>machine-perception demo</h1><p>Generated {time.strftime('%Y-%m-%d %H:%M')} by <code>make demo</code>.
Sections follow the course notes; each trains a reduced budget live and its captions say what you look at.</p>
<ol>{''.join(toc)}</ol>
{''.join(parts)}</body></html>"""
    atomic_write_text(out / "index.html", page)
    return out / "index.html"
