"""Bad dataset files: every loader answers with one line naming the file (and the frame), never runs code
from a file, and a re-export replaces exactly the files of the previous export."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import trimesh
from expect_errors import one_line_error
from scipy.spatial.transform import Rotation

from envs.io.files import TEMP_MARK
from vision3d import dataset
from vision3d.__main__ import main
from vision3d.dataset import (
    IN_PROGRESS,
    export_dataset,
    load_blender,
    load_mesh,
    load_point_cloud,
    load_samples,
    previous_export_files,
    save_point_cloud,
)

TINY = {"views": 3, "size": 16, "val_views": 1, "test_views": 1, "n_uniform": 500, "n_surface": 500, "n_points": 500}


class Payload:
    """Unpickling this touches ``path``: proof that a loader ran code from a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def blender_folder(root: Path, n: int = 2, size: int = 8) -> dict:
    """A hand-written Blender-layout split with ``n`` RGBA frames and depth maps; returns its meta."""
    (root / "train").mkdir(parents=True)
    frames = []
    for i in range(n):
        imageio.imwrite(root / f"train/r_{i}.png", np.full((size, size, 4), 200, dtype=np.uint8))
        np.save(root / f"train/r_{i}_depth.npy", np.full((size, size), 3.0, dtype=np.float32))
        c2w = np.eye(4)
        c2w[:3, :3] = Rotation.from_rotvec([0.3 * i, 0.2, -0.1]).as_matrix()
        c2w[:3, 3] = (0.0, 0.0, 4.0)
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": c2w.tolist()})
    meta = {"camera_angle_x": 0.69, "frames": frames}
    write_meta(root, meta)
    return meta


def write_meta(root: Path, meta: object) -> None:
    (root / "transforms_train.json").write_text(json.dumps(meta))


# --- poses -------------------------------------------------------------------------------------------

def _scaled() -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] *= 2.0
    return m


def _sheared() -> np.ndarray:
    m = np.eye(4)
    m[0, 1] = 0.1
    return m


def _singular() -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = 0.0
    return m


def _bottom_row() -> np.ndarray:
    m = np.eye(4)
    m[3, 0] = 0.5
    return m


def _nan() -> np.ndarray:
    m = np.eye(4)
    m[1, 3] = np.nan
    return m


def _inf() -> np.ndarray:
    m = np.eye(4)
    m[0, 0] = np.inf
    return m


@pytest.mark.parametrize(
    "matrix, reason",
    [
        (_nan().tolist(), "NaN or Inf"),
        (_inf().tolist(), "NaN or Inf"),
        (np.eye(4)[:3].tolist(), "must be 4x4 numbers, got shape (3, 4)"),
        (np.eye(3).tolist(), "must be 4x4 numbers, got shape (3, 3)"),
        ([[1, 0, 0, 0], [0, 1, 0]], "not a 4x4 array of numbers"),
        ([["1", "0", "0", "0"]] * 4, "not a 4x4 array of numbers"),
        ("eye", "not a 4x4 array of numbers"),
        (None, "not a 4x4 array of numbers"),
        (_singular().tolist(), "not a rigid pose"),
        (_scaled().tolist(), "not a rigid pose"),
        (_sheared().tolist(), "not a rigid pose"),
        (np.diag([1.0, 1.0, -1.0, 1.0]).tolist(), "det -1"),  # a reflection is orthonormal but not rigid
        (_bottom_row().tolist(), "last row must be [0, 0, 0, 1]"),
    ],
)
def test_bad_transform_matrix_names_file_and_frame(tmp_path, matrix, reason):
    meta = blender_folder(tmp_path)
    meta["frames"][1]["transform_matrix"] = matrix
    write_meta(tmp_path, meta)
    one_line_error(lambda: load_blender(tmp_path), "transforms_train.json: frame 1 (./train/r_1)", reason)


def test_rigid_poses_rounded_to_float32_or_six_decimals_still_load(tmp_path):
    meta = blender_folder(tmp_path, n=3)
    rotations = Rotation.random(3, random_state=0).as_matrix()
    for frame, rotation, digits in zip(meta["frames"], rotations, (None, 6, 4)):
        c2w = np.eye(4)
        c2w[:3, :3] = rotation.astype(np.float32) if digits is None else rotation.round(digits)
        c2w[:3, 3] = (0.5, -4.0, 1.0)
        frame["transform_matrix"] = c2w.tolist()
    write_meta(tmp_path, meta)
    data = load_blender(tmp_path)
    np.testing.assert_allclose(data.poses[:, :3, :3], rotations, atol=1e-4)


