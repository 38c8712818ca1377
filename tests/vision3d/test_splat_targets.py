"""The 3D Gaussian splatting target of notes §12.5 on a CPU (``make test-slow``): ``python -m vision3d fit
gaussians`` with its default options reaches a test PSNR of 30 dB and an SSIM of 0.95 on phong-shaded scenes of
100 training views at 64x64, the torus and the thin-structure ``wire_knot`` (the issue's budget is 10 minutes on
2 cores; the time is recorded with the numbers, not asserted).

The scenes are rendered as ``python -m vision3d render`` renders them by default, at 128x128, and the fit loads
them at its 64x64 by area averaging: 2x2 supersampled pixels, antialiased as the NeRF Blender images are. Rendered
directly at 64x64 (one sample at each pixel centre) their edges are aliased differently in every view, which no
3D model reproduces in held-out views: there the same defaults reach about 27.4 dB on both scenes.

The run goes through the command path (:func:`vision3d.commands.fit`), so the numbers are those of
``metrics.json`` (``appearance``: the test views rendered as the command renders them, which must be with the
fit's ``SplatConfig.dilation``, as :func:`vision3d.splat_training.render_views` does).
"""

import json
from dataclasses import replace

import pytest

from vision3d.commands import FIT_COMMANDS, fit
from vision3d.dataset import ExportConfig, export_dataset
from vision3d.splat_training import SplatConfig

PSNR_TARGET, SSIM_TARGET = 30.0, 0.95
SCENES = ("torus", "wire_knot")


@pytest.mark.slow
@pytest.mark.parametrize("scene", SCENES)
def test_fit_gaussians_reaches_the_test_targets(scene, tmp_path, measured):
    data = export_dataset(scene, tmp_path / scene, config=ExportConfig(views=100, size=128, shading="phong"))
    defaults = SplatConfig()
    config = replace(defaults, fit=replace(defaults.fit, progress=False))  # the defaults, without a progress bar
    run = tmp_path / "run"
    fit(FIT_COMMANDS["gaussians"](data=(data,), out=run, config=config, video=False))
    metrics = json.loads((run / "metrics.json").read_text())
    psnr, ssim = metrics["appearance"]["psnr"], metrics["appearance"]["ssim"]
    measured(f"{scene}: PSNR {psnr:.2f} dB, SSIM {ssim:.3f}, {metrics['fit_seconds']:.0f} s, "
             f"{metrics['n_gaussians']} Gaussians, {config.fit.steps} steps (targets {PSNR_TARGET:.0f} dB, "
             f"{SSIM_TARGET})")
    assert psnr >= PSNR_TARGET and ssim >= SSIM_TARGET, (
        f"phong {scene}: PSNR {psnr:.2f} dB (target {PSNR_TARGET}), SSIM {ssim:.3f} (target {SSIM_TARGET})")
