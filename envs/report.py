"""The demo page: each demo section writes its files and a ``section.json`` manifest into its own
folder, and ``index.html`` is rebuilt from every manifest found there.

``python -m agents demo`` and ``python -m vision3d demo`` both write into the same output folder, so
the page grows as packages add sections. ``envs`` is the lowest package, so it owns this for all.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from envs.io import atomic_write_text


def write_section(folder: Path, order: int, title: str, text: str, items: list[dict[str, str]]) -> None:
    """Write ``section.json``: ``items`` are ``{"kind": "image" | "video", "file", "caption"}``."""
    manifest = {"order": order, "title": title, "text": text, "items": items}
    atomic_write_text(folder / "section.json", json.dumps(manifest, indent=1))


def write_index(out: Path) -> Path:
    """Rebuild ``out/index.html`` from every ``*/section.json`` below ``out``."""
    sections = []
    for manifest in sorted(out.glob("*/section.json")):
        data = json.loads(manifest.read_text())
        sections.append((data.get("order", 100), manifest.parent.name, data))
    parts = []
    for _, folder, data in sorted(sections, key=lambda x: (x[0], x[1])):
        figures = []
        for item in data["items"]:
            src = html.escape(f"{folder}/{item['file']}")
            media = (f'<video src="{src}" controls loop muted autoplay playsinline></video>' if item["kind"] == "video"
                     else f'<a href="{src}"><img src="{src}" loading="lazy"></a>')
            figures.append(f"<figure>{media}<figcaption>{html.escape(item['caption'])}</figcaption></figure>")
        parts.append(f"<section><h2>{html.escape(data['title'])}</h2><p>{html.escape(data['text'])}</p>"
                     f"<div class=grid>{''.join(figures)}</div></section>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>machine-perception demo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}}
.grid{{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}}figure{{margin:0;max-width:600px}}
img,video{{max-width:100%;border:1px solid #ddd}}figcaption{{font-size:.9em;color:#555}}</style></head>
<body><h1>machine-perception demo</h1><p>Generated {time.strftime('%Y-%m-%d %H:%M')} by <code>make demo</code>.</p>
{''.join(parts)}</body></html>"""
    atomic_write_text(out / "index.html", page)
    return out / "index.html"
