"""The demo page: each demo section writes its files and a ``section.json`` manifest into its own
folder, and ``index.html`` is rebuilt from every manifest found there.

``python -m generative demo``, ``python -m agents demo``, ``python -m vision3d demo`` and ``python -m bodies demo``
all write into one output folder, so the page grows as packages add sections. The page opens with a table of
contents grouped by the notes' chapters and a paragraph on how to read it; sections follow in notes order
(generative §1-10, agents §11, vision3d §12, bodies §13). Every picture has a caption that tells the reader what
they look at (or listen to: ``kind: "audio"``, a WAV file); a section may also show a table (``kind: "table"`` with
``columns`` and ``rows`` of text; its ``file``, e.g. the Markdown or JSON it came from, is linked). Every section
ends with the shell command that reproduces its figures.

Sizes: a figure is shown at most :data:`FIGURE_WIDTH` CSS pixels wide, a wide one (``"wide": True``, or a picture
too wide for a column, :func:`spans_page`) at most :data:`WIDE_WIDTH`; the page never enlarges a picture, and a
video is shown at its frames' own size. :func:`envs.io.figures.save_figure` uses the same numbers to keep every
label at least :data:`MIN_TEXT_PX` pixels high as shown.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shlex
import struct
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict

from envs.io.files import atomic_write_text

FIGURE_WIDTH = 640
"""Largest width (CSS pixels) at which the page shows a figure; two sit side by side."""
WIDE_WIDTH = 1360
"""Largest width (CSS pixels) at which the page shows a wide figure: the page's width."""
MIN_TEXT_PX = 10
"""Smallest height (CSS pixels) of a label as the page shows it."""

CHAPTERS: dict[int, str] = {
    1: "Neural networks", 2: "Convolutional neural networks", 3: "Fully convolutional neural network",
    4: "Recurrent neural networks", 5: "Generative models", 6: "Autoencoders", 7: "Autoregressive models",
    8: "Normalizing flows", 9: "Generative adversarial networks", 10: "Diffusion models", 11: "Reinforcement learning",
    12: "Neural implicit representations", 13: "Parametric body models",
}
"""The chapters of the course notes, by number, as the notes' contents name them."""
CHAPTER_SPANS: dict[int, int] = {1: 4}
"""A contents group that covers several chapters: first -> last (the foundations section covers §1-4)."""


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


def chapter_heading(chapter: int) -> str:
    """The contents' heading of the group that starts at ``chapter``: ``"§1-4 Neural networks · ..."``."""
    last = CHAPTER_SPANS.get(chapter, chapter)
    titles = [CHAPTERS[c] for c in range(chapter, last + 1) if c in CHAPTERS]
    number = f"§{chapter}" if last == chapter else f"§{chapter}-{last}"
    return " · ".join([number + (f" {titles[0]}" if titles else ""), *titles[1:]])


def command_line(prog: str, args: Any, *, always: Collection[str] = ("out",),
                 omit: Collection[str] = ("progress", "json")) -> str:
    """The shell command that parses (with :func:`envs.io.cli.parse`) back to the dataclass ``args``.

    ``prog`` is the command, e.g. ``"python -m agents demo"``; a flag follows for every field that differs from
    its default, in tyro's spelling (``--flow-steps 5``, ``--full`` / ``--no-deep``, ``--only flows gans``), and
    for the fields in ``always``; the fields in ``omit`` (which change no figure) are left out.
    """
    if not dataclasses.is_dataclass(args) or isinstance(args, type):
        raise ValueError(f"args must be a dataclass instance, got {type(args).__name__}")
    parts = [prog]
    for field in dataclasses.fields(args):
        if field.name in omit or not field.init:
            continue
        value = getattr(args, field.name)
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = dataclasses.MISSING
        if value == default and field.name not in always:
            continue
        flag = "--" + field.name.replace("_", "-")
        if dataclasses.is_dataclass(value):
            raise ValueError(f"command_line: field {field.name!r} is a nested dataclass, which it cannot spell")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (tuple, list)):
            parts += [flag, *(shlex.quote(str(v)) for v in value)]
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def write_section(folder: str | os.PathLike[str], section: str, title: str, text: str, items: Sequence[Item], *,
                  command: str) -> Path:
    """Write ``folder/section.json`` for the notes section ``section`` (e.g. ``"12.1"``); returns its path.

    ``command`` is the shell command, run from the repository root, that reproduces the section's figures; the
    page shows it at the end of the section.
    """
    section_key(section)
    if not isinstance(command, str) or not command.strip():
        raise ValueError(f"command must be the shell command that reproduces section {section}'s figures, "
                         f"got {command!r}")
    for i, item in enumerate(items):
        if item.get("kind") not in ("image", "video", "audio", "table") or not item.get("file") or not item.get("caption"):
            raise ValueError(f"items[{i}] needs kind 'image', 'video', 'audio' or 'table', a file and a caption, got {item}")
        if item["kind"] == "table":
            columns, rows = item.get("columns") or [], item.get("rows") or []
            if not columns or not rows or any(len(row) != len(columns) for row in rows):
                raise ValueError(f"items[{i}]: a table needs columns and rows of {len(columns)} cells each, "
                                 f"got rows of {sorted({len(row) for row in rows})} cells")
    manifest = {"section": str(section), "title": title, "text": text, "command": command.strip(),
                "items": list(items)}
    path = Path(folder) / "section.json"
    atomic_write_text(path, json.dumps(manifest, indent=1))
    return path


