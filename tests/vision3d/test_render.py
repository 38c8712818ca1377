import imageio.v2 as imageio
import numpy as np
import pytest
import trimesh

from vision3d.camera import Intrinsics, look_at, project, sphere_poses, unproject
from vision3d.groundtruth import GroundTruth
from vision3d.render import (
    Lighting,
    Specular,
    blinn_phong_specular,
    framing_radius,
    lambert_shade,
    orbit_video,
    raycast,
    render_views,
    rgba_from_buffers,
    vertex_albedo,
)
from vision3d.shapes import NEUTRAL_GREY, load_shape

# Off-centre principal point and fx != fy: a swapped axis or a half-pixel shift cannot hide.
INTR = Intrinsics(width=32, height=28, fx=40.0, fy=36.0, cx=15.3, cy=14.8)


@pytest.fixture(scope="module")
def torus():
    return load_shape("torus")


@pytest.fixture(scope="module")
def torus_views(torus):
    poses = sphere_poses(3, radius=1.8, mode="spiral")
    return poses, render_views(torus, poses, INTR), raycast(torus, poses, INTR)


def test_lambert_shade_closed_form():
    light = Lighting(ambient=0.3, directions=((0.0, 0.0, 2.0),), intensities=(0.5,))
    albedo = np.array([[0.8, 0.4, 0.2]] * 3)
    normals = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [np.sin(1.0), 0.0, np.cos(1.0)]])
    shaded = lambert_shade(albedo, normals, light)
    np.testing.assert_allclose(shaded[0], albedo[0] * 0.8)  # facing the light: ambient + I
    np.testing.assert_allclose(shaded[1], albedo[1] * 0.3)  # facing away: ambient only, never black
    np.testing.assert_allclose(shaded[2], albedo[2] * (0.3 + 0.5 * np.cos(1.0)))
    bright = Lighting(ambient=0.9, directions=((0.0, 0.0, 1.0),), intensities=(0.5,))
    np.testing.assert_allclose(lambert_shade(albedo[:1], normals[:1], bright), albedo[:1])  # clipped at 1


def test_pyrender_gives_rgba_with_transparent_background(torus_views):
    _, (rgba, depth), _ = torus_views
    assert rgba.shape == (3, 28, 32, 4) and rgba.dtype == np.uint8
    assert depth.shape == (3, 28, 32) and depth.dtype == np.float32
    background = depth == 0
    assert background.any() and (~background).any()
    assert np.all(rgba[..., 3][background] == 0)
    assert np.all(rgba[..., 3][~background] > 0)
    assert rgba[..., :3][~background].std() > 10  # textured, not flat


def test_rgba_from_premultiplied_egl_buffer():
    """EGL returns premultiplied RGBA from its multisampled framebuffer; we store straight alpha."""
    color = np.array([[[100, 50, 20, 128], [0, 0, 0, 0]]], dtype=np.uint8)
    out = rgba_from_buffers(color, np.array([[1.0, 0.0]], dtype=np.float32))
    np.testing.assert_array_equal(out[0, 0], [199, 100, 40, 128])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0, 0])
    rgb = np.full((1, 2, 3), 77, dtype=np.uint8)  # OSMesa: RGB only, coverage from depth
    np.testing.assert_array_equal(rgba_from_buffers(rgb, np.array([[2.0, 0.0]]))[0, :, 3], [255, 0])


def test_pyrender_and_open3d_agree_on_depth_and_mask(torus_views):
    _, (_, depth), hits = torus_views
    mask = depth > 0
    disagree = mask != hits.mask
    assert disagree.sum() <= 0.02 * hits.mask.sum()  # only a few silhouette pixels
    both = mask & hits.mask
    np.testing.assert_allclose(depth[both], hits.depth[both], atol=2e-3)
    assert np.all(hits.depth[~hits.mask] == 0)


def bilinear(image, x, y):
    """Bilinear interpolation of ``image`` [H, W] at continuous pixel-centre coordinates; also says
    where all four neighbours are foreground (depth > 0)."""
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    corners = [image[y0, x0], image[y0, x0 + 1], image[y0 + 1, x0], image[y0 + 1, x0 + 1]]
    value = (
        (1 - fx) * (1 - fy) * corners[0]
        + fx * (1 - fy) * corners[1]
        + (1 - fx) * fy * corners[2]
        + fx * fy * corners[3]
    )
    return value, np.all(np.stack(corners) > 0, axis=0)


