"""Layer 0 (envs/io): atomic files, safe checkpoints, the config serialiser, the run folder, the page."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch

from envs.io.checkpoint import load_checkpoint, pack, save_checkpoint, unpack
from envs.io.config import differences, dumps, from_jsonable, to_jsonable
from envs.io.files import TEMP_MARK, atomic_path, atomic_write_text, remove_stale_temporaries
from envs.io.page import write_index, write_section
from envs.io.run import CHECKPOINT, RunFolder, holds_run, numbered, rng_state, set_rng_state


# ---------------------------------------------------------------------- atomic files
def test_atomic_path_keeps_the_old_file_on_error_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        assert TEMP_MARK in tmp.name and tmp.suffix == ".txt"
        raise RuntimeError
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / f".checkpoint.pt{TEMP_MARK}x1.pt", tmp_path / "sub" / f".mesh.ply{TEMP_MARK}y.ply"]
    for path in stale:
        path.write_bytes(b"partial")
    (tmp_path / "keep.pt").write_bytes(b"keep")
    assert sorted(remove_stale_temporaries(tmp_path, recursive=True)) == sorted(stale)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["keep.pt"]


# ---------------------------------------------------------------------- checkpoints
def test_pack_round_trips_numpy_and_refuses_objects():
    state = {"a": np.arange(6, dtype=np.uint8).reshape(2, 3), "b": np.float32(1.5), "c": [np.array([True, False])],
             "s": np.array(["ab", "c"]), "t": torch.ones(2), "n": None, "tup": (1, "x")}
    back = unpack(pack(state))
    assert back["a"].dtype == np.uint8 and np.array_equal(back["a"], state["a"])
    assert back["b"] == 1.5 and np.array_equal(back["c"][0], [True, False]) and list(back["s"]) == ["ab", "c"]
    assert torch.equal(back["t"], state["t"]) and back["tup"] == (1, "x")

    @dataclass
    class Config:
        x: int = 1

    with pytest.raises(TypeError, match=r"state\['env'\]\[0\].*Config"):
        pack({"env": [Config()]})
    with pytest.raises(TypeError, match="lambda|function"):
        pack({"f": lambda: 0})


class Payload:
    """Pickles to a call of os.system that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("nested", [False, True])
