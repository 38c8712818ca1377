import math

import numpy as np
import pytest

from vision3d.camera import Intrinsics, camera_directions, look_at, pixel_rays, project, sphere_poses, unproject


def _camera():
    # Off-centre principal point and unequal focal lengths, so no symmetry hides a convention error.
    return Intrinsics(width=40, height=30, fx=50.0, fy=45.0, cx=21.3, cy=14.2), look_at(np.array([1.5, -2.0, 1.0]))


def test_project_unproject_round_trip(rng):
    intr, c2w = _camera()
    points = rng.uniform(-0.5, 0.5, size=(200, 3))
    uv, depth = project(points, intr, c2w)
    assert np.all(depth > 0)
    np.testing.assert_allclose(unproject(uv, depth, intr, c2w), points, atol=1e-10)


def test_pixel_ray_passes_through_the_projected_point():
    """A point on the ray of pixel (i, j) at parameter t projects to that pixel's centre with depth t."""
    intr, c2w = _camera()
    origins, directions = pixel_rays(intr, c2w)
    for i, j, t in [(0, 0, 1.7), (39, 29, 2.5), (17, 11, 3.1)]:
        point = origins[j, i].astype(np.float64) + t * directions[j, i].astype(np.float64)
        uv, depth = project(point[None], intr, c2w)
        np.testing.assert_allclose(uv[0], [i + 0.5, j + 0.5], atol=1e-4)
        np.testing.assert_allclose(depth[0], t, rtol=1e-6)
        # and unproject at the pixel centre with that depth gives the point back
        np.testing.assert_allclose(unproject(uv, depth, intr, c2w)[0], point, atol=1e-5)


def test_camera_directions_have_unit_viewing_axis_component():
    intr, _ = _camera()
    d = camera_directions(intr)
    assert d.shape == (30, 40, 3)
    np.testing.assert_array_equal(d[..., 2], -1.0)
    # the ray through the principal point is the optical axis
    centre = Intrinsics(40, 30, 50.0, 45.0, 20.5, 15.5)
    np.testing.assert_allclose(camera_directions(centre)[15, 20], [0.0, 0.0, -1.0], atol=1e-12)


def test_look_at_points_minus_z_at_the_target_with_up_kept_upright():
    eye, target = np.array([2.0, 1.0, 0.5]), np.array([0.1, -0.2, 0.3])
    c2w = look_at(eye, target)
    rot = c2w[:3, :3]
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    forward = -rot[:, 2]
    np.testing.assert_allclose(forward, (target - eye) / np.linalg.norm(target - eye), atol=1e-12)
    np.testing.assert_allclose(c2w[:3, 3], eye)
    assert rot[:, 1] @ np.array([0.0, 0.0, 1.0]) > 0  # image up is world up
    assert abs(rot[:, 0][2]) < 1e-12  # image x stays horizontal
    # the target projects onto the principal point
    intr = Intrinsics(32, 32, 30.0, 30.0, 16.0, 16.0)
    uv, depth = project(target[None], intr, c2w)
    np.testing.assert_allclose(uv[0], [16.0, 16.0], atol=1e-9)
    assert depth[0] == pytest.approx(np.linalg.norm(target - eye))


@pytest.mark.parametrize("mode", ["random", "spiral", "turntable"])
def test_sphere_poses_have_the_radius_and_look_at_the_origin(mode):
    poses = sphere_poses(12, radius=2.5, mode=mode, elevation=20.0, seed=3)
    assert poses.shape == (12, 4, 4)
    eyes = poses[:, :3, 3]
    np.testing.assert_allclose(np.linalg.norm(eyes, axis=1), 2.5, rtol=1e-12)
    forward = -poses[:, :3, 2]
    np.testing.assert_allclose(forward, -eyes / 2.5, atol=1e-12)
    if mode == "turntable":
        np.testing.assert_allclose(eyes[:, 2], 2.5 * math.sin(math.radians(20.0)))


def test_sphere_poses_upper_hemisphere_and_seed():
    a = sphere_poses(50, mode="random", seed=1, upper_hemisphere=True)
    assert np.all(a[:, 2, 3] >= 0)
    np.testing.assert_array_equal(a, sphere_poses(50, mode="random", seed=1, upper_hemisphere=True))
    assert not np.allclose(a, sphere_poses(50, mode="random", seed=2, upper_hemisphere=True))


def test_intrinsics_from_fov_and_camera_angle_x_are_inverse():
    for angle in (0.3, 0.6911112070083618, 1.5):
        intr = Intrinsics.from_fov(128, 96, angle)
        assert intr.camera_angle_x == pytest.approx(angle, rel=1e-12)
        assert (intr.cx, intr.cy) == (64.0, 48.0)
        assert intr.fx == intr.fy == pytest.approx(64.0 / math.tan(angle / 2))
        half = intr.resized(64, 48)
        assert half.camera_angle_x == pytest.approx(angle, rel=1e-12)
        assert (half.fx, half.cx, half.cy) == pytest.approx((intr.fx / 2, 32.0, 24.0))


def test_camera_input_errors():
    with pytest.raises(ValueError, match="camera_angle_x"):
        Intrinsics.from_fov(32, 32, 4.0)
    with pytest.raises(ValueError, match="c2w"):
        project(np.zeros((1, 3)), Intrinsics.from_fov(8, 8, 1.0), np.eye(3))
    with pytest.raises(ValueError, match="points"):
        project(np.zeros((4, 2)), Intrinsics.from_fov(8, 8, 1.0), np.eye(4))
