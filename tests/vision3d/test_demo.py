"""``make demo``'s 3D section: every picture and video it lists exists, and the reconstructions are good."""

from __future__ import annotations

import json

import pytest

from vision3d.demo import Demo, run_demo


@pytest.mark.slow
def test_demo_section_lists_existing_files_and_good_reconstructions(tmp_path, capsys, measured):
    index = run_demo(Demo(out=tmp_path, progress=False))
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    section = json.loads((tmp_path / "vision3d" / "section.json").read_text())
    assert "Neural implicit surfaces" in index.read_text()
    for item in section["items"]:
        assert (tmp_path / "vision3d" / item["file"]).stat().st_size > 0, item["file"]
    for method in ("occupancy", "igr", "dvr", "deepsdf"):
        measured(f"{method}: Chamfer-L1 {summary['vision3d'][method]['chamfer_l1']:.4f}")
        assert summary["vision3d"][method]["chamfer_l1"] < 0.02, method
