"""The demo page is rebuilt from every section manifest, whichever package wrote it."""

from __future__ import annotations

import json

from envs.report import write_index, write_section


def test_index_gathers_sections_in_order(tmp_path):
    write_section(tmp_path / "late", 50, "Late <section>", "second", [{"kind": "video", "file": "a.mp4", "caption": "v"}])
    write_section(tmp_path / "early", 10, "Early", "first", [{"kind": "image", "file": "b.png", "caption": "i"}])
    page = write_index(tmp_path).read_text()
    assert json.loads((tmp_path / "early" / "section.json").read_text())["order"] == 10
    assert page.index("Early") < page.index("Late &lt;section&gt;")  # ordered, and titles escaped
    assert 'src="late/a.mp4"' in page and 'src="early/b.png"' in page