def test_projected_vertices_land_on_rendered_depth(torus):
    """Pixel-centre alignment of pyrender's IntrinsicsCamera with camera.project: the rendered depth,
    interpolated at a vertex's projection, is the vertex's depth. (Half a pixel off, the median error
    is about 5x larger than the 1e-3 seen when aligned.)"""
    intr = Intrinsics(width=64, height=56, fx=80.0, fy=72.0, cx=30.6, cy=29.6)
    poses = np.stack([look_at(np.array(eye)) for eye in [(1.0, -1.0, 1.2), (-1.3, 0.2, 1.0), (0.3, 1.2, -1.3)]])
    _, depth = render_views(torus, poses, intr)
    for c2w, view_depth in zip(poses, depth):
        uv, z = project(torus.vertices, intr, c2w)
        to_camera = c2w[:3, 3] - torus.vertices
        facing = np.sum(torus.vertex_normals * to_camera, axis=1) / np.linalg.norm(to_camera, axis=1) > 0.3
        # pixel (i, j) holds the sample at (i + 0.5, j + 0.5), so continuous index = uv - 0.5
        rendered, foreground = bilinear(view_depth, uv[facing, 0] - 0.5, uv[facing, 1] - 0.5)
        error = np.abs(rendered - z[facing])
        visible = foreground & (error < 0.02)  # the rest is hidden behind another part of the torus
        assert visible.mean() > 0.8
        assert np.median(error[visible]) < 1.5e-3


def test_sphere_silhouette_is_centred_on_the_principal_point():
    """Looking at a sphere's centre, its image is an ellipse centred exactly at (cx, cy): a half-pixel
    misalignment of the pixel grid would move the mask's centroid by half a pixel."""
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    intr = Intrinsics(width=64, height=60, fx=70.0, fy=60.0, cx=30.7, cy=31.2)
    c2w = look_at(np.array([1.2, -1.6, 0.9]))
    (_, depth), hits = render_views(sphere, c2w[None], intr), raycast(sphere, c2w[None], intr)
    for mask in (depth[0] > 0, hits.mask[0]):
        rows, cols = np.nonzero(mask)
        assert (cols + 0.5).mean() == pytest.approx(intr.cx, abs=0.05)
        assert (rows + 0.5).mean() == pytest.approx(intr.cy, abs=0.05)


def test_depth_back_projects_onto_the_surface(torus, torus_views):
    poses, (_, depth), hits = torus_views
    gt = GroundTruth(torus)
    i, j = np.meshgrid(np.arange(INTR.width) + 0.5, np.arange(INTR.height) + 0.5, indexing="xy")
    for name, depths in (("pyrender", depth), ("open3d", hits.depth)):
        for c2w, d in zip(poses, depths):
            fg = d > 0
            points = unproject(np.stack([i[fg], j[fg]], axis=1), d[fg], INTR, c2w)
            footprint = d[fg] / INTR.fx  # size of one pixel at that depth
            error = np.abs(gt.signed_distance(points))
            assert np.all(error < 0.05 * footprint + 1e-4), name


def test_raycast_normals_are_the_sphere_radial_direction():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    c2w = look_at(np.array([0.0, -2.0, 0.5]))
    hits = raycast(sphere, c2w[None], INTR)
    i, j = np.meshgrid(np.arange(INTR.width) + 0.5, np.arange(INTR.height) + 0.5, indexing="xy")
    fg = hits.mask[0]
    points = unproject(np.stack([i[fg], j[fg]], axis=1), hits.depth[0][fg], INTR, c2w)
    radial = points / np.linalg.norm(points, axis=1, keepdims=True)
    normals = hits.normals[0][fg]
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    assert np.sum(normals * radial, axis=1).min() > 0.99
    assert np.all(hits.normals[0][~fg] == 0)


