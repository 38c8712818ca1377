"""Splat PLY files: the standard 3DGS layout bit-exactly both ways, the channel-major f_rest order, lenient
reading of other writers' files, and a one-line ValueError naming the file for anything malformed."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
from expect_errors import one_line_error
from plyfile import PlyData, PlyElement

from envs.io.files import TEMP_MARK
from vision3d.splat_ply import SplatArrays, read_splat_ply, write_splat_ply

DEGREE3_NAMES = [
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *[f"f_rest_{i}" for i in range(45)],
    "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
]  # fmt: skip


def random_splats(rng: np.random.Generator, N: int, K: int) -> SplatArrays:
    def draw(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return SplatArrays(draw(N, 3), draw(N, 3), draw(N, 4), draw(N), draw(N, K, 3))


def assert_same(read: SplatArrays, written: SplatArrays) -> None:
    for field in SplatArrays._fields:
        got, want = getattr(read, field), getattr(written, field)
        assert got.dtype == np.float32, field
        assert np.array_equal(got, want), field


def write_vertex(path: Path, columns: dict[str, np.ndarray], text: bool = False, byte_order: str = "<") -> Path:
    """A PLY with one vertex element holding ``columns`` in their order, written by plyfile itself."""
    N = len(next(iter(columns.values())))
    rows = np.empty(N, dtype=[(name, column.dtype.str) for name, column in columns.items()])
    for name, column in columns.items():
        rows[name] = column
    PlyData([PlyElement.describe(rows, "vertex")], text=text, byte_order=byte_order).write(path)
    return path


def standard_columns(splats: SplatArrays) -> dict[str, np.ndarray]:
    """The properties of ``splats`` by name, built from the layout's definition, not from the module."""
    N, K = splats.sh.shape[:2]
    columns = {name: splats.means[:, i] for i, name in enumerate("xyz")}
    columns |= {name: np.zeros(N, np.float32) for name in ("nx", "ny", "nz")}
    columns |= {f"f_dc_{c}": splats.sh[:, 0, c] for c in range(3)}
    columns |= {f"f_rest_{c * (K - 1) + k - 1}": splats.sh[:, k, c] for c in range(3) for k in range(1, K)}
    columns["opacity"] = splats.opacity_logits
    columns |= {f"scale_{i}": splats.log_scales[:, i] for i in range(3)}
    columns |= {f"rot_{i}": splats.quaternions[:, i] for i in range(4)}
    return columns


@pytest.mark.parametrize("K", [1, 4, 9, 16])
@pytest.mark.parametrize("N", [0, 1, 1000])
def test_round_trip_is_bit_exact(tmp_path, rng, N, K):
    splats = random_splats(rng, N, K)
    path = write_splat_ply(tmp_path / "splats.ply", splats)
    assert path == tmp_path / "splats.ply"
    read = read_splat_ply(path)
    assert_same(read, splats)
    assert read.sh_degree == {1: 0, 4: 1, 9: 2, 16: 3}[K]
    assert [p.name for p in tmp_path.iterdir()] == ["splats.ply"]  # no temporary left beside it


def test_file_has_the_standard_layout(tmp_path, rng):
    splats = random_splats(rng, 7, 16)
    ply = PlyData.read(write_splat_ply(tmp_path / "splats.ply", splats))
    assert [element.name for element in ply.elements] == ["vertex"]
    assert [prop.name for prop in ply["vertex"].properties] == DEGREE3_NAMES
    assert not ply.text and ply.byte_order == "<"
    assert b"format binary_little_endian 1.0" in (tmp_path / "splats.ply").read_bytes()[:100]
    data = ply["vertex"].data
    assert all(data.dtype[name] == np.dtype("<f4") for name in DEGREE3_NAMES)
    assert all(prop.val_dtype in ("f4", "<f4", "float") for prop in ply["vertex"].properties)
    assert len(data) == 7
    for name in ("nx", "ny", "nz"):
        assert np.array_equal(data[name], np.zeros(7, np.float32))
    assert np.array_equal(data["opacity"], splats.opacity_logits)
    for i in range(3):
        assert np.array_equal(data[f"scale_{i}"], splats.log_scales[:, i])
        assert np.array_equal(data["xyz"[i]], splats.means[:, i])
    for i in range(4):  # rot_0 is w
        assert np.array_equal(data[f"rot_{i}"], splats.quaternions[:, i])