# --- transforms_*.json ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "change, reason",
    [
        ({"camera_angle_x": None}, "camera_angle_x must be a number of radians in (0, pi), got None"),
        ({"camera_angle_x": "0.69"}, "got '0.69'"),
        ({"camera_angle_x": True}, "got True"),
        ({"camera_angle_x": 0}, "got 0"),
        ({"camera_angle_x": -0.5}, "got -0.5"),
        ({"camera_angle_x": 3.1416}, "got 3.1416"),
        ({"camera_angle_x": float("nan")}, "got nan"),
        ({"frames": {"0": {}}}, "frames must be a non-empty list"),
        ({"frames": "./train/r_0"}, "frames must be a non-empty list"),
        ({"frames": []}, "frames must be a non-empty list, got []"),
        ({"frames": None}, "frames must be a non-empty list, got null"),
        ({"frames": [3]}, "frame 0 must be an object with file_path and transform_matrix"),
        ({"frames": [{"transform_matrix": np.eye(4).tolist()}]}, "frame 0 has no file_path"),
        ({"frames": [{"file_path": 7, "transform_matrix": np.eye(4).tolist()}]}, "frame 0: file_path must be"),
        ({"frames": [{"file_path": "./train/r_0"}]}, "frame 0 (./train/r_0) has no transform_matrix"),
        ({"frames": [{"file_path": "./train/r_9", "transform_matrix": np.eye(4).tolist()}]}, "r_9.png does not exist"),
    ],
)
def test_bad_transforms_json_is_one_line_naming_the_file(tmp_path, change, reason):
    meta = blender_folder(tmp_path)
    write_meta(tmp_path, {**meta, **change})
    one_line_error(lambda: load_blender(tmp_path), str(tmp_path / "transforms_train.json"), reason)


@pytest.mark.parametrize(
    "text, reason",
    [
        (b"{", "is not valid JSON"),
        (b"\xff\xfe{}", "is not valid JSON"),
        (b"[1, 2]", "must hold a JSON object, got list"),
    ],
)
def test_unreadable_json(tmp_path, text, reason):
    blender_folder(tmp_path)
    (tmp_path / "transforms_train.json").write_bytes(text)
    one_line_error(lambda: load_blender(tmp_path), str(tmp_path / "transforms_train.json"), reason)


# --- images and depth maps -----------------------------------------------------------------------------