def image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG from its header, or None when ``path`` is not a readable PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def video_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(width, height)`` of a video's frames from its metadata (imageio's ffmpeg reader), or None when it has none."""
    if not Path(path).is_file():
        return None
    import imageio.v2 as imageio

    try:
        with imageio.get_reader(path, format="FFMPEG") as reader:
            width, height = reader.get_meta_data()["size"]
    except (OSError, RuntimeError, KeyError, ValueError):
        return None
    return int(width), int(height)


def spans_page(kind: str, width: int) -> bool:
    """Whether a picture or video ``width`` pixels wide spans the page's width whether or not it says ``wide``.

    A video is never scaled down (it would blur), so one wider than a column spans the page; a picture is, but
    one more than twice a column's width would lose its labels in a column.
    """
    return width > (FIGURE_WIDTH if kind == "video" else 2 * FIGURE_WIDTH)


def _inline(text: str) -> str:
    """Escaped text with ```code``` spans set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(out: Path, folder: str, item: Item) -> str:
    src = html.escape(f"{folder}/{item['file']}")
    caption = _inline(item["caption"])
    if item["kind"] == "table":
        caption += f' (<a href="{src}">{html.escape(Path(item["file"]).name)}</a>)'
        return f"<figure class=wide>{_table(item['columns'], item['rows'])}<figcaption>{caption}</figcaption></figure>"
    size = None
    if item["kind"] == "video":
        size = video_size(out / folder / item["file"])
        attrs = f' width="{size[0]}" height="{size[1]}"' if size else ""
        media = f'<video src="{src}"{attrs} controls loop muted autoplay playsinline preload="auto"></video>'
    elif item["kind"] == "audio":
        media = f'<audio src="{src}" controls preload="none"></audio>'
    else:
        size = image_size(out / folder / item["file"])
        attrs = f' width="{size[0]}" height="{size[1]}"' if size else ""
        media = (f'<a href="{src}"><img src="{src}"{attrs} loading="lazy" '
                 f'alt="{html.escape(item["caption"][:120])}"></a>')
    wide = " class=wide" if item.get("wide") or (size is not None and spans_page(item["kind"], size[0])) else ""
    return f"<figure{wide}>{media}<figcaption>{caption}</figcaption></figure>"


def _command(command: str) -> str:
    """The command as HTML: each option with its values kept on one line (the text copies unchanged)."""
    return " ".join(f"<span class=arg>{html.escape(part)}</span>" for part in re.split(r" (?=--?[A-Za-z])", command))


def _anchors(folders: Sequence[str]) -> list[str]:
    """One HTML id per section folder: its name with anything but letters, digits, ``-`` and ``_`` as ``-``."""
    seen: set[str] = set()
    anchors = []
    for folder in folders:
        anchor = re.sub(r"[^A-Za-z0-9_-]", "-", folder) or "section"
        while anchor in seen:
            anchor += "-"
        seen.add(anchor)
        anchors.append(anchor)
    return anchors


def _contents(entries: Sequence[tuple[tuple[int, ...], str, str]]) -> str:
    """The table of contents: ``(key, anchor, title)`` of every section, grouped by the notes' chapters."""
    groups: dict[int, list[str]] = {}
    starts = sorted(CHAPTER_SPANS.items())
    for key, anchor, title in entries:
        chapter = next((first for first, last in starts if first <= key[0] <= last), key[0])
        groups.setdefault(chapter, []).append(f'<li><a href="#{anchor}">{html.escape(title)}</a></li>')
    chapters = "".join(f"<li><span class=chapter>{html.escape(chapter_heading(c))}</span><ul>{''.join(links)}</ul></li>"
                       for c, links in groups.items())
    return f'<nav id="contents"><h2>Contents</h2><ol class=toc>{chapters}</ol></nav>'


