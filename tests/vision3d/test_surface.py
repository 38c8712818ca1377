"""Ray-box slabs, the secant method, first-crossing search and implicit differentiation (notes §12.3)."""

import math

import pytest
import torch

from vision3d import SCENE_BOUND
from vision3d.surface import find_surface, implicit_depth, ray_box_intersection, secant


def sphere_field(center, radius):
    """Inside-positive field ``radius - |p - center|`` (tau = 0)."""
    center = torch.as_tensor(center, dtype=torch.float64)

    def f(p):
        return radius - torch.linalg.norm(p - center.to(p.dtype), dim=-1)

    return f


def first_sphere_depth(o, w, center, radius):
    """Smaller root of ``|o + d w - c| = r``."""
    oc = o - center
    a, b, c = (w * w).sum(-1), (oc * w).sum(-1), (oc * oc).sum(-1) - radius**2
    return (-b - torch.sqrt(b * b - a * c)) / a


def rays(origins, directions, dtype=torch.float64):
    return torch.tensor(origins, dtype=dtype), torch.tensor(directions, dtype=dtype)


# --- ray_box_intersection -------------------------------------------------------------------------


def test_ray_box_closed_form_axis_rays():
    o, w = rays([[-2.0, 0.1, 0.2], [-2.0, 0.1, 0.2], [0.0, 0.0, 0.0], [-2.0, 1.0, 0.0], [2.0, 0.0, 0.0]],
                [[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    box = ray_box_intersection(o, w)
    b = SCENE_BOUND
    torch.testing.assert_close(box.near[:3], torch.tensor([2 - b, (2 - b) / 2, 0.0], dtype=torch.float64))
    torch.testing.assert_close(box.far[:3], torch.tensor([2 + b, (2 + b) / 2, b], dtype=torch.float64))
    assert box.hit.tolist() == [True, True, True, False, False]  # parallel outside the slab; pointing away


def test_ray_box_diagonal_closed_form():
    o, w = rays([[-1.0, -1.0, -1.0]], [[1.0, 1.0, 1.0]])
    box = ray_box_intersection(o, w, bound=0.5)
    torch.testing.assert_close(box.near, torch.tensor([0.5], dtype=torch.float64))
    torch.testing.assert_close(box.far, torch.tensor([1.5], dtype=torch.float64))


def test_ray_box_entry_and_exit_lie_on_the_box(rng):
    o = torch.as_tensor(rng.normal(size=(500, 3)) * 1.5)
    w = -0.3 * o + torch.as_tensor(rng.normal(size=(500, 3)))  # some towards the box, some away
    box = ray_box_intersection(o, w)
    assert 50 < int(box.hit.sum()) < 450
    h = box.hit
    mid = o[h] + 0.5 * (box.near[h] + box.far[h])[:, None] * w[h]
    assert (mid.abs() <= SCENE_BOUND + 1e-9).all()
    exit_ = o[h] + box.far[h][:, None] * w[h]
    torch.testing.assert_close(exit_.abs().amax(-1), torch.full_like(box.far[h], SCENE_BOUND))
    entered = h & (box.near > 0)
    entry = o[entered] + box.near[entered][:, None] * w[entered]
    torch.testing.assert_close(entry.abs().amax(-1), torch.full_like(box.near[entered], SCENE_BOUND))
    # A missed ray: dense samples along it never fall inside the box.
    miss = ~h
    t = torch.linspace(0, 10, 2001, dtype=torch.float64)
    pts = o[miss][:, None, :] + t[None, :, None] * w[miss][:, None, :]
    assert not (pts.abs().amax(-1) < SCENE_BOUND - 1e-6).any()


# --- secant -----------------------------------------------------------------------------------------


def test_secant_converges_to_roots_per_ray():
    c = torch.tensor([2.0, 3.0, 1.5], dtype=torch.float64)

    def f(d):
        return d * d - c

    d0, d1 = torch.ones(3, dtype=torch.float64), torch.full((3,), 2.0, dtype=torch.float64)
    root = secant(f, d0, d1, f(d0), f(d1), iterations=25)
    torch.testing.assert_close(root, torch.sqrt(c), atol=1e-12, rtol=0)


def test_secant_keeps_the_bracket():
    """-sin(d) has roots at every k*pi; the bracket [2.0, 3.3] holds only pi, which must be returned."""

    def f(d):
        return -torch.sin(d)

    d0, d1 = torch.tensor([2.0, 0.2], dtype=torch.float64), torch.tensor([3.3, 3.2], dtype=torch.float64)
    visited = []

    def recording(d):
        visited.append(d.clone())
        return f(d)

    root = secant(recording, d0, d1, f(d0), f(d1), iterations=20)
    torch.testing.assert_close(root, torch.full((2,), math.pi, dtype=torch.float64), atol=1e-10, rtol=0)
    for d in visited:
        assert ((d >= d0) & (d <= d1)).all()


# --- find_surface -----------------------------------------------------------------------------------


def test_find_surface_sphere_first_crossing_matches_closed_form():
    f = sphere_field([0.0, 0.0, 0.0], 0.3)
    # Unnormalised directions, as camera.pixel_rays returns them; all rays pass near the centre.
    o, w = rays([[0.0, -2.0, 0.0], [0.1, -2.0, 0.05], [-1.5, 1.5, 0.3]], [[0.0, 1.0, 0.0], [0.0, 1.3, 0.0], [1.0, -1.0, -0.2]])
    hit = find_surface(f, o.float(), w.float(), n_steps=32, n_secant=8)
    assert hit.hit.all()
    expected = first_sphere_depth(o, w, torch.zeros(3, dtype=torch.float64), 0.3)
    torch.testing.assert_close(hit.depth.double(), expected, atol=1e-5, rtol=0)


def test_find_surface_two_spheres_returns_the_nearer_one():
    a, b = sphere_field([0.0, -0.3, 0.0], 0.15), sphere_field([0.0, 0.3, 0.0], 0.15)

    def f(p):
        return torch.maximum(a(p), b(p))  # union of two spheres

    o, w = rays([[0.0, -2.0, 0.0], [0.0, 2.0, 0.0]], [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
    hit = find_surface(f, o, w, n_steps=64, n_secant=10)
    assert hit.hit.all()
    torch.testing.assert_close(hit.depth, torch.tensor([2 - 0.45, 2 - 0.45], dtype=torch.float64), atol=1e-9, rtol=0)


def test_find_surface_slab_enters_not_exits():
    def f(p):
        return 0.1 - p[:, 0].abs()  # the slab |x| <= 0.1: entered at x = -0.1, left at x = 0.1

    o, w = rays([[-2.0, 0.0, 0.0], [2.0, 0.2, 0.1]], [[1.0, 0.0, 0.0], [-0.5, 0.0, 0.0]])
    hit = find_surface(f, o, w, n_steps=16, n_secant=4, tau=0.0)
    assert hit.hit.all()
    torch.testing.assert_close(hit.depth, torch.tensor([1.9, 3.8], dtype=torch.float64), atol=1e-9, rtol=0)


def test_find_surface_reports_no_hit_for_misses_and_rays_starting_inside():
    f = sphere_field([0.0, 0.0, 0.0], 0.3)
    o, w = rays(
        [[0.0, -2.0, 0.4], [0.0, -2.0, 0.0], [0.0, 0.0, 0.0], [0.0, -2.0, 0.0]],
        [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]],
    )
    hit = find_surface(f, o, w, n_steps=32, n_secant=4)
    # passes above the sphere; misses the box; starts inside the sphere; tau above the field's max.
    assert hit.hit.tolist() == [False, False, False, True]
    assert hit.inside_at_near.tolist() == [False, False, True, False]
    assert not find_surface(f, o, w, n_steps=32, n_secant=4, tau=0.5).hit.any()
    # The sample of largest field value on the ray through the centre is at the centre.
    assert abs(float(hit.max_depth[3]) - 2.0) < 1.1 / 31


def test_find_surface_chunking_does_not_change_the_result(rng):
    f = sphere_field([0.05, 0.0, -0.05], 0.35)
    o = torch.as_tensor(rng.normal(size=(300, 3)))
    o = 2.0 * o / o.norm(dim=-1, keepdim=True)
    w = -o + torch.as_tensor(rng.normal(size=(300, 3))) * 0.2
    whole = find_surface(f, o, w, n_steps=24, n_secant=6)
    chunked = find_surface(f, o, w, n_steps=24, n_secant=6, chunk=7)
    for x, y in zip(whole, chunked, strict=True):
        torch.testing.assert_close(x, y)
    assert 0 < int(whole.hit.sum()) < 300


def test_find_surface_rejects_bad_shapes():
    f = sphere_field([0.0, 0.0, 0.0], 0.3)
    with pytest.raises(ValueError, match="rays_o and rays_d"):
        find_surface(f, torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="near"):
        find_surface(f, torch.zeros(4, 3), torch.ones(4, 3), near=torch.zeros(3))


# --- implicit differentiation -------------------------------------------------------------------------


def _sphere_depth(radius, center, o, w, n_secant=30):
    def f(p):
        return radius - torch.linalg.norm(p - center, dim=-1)

    hit = find_surface(f, o, w, n_steps=32, n_secant=n_secant)
    assert hit.hit.all()
    return implicit_depth(f, hit.depth, o, w, [radius, center])


def _sphere_setup():
    o, w = rays([[0.05, -2.0, 0.02], [-1.2, -1.2, 0.4], [0.3, 1.5, -0.9]], [[0.0, 1.1, 0.0], [1.0, 0.9, -0.25], [-0.2, -1.0, 0.6]])
    radius = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    center = torch.tensor([0.02, -0.01, 0.03], dtype=torch.float64, requires_grad=True)
    return o, w, radius, center


def test_implicit_gradient_wrt_sphere_radius_matches_closed_form_and_finite_differences():
    o, w, radius, center = _sphere_setup()
    depth = _sphere_depth(radius, center, o, w)
    torch.testing.assert_close(depth.detach(), first_sphere_depth(o, w, center.detach(), 0.3), atol=1e-12, rtol=0)
    grads = [torch.autograd.grad(depth[i], radius, retain_graph=True)[0] for i in range(3)]
    # |r0 + d w - c| = r  =>  dd/dr = r / ((p - c) . w)
    p = o + depth.detach()[:, None] * w
    closed = 0.3 / ((p - center.detach()) * w).sum(-1)
    torch.testing.assert_close(torch.stack(grads), closed, rtol=1e-9, atol=0)
    eps = 1e-5
    with torch.no_grad():
        fd = (_sphere_depth(radius + eps, center, o, w) - _sphere_depth(radius - eps, center, o, w)) / (2 * eps)
    torch.testing.assert_close(torch.stack(grads), fd, rtol=1e-6, atol=0)


def test_implicit_gradient_passes_gradcheck_for_parameters_and_rays():
    o, w, radius, center = _sphere_setup()
    o.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r, c, o_, w_: _sphere_depth_rays(r, c, o_, w_), (radius, center, o, w))


def _sphere_depth_rays(radius, center, o, w):
    def f(p):
        return radius - torch.linalg.norm(p - center, dim=-1)

    hit = find_surface(f, o.detach(), w.detach(), n_steps=32, n_secant=30)
    return implicit_depth(f, hit.depth, o, w, [radius, center])


def test_implicit_gradient_of_a_network_and_latent_code_matches_finite_differences():
    gen = torch.Generator().manual_seed(0)
    sizes = [(5, 16), (16, 16), (16, 1)]  # input: a point and a 2-d latent code
    weights_biases = []
    for n_in, n_out in sizes:
        weights_biases += [torch.randn(n_in, n_out, generator=gen, dtype=torch.float64) / math.sqrt(n_in),
                           0.1 * torch.randn(n_out, generator=gen, dtype=torch.float64)]
    z = torch.randn(2, generator=gen, dtype=torch.float64)
    params = [q.requires_grad_(True) for q in [*weights_biases, z]]

    def field(p, theta):
        *layers, code = theta
        x = torch.cat([p, code.expand(p.shape[0], 2)], dim=-1)
        for i in range(0, len(layers), 2):
            x = x @ layers[i] + layers[i + 1]
            if i + 2 < len(layers):
                x = torch.nn.functional.softplus(x, beta=10)
        return 0.35 - torch.linalg.norm(p, dim=-1) + 0.05 * x[:, 0]

    o = torch.tensor([[0.0, -2.0, 0.05], [-1.8, 0.3, 0.4], [1.0, 1.0, 1.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, 1.0, 0.0], [1.0, -0.1, -0.2], [-1.0, -1.0, -1.0]], dtype=torch.float64)
    ray_weights = torch.tensor([1.0, -0.7, 0.4], dtype=torch.float64)

    def loss(theta):
        def f(p):
            return field(p, theta)

        hit = find_surface(f, o, w, n_steps=48, n_secant=30)
        assert hit.hit.all()
        return (implicit_depth(f, hit.depth, o, w, theta) * ray_weights).sum()

    grads = torch.autograd.grad(loss(params), params)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):  # directional derivatives along random directions in parameter space
        v = [torch.randn(q.shape, generator=gen, dtype=torch.float64) for q in params]
        eps = 1e-6
        with torch.no_grad():
            plus = loss([q + eps * d for q, d in zip(params, v, strict=True)])
            minus = loss([q - eps * d for q, d in zip(params, v, strict=True)])
        fd = (plus - minus) / (2 * eps)
        analytic = sum((g * d).sum() for g, d in zip(grads, v, strict=True))
        assert abs(float(analytic - fd)) <= 1e-3 * abs(float(fd)) + 1e-9
    assert grads[-1].abs().sum() > 0  # the latent code learns through the surface depth


def test_implicit_depth_rejects_mismatched_depth():
    f = sphere_field([0.0, 0.0, 0.0], 0.3)
    with pytest.raises(ValueError, match="depth"):
        implicit_depth(f, torch.zeros(2), torch.zeros(3, 3), torch.ones(3, 3), [])