def test_f_rest_is_channel_major(tmp_path, rng):
    N, K = 3, 16
    sh = (100 * np.arange(N)[:, None, None] + 10 * np.arange(K)[None, :, None] + np.arange(3)).astype(np.float32)
    splats = random_splats(rng, N, K)._replace(sh=sh)
    data = PlyData.read(write_splat_ply(tmp_path / "splats.ply", splats))["vertex"].data
    assert np.array_equal(data["f_dc_1"], sh[:, 0, 1])
    assert np.array_equal(data["f_rest_0"], sh[:, 1, 0])
    assert np.array_equal(data["f_rest_1"], sh[:, 2, 0])
    assert np.array_equal(data["f_rest_14"], sh[:, 15, 0])
    assert np.array_equal(data["f_rest_15"], sh[:, 1, 1])
    assert np.array_equal(data["f_rest_30"], sh[:, 1, 2])
    assert np.array_equal(data["f_rest_44"], sh[:, 15, 2])
    assert data["f_rest_16"].tolist() == [20.0 + 1, 120.0 + 1, 220.0 + 1]  # k = 2, channel 1


@pytest.mark.parametrize(("text", "byte_order", "dtype"), [(True, "=", "f4"), (True, "=", "f8"), (False, ">", "f8")])
def test_reads_other_writers_files(tmp_path, rng, text, byte_order, dtype):
    splats = random_splats(rng, 20, 9)
    columns = {name: column.astype(dtype) for name, column in standard_columns(splats).items()}
    for name in ("nx", "ny", "nz"):  # unused by the renderer, so not required
        del columns[name]
    names = list(columns) + ["confidence"]
    columns["confidence"] = rng.integers(0, 255, 20).astype(np.uint8)
    shuffled = {name: columns[name] for name in rng.permutation(names)}
    path = write_vertex(tmp_path / "other.ply", shuffled, text=text, byte_order=byte_order)
    assert_same(read_splat_ply(path), splats)


def test_reads_the_vertex_element_beside_others(tmp_path, rng):
    splats = random_splats(rng, 4, 4)
    rows = np.empty(4, dtype=[(name, "<f4") for name in standard_columns(splats)])
    for name, column in standard_columns(splats).items():
        rows[name] = column
    camera = np.zeros(1, dtype=[("fx", "<f4")])
    PlyData([PlyElement.describe(camera, "camera"), PlyElement.describe(rows, "vertex")]).write(tmp_path / "s.ply")
    assert_same(read_splat_ply(tmp_path / "s.ply"), splats)


def test_missing_file(tmp_path):
    one_line_error(lambda: read_splat_ply(tmp_path / "nothing.ply"), str(tmp_path / "nothing.ply"))
    one_line_error(lambda: read_splat_ply(tmp_path), str(tmp_path))  # a folder


