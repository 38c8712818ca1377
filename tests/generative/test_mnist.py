"""The MNIST IDX reader: round trips, the header fields, and one-line refusals of broken files."""

import gzip
import struct

import numpy as np
import pytest

from generative.data.digits import DataConfig, load_split
from generative.data.mnist import FILES, idx_bytes, load_mnist, parse_idx, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 5, 7)) * 50).astype(dtype)
    path = write_idx(tmp_path / f"a-idx3{suffix}", array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (3, 5, 7)
    np.testing.assert_array_equal(back, array)


def test_header_is_the_idx_layout():
    data = idx_bytes(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert data[:4] == bytes([0, 0, 0x0C, 2])
    assert struct.unpack(">II", data[4:12]) == (2, 3)
    assert struct.unpack(">6i", data[12:]) == (0, 1, 2, 3, 4, 5)  # big-endian items
    # a hand-made file in the format of the real label files
    labels = bytes([0, 0, 8, 1]) + struct.pack(">I", 4) + bytes([7, 2, 1, 0])
    np.testing.assert_array_equal(parse_idx(labels), [7, 2, 1, 0])


def test_broken_files_are_refused_with_one_line_naming_the_file(tmp_path):
    good = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    cases = {
        "truncated": good[:-5],
        "trailing": good + b"\x00",
        "header": good[:9],
        "magic": b"\x01\x02" + good[2:],
        "dtype": good[:2] + b"\x07" + good[3:],
        "pickle": b"\x80\x04\x95" + b"cos\nsystem\n(S'echo hacked'\ntR." + b"\x00" * 20,
        "empty": b"",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError) as info:
            read_idx(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message, (name, message)
    gz = tmp_path / "cut.gz"
    gz.write_bytes(gzip.compress(good)[:40])
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(gz)
    notgz = tmp_path / "plain.gz"
    notgz.write_bytes(good)
    with pytest.raises(ValueError, match="plain.gz"):
        read_idx(notgz)


def _fake_mnist(folder, n_train=200, n_test=50, gz=False):
    """A tiny MNIST-format folder: class k is a bright square at a place that depends on k."""
    rng = np.random.default_rng(1)
    suffix = ".gz" if gz else ""
    for part, n in [("train", n_train), ("test", n_test)]:
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 * k : 2 * k + 6, 4:10] = 255
        stem = "train" if part == "train" else "test"
        write_idx(folder / (FILES[f"{stem}_images"] + suffix), images)
        write_idx(folder / (FILES[f"{stem}_labels"] + suffix), labels.astype(np.uint8))
    return folder


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_into_the_digits_split(tmp_path, gz):
    _fake_mnist(tmp_path, gz=gz)
    split = load_mnist(tmp_path, val_size=40)
    assert split.x_train.shape == (160, 1, 28, 28) and split.x_val.shape == (40, 1, 28, 28)
    assert split.x_test.shape == (50, 1, 28, 28) and split.levels == 256
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    assert split.x_train.max() == 1.0 and split.x_train.min() >= 0.0
    assert np.bincount(split.y_val, minlength=10).tolist() == [4] * 10  # stratified
    raw = read_idx(tmp_path / (FILES["test_images"] + (".gz" if gz else "")))
    np.testing.assert_array_equal(split.x_test[:, 0], (raw / 255).astype(np.float32))
    binary = load_split(DataConfig(dataset="mnist", mnist_dir=tmp_path, val_size=40, form="binary"))
    np.testing.assert_array_equal(binary.x_test[:, 0], (raw >= 128).astype(np.float32))


def test_load_mnist_refuses_missing_or_mismatched_files(tmp_path):
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    _fake_mnist(tmp_path)
    write_idx(tmp_path / FILES["test_labels"], np.zeros(7, np.uint8))  # 50 images, 7 labels
    with pytest.raises(ValueError, match="test images"):
        load_mnist(tmp_path, val_size=40)