def test_colour_of_a_surface_point_does_not_depend_on_the_view(torus):
    """Lights are fixed in the world: pixels seeing the same surface point in two views match."""
    intr = Intrinsics.from_fov(48, 48, 0.7)
    poses = np.stack([look_at(np.array([1.2, -1.0, 1.0])), look_at(np.array([-0.2, -1.5, 1.1]))])
    rgba, depth = render_views(torus, poses, intr)
    i, j = np.meshgrid(np.arange(48) + 0.5, np.arange(48) + 0.5, indexing="xy")
    fg = depth[0] > 0
    points = unproject(np.stack([i[fg], j[fg]], axis=1), depth[0][fg], intr, poses[0])
    uv, z = project(points, intr, poses[1])
    px = np.floor(uv).astype(int)
    ok = (px[:, 0] >= 0) & (px[:, 0] < 48) & (px[:, 1] >= 0) & (px[:, 1] < 48)
    px, z, colours_a = px[ok], z[ok], rgba[0][fg][ok]
    seen = np.abs(depth[1][px[:, 1], px[:, 0]] - z) < 0.01  # visible in view B as well
    assert seen.sum() > 200
    colours_b = rgba[1][px[seen, 1], px[seen, 0]]
    diff = np.abs(colours_a[seen].astype(int) - colours_b.astype(int))[:, :3].max(axis=1)
    # Pixel B samples up to half a pixel away from the point, so stripe edges differ; elsewhere the
    # colours agree (a camera-attached light would change them by tens of levels between these views).
    assert np.median(diff) <= 2 and np.percentile(diff, 75) <= 6


def test_blinn_phong_specular_closed_form():
    light = Lighting(ambient=0.3, directions=((0.0, 0.0, 3.0),), intensities=(0.5,))
    spec = Specular(k_s=0.6, shininess=8.0)
    v = np.array([np.sin(0.8), 0.0, np.cos(0.8)])  # towards the camera, 0.8 rad from the light
    h = np.array([np.sin(0.4), 0.0, np.cos(0.4)])  # halfway between them
    tilted = np.array([np.sin(0.1), 0.0, np.cos(0.1)])  # 0.3 rad from h
    normals = np.stack([h, tilted, [0.0, 0.0, -1.0], [1.0, 0.0, -0.01] / np.hypot(1.0, 0.01)])
    out = blinn_phong_specular(normals, np.tile(v, (4, 1)), light, spec)
    np.testing.assert_allclose(out[:2], [0.6 * 0.5, 0.6 * 0.5 * np.cos(0.3) ** 8])
    assert out[2] == 0.0  # facing away from the light
    assert out[3] == 0.0  # n . h > 0, but the light is behind the surface: no highlight
    with pytest.raises(ValueError, match="shininess"):
        Specular(k_s=0.5, shininess=0.0)


GREY_BALL = trimesh.creation.icosphere(subdivisions=5, radius=0.5)  # uncoloured: neutral grey
ONE_LIGHT = Lighting(ambient=0.3, directions=((1.0, -0.2, 0.9),), intensities=(0.5,))
SHINY = Specular(k_s=0.6, shininess=40.0)


def _pixel_points(depth, intr, c2w):  # world points of the foreground pixel centres
    i, j = np.meshgrid(np.arange(intr.width) + 0.5, np.arange(intr.height) + 0.5, indexing="xy")
    fg = depth > 0
    return fg, unproject(np.stack([i[fg], j[fg]], axis=1), depth[fg], intr, c2w)


def test_phong_colour_of_a_surface_point_depends_on_the_view_and_lambert_does_not():
    """The same surface points seen from two cameras 80 degrees apart: one colour each under Lambert,
    tens of levels apart under Phong where one camera sees the highlight."""
    intr = Intrinsics.from_fov(64, 64, 0.7)
    poses = np.stack([look_at(np.array([0.3, -2.0, 0.6])), look_at(np.array([-1.6, -1.0, 0.9]))])
    diffs = {}
    for name, specular in (("lambert", None), ("phong", SHINY)):
        rgba, depth = render_views(GREY_BALL, poses, intr, ONE_LIGHT, specular)
        fg, points = _pixel_points(depth[0], intr, poses[0])
        uv, z = project(points, intr, poses[1])
        px = np.floor(uv).astype(int)
        seen = np.abs(depth[1][px[:, 1], px[:, 0]] - z) < 0.01  # the point is visible in view B as well
        assert seen.sum() > 300
        colours_b = rgba[1][px[seen, 1], px[seen, 0], :3].astype(int)
        diffs[name] = np.abs(rgba[0][fg][seen, :3].astype(int) - colours_b).max(axis=1)
    assert diffs["lambert"].max() <= 4  # half a pixel of a smooth shading gradient
    assert diffs["phong"].max() > 40 and np.percentile(diffs["phong"], 90) > 10