def test_random_bytes(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "garbage.ply"
    for trial in range(60):
        data = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
        path.write_bytes(b"ply\n" + data if trial % 2 else data)
        one_line_error(lambda: read_splat_ply(path), str(path))


def test_corrupted_header(tmp_path, rng):
    """Headers plyfile itself rejects, after the size check passed them: still one line naming the file."""
    path = tmp_path / "bad.ply"
    for header in (
        b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float x\nend_header\n1 2\n3 4\n",
        b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1\nnot-a-number\n",
        b"ply\nformat ascii 2.0\nelement vertex 1\nproperty float x\nend_header\n1\n",
    ):
        path.write_bytes(header)
        one_line_error(lambda: read_splat_ply(path), str(path))


@pytest.mark.parametrize("text", [False, True])
def test_truncated_file(tmp_path, rng, text):
    whole = tmp_path / "whole.ply"
    write_vertex(whole, standard_columns(random_splats(rng, 10, 16)), text=text)
    data = whole.read_bytes()
    header = data.index(b"end_header\n") + len(b"end_header\n")
    path = tmp_path / "cut.ply"
    for cut in (0, 2, 40, header - 5, header, header + 1, (header + len(data)) // 2, len(data) - 20):
        path.write_bytes(data[:cut])
        one_line_error(lambda: read_splat_ply(path), str(path))


def test_bad_f_rest_count(tmp_path, rng):
    columns = standard_columns(random_splats(rng, 5, 4))  # 9 f_rest
    for i in (7, 8):
        del columns[f"f_rest_{i}"]
    path = write_vertex(tmp_path / "seven.ply", columns)
    one_line_error(lambda: read_splat_ply(path), str(path), "7 f_rest")


def test_f_rest_with_a_gap(tmp_path, rng):
    columns = standard_columns(random_splats(rng, 5, 4))
    columns["f_rest_9"] = columns.pop("f_rest_3")
    path = write_vertex(tmp_path / "gap.ply", columns)
    message = one_line_error(lambda: read_splat_ply(path), str(path), "f_rest_3")
    assert "f_rest_9" not in message


def test_missing_rot_3(tmp_path, rng):
    columns = standard_columns(random_splats(rng, 5, 16))
    del columns["rot_3"]
    path = write_vertex(tmp_path / "norot.ply", columns)
    message = one_line_error(lambda: read_splat_ply(path), str(path), "rot_3")
    assert "rot_2" not in message


def test_non_finite_value(tmp_path, rng):
    for value, dtype in ((np.nan, "f4"), (np.inf, "f4"), (1e300, "f8")):
        columns = {name: column.astype(dtype) for name, column in standard_columns(random_splats(rng, 5, 1)).items()}
        columns["opacity"][3] = value
        path = write_vertex(tmp_path / "nan.ply", columns)
        one_line_error(partial(read_splat_ply, path), str(path), "opacity", "vertex 3")


def test_mesh_ply_lists_the_missing_properties(tmp_path, rng):
    vertices = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    faces = np.empty(1, dtype=[("vertex_indices", "O")])
    faces["vertex_indices"][0] = np.array([0, 1, 2], np.int32)
    path = tmp_path / "mesh.ply"
    PlyData([PlyElement.describe(vertices, "vertex"), PlyElement.describe(faces, "face")]).write(path)
    expected = ["f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2",
                "rot_3"]  # fmt: skip
    message = one_line_error(lambda: read_splat_ply(path), str(path), " ".join(expected))
    assert "nx" not in message


def test_no_vertex_element(tmp_path):
    path = tmp_path / "points.ply"
    PlyData([PlyElement.describe(np.zeros(2, dtype=[("x", "<f4")]), "point")]).write(path)
    one_line_error(lambda: read_splat_ply(path), str(path), "no vertex element", "point")


def test_list_property_instead_of_a_number(tmp_path, rng):
    columns = standard_columns(random_splats(rng, 2, 1))
    rows = np.empty(2, dtype=[(name, "<f4") for name in columns if name != "opacity"] + [("opacity", "O")])
    for name, column in columns.items():
        rows[name] = column if name != "opacity" else [np.array([1.0], np.float32)] * 2
    path = tmp_path / "list.ply"
    PlyData([PlyElement.describe(rows, "vertex")]).write(path)
    one_line_error(lambda: read_splat_ply(path), str(path), "opacity")


def test_write_refuses_bad_arrays(tmp_path, rng):
    good = random_splats(rng, 5, 4)
    path = write_splat_ply(tmp_path / "splats.ply", good)
    nan_scales = good.log_scales.copy()
    nan_scales[2, 1] = np.nan
    inf_sh = good.sh.copy()
    inf_sh[4, 3, 2] = -np.inf
    cases = {
        "means": (good._replace(means=good.means[:, :2]), "[5, 2]"),
        "log_scales": (good._replace(log_scales=good.log_scales[:4]), "[4, 3]"),
        "quaternions": (good._replace(quaternions=good.quaternions[:, :3]), "[5, 3]"),
        "opacity_logits": (good._replace(opacity_logits=good.opacity_logits[:, None]), "[5, 1]"),
        "sh": (good._replace(sh=np.zeros((5, 5, 3), np.float32)), "[5, 5, 3]"),
        "sh ": (good._replace(sh=np.zeros((5, 4, 1), np.float32)), "[5, 4, 1]"),
        "log_scales ": (good._replace(log_scales=nan_scales), "NaN"),
        "sh  ": (good._replace(sh=inf_sh), "row 4"),
        "means ": (good._replace(means=np.full((5, 3), "a")), "dtype"),
        "quaternions ": (good._replace(quaternions=[[1.0, 0.0], [1.0]]), "ragged"),
    }
    for field, (splats, part) in cases.items():
        one_line_error(partial(write_splat_ply, path, splats), field.strip(), part)
    assert_same(read_splat_ply(path), good)  # the refused writes left the file as it was
    assert not list(tmp_path.glob(f"*{TEMP_MARK}*"))


def test_write_casts_doubles_to_float32(tmp_path, rng):
    splats = random_splats(rng, 6, 1)
    doubles = SplatArrays(*(array.astype(np.float64) for array in splats))
    assert_same(read_splat_ply(write_splat_ply(tmp_path / "d.ply", doubles)), splats)
