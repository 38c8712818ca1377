"""COLMAP's conventions and text model (vision3d.colmap): quaternions, poses, camera axes, similarity alignment."""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vision3d.camera import Intrinsics, project
from vision3d.colmap import (
    Camera,
    align_poses,
    camera_to_world,
    check_step,
    colmap_argv,
    corner_distortion,
    largest_model,
    opencv_to_opengl,
    qvec_to_rotation,
    read_cameras_txt,
    read_images_txt,
    read_points3d_txt,
    rotation_between,
    rotation_error_deg,
    rotation_to_qvec,
    umeyama,
)

ROTATIONS = Rotation.random(200, random_state=0).as_matrix()


def test_quaternions_match_scipy_and_round_trip():
    for R in ROTATIONS:
        q = rotation_to_qvec(R)
        assert q[0] >= 0 and np.linalg.norm(q) == pytest.approx(1.0)
        np.testing.assert_allclose(qvec_to_rotation(q), R, atol=1e-12)
        x, y, z, w = Rotation.from_matrix(R).as_quat()  # scipy: scalar last
        np.testing.assert_allclose(q, np.sign(w) * np.array([w, x, y, z]), atol=1e-12)
    # half turns (w = 0), where a trace-only formula divides by zero
    for axis in np.eye(3):
        R = 2.0 * np.outer(axis, axis) - np.eye(3)
        np.testing.assert_allclose(qvec_to_rotation(rotation_to_qvec(R)), R, atol=1e-12)
    np.testing.assert_allclose(qvec_to_rotation([2.0, 0.0, 0.0, 0.0]), np.eye(3))  # normalised first
    with pytest.raises(ValueError, match="qvec"):
        qvec_to_rotation([0.0, 0.0, 0.0, 0.0])


def test_colmap_camera_projects_like_our_camera():
    """A world-to-camera pose in COLMAP's (OpenCV) convention, turned into our OpenGL camera-to-world pose, puts every
    point on the same pixel with the same depth as COLMAP's own projection ``K (R x + t)``."""
    rng = np.random.default_rng(0)
    intrinsics = Intrinsics(160, 120, fx=150.0, fy=140.0, cx=81.0, cy=58.5)
    for R in ROTATIONS[:20]:
        t = rng.normal(size=3) + [0.0, 0.0, 4.0]
        points = rng.normal(size=(50, 3))
        cam = points @ R.T + t
        uv_colmap = np.stack([150.0 * cam[:, 0] / cam[:, 2] + 81.0, 140.0 * cam[:, 1] / cam[:, 2] + 58.5], axis=1)
        c2w = camera_to_world(R, t)
        np.testing.assert_allclose(c2w[:3, 3], -R.T @ t)  # the centre
        np.testing.assert_allclose(c2w[:3, :3] @ R, np.eye(3), atol=1e-12)
        uv, depth = project(points, intrinsics, opencv_to_opengl(c2w))
        np.testing.assert_allclose(uv, uv_colmap, atol=1e-9)
        np.testing.assert_allclose(depth, cam[:, 2], atol=1e-12)
    np.testing.assert_allclose(opencv_to_opengl(opencv_to_opengl(c2w)), c2w)  # its own inverse


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(30, 3))
    s, R, t = 2.7, ROTATIONS[5], np.array([0.3, -1.0, 4.0])
    fitted = umeyama(source, s * source @ R.T + t)
    assert fitted.scale == pytest.approx(s)
    np.testing.assert_allclose(fitted.rotation, R, atol=1e-10)
    np.testing.assert_allclose(fitted.translation, t, atol=1e-10)
    np.testing.assert_allclose(fitted.points(source), s * source @ R.T + t, atol=1e-10)
    np.testing.assert_allclose(fitted.matrix() @ np.append(source[0], 1.0), np.append(fitted.points(source[:1])[0], 1))
    # noise: close to the truth, and no better fit exists among small perturbations of it
    noisy = s * source @ R.T + t + 0.01 * rng.normal(size=source.shape)
    fitted = umeyama(source, noisy)
    assert abs(fitted.scale - s) < 0.01 and rotation_error_deg(fitted.rotation, R) < 0.5
    cost = np.sum((fitted.points(source) - noisy) ** 2)
    for k in range(20):
        small = Rotation.from_rotvec(1e-3 * rng.normal(size=3)).as_matrix()
        other = fitted._replace(rotation=small @ fitted.rotation, scale=fitted.scale * (1 + 1e-3 * rng.normal()))
        assert np.sum((other.points(source) - noisy) ** 2) >= cost
    # a mirrored target still gets a rotation (det +1), never a reflection
    mirrored = umeyama(source, source * [1.0, 1.0, -1.0])
    assert np.linalg.det(mirrored.rotation) == pytest.approx(1.0)
    rigid = umeyama(source, 3.0 * source, with_scale=False)
    assert rigid.scale == 1.0
    with pytest.raises(ValueError, match="N >= 3"):
        umeyama(source[:2], source[:2])