def test_phong_highlight_sits_where_the_half_vector_points():
    """The brightest pixel of a grey sphere under one light has its normal along h = (l + v) / |l + v|,
    not along l (where Lambert is brightest); the highlight added to each pixel matches the closed form
    evaluated with the sphere's exact normals."""
    intr = Intrinsics.from_fov(96, 96, 0.7)
    eye = np.array([-0.4, -2.0, 0.5])  # about 80 degrees from the light
    c2w = look_at(eye)
    (lambert, depth), (phong, _) = (render_views(GREY_BALL, c2w[None], intr, ONE_LIGHT, s) for s in (None, SHINY))
    fg, points = _pixel_points(depth[0], intr, c2w)
    normals = points / np.linalg.norm(points, axis=1, keepdims=True)
    view = (eye - points) / np.linalg.norm(eye - points, axis=1, keepdims=True)
    light = np.asarray(ONE_LIGHT.directions[0]) / np.linalg.norm(ONE_LIGHT.directions[0])
    brightest = np.argmax(phong[0][fg][:, :3].astype(int).sum(axis=1))
    h = light + view[brightest]
    h /= np.linalg.norm(h)
    assert np.degrees(np.arccos(np.clip(normals[brightest] @ h, -1, 1))) < 5
    assert np.degrees(np.arccos(np.clip(normals[brightest] @ light, -1, 1))) > 30
    added = phong[0][fg][:, :3].astype(float) - lambert[0][fg][:, :3]
    expected = 255.0 * blinn_phong_specular(normals, view, ONE_LIGHT, SHINY)
    error = np.abs(added - expected[:, None])
    assert expected.max() > 70 and error.max() <= 2  # the interpolated normals are close to the exact ones
    np.testing.assert_array_equal(phong[0][..., 3], lambert[0][..., 3])


def test_uncoloured_mesh_is_neutral_grey():
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    assert mesh.visual.kind is None
    np.testing.assert_array_equal(vertex_albedo(mesh), np.tile(NEUTRAL_GREY, (len(mesh.vertices), 1)))
    rgba, depth = render_views(mesh, look_at(np.array([0.0, -2.0, 0.0]))[None], INTR)
    rgb = rgba[0][depth[0] > 0][:, :3].astype(int)
    assert np.all(rgb[:, 0] == rgb[:, 1]) and np.all(rgb[:, 1] == rgb[:, 2])


def test_framing_radius_keeps_the_mesh_inside_the_image(torus):
    intr = Intrinsics.from_fov(40, 40, 0.69)
    radius = framing_radius(torus, 0.69, margin=0.1)
    rho = np.max(np.linalg.norm(torus.vertices, axis=1))
    assert np.arcsin(rho / radius) == pytest.approx(np.arctan(np.tan(0.345) / 1.1))
    hits = raycast(torus, sphere_poses(6, radius=radius, seed=2), intr)
    border = np.concatenate([hits.mask[:, 0], hits.mask[:, -1], hits.mask[:, :, 0], hits.mask[:, :, -1]])
    assert not border.any()


def test_orbit_video_writes_a_readable_mp4(tmp_path, torus):
    path = orbit_video(torus, tmp_path / "turn.mp4", frames=6, size=32, fps=6)
    assert path.is_file() and not list(tmp_path.glob(".turn*"))  # no temporary file left behind
    frames = [np.asarray(f) for f in imageio.get_reader(path)]
    assert len(frames) == 6 and frames[0].shape == (32, 32, 3)
    assert frames[0][0, 0].min() > 240  # white background
    assert not np.array_equal(frames[0], frames[3])  # it turns
