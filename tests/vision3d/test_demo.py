"""``make demo``'s 3D sections: every picture, video and table they list exists, the reconstructions are good, and
the comparison table compares NeRF and Gaussians at about equal training time."""

from __future__ import annotations

import json

import pytest

from vision3d.demo import Demo, run_demo


@pytest.mark.slow
def test_demo_sections_list_existing_files_good_reconstructions_and_the_comparison(tmp_path, capsys, measured):
    index = run_demo(Demo(out=tmp_path, progress=False))
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["vision3d"]
    page = index.read_text()
    assert "Neural implicit surfaces" in page and "Radiance fields and Gaussian splatting" in page
    for folder in ("vision3d", "vision3d-radiance"):
        section = json.loads((tmp_path / folder / "section.json").read_text())
        assert section["command"] == f"python -m vision3d demo --out {tmp_path}"  # both come from one run
        for item in section["items"]:
            assert (tmp_path / folder / item["file"]).stat().st_size > 0, item["file"]
    for method in ("occupancy", "igr", "dvr", "deepsdf"):
        measured(f"{method}: Chamfer-L1 {summary[method]['chamfer_l1']:.4f}")
        assert summary[method]["chamfer_l1"] < 0.02, method
    # The table on the page is the one compare wrote, one row per method, in the registry's order.
    table = json.loads((tmp_path / "vision3d-radiance" / "comparison.json").read_text())
    assert [row["method"] for row in table["rows"]] == ["occupancy", "deepsdf", "igr", "dvr", "nerf", "gaussians"]
    assert page.count("<tr>") == 1 + 6 and f"<td>{summary['nerf']['psnr']:.2f}</td>" in page
    nerf, splats = summary["nerf"], summary["gaussians"]
    measured(f"nerf: {nerf['psnr']:.2f} dB in {nerf['fit_seconds']} s; gaussians: {splats['psnr']:.2f} dB in "
             f"{splats['fit_seconds']} s")
    assert nerf["psnr"] > 20.0 and splats["psnr"] > nerf["psnr"]  # at equal time, Gaussians are ahead