def test_a_malicious_checkpoint_is_refused_without_running(tmp_path, nested):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    payload = Payload(marker)
    torch.save({"agent": {"blob": pickle.dumps(payload)}} if nested else {"step": 1, "x": payload}, path)
    if nested:  # the loader never unpickles nested bytes: they come back as inert bytes
        state = load_checkpoint(path)
        assert isinstance(state["agent"]["blob"], bytes)
    else:
        with pytest.raises(ValueError) as err:
            load_checkpoint(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_corrupted_and_random_checkpoints_are_one_line_errors(tmp_path):
    """Whatever the bytes, the loader answers with one ValueError naming the file. Random bytes reach many
    corners of the unpickler (an early random file gave an IndexError from its memo), so many are tried:
    plain noise, noise after a pickle protocol header (the legacy format's entry), every cut of a real
    checkpoint and single flipped bytes in it."""
    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.ones(3), "step": 2})
    assert load_checkpoint(good)["step"] == 2
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    files = {"missing.pt": None, "cut.pt": data[: len(data) // 2]}
    for i in range(150):
        files[f"noise{i}.pt"] = rng.bytes(int(rng.integers(1, 3000)))
        files[f"pickled{i}.pt"] = bytes([0x80, int(rng.integers(2, 6))]) + rng.bytes(int(rng.integers(1, 300)))
    for cut in range(0, len(data), max(1, len(data) // 60)):
        files[f"cut{cut}.pt"] = data[:cut]
    for i, at in enumerate(rng.integers(0, len(data), 60)):
        flipped = bytearray(data)
        flipped[at] ^= 1 << int(rng.integers(0, 8))
        files[f"flip{i}.pt"] = bytes(flipped)
    for name, content in files.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        try:
            state = load_checkpoint(tmp_path / name)
        except ValueError as err:
            assert name in str(err) and "\n" not in str(err), (name, str(err))
        else:  # a flip in the stored numbers (or padding) still reads: a checkpoint's bytes carry no checksum
            assert name.startswith("flip") and set(state) == {"w", "step"}, name


def test_numpy_files_of_any_bytes_are_read_or_refused_in_one_line(tmp_path):
    """Every cut and many single-bit flips of a compressed .npz, a stored .npz and a .npy: the readers
    return arrays or raise one ValueError line naming the file (BadZipFile, zlib.error, TokenError and
    NotImplementedError escaped the earlier loaders)."""
    import io

    from envs.io.arrays import read_npy, read_npz

    def saved(write) -> bytes:
        buffer = io.BytesIO()
        write(buffer)
        return buffer.getvalue()

    arrays = {"policy": np.arange(50), "Q": np.ones((10, 4))}
    originals = {"zipped.npz": saved(lambda f: np.savez_compressed(f, **arrays)),
                 "stored.npz": saved(lambda f: np.savez(f, **arrays)),
                 "array.npy": saved(lambda f: np.save(f, np.arange(50.0)))}
    path = tmp_path / "original.npz"
    path.write_bytes(originals["zipped.npz"])
    assert read_npz(path, ["policy"]).keys() == {"policy"} and read_npz(path)["Q"].shape == (10, 4)
    rng = np.random.default_rng(0)
    tried = 0
    for kind, data in originals.items():
        variants = [data[:cut] for cut in range(0, len(data), max(1, len(data) // 80))]
        for at in rng.integers(0, len(data), 150):
            flipped = bytearray(data)
            flipped[at] ^= 1 << int(rng.integers(0, 8))
            variants.append(bytes(flipped))
        for i, content in enumerate(variants):
            path = tmp_path / f"{i}-{kind}"
            path.write_bytes(content)
            for read in (read_npz, read_npy):
                tried += 1
                try:
                    read(path)
                except ValueError as err:
                    assert str(path) in str(err) and "\n" not in str(err), str(err)
    assert tried > 1000
    with pytest.raises(ValueError, match="does not exist"):
        read_npz(tmp_path / "missing.npz")


# ---------------------------------------------------------------------- configs
@dataclass
class Inner:
    """x"""

    rate: float = 0.1
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)


@dataclass
class Outer:
    """y"""

    out: Path = Path("runs/x")
    inner: Inner = field(default_factory=Inner)
    steps: int | None = None


def test_config_round_trip_and_one_line_errors_naming_the_field():
    config = Outer(Path("a/b"), Inner(0.5, "b", (3,)), 7)
    assert from_jsonable(Outer, json.loads(dumps(config))) == config
    assert from_jsonable(Outer, {}) == Outer()
    with pytest.raises(ValueError, match=r"config\.inner\.mode.*'c'"):
        from_jsonable(Outer, {"inner": {"mode": "c"}})
    with pytest.raises(ValueError, match=r"config\.inner\.rate"):
        from_jsonable(Outer, {"inner": {"rate": "fast"}})
    with pytest.raises(ValueError, match="unknown field.*bogus"):
        from_jsonable(Outer, {"bogus": 1})
    assert differences(to_jsonable(Outer()), to_jsonable(Outer(steps=3))) == ["steps"]


# ---------------------------------------------------------------------- the run folder
def test_run_folder_refuses_a_second_run_a_reused_folder_and_an_empty_resume(tmp_path):
    with RunFolder(tmp_path / "run", config=Outer()) as run:
        with pytest.raises(ValueError, match="in use by this process"):
            RunFolder(tmp_path / "run", resume=True)
        run.save({"step": 1})
    assert not (tmp_path / "run" / ".lock").exists()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["out"] == "runs/x"
    with pytest.raises(ValueError, match="already holds a run"):
        RunFolder(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="nothing to resume"):
        RunFolder(tmp_path / "empty", resume=True)
    assert not (tmp_path / "empty" / ".lock").exists()
    with RunFolder(tmp_path / "run", resume=True) as again:
        assert again.stored_config["inner"]["mode"] == "a"
    assert holds_run(tmp_path / "run") and numbered(tmp_path / "run") == tmp_path / "run-2"


def test_a_lock_held_by_another_live_process_refuses_and_a_dead_ones_lock_is_replaced(tmp_path):
    folder = tmp_path / "run"
    code = ("import sys, time; from envs.io.run import RunFolder; r = RunFolder(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(30)")
    other = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert other.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=f"in use by process {other.pid}"):
            RunFolder(folder)
    finally:
        other.kill()
        other.wait()
    # the killed process left its lock behind: it is stale and replaced
    assert (folder / ".lock").exists()
    with RunFolder(folder) as run:
        assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
        run.log({"step": 1, "loss": 0.5})
    assert not (folder / ".lock").exists()


def test_rows_and_clock_continue_from_the_checkpoint(tmp_path):
    with RunFolder(tmp_path / "r") as run:
        run.log({"step": 1, "loss": 1.0})
        run.save({"run": run.state_dict()})
        run.log({"step": 2, "loss": 0.5})  # after the checkpoint: lost when the run is killed here
        time.sleep(0.01)
    with RunFolder(tmp_path / "r", resume=True) as run:
        state = run.load(CHECKPOINT)["run"]
        run.load_state_dict(state)
        assert [r["step"] for r in run.rows] == [1]
        assert run.seconds >= state["seconds"]
        assert (tmp_path / "r" / "metrics.csv").read_text().strip().splitlines() == ["step,loss", "1,1.0"]


def test_random_states_round_trip_through_a_checkpoint(tmp_path):
    import random

    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    first = (torch.rand(2), np.random.rand(2), random.random())
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


# ---------------------------------------------------------------------- the demo page
def test_index_orders_sections_by_the_notes_and_escapes_titles(tmp_path):
    write_section(tmp_path / "rl", "11.3", "Late <section>", "second", [{"kind": "video", "file": "a.mp4", "caption": "v"}], command="python -m x demo")
    write_section(tmp_path / "nn", "2", "Early", "first", [{"kind": "image", "file": "b.png", "caption": "i"}], command="python -m x demo")
    write_section(tmp_path / "dp", "11", "Middle", "x", [{"kind": "image", "file": "c.png", "caption": "c", "wide": True}], command="python -m x demo")
    page = write_index(tmp_path).read_text()
    assert page.index("Early") < page.index("Middle") < page.index("Late &lt;section&gt;")
    assert 'src="rl/a.mp4"' in page and 'src="nn/b.png"' in page and "class=wide" in page
    with pytest.raises(ValueError, match="section"):
        write_section(tmp_path / "x", "eleven", "t", "x", [], command="python -m x demo")
    with pytest.raises(ValueError, match="caption"):
        write_section(tmp_path / "x", "1", "t", "x", [{"kind": "image", "file": "a.png"}], command="python -m x demo")


def test_a_section_shows_a_table_with_escaped_cells_and_a_link_to_its_file(tmp_path):
    table = {"kind": "table", "file": "table.md", "caption": "numbers", "columns": ["method", "PSNR"],
             "rows": [["nerf", "24.10"], ["<b>gaussians</b>", "26.30"]]}
    write_section(tmp_path / "v", "12.4", "Tables", "x", [table], command="python -m x demo")
    page = write_index(tmp_path).read_text()
    assert "<th>method</th><th>PSNR</th>" in page and "<td>nerf</td><td>24.10</td>" in page
    assert "<td>&lt;b&gt;gaussians&lt;/b&gt;</td>" in page and 'href="v/table.md"' in page
    with pytest.raises(ValueError, match=r"items\[0\]: a table needs columns and rows of 2 cells"):
        write_section(tmp_path / "v", "12.4", "t", "x", [dict(table, rows=[["nerf"]])], command="python -m x demo")
    with pytest.raises(ValueError, match="a table needs columns"):
        write_section(tmp_path / "v", "12.4", "t", "x", [dict(table, rows=[])], command="python -m x demo")


def test_importing_envs_io_loads_no_heavy_module():
    code = "import sys, envs.io; print(any(m in sys.modules for m in ('torch', 'matplotlib', 'imageio')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.stdout.strip() == "False"