def test_similarity_moves_poses_with_the_world():
    """A camera moved with the world sees the moved points on the same pixels (projection ignores scale)."""
    rng = np.random.default_rng(2)
    intrinsics = Intrinsics.from_fov(64, 64, 0.7)
    similarity = umeyama(rng.normal(size=(5, 3)), rng.normal(size=(5, 3)))
    c2w = opencv_to_opengl(camera_to_world(ROTATIONS[3], np.array([0.1, 0.2, 3.0])))
    points = (np.linalg.inv(c2w) @ np.c_[rng.normal(size=(10, 2)), -3 - rng.random(10), np.ones(10)].T).T[:, :3]
    moved = similarity.poses(c2w[None])[0]
    np.testing.assert_allclose(moved[:3, :3].T @ moved[:3, :3], np.eye(3), atol=1e-12)
    before, depth = project(points, intrinsics, c2w)
    after, depth_after = project(similarity.points(points), intrinsics, moved)
    np.testing.assert_allclose(after, before, atol=1e-9)
    np.testing.assert_allclose(depth_after, similarity.scale * depth, atol=1e-9)


def test_align_poses_measures_what_the_similarity_cannot_explain():
    rng = np.random.default_rng(3)
    true = np.stack([opencv_to_opengl(camera_to_world(R, rng.normal(size=3))) for R in ROTATIONS[:8]])
    similarity = umeyama(rng.normal(size=(4, 3)), rng.normal(size=(4, 3)))
    recovered = similarity.poses(true)
    errors = align_poses(recovered, true)
    np.testing.assert_allclose(errors.rotation_deg, 0.0, atol=1e-5)
    np.testing.assert_allclose(errors.translation, 0.0, atol=1e-9)
    tilted = recovered.copy()
    tilted[2, :3, :3] = tilted[2, :3, :3] @ Rotation.from_euler("x", 3.0, degrees=True).as_matrix()
    errors = align_poses(tilted, true)  # centres unchanged: one camera is 3 degrees off, the rest exact
    assert errors.rotation_deg[2] == pytest.approx(3.0, abs=1e-6)
    assert np.delete(errors.rotation_deg, 2).max() < 1e-5


def test_rotation_error_and_rotation_between():
    R = Rotation.from_rotvec([0.0, 0.0, math.radians(37.0)]).as_matrix()
    assert rotation_error_deg(np.eye(3), R) == pytest.approx(37.0)
    np.testing.assert_allclose(rotation_error_deg(ROTATIONS, ROTATIONS), 0.0, atol=1e-5)
    rng = np.random.default_rng(4)
    for a, b in [*rng.normal(size=(10, 2, 3)), ([0.0, 0.0, 2.0], [0.0, 0.0, -1.0]), ([1.0, 0, 0], [1.0, 0, 0])]:
        M = rotation_between(a, b)
        np.testing.assert_allclose(M @ (np.asarray(a) / np.linalg.norm(a)), np.asarray(b) / np.linalg.norm(b),
                                   atol=1e-12)
        np.testing.assert_allclose(M.T @ M, np.eye(3), atol=1e-12)
        assert np.linalg.det(M) == pytest.approx(1.0)


CAMERAS_TXT = """# Camera list with one line of data per camera:
#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]
# Number of cameras: 2
1 PINHOLE 640 480 500.5 501.5 320 240
2 SIMPLE_RADIAL 128 96 100 64 48 -0.25
"""

IMAGES_TXT = """# Image list with two lines of data per image:
#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME
#   POINTS2D[] as (X, Y, POINT3D_ID)
# Number of images: 3, mean observations per image: 1
1 1 0 0 0 0.5 -0.5 2 1 b.png
10.5 20.5 7 30.5 40.5 -1
2 0.7071067811865476 0.7071067811865476 0 0 0 0 3 1 my photo.jpg

3 0 0 0 1 1 2 3 2 c.png
1 2 -1
"""

POINTS_TXT = """# 3D point list with one line of data per point:
#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)
7 0.1 0.2 0.3 255 128 0 0.5 1 0 2 3
9 -1 -2 -3 10 20 30 1.5 1 1 3 0
"""


