"""The fast path (Müller et al., 2022): hash encoding, HashNeRF, occupancy grid and empty-space skipping."""

import math

import pytest
import torch
from torch import nn

from vision3d.nerf import NeRFConfig, near_far, render_rays
from vision3d.ngp import (
    CORNERS,
    HashNeRF,
    OccupancyGrid,
    dense_index,
    hash_encode,
    is_dense,
    level_resolutions,
    march,
    spatial_hash,
    trilinear_weights,
)


def test_level_resolutions_grow_geometrically_from_n_min_to_n_max():
    res = level_resolutions(8, 16, 512)
    assert res[0] == 16 and res[-1] == 512 and res == sorted(res)
    b = math.exp(math.log(512 / 16) / 7)
    assert all(abs(r - 16 * b**i) < 1 for i, r in enumerate(res))


def test_trilinear_weights_sum_to_one_and_pick_the_corner_at_a_vertex():
    frac = torch.rand(100, 3, generator=torch.Generator().manual_seed(0))
    w = trilinear_weights(frac)
    assert w.shape == (100, 8) and (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(100))
    for k in range(8):
        assert trilinear_weights(CORNERS[k].float())[k] == 1.0


def test_hash_encode_shape():
    tables = torch.randn(4, 64, 3)
    out = hash_encode(torch.rand(10, 3), tables, level_resolutions(4, 2, 16))
    assert out.shape == (10, 12)


def test_a_dense_level_reproduces_a_linear_function_of_the_vertex_features_exactly():
    n, t = 4, 128  # (4 + 1)^3 = 125 <= 128: dense
    assert is_dense(n, t)
    a = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    ar = torch.arange(n + 1)
    ijk = torch.stack(torch.meshgrid(ar, ar, ar, indexing="ij"), dim=-1).reshape(-1, 3)
    tables = torch.zeros(1, t, 1, dtype=torch.float64)
    tables[0, dense_index(ijk, n), 0] = (ijk.double() / n) @ a + 0.5  # f(x) = a.x + 0.5 at every vertex
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(hash_encode(x, tables, [n])[:, 0], x @ a + 0.5)


def test_the_encoding_is_continuous_across_cell_faces_on_hashed_levels():
    tables = torch.randn(2, 64, 2, generator=torch.Generator().manual_seed(2))
    res = [7, 13]  # 8^3 > 64: hashed
    face = torch.tensor([[3 / 7, 0.21, 0.64], [0.33, 6 / 13, 0.5]])
    eps = torch.tensor([1e-6, 0.0, 0.0])[None]
    for shift in (eps, eps.roll(1, dims=1)):
        torch.testing.assert_close(hash_encode(face - shift, tables, res), hash_encode(face + shift, tables, res),
                                   atol=1e-4, rtol=0)


def test_collisions_happen_only_at_hashed_levels():
    t = 512
    for n in (4, 7, 20):  # 125 and 512 vertices fit; 9261 do not
        ar = torch.arange(n + 1)
        ijk = torch.stack(torch.meshgrid(ar, ar, ar, indexing="ij"), dim=-1).reshape(-1, 3)
        rows = dense_index(ijk, n) if is_dense(n, t) else spatial_hash(ijk, t)
        assert int(rows.max()) < t and int(rows.min()) >= 0
        assert (rows.unique().numel() == ijk.shape[0]) == is_dense(n, t)


def test_the_gradient_reaches_the_eight_corner_entries_only():
    tables = torch.zeros(2, 4096, 2, requires_grad=True)
    res = [8, 40]  # dense (729 rows), hashed (41^3 > 4096)
    x = torch.tensor([[0.37, 0.52, 0.81]])
    hash_encode(x, tables, res).sum().backward()
    for level in range(2):
        touched = (tables.grad[level] != 0).any(-1)
        assert int(touched.sum()) == 8
        low = (x[0] * res[level]).floor().long()
        corners = low + CORNERS
        rows = dense_index(corners, res[level]) if level == 0 else spatial_hash(corners, 4096)
        assert touched[rows].all()