def test_truncated_garbage_or_missing_images(tmp_path):
    blender_folder(tmp_path)
    png = tmp_path / "train/r_1.png"
    whole = png.read_bytes()
    where = "transforms_train.json: frame 1 (./train/r_1)"
    png.write_bytes(whole[: len(whole) // 2])
    one_line_error(lambda: load_blender(tmp_path), where, f"cannot read the image {png}")
    png.write_bytes(b"not a picture at all")
    one_line_error(lambda: load_blender(tmp_path), where, f"cannot read the image {png}")
    png.unlink()
    one_line_error(lambda: load_blender(tmp_path), where, f"{png} does not exist")


def test_bad_depth_maps(tmp_path):
    blender_folder(tmp_path)
    depth = tmp_path / "train/r_0_depth.npy"
    where = "transforms_train.json: frame 0 (./train/r_0)"
    np.save(depth, np.ones((4, 8), dtype=np.float32))
    one_line_error(lambda: load_blender(tmp_path), where, str(depth), "[8, 8]", "got float32 [4, 8]")
    np.save(depth, np.full((8, 8), np.nan, dtype=np.float32))
    one_line_error(lambda: load_blender(tmp_path), where, "finite depths")
    depth.write_bytes(b"garbage")
    one_line_error(lambda: load_blender(tmp_path), where, f"{depth} is not a NumPy .npy file")
    np.save(depth, np.ones((8, 8), dtype=np.float32))
    depth.write_bytes(depth.read_bytes()[:100])  # header intact, data cut off
    one_line_error(lambda: load_blender(tmp_path), where, f"cannot read {depth}")


def test_a_depth_map_with_a_pickle_payload_runs_nothing(tmp_path):
    blender_folder(tmp_path)
    ran = tmp_path / "payload-ran"
    depth = tmp_path / "train/r_0_depth.npy"
    np.save(depth, np.array([Payload(ran)], dtype=object), allow_pickle=True)
    one_line_error(lambda: load_blender(tmp_path), str(depth), "Object arrays cannot be loaded")
    depth.write_bytes(pickle.dumps(Payload(ran)))  # a bare pickle under the .npy name
    one_line_error(lambda: load_blender(tmp_path), f"{depth} is not a NumPy .npy file")
    assert not ran.exists()


# --- samples.npz -------------------------------------------------------------------------------------

def good_samples(path: Path, n: int = 5, **arrays: np.ndarray) -> None:
    base = {"points": np.zeros((n, 3), np.float32), "occupancy": np.zeros(n, bool), "sdf": np.ones(n, np.float32)}
    np.savez(path, **{**base, **arrays})


def test_bad_samples_npz(tmp_path):
    path = tmp_path / "samples.npz"
    good_samples(path)
    assert len(load_samples(tmp_path).points) == 5
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    one_line_error(lambda: load_samples(tmp_path), str(path), "cannot read the .npz file")
    path.write_bytes(b"PK\x03\x04" + whole[4:200])
    one_line_error(lambda: load_samples(tmp_path), str(path), "cannot read the .npz file")
    path.write_bytes(b"hello")
    one_line_error(lambda: load_samples(tmp_path), f"{path} is not a NumPy .npz (zip) file")
    with open(path, "wb") as file:
        np.save(file, np.zeros((5, 3)))  # a .npy under the .npz name
    one_line_error(lambda: load_samples(tmp_path), f"{path} is not a NumPy .npz (zip) file")
    np.savez(path, points=np.zeros((5, 3)))
    one_line_error(lambda: load_samples(tmp_path), str(path), "lacks the arrays ['occupancy', 'sdf']")
    for bad in ({"points": np.zeros((5, 2))}, {"sdf": np.zeros(4)}, {"occupancy": np.zeros((5, 1))}):
        good_samples(path, **bad)
        one_line_error(lambda: load_samples(tmp_path), str(path), "expected points [N, 3], occupancy [N] and sdf [N]")
    good_samples(path, n=0)
    one_line_error(lambda: load_samples(tmp_path), str(path), "N > 0")
    good_samples(path, sdf=np.array(["a"] * 5))
    one_line_error(lambda: load_samples(tmp_path), str(path), "sdf must hold numbers")
    good_samples(path, points=np.full((5, 3), np.inf))
    one_line_error(lambda: load_samples(tmp_path), str(path), "points holds NaN or Inf")
    good_samples(path, occupancy=np.full(5, 0.5))
    one_line_error(lambda: load_samples(tmp_path), str(path), "occupancy must be boolean")


def test_samples_with_a_pickle_payload_run_nothing(tmp_path):
    ran = tmp_path / "payload-ran"
    path = tmp_path / "samples.npz"
    np.savez(path, points=np.array([Payload(ran)] * 5, dtype=object), occupancy=np.zeros(5), sdf=np.zeros(5))
    one_line_error(lambda: load_samples(path), str(path), "Object arrays cannot be loaded when allow_pickle=False")
    path.write_bytes(pickle.dumps({"points": Payload(ran)}))
    one_line_error(lambda: load_samples(path), f"{path} is not a NumPy .npz (zip) file")
    assert not ran.exists()


# --- PLY files -------------------------------------------------------------------------------------------

def test_garbage_or_truncated_point_clouds(tmp_path):
    path = tmp_path / "points.ply"
    save_point_cloud(path, np.random.default_rng(0).normal(size=(200, 3)), np.tile([0.0, 0.0, 1.0], (200, 1)))
    whole = path.read_bytes()
    path.write_bytes(whole[:-10])  # open3d alone fills the missing rows with zeros and says nothing
    one_line_error(lambda: load_point_cloud(tmp_path), f"{path} is truncated")
    path.write_bytes(b"garbage")
    one_line_error(lambda: load_point_cloud(tmp_path), f"{path} is not a PLY file")
    header = b"ply\nformat ascii 1.0\nelement vertex 4\n" + b"".join(b"property float %s\n" % a for a in (b"x", b"y", b"z"))
    header += b"end_header\n"
    path.write_bytes(header + b"0 0 0\n1 0 0\n")
    one_line_error(lambda: load_point_cloud(tmp_path), f"{path} is truncated", "declares 4 rows, the file has 2")
    path.write_bytes(header.replace(b"float z", b"quaternion z") + b"0 0 0\n")
    one_line_error(lambda: load_point_cloud(tmp_path), str(path), "unknown PLY property type 'quaternion'")
    path.write_bytes(header + b"0 0 0\n1 0 0\n0 nan 0\n0 0 1\n")
    one_line_error(lambda: load_point_cloud(tmp_path), f"{path} holds NaN or Inf")


def test_garbage_or_truncated_meshes(tmp_path):
    path = tmp_path / "mesh.ply"
    trimesh.creation.icosphere(subdivisions=2).export(path)
    assert len(load_mesh(tmp_path).faces) == 320
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 100])
    one_line_error(lambda: load_mesh(tmp_path), str(path))
    path.write_bytes(whole[:300])
    one_line_error(lambda: load_mesh(tmp_path), str(path))
    path.write_bytes(b"\x00" * 64)
    one_line_error(lambda: load_mesh(tmp_path), f"{path} is not a PLY file")
    obj = tmp_path / "broken.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")  # a face that indexes no vertex
    one_line_error(lambda: load_mesh(obj), str(obj))


