import math

import numpy as np
import pytest
import trimesh

from vision3d.groundtruth import GroundTruth, raycasting_scene
from vision3d.shapes import SHAPES, checker, lathe, load_shape, normalize_mesh, stripes, tube_mesh


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_named_shape_is_watertight_normalised_and_textured(name):
    mesh = load_shape(name)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.body_count == 1
    assert mesh.volume > 0  # outward normals
    lo, hi = mesh.bounds
    assert np.all(lo >= -0.5 - 1e-9) and np.all(hi <= 0.5 + 1e-9)
    assert np.max(hi - lo) == pytest.approx(1.0)
    np.testing.assert_allclose(lo + hi, 0.0, atol=1e-9)  # centred bounding box
    assert mesh.visual.kind == "vertex"
    colors = mesh.visual.vertex_colors[:, :3].astype(float)
    assert len(colors) == len(mesh.vertices)
    assert colors.std(axis=0).max() > 20  # a visible pattern, not one flat colour
    assert len(np.unique(colors, axis=0)) >= 2
    assert mesh.metadata["name"] == name
    # Fine enough that the colour pattern varies over the surface, not only between a few faces.
    assert len(mesh.vertices) > 1000


def test_unknown_name_lists_the_shapes():
    with pytest.raises(ValueError, match="torus_knot") as info:
        load_shape("teapot")
    assert all(name in str(info.value) for name in SHAPES)


def test_unreadable_file_is_a_value_error(tmp_path):
    bad = tmp_path / "broken.obj"
    bad.write_text("this is not a mesh\n")
    with pytest.raises(ValueError, match="sphere"):
        load_shape(bad)


def test_normalize_mesh_centres_and_scales_keeping_colours():
    mesh = trimesh.creation.box(extents=(2.0, 4.0, 1.0))
    mesh.apply_translation((3.0, -1.0, 7.0))
    mesh.visual.vertex_colors = np.tile([10, 200, 30, 255], (len(mesh.vertices), 1))
    out = normalize_mesh(mesh)
    np.testing.assert_allclose(out.bounds, [[-0.25, -0.5, -0.125], [0.25, 0.5, 0.125]], atol=1e-12)
    np.testing.assert_array_equal(out.visual.vertex_colors, mesh.visual.vertex_colors)
    np.testing.assert_allclose(mesh.bounds[0], [2.0, -3.0, 6.5])  # the input is not modified


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".stl"])
def test_load_mesh_file_normalises(tmp_path, suffix):
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=3.0)
    mesh.apply_translation((5.0, 0.0, -2.0))
    path = tmp_path / f"ball{suffix}"
    mesh.export(path)
    loaded = load_shape(path)
    assert loaded.is_watertight
    np.testing.assert_allclose(loaded.bounds, [[-0.5] * 3, [0.5] * 3], atol=1e-6)
    assert loaded.visual.kind == "vertex"  # uncoloured files get a uniform colour
    assert loaded.metadata["name"] == "ball"