def test_hash_nerf_density_is_independent_of_the_direction():
    torch.manual_seed(0)
    net = HashNeRF(0.55, levels=4, table_size=2**10, n_min=4, n_max=32, hidden=16)
    nn.init.normal_(net.encoding.tables, std=0.5)
    points = torch.rand(50, 3) - 0.5
    d1, d2 = nn.functional.normalize(torch.randn(2, 50, 3), dim=-1)
    s1, c1 = net(points, d1)
    s2, c2 = net(points, d2)
    torch.testing.assert_close(s1, s2)
    torch.testing.assert_close(s1, net.density(points))
    assert (s1 >= 0).all() and not torch.allclose(c1, c2)
    with pytest.raises(ValueError, match="dirs"):
        net(points, d1[:3])


def ball_density(points, radius=0.3, sigma=20.0):
    return torch.where(points.norm(dim=-1) < radius, sigma, 0.0)


def test_the_occupancy_grid_marks_a_ball_occupied_and_the_outside_empty():
    grid = OccupancyGrid(0.55, resolution=16, decay=0.95, threshold=0.01)
    assert grid.mask.all()  # everything occupied before the first update
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        grid.update(ball_density, gen)
    inside = torch.rand(2000, 3, generator=gen) * 0.4 - 0.2  # |x| < 0.35: in cells that meet the ball
    inside = inside[inside.norm(dim=-1) < 0.2]
    outside = torch.rand(2000, 3, generator=gen) * 1.1 - 0.55
    outside = outside[outside.norm(dim=-1) > 0.3 + 2 * math.sqrt(3) * 1.1 / 16]  # two cell diagonals away
    assert grid.occupied(inside).all()
    assert not grid.occupied(outside).any()
    assert not grid.occupied(torch.tensor([[0.0, 0.0, 0.9]])).any()  # outside the box


class CountingBall(nn.Module):
    """Analytic field: a constant-density ball, colour = direction; counts the points it evaluates."""

    def __init__(self):
        super().__init__()
        self.evaluated = 0

    def density(self, points):
        return ball_density(points)

    def forward(self, points, dirs):
        self.evaluated += points.shape[0]
        return ball_density(points), 0.5 + 0.5 * dirs


def test_skipping_empty_space_keeps_the_render_and_evaluates_far_fewer_points():
    torch.manual_seed(4)
    r = 400
    rays_o = nn.functional.normalize(torch.randn(r, 3), dim=-1) * 1.5
    target = torch.rand(r, 3) * 0.6 - 0.3
    rays_d = target - rays_o  # not normalised, as pixel_rays gives them
    near, far, hit = near_far(rays_o, rays_d, 0.55)
    config = NeRFConfig(occupancy_grid=True, march_steps=256, grid_resolution=32)
    grid = OccupancyGrid(0.55, resolution=32)
    # one random point per cell can miss a ball that barely meets the cell (the method's approximation, fixed
    # over many updates in a fit); a ball grown by a cell diagonal marks every cell that meets the real one
    grid.update(lambda p: ball_density(p, radius=0.3 + math.sqrt(3) * 1.1 / 32), torch.Generator().manual_seed(0))
    dense, skipping = CountingBall(), CountingBall()
    full = render_rays(dense, None, rays_o, rays_d, near, far, config, None, False, hit, grid=None).final
    fast = render_rays(skipping, None, rays_o, rays_d, near, far, config, None, False, hit, grid=grid).final
    torch.testing.assert_close(fast.opacity, full.opacity, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast.rgb, full.rgb, atol=1e-6, rtol=0)
    assert full.opacity.max() > 0.9  # the rays cross the ball
    assert skipping.evaluated < 0.5 * dense.evaluated  # every ray crosses the ball; ~40% here


def test_march_places_samples_at_the_step_and_inside_near_far():
    rays_o = torch.tensor([[0.0, 0.0, -2.0], [0.3, 0.0, -2.0]])
    rays_d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]])
    near, far, _ = near_far(rays_o, rays_d, 0.5)
    out = march(rays_o, rays_d, near, far, 0.1, None)
    assert out.keep.sum(1).tolist() == [10, 10]
    world = out.t * rays_d.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(world[0, 1:10] - world[0, :9], torch.full((9,), 0.1))
    assert (out.t <= far[:, None]).all() and (out.t[out.keep] >= near.repeat_interleave(out.keep.sum(1))).all()
