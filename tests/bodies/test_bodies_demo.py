"""The §13 section of the demo page, with tiny budgets: every picture, video and table is written and listed."""

from __future__ import annotations

import json

from bodies.demo import Demo, run_demo


def test_demo_section(tmp_path):
    index = run_demo(Demo(out=tmp_path, images=40, cpm_steps=10, lgd_steps=10, adam_steps=10, fit_samples=4))
    section = json.loads((tmp_path / "bodies" / "section.json").read_text())
    assert section["section"] == "13" and "reduced budget" in section["text"]
    assert section["command"] == ("python -m bodies demo --out " + str(tmp_path) + " --images 40 --cpm-steps 10 "
                                  "--lgd-steps 10 --adam-steps 10 --fit-samples 4")
    files = {item["file"] for item in section["items"]}
    assert {"turntable.mp4", "shapes.png", "cpm_stages.png", "pictorial.png", "lgd_fit.mp4"} <= files
    for item in section["items"]:
        assert (tmp_path / "bodies" / item["file"]).stat().st_size > 0
    table = next(item for item in section["items"] if item["kind"] == "table")
    assert [row[0].split(" ")[0] for row in table["rows"]] == ["learned", "Adam,", "Adam"]
    assert "bodies/turntable.mp4" in index.read_text()