HOW_TO_READ = (
    "Each section below follows a chapter of the course notes (the contents below list them by chapter) and shows "
    "models trained live, on a CPU, when this page was made. To keep the whole page within minutes, most train a "
    "reduced budget: each section's text and captions say which budget it used and what its numbers measure, so "
    "read them as what a method does after a short run, not as its best result. `make demo-full` trains the full "
    "budgets, and benchmarks/README.md lists the numbers those reach, beside peer libraries where there are any. "
    "Where a curve or a skeleton sets a method against others, blue is the method the section is about, orange what "
    "it is compared with, green the ground truth, purple numbers measured while training and grey chance. Click a "
    "picture to open it at full size; videos loop. Each section ends with the command that reproduces its figures: "
    "run it from the repository root in the project's environment (`make install` creates it in .venv); it "
    "retrains that section with the same seeds and budgets (timings differ) and rebuilds this page.")

STYLE = f"""
body{{font-family:system-ui,sans-serif;max-width:{WIDE_WIDTH}px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}}
.grid{{display:flex;flex-wrap:wrap;gap:1.4em;align-items:flex-start}}
figure{{margin:0;max-width:{FIGURE_WIDTH}px}}figure.wide{{max-width:100%;flex-basis:100%}}
img,video{{max-width:100%;height:auto;border:1px solid #ddd;display:block}}
figcaption{{font-size:.95em;color:#444;margin-top:.3em}}
table{{border-collapse:collapse;font-size:.95em}}th,td{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}
th{{background:#f4f4f4}}td:nth-child(-n+2),th:nth-child(-n+2){{text-align:left}}
section{{border-top:1px solid #ccc;margin-top:2.5em}}
nav ol.toc{{list-style:none;padding-left:0;columns:2 34em;column-gap:3em}}
nav ol.toc>li{{break-inside:avoid;margin-bottom:.6em}}nav ol.toc ul{{margin:.2em 0 0;padding-left:1.4em}}
.chapter{{font-weight:600}}
code{{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em;background:#f3f3f3;
padding:.05em .3em;border-radius:3px}}
.reproduce{{margin-top:1.4em}}.reproduce p{{margin:.2em 0;font-size:.95em;color:#444}}
pre{{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:.7em 1em;overflow-x:auto;margin:.3em 0}}
pre code{{background:none;padding:0;font-size:.95em;user-select:all;white-space:pre-wrap}}
pre code .arg{{white-space:nowrap}}
pre code::before{{content:"$ ";color:#888;user-select:none}}
a.top{{font-size:.85em;color:#666}}
"""


def write_index(out: str | os.PathLike[str]) -> Path:
    """Rebuild ``out/index.html`` from every ``*/section.json`` below ``out``, in notes order."""
    out = Path(out)
    sections = []
    for manifest in sorted(out.glob("*/section.json")):
        data = json.loads(manifest.read_text())
        sections.append((section_key(data["section"]), manifest.parent.name, data))
    sections.sort(key=lambda x: (x[0], x[1]))
    anchors = _anchors([folder for _, folder, _ in sections])
    parts, entries = [], []
    for (key, folder, data), anchor in zip(sections, anchors):
        title = f"§{data['section']} {data['title']}"
        entries.append((key, anchor, title))
        figures = "".join(_figure(out, folder, item) for item in data["items"])
        command = data.get("command", "")  # a manifest written before sections named their command has none
        reproduce = ("<div class=reproduce><p>Reproduce this section's figures (from the repository root):</p>"
                     f"<pre><code>{_command(command)}</code></pre></div>" if command else "")
        parts.append(f'<section id="{anchor}"><h2>{html.escape(title)}</h2><p>{_inline(data["text"])}</p>'
                     f'<div class=grid>{figures}</div>{reproduce}<a class=top href="#contents">&uarr; contents</a>'
                     "</section>\n")
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>machine-perception demo</title><style>{STYLE}</style></head>\n"
            f"<body><h1>machine-perception demo</h1>\n"
            f"<p>A companion to the course notes, generated {time.strftime('%Y-%m-%d %H:%M')} by <code>make demo</code>."
            f"</p>\n<h2 id=\"how-to-read\">How to read this page</h2><p>{_inline(HOW_TO_READ)}</p>\n"
            f"{_contents(entries)}\n{''.join(parts)}</body></html>\n")
    atomic_write_text(out / "index.html", page)
    return out / "index.html"
