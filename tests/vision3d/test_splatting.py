"""The tiled rasteriser equals the per-pixel reference: images, depths, alphas and gradients, on scenes that
exercise tile borders, off-screen and behind-camera Gaussians, depth ties and early termination."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vision3d.camera import Intrinsics, look_at
from vision3d.gaussians import (
    ALPHA_MIN,
    T_MIN,
    Gaussians,
    Projection,
    composite,
    conics,
    opacity_at,
    pixel_centres,
    project_gaussians,
    rasterize_reference,
    render_reference,
)
from vision3d.splatting import bin_tiles, composite_chunk, rasterize_tiles, render, tile_alpha

D = torch.float64
FIELDS = ("means", "log_scales", "quaternions", "opacity_logits", "sh")
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-10}


def _scene(n: int, seed: int, dtype: torch.dtype = D, spread: float = 0.7, scale: float = 0.06,
           logit_shift: float = 0.0, degree: int = 1) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=(spread * (2 * torch.rand(n, 3, generator=g, dtype=D) - 1)).to(dtype),
        log_scales=(math.log(scale) + 0.4 * torch.randn(n, 3, generator=g, dtype=D)).to(dtype),
        quaternions=torch.randn(n, 4, generator=g, dtype=D).to(dtype),
        opacity_logits=(torch.randn(n, generator=g, dtype=D) + logit_shift).to(dtype),
        sh=(0.3 * torch.randn(n, (degree + 1) ** 2, 3, generator=g, dtype=D)).to(dtype),
    )


def _camera(width: int, height: int, dtype: torch.dtype = D) -> tuple[Intrinsics, torch.Tensor]:
    # Off-centre principal point and unequal focal lengths; the pose looks at the origin from 2.7 units.
    intrinsics = Intrinsics(width, height, 1.0 * width, 1.05 * width, 0.5 * width + 1.3, 0.5 * height - 0.7)
    return intrinsics, torch.tensor(look_at(np.array([1.5, -2.0, 1.0])), dtype=dtype)


def _assert_equal(fast, reference, dtype: torch.dtype) -> None:
    tol = TOLERANCE[dtype]
    for name, a, b in zip(("image", "depth", "alpha"), fast, reference):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m, name=name: f"{name}: {m}")


def _with_ties(scene: Gaussians, copies: int, seed: int) -> Gaussians:
    """Append copies of the first Gaussians at exactly the same means (equal depths), other colours/opacities."""
    g = torch.Generator().manual_seed(seed)
    extra = Gaussians(scene.means[:copies].clone(), scene.log_scales[:copies].flip(0),
                      scene.quaternions[:copies], scene.opacity_logits[:copies] + 1.0,
                      torch.randn(scene.sh[:copies].shape, generator=g, dtype=D).to(scene.sh))
    return Gaussians(*(torch.cat([getattr(scene, k), getattr(extra, k)]) for k in FIELDS))


# --- equality with the reference ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "n", "dtype", "options"),
    [
        (37, 23, 150, torch.float32, {}),  # neither side a multiple of the tile
        (45, 40, 300, D, {}),
        (40, 32, 1200, torch.float32, {"scale": 0.1, "logit_shift": 3.0}),  # opaque: early termination
        (33, 30, 400, D, {"scale": 0.1, "logit_shift": 3.0, "degree": 3}),
        (36, 28, 400, torch.float32, {"spread": 3.0, "scale": 0.15}),  # behind the camera and off-screen
        (29, 35, 40, D, {"scale": 0.4}),  # large Gaussians spanning many tiles
    ],
)
def test_tiled_rasteriser_equals_the_reference(width, height, n, dtype, options):
    scene = _with_ties(_scene(n, seed=width * height + n, **options), copies=10, seed=n)
    scene = Gaussians(*(getattr(scene, k).to(dtype) for k in FIELDS))
    intrinsics, c2w = _camera(width, height, dtype)
    background = torch.tensor([0.2, 0.3, 0.4], dtype=dtype)
    reference = render_reference(scene, c2w, intrinsics, background)
    for tile in (8, 16):
        _assert_equal(render(scene, c2w, intrinsics, background, tile=tile), reference, dtype)

    # The scene really has what the test is about.
    projection = project_gaussians(scene.means, scene.covariances(), c2w, intrinsics)
    visible = projection.visible
    bins = bin_tiles(projection.means2d[visible], projection.cov2d[visible], scene.opacities()[visible],
                     width, height, 8)
    assert bins.counts.sum() > visible.sum()  # some Gaussians cross tile borders
    assert reference.alpha.mean() > 0.3 and (reference.alpha > 0).float().mean() > 0.6
    if options.get("logit_shift"):
        order = torch.argsort(projection.depths[visible], stable=True)
        alpha = opacity_at(pixel_centres(width, height, projection.means2d), projection.means2d[visible][order],
                           conics(projection.cov2d[visible][order]), scene.opacities()[visible][order])
        stopped = torch.prod(1 - alpha, dim=1) < T_MIN  # the reference dropped Gaussians at these pixels
        assert stopped.float().mean() > 0.25
    if options.get("spread", 0) > 1:
        assert (projection.depths < 0).any()  # behind the camera
        u, v = projection.means2d[visible].unbind(-1)
        assert ((u < 0) | (u > width) | (v < 0) | (v > height)).any()  # visible, centred off-screen


def test_binning_keeps_every_pair_the_reference_composites_and_few_others():
    width, height, tile = 37, 23, 8
    scene = _scene(300, seed=3, scale=0.08)
    intrinsics, c2w = _camera(width, height)
    projection = project_gaussians(scene.means, scene.covariances(), c2w, intrinsics)
    means2d, cov2d, opacities = projection.means2d, projection.cov2d, scene.opacities()
    bins = bin_tiles(means2d, cov2d, opacities, width, height, tile)
    pixels = pixel_centres(width, height, means2d)
    composited = opacity_at(pixels, means2d, conics(cov2d), opacities) > 0  # [P, N]
    pixel_tile = (pixels[:, 1].long() // tile) * bins.tiles_x + pixels[:, 0].long() // tile
    listed = torch.zeros(bins.tiles_x * bins.tiles_y, len(scene), dtype=torch.bool)
    tile_of_entry = torch.repeat_interleave(torch.arange(len(listed)), bins.counts)
    listed[tile_of_entry, bins.gaussian] = True
    assert not (composited & ~listed[pixel_tile]).any()
    # per tile, front to back (the Gaussians are given in index order here)
    for t in range(len(listed)):
        entries = bins.gaussian[bins.starts[t] : bins.starts[t] + bins.counts[t]]
        assert (entries.diff() > 0).all()
    # and tight: a listed pair reaches at least one pixel of its tile in most cases
    reached = torch.zeros_like(listed)
    reached.index_put_((pixel_tile[:, None].expand_as(composited)[composited],
                        torch.nonzero(composited)[:, 1]), torch.tensor(True))
    assert reached.sum() > 0.85 * listed.sum()


def test_batched_alpha_and_chunked_compositing_match_the_reference_helpers():
    g = torch.Generator().manual_seed(4)
    tile, K = 4, 12
    origins = torch.tensor([[8.0, 4.0], [0.0, 12.0]], dtype=D)
    means2d = origins[:, None, :] + 6 * torch.rand(2, K, 2, generator=g, dtype=D) - 1
    L = torch.randn(2, K, 2, 2, generator=g, dtype=D)
    cov2d = L @ L.transpose(-1, -2) + 0.5 * torch.eye(2, dtype=D)
    opacities = torch.rand(2, K, generator=g, dtype=D)
    alpha = tile_alpha(origins, tile, means2d, conics(cov2d.reshape(-1, 2, 2)).reshape(2, K, 2, 2), opacities)
    offsets = pixel_centres(tile, tile, origins)
    for b in range(2):
        expected = opacity_at(offsets + origins[b], means2d[b], conics(cov2d[b]), opacities[b])
        torch.testing.assert_close(alpha[b], expected, atol=1e-14, rtol=1e-12)
    assert (alpha == 0).any() and (alpha > 0.5).any()

    # three chunks, continued from the transmittance, equal one call of composite (which stops at T_MIN)
    alpha = 0.99 * torch.rand(50, 30, generator=g, dtype=D) ** 3
    colors, depths = torch.rand(30, 3, generator=g, dtype=D), torch.rand(30, generator=g, dtype=D)
    background = torch.tensor([0.1, 0.5, 0.9], dtype=D)
    T = torch.ones(50, dtype=D)
    color, depth, accumulated = torch.zeros(50, 3, dtype=D), torch.zeros(50, dtype=D), torch.zeros(50, dtype=D)
    for part in (slice(0, 7), slice(7, 8), slice(8, 30)):
        c, d, w, T = composite_chunk(alpha[:, part], colors[part], depths[part], T)
        color, depth, accumulated = color + c, depth + d, accumulated + w
    expected = composite(alpha, colors, depths, background)
    torch.testing.assert_close(color + (1 - accumulated)[:, None] * background, expected[0], atol=1e-14, rtol=0)
    torch.testing.assert_close(depth, expected[1], atol=1e-14, rtol=0)
    torch.testing.assert_close(accumulated, expected[2], atol=1e-14, rtol=0)
    assert (T < T_MIN).any() and (T >= T_MIN).any()  # some pixels stopped early, some did not


def test_tile_size_is_a_parameter():
    scene = _scene(300, seed=5, scale=0.1, logit_shift=1.0)
    intrinsics, c2w = _camera(37, 23)
    background = torch.tensor([0.0, 0.5, 1.0], dtype=D)
    outputs = [render(scene, c2w, intrinsics, background, tile=tile) for tile in (8, 16, 5, 64)]
    for other in outputs[1:]:
        _assert_equal(other, outputs[0], D)
    with pytest.raises(ValueError, match="tile must be a positive number of pixels, got 0"):
        render(scene, c2w, intrinsics, background, tile=0)


def test_empty_scenes_give_the_background():
    intrinsics, c2w = _camera(21, 13)
    background = torch.tensor([0.1, 0.2, 0.3], dtype=D)
    empty = _scene(0, seed=6)
    behind = _scene(20, seed=7)
    behind.means = behind.means + 5.0 * c2w[:3, 2]  # 5 units behind the camera along its viewing axis
    for scene in (empty, behind):
        out = render(scene, c2w, intrinsics, background)
        torch.testing.assert_close(out.image, background.expand(13, 21, 3), atol=0, rtol=0)
        assert (out.alpha == 0).all() and (out.depth == 0).all()
    # all visible but too faint to reach 1/255 anywhere
    faint = _scene(20, seed=8)
    faint.opacity_logits = torch.full((20,), math.log(0.5 * ALPHA_MIN), dtype=D)
    torch.testing.assert_close(render(faint, c2w, intrinsics, background).image, background.expand(13, 21, 3))


def test_shape_errors_name_the_argument_and_both_shapes():
    scene = _scene(4, seed=9)
    intrinsics, c2w = _camera(8, 8)
    projection = project_gaussians(scene.means, scene.covariances(), c2w, intrinsics)
    rgb, o, bg = torch.rand(4, 3, dtype=D), torch.rand(4, dtype=D), torch.zeros(3, dtype=D)
    with pytest.raises(ValueError, match=r"colors must have shape \[4, 3\].*got \[3, 3\]"):
        rasterize_tiles(projection, rgb[:3], o, 8, 8, bg)
    with pytest.raises(ValueError, match=r"opacities must have shape \[4\].*got \[4, 1\]"):
        rasterize_tiles(projection, rgb, o[:, None], 8, 8, bg)
    with pytest.raises(ValueError, match=r"background must have shape \[3\], got \[4\]"):
        rasterize_tiles(projection, rgb, o, 8, 8, torch.zeros(4))


# --- gradients ---------------------------------------------------------------------------------------


def test_gradients_equal_the_references():
    scene = _with_ties(_scene(60, seed=10, scale=0.1, logit_shift=1.5), copies=5, seed=11)
    intrinsics, c2w = _camera(27, 19)
    background = torch.tensor([0.3, 0.2, 0.1], dtype=D)
    g = torch.Generator().manual_seed(12)
    weights = [torch.rand(19, 27, 3, generator=g, dtype=D), torch.rand(19, 27, generator=g, dtype=D),
               torch.rand(19, 27, generator=g, dtype=D)]

    def gradients(renderer):
        params = [getattr(scene, k).clone().requires_grad_(True) for k in FIELDS]
        out = renderer(Gaussians(*params), c2w, intrinsics, background)
        sum(torch.sum(w * x) for w, x in zip(weights, out)).backward()
        return [p.grad for p in params]

    fast, reference = gradients(render), gradients(render_reference)
    for name, a, b in zip(FIELDS, fast, reference):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=lambda m, name=name: f"{name}: {m}")


def test_tiled_rasteriser_passes_gradcheck():
    """float64 gradcheck through projection, colours and four tiles, away from the alpha cut-off and clamp."""
    intrinsics = Intrinsics(8, 8, 10.0, 10.0, 4.0, 4.0)
    c2w = torch.tensor(look_at(np.array([0.0, -3.0, 0.5])))
    scene = _scene(3, seed=13, spread=0.2)
    scene.log_scales = torch.full((3, 3), math.log(1.2), dtype=D) + 0.2 * scene.log_scales.sin()
    scene.opacity_logits = scene.opacity_logits.clamp(-1.0, 1.0)
    background = torch.tensor([0.2, 0.3, 0.4], dtype=D)
    projection = project_gaussians(scene.means, scene.covariances(), c2w, intrinsics)
    alpha = opacity_at(pixel_centres(8, 8, projection.means2d), projection.means2d, conics(projection.cov2d),
                       scene.opacities())
    assert projection.visible.all() and alpha.min() > 3 * ALPHA_MIN and alpha.max() < 0.9

    def rasterize(*params):
        return tuple(render(Gaussians(*params), c2w, intrinsics, background, tile=4))

    inputs = tuple(getattr(scene, k).clone().requires_grad_(True) for k in FIELDS)
    assert torch.autograd.gradcheck(rasterize, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_rasterize_tiles_equals_rasterize_reference_on_a_given_projection():
    """The lower-level entry point on a hand-made projection: two Gaussians at equal depth on a tile corner
    (the reference keeps their list order) behind a nearer one listed last."""
    means2d = torch.tensor([[8.0, 8.0], [8.2, 7.9], [3.0, 12.0]], dtype=D)
    cov2d = torch.tensor([[[4.0, 1.0], [1.0, 3.0]], [[2.0, -0.5], [-0.5, 5.0]], [[9.0, 0.0], [0.0, 1.0]]], dtype=D)
    depths = torch.tensor([2.0, 2.0, 1.0], dtype=D)
    projection = Projection(means2d, cov2d, depths, torch.full((3,), 10.0, dtype=D), torch.ones(3, dtype=torch.bool))
    colors, opacities = torch.eye(3, dtype=D), torch.tensor([0.9, 0.8, 0.7], dtype=D)
    background = torch.tensor([0.5, 0.5, 0.5], dtype=D)
    expected = rasterize_reference(projection, colors, opacities, 17, 15, background)
    _assert_equal(rasterize_tiles(projection, colors, opacities, 17, 15, background, tile=8), expected, D)


def _tile_batch(seed: int, tile: int = 4, K: int = 24, dtype: torch.dtype = D):
    """A batch of two tiles with their own lists of K Gaussians, as rasterize_tiles builds them: a table of
    (mean, conic a b c, opacity, colour, depth, 1) rows, one padding row of opacity 0, and an index [2, K]."""
    g = torch.Generator().manual_seed(seed)
    origins = torch.tensor([[8.0, 4.0], [0.0, 12.0]], dtype=dtype)
    n = 2 * K
    means2d = torch.cat([origins[0] + 6 * torch.rand(K, 2, generator=g, dtype=D) - 1,
                         origins[1] + 6 * torch.rand(K, 2, generator=g, dtype=D) - 1]).to(dtype)
    L = torch.randn(n, 2, 2, generator=g, dtype=D)
    inv_cov = conics(L @ L.transpose(-1, -2) + 0.8 * torch.eye(2, dtype=D)).to(dtype)
    opacities = (0.4 + 0.6 * torch.rand(n, generator=g, dtype=D)).to(dtype)
    values = torch.rand(n, 4, generator=g, dtype=D).to(dtype)
    table = torch.cat([means2d, inv_cov[:, 0, 0, None], inv_cov[:, 0, 1, None], inv_cov[:, 1, 1, None],
                       opacities[:, None], values, torch.ones(n, 1, dtype=dtype)], dim=1)
    padding = torch.zeros(1, table.shape[1], dtype=dtype)
    padding[0, -1] = 1.0
    table = torch.cat([table, padding])
    index = torch.stack([torch.randperm(K, generator=g), K + torch.randperm(K, generator=g)])
    index[0, -3:] = n  # padded entries at the end of a short list
    transmittance = (0.02 + 0.98 * torch.rand(2, tile * tile, generator=g, dtype=D)).to(dtype)
    return table, index, origins, tile, transmittance


def _autograd_tile_composite(table, index, origins, tile, transmittance):
    """The same chunk through tile_alpha and composite_chunk, differentiated by autograd."""
    rows = table[index]
    a, b, c = rows[..., 2], rows[..., 3], rows[..., 4]
    conic = torch.stack([a, b, b, c], -1).unflatten(-1, (2, 2))
    alpha = tile_alpha(origins, tile, rows[..., :2], conic, rows[..., 5])
    color, depth, weight, T = composite_chunk(alpha, rows[..., 6:9], rows[..., 9], transmittance)
    return torch.cat([color, depth[..., None], weight[..., None]], -1), T


def test_fused_tile_compositing_equals_autograd_forward_and_backward():
    """The hand-derived backward of the fused chunk equals autograd through the readable helpers, for the
    table, and the transmittance it continues from, with upstream gradients on every output (float64)."""
    from vision3d.splatting import _TileComposite

    table, index, origins, tile, transmittance = _tile_batch(seed=20, K=48)
    g = torch.Generator().manual_seed(21)
    g_sums = torch.randn(2, tile * tile, 5, generator=g, dtype=D)
    g_T = torch.randn(2, tile * tile, generator=g, dtype=D)
    results = []
    for fn in (_TileComposite.apply, _autograd_tile_composite):
        leaf_table, leaf_T = table.clone().requires_grad_(True), transmittance.clone().requires_grad_(True)
        sums, T = fn(leaf_table, index, origins, tile, leaf_T)
        (torch.sum(g_sums * sums) + torch.sum(g_T * T)).backward()
        results.append((sums.detach(), T.detach(), leaf_table.grad, leaf_T.grad))
    (sums, T, g_table, g_in), (sums_ref, T_ref, g_table_ref, g_in_ref) = results
    assert torch.equal(sums, sums_ref) and torch.equal(T, T_ref)  # the same operations: bitwise equal
    torch.testing.assert_close(g_table[:, :-1], g_table_ref[:, :-1], atol=1e-12, rtol=1e-10)  # not the constant 1s
    torch.testing.assert_close(g_in, g_in_ref, atol=1e-12, rtol=1e-10)
    # every path carries gradient: most Gaussians get one for each of mean, conic and opacity
    assert ((g_table[:-1, :6] != 0).double().mean(dim=0) > 0.5).all() and (g_in != 0).double().mean() > 0.5
    # the scene exercises the clamp, the cut-off and early termination inside the chunk
    alpha = tile_alpha(origins, tile, table[index][..., :2],
                       torch.stack([table[index][..., k] for k in (2, 3, 3, 4)], -1).unflatten(-1, (2, 2)),
                       table[index][..., 5])
    assert (alpha == 0).any() and (alpha > 0.5).any() and (T < T_MIN).any() and (T >= T_MIN).any()


def test_fused_tile_compositing_passes_gradcheck():
    from vision3d.splatting import _TileComposite

    table, index, origins, tile, transmittance = _tile_batch(seed=22, tile=2, K=5)
    table[:-1, 2:5] *= 0.05  # wide footprints: every alpha away from the cut-off
    table[:-1, 5] = table[:-1, 5].clamp(0.2, 0.8)
    rows = table[index]
    alpha = tile_alpha(origins, tile, rows[..., :2], torch.stack([rows[..., k] for k in (2, 3, 3, 4)], -1)
                       .unflatten(-1, (2, 2)), rows[..., 5])
    real = index < len(table) - 1
    assert alpha[real[:, None, :].expand_as(alpha)].min() > 2 * ALPHA_MIN and alpha.max() < 0.9

    def fn(t, T_in):
        return _TileComposite.apply(t, index, origins, tile, T_in)

    inputs = (table.clone().requires_grad_(True), transmittance.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