# --- re-exporting into a folder ----------------------------------------------------------------------


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def torus_export(tmp_path_factory):
    """An export of the torus with 3 training views and samples.npz, kept as a template to copy."""
    return export_dataset("torus", tmp_path_factory.mktemp("template") / "torus", **TINY)


def copy_of(template: Path, dest: Path) -> Path:
    for relative in files_under(template):
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        (dest / relative).write_bytes((template / relative).read_bytes())
    return dest


def open_mesh() -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=2)
    mesh.update_faces(np.arange(len(mesh.faces)) > 5)
    return mesh


def test_re_export_replaces_the_previous_dataset_and_keeps_other_files(tmp_path, torus_export):
    out = copy_of(torus_export, tmp_path / "data")
    (out / "notes.txt").write_text("mine")
    (out / "train" / "mine.png").write_bytes(b"mine")
    assert {"samples.npz", "train/r_2.png", "dataset.json"} <= previous_export_files(out)
    assert "notes.txt" not in previous_export_files(out)
    with pytest.warns(UserWarning, match="watertight"):  # no samples.npz this time
        export_dataset(open_mesh(), out, **{**TINY, "views": 1})
    info = json.loads((out / "dataset.json").read_text())
    assert files_under(out) == set(info["files"]) | {"dataset.json", "notes.txt", "train/mine.png"}
    assert not (out / "samples.npz").exists()  # the torus's labels would otherwise train the next fit
    assert not (out / "train/r_1.png").exists() and not (out / "train/r_2_depth.npy").exists()
    assert info["views"] == 1 and len(load_blender(out).poses) == 1
    with pytest.raises(ValueError, match="watertight"):
        load_samples(out)


def test_re_export_of_an_older_dataset_without_a_file_list(tmp_path, torus_export):
    out = copy_of(torus_export, tmp_path / "data")
    info = json.loads((out / "dataset.json").read_text())
    del info["files"], info["format"]  # dataset.json as exports wrote it before the file list
    (out / "dataset.json").write_text(json.dumps(info))
    (out / "train" / "r_7.png").write_bytes(b"from a run with more views")
    with pytest.warns(UserWarning, match="watertight"):
        export_dataset(open_mesh(), out, **{**TINY, "views": 1})
    assert sorted(p.name for p in (out / "train").iterdir()) == ["r_0.png", "r_0_depth.npy"]
    assert not (out / "samples.npz").exists()


def test_a_tampered_file_list_deletes_nothing_else(tmp_path, torus_export):
    out = copy_of(torus_export, tmp_path / "data")
    (out / "notes.txt").write_text("mine")
    (tmp_path / "outside.txt").write_text("mine")
    info = json.loads((out / "dataset.json").read_text())
    info["files"] += ["notes.txt", "../outside.txt", str(tmp_path / "outside.txt"), "train/../notes.txt"]
    (out / "dataset.json").write_text(json.dumps(info))
    export_dataset("torus", out, **TINY)
    assert (out / "notes.txt").read_text() == "mine" and (tmp_path / "outside.txt").read_text() == "mine"