def test_glb_scene_is_merged_into_one_mesh(tmp_path):
    a = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    b = trimesh.creation.icosphere(radius=0.5)
    b.visual.vertex_colors = np.tile([255, 0, 0, 255], (len(b.vertices), 1))
    scene = trimesh.Scene()
    scene.add_geometry(a, node_name="a")
    scene.add_geometry(b, node_name="b", transform=trimesh.transformations.translation_matrix((3.0, 0.0, 0.0)))
    path = tmp_path / "pair.glb"
    scene.export(path)
    mesh = load_shape(path)
    assert isinstance(mesh, trimesh.Trimesh)
    assert len(mesh.faces) == len(a.faces) + len(b.faces)
    # the node transform was applied: box from x=-0.5 to sphere at x=3.5 -> longest side 4 -> scaled by 1/4
    np.testing.assert_allclose(mesh.bounds[:, 0], [-0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(mesh.extents[1], 0.25, atol=1e-6)
    reds = np.all(mesh.visual.vertex_colors[:, :3] == [255, 0, 0], axis=1)
    assert 0 < reds.sum() < len(mesh.vertices)


def test_textured_mesh_gets_its_texture_as_vertex_colours(tmp_path):
    from PIL import Image

    mesh = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    # u from the height: the top half samples the red half of the texture, the bottom half the blue
    uv = np.stack([0.5 + 0.45 * mesh.vertices[:, 2], np.full(len(mesh.vertices), 0.5)], axis=1)
    texture = np.zeros((4, 8, 3), dtype=np.uint8)
    texture[:, :4] = (0, 0, 255)
    texture[:, 4:] = (255, 0, 0)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(texture))
    path = tmp_path / "textured.glb"
    mesh.export(path)
    loaded = load_shape(path)
    assert loaded.visual.kind == "vertex"
    colors = loaded.visual.vertex_colors[:, :3].astype(int)
    top, bottom = loaded.vertices[:, 2] > 0.2, loaded.vertices[:, 2] < -0.2
    assert np.all(colors[top] == [255, 0, 0]) and np.all(colors[bottom] == [0, 0, 255])


def test_checker_and_stripes_alternate():
    p = np.array([[0.05, 0.05, 0.05], [0.15, 0.05, 0.05], [0.15, 0.15, 0.05], [0.15, 0.15, 0.15]])
    np.testing.assert_array_equal(checker(p, 0.1), [0, 1, 0, 1])
    np.testing.assert_array_equal(stripes(np.array([0.01, 0.06, 0.11, 0.16]), 0.1), [0, 1, 0, 1])


def test_tube_around_a_circle_has_the_torus_volume():
    """Pappus: a tube of radius r around a circle of radius R encloses 2 pi^2 R r^2."""
    R, r = 1.0, 0.25

    def circle(t):
        return np.stack([R * np.cos(t), R * np.sin(t), np.zeros_like(t)], axis=1)

    mesh, t = tube_mesh(circle, r, n_along=256, n_around=64)
    assert mesh.is_watertight and len(t) == len(mesh.vertices)
    assert mesh.volume == pytest.approx(2 * math.pi**2 * R * r**2, rel=2e-3)


def test_lathe_of_a_rectangle_is_a_cylinder():
    profile = np.array([[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]])
    mesh = lathe(profile, sections=128)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(math.pi * 0.25 * 1.0, rel=1e-3)


def wall_thickness(mesh: trimesh.Trimesh) -> np.ndarray:  # [V]
    """Distance from each vertex, inwards along its normal, to the opposite side of the surface."""
    import open3d as o3d

    normals = np.asarray(mesh.vertex_normals)
    start = 1e-5
    rays = np.concatenate([mesh.vertices - start * normals, -normals], axis=1).astype(np.float32)
    t_hit = raycasting_scene(mesh).cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    assert np.isfinite(t_hit).all()  # a closed surface: every inward ray leaves it again
    return t_hit + start


def test_wire_knot_is_thin_everywhere_and_its_ground_truth_still_works():
    """Measured on the mesh: the wire is under 4% of the scene's extent thick at every vertex (the
    torus_knot tube, for contrast, is over 10% everywhere), and occupancy and signed distance resolve it."""
    wire = load_shape("wire_knot")
    thickness = wall_thickness(wire)
    assert np.max(wire.extents) == pytest.approx(1.0)
    assert thickness.max() < 0.04 and thickness.min() > 0.02
    assert wall_thickness(load_shape("torus_knot")).min() > 0.1
    gt = GroundTruth(wire)
    normals = np.asarray(wire.vertex_normals)
    middle = wire.vertices - 0.5 * thickness[:, None] * normals  # on the wire's axis
    beside = wire.vertices + thickness[:, None] * normals  # one diameter outside
    assert gt.occupancy(middle).all() and not gt.occupancy(beside).any()
    np.testing.assert_allclose(gt.signed_distance(middle), -0.5 * thickness, rtol=0.1)