def test_text_model_is_parsed(tmp_path):
    (tmp_path / "cameras.txt").write_text(CAMERAS_TXT)
    (tmp_path / "images.txt").write_text(IMAGES_TXT)
    (tmp_path / "points3D.txt").write_text(POINTS_TXT)
    cameras = read_cameras_txt(tmp_path / "cameras.txt")
    assert sorted(cameras) == [1, 2]
    assert cameras[1].model == "PINHOLE" and (cameras[1].width, cameras[1].height) == (640, 480)
    np.testing.assert_allclose(cameras[1].params, [500.5, 501.5, 320, 240])
    images = read_images_txt(tmp_path / "images.txt")
    assert [image.name for image in images] == ["b.png", "my photo.jpg", "c.png"]  # an empty points line is kept
    assert [image.camera_id for image in images] == [1, 1, 2]
    np.testing.assert_allclose(images[0].c2w()[:3, 3], [-0.5, 0.5, -2.0])
    np.testing.assert_allclose(images[1].c2w()[:3, :3], Rotation.from_euler("x", -90, degrees=True).as_matrix(),
                               atol=1e-12)
    points = read_points3d_txt(tmp_path / "points3D.txt")
    np.testing.assert_allclose(points.xyz, [[0.1, 0.2, 0.3], [-1, -2, -3]])
    np.testing.assert_array_equal(points.rgb, [[255, 128, 0], [10, 20, 30]])
    np.testing.assert_allclose(points.error, [0.5, 1.5])


@pytest.mark.parametrize(("name", "text", "line"), [
    ("cameras.txt", "# comment\n1 PINHOLE 640 abc 1 2 3 4\n", 2),
    ("cameras.txt", "1 PINHOLE 640 480 1 nan 3 4\n", 1),
    ("images.txt", "1 1 0 0 0 0 0 0 1\n\n", 1),
    ("images.txt", "1 1 0 0 0 0 0 0 1 a.png\n\n2 1 0 0 x 0 0 0 1 b.png\n", 3),
    ("points3D.txt", "1 0 0 0 255 255\n", 1),
])
def test_malformed_text_model_names_file_and_line(tmp_path, name, text, line):
    path = tmp_path / name
    path.write_text(text)
    reader = {"cameras.txt": read_cameras_txt, "images.txt": read_images_txt, "points3D.txt": read_points3d_txt}[name]
    with pytest.raises(ValueError, match=f"{name}:{line}: ") as info:
        reader(path)
    assert "\n" not in str(info.value)


def test_command_line_log_and_models(tmp_path):
    argv = colmap_argv("colmap", "mapper", {"database_path": tmp_path / "db", "Mapper.ba_refine_principal_point": False,
                                            "Mapper.num_threads": -1})
    assert argv == ["colmap", "mapper", "--database_path", str(tmp_path / "db"),
                    "--Mapper.ba_refine_principal_point", "0", "--Mapper.num_threads", "-1"]
    log = tmp_path / "log.txt"
    log.write_text("I0101 reading\nE0101 Error: no images found\nshutting down\n")
    check_step(0, "feature_extractor", log)
    with pytest.raises(RuntimeError, match="feature_extractor failed with exit status 1 .*no images found.*log.txt"):
        check_step(1, "feature_extractor", log)
    sparse = tmp_path / "sparse"
    assert largest_model(sparse) is None
    for name, count in [("0", 5), ("1", 12), ("2", 3)]:
        (sparse / name).mkdir(parents=True)
        (sparse / name / "images.bin").write_bytes(count.to_bytes(8, "little") + b"\0" * 16)
    (sparse / "3").mkdir()  # an empty folder (the mapper gave up): not a model
    assert largest_model(sparse) == sparse / "1"


def test_corner_distortion():
    assert corner_distortion(Camera(1, "PINHOLE", 100, 80, np.array([90.0, 90.0, 50.0, 40.0]))) == 0.0
    # corner at (50, 40) from the centre, f = 100: r^2 = 0.25 + 0.16
    radial = Camera(1, "SIMPLE_RADIAL", 100, 80, np.array([100.0, 50.0, 40.0, -0.2]))
    assert corner_distortion(radial) == pytest.approx(0.2 * 0.41)
    opencv = Camera(1, "OPENCV", 100, 80, np.array([100.0, 100.0, 50.0, 40.0, 0.1, 0.1, 0.01, 0.0]))
    assert corner_distortion(opencv) == pytest.approx(0.1 * 0.41 + 0.1 * 0.41**2)
    with pytest.raises(ValueError, match="FISHEYE"):
        corner_distortion(Camera(3, "FISHEYE", 10, 10, np.zeros(4)))