@pytest.mark.parametrize("content", [{"notes.txt": "mine"}, {"dataset.json": '{"name": "my own data"}'},
                                     {"dataset.json": "not json"}, {"transforms_train.json": "{}"},
                                     {"dataset.json": "{\"files\": [\"a.txt\"]}", "mesh.ply": "x"},
                                     {f".mesh.ply{TEMP_MARK}k1.ply": "half"}])
def test_export_refuses_a_folder_it_did_not_write(tmp_path, content):
    out = tmp_path / "home"
    out.mkdir()
    for name, text in content.items():
        (out / name).write_text(text)
    one_line_error(lambda: export_dataset("sphere", out, **TINY), f"out: {out} is not empty", "no dataset.json of ours")
    assert {p.name for p in out.iterdir()} == set(content)  # nothing deleted, nothing written
    one_line_error(lambda: main(["render", "--shape", "sphere", "--out", str(out)]), "is not empty")
    (tmp_path / "file").write_text("x")
    one_line_error(lambda: export_dataset("sphere", tmp_path / "file", **TINY), "is a file")


def test_an_export_removes_the_temporaries_a_killed_export_left(tmp_path, torus_export):
    """``.<name>.partial-*`` files go when the next export starts, but only in the folders an export writes."""
    out = copy_of(torus_export, tmp_path / "data")
    (out / "dataset.json").unlink()  # killed before the end: only the in-progress record says "ours"
    (out / IN_PROGRESS).write_text(json.dumps({"format": dataset.EXPORT_FORMAT, "files": []}))
    stale = [out / f".mesh.ply{TEMP_MARK}k1.ply", out / f"train/.r_9.png{TEMP_MARK}k2.png",
             out / f"test/.r_0_depth.npy{TEMP_MARK}k3.npy"]
    theirs = out / "runs" / f".metrics.csv{TEMP_MARK}w1.csv"  # not ours: its writer may still be running
    for path in [*stale, theirs]:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half")
    export_dataset("torus", out, **TINY)
    assert not any(path.exists() for path in stale) and theirs.read_bytes() == b"half"
    info = json.loads((out / "dataset.json").read_text())
    assert files_under(out) == set(info["files"]) | {"dataset.json", "runs/" + theirs.name}


def test_an_interrupted_re_export_never_looks_complete(tmp_path, torus_export, monkeypatch):
    out = copy_of(torus_export, tmp_path / "data")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(dataset, "surface_samples", interrupted)  # after the images, before points and samples
        with pytest.raises(KeyboardInterrupt):
            export_dataset("sphere", out, **TINY)
    assert not (out / "dataset.json").exists() and not (out / "samples.npz").exists()
    assert (out / IN_PROGRESS).exists()
    for load in (load_blender, load_samples, load_point_cloud, load_mesh):
        one_line_error(lambda load=load: load(out), str(out), "unfinished export")
    export_dataset("sphere", out, **TINY)  # the in-progress record marks the folder as ours
    assert not (out / IN_PROGRESS).exists() and not list(out.rglob(".*"))
    assert json.loads((out / "dataset.json").read_text())["shape"] == "sphere"
    assert len(load_samples(out).points) == 1000


# --- the command line ------------------------------------------------------------------------------


def test_fit_on_a_corrupt_dataset_prints_one_line_and_trains_nothing(tmp_path, torus_export):
    data = copy_of(torus_export, tmp_path / "torus")
    (data / "samples.npz").write_bytes((data / "samples.npz").read_bytes()[:1000])
    run = tmp_path / "run"
    argv = ["fit", "occupancy", "--data", str(data), "--out", str(run), "--steps", "5", "--no-video",
            "--resolution", "32"]
    result = subprocess.run([sys.executable, "-m", "vision3d", *argv], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {data / 'samples.npz'}: cannot read the .npz file "
                                                  "(truncated or corrupted): File is not a zip file"]
    assert not (run / "metrics.csv").exists() and not (run / "checkpoint.pt").exists()
