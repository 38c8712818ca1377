"""Reading SMPL-format model files without running code from them (notes §13.2's ``T``, ``S``, ``P``, ``W``, ``J``).

Two formats hold the same arrays:

* ``.npz`` (read with ``allow_pickle=False``): ``v_template [N, 3]``, ``shapedirs [N, 3, S]``,
  ``posedirs [N, 3, 207]``, ``J_regressor [24, N]``, ``weights [N, 24]``, ``kintree_table [2, 24]``,
  ``f [F, 3]``; optionally ``extra_vertex_ids [K]`` (vertices read off as keypoints) and ``vertex_colors [N, 3]``.
* the official SMPL ``.pkl`` files (Python 2 pickles of chumpy objects and scipy sparse matrices). A
  pickle can name any function to call, so :class:`SafeUnpickler` resolves only the few names these files
  use (numpy's array reconstruction, scipy's sparse matrices, chumpy's ``Ch``) to inert stand-ins whose
  arrays are read afterwards; any other name stops the load with one line naming the file and the name.
  chumpy itself is never imported.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import scipy.sparse

from bodies.skeleton import EXTRA_KEYPOINT_NAMES, NUM_JOINTS
from envs.io.arrays import read_npz

__all__ = ["SMPL_EXTRA_VERTEX_IDS", "ModelArrays", "SafeUnpickler", "read_model", "read_smpl_pickle"]

#: Keypoint vertices of the 6890-vertex SMPL mesh, in the order of ``skeleton.EXTRA_KEYPOINT_NAMES`` (the ids
#: smplx uses for SMPL's extra joints, then the head top that LSP-style evaluations use).
SMPL_EXTRA_VERTEX_IDS: tuple[int, ...] = (
    332, 6260, 2800, 4071, 583, 3216, 3226, 3387, 6617, 6624, 6787, 2746, 2319, 2445, 2556, 2673, 6191, 5782, 5905,
    6016, 6133, 411,
)
#: smplx's names of the extra joints it reads off vertices (its ``vertex_ids`` keys), by our keypoint names.
SMPLX_NAMES = {"nose": "nose", "right_eye": "reye", "left_eye": "leye", "right_ear": "rear", "left_ear": "lear",
               "left_big_toe": "LBigToe", "left_small_toe": "LSmallToe", "left_heel": "LHeel",
               "right_big_toe": "RBigToe", "right_small_toe": "RSmallToe", "right_heel": "RHeel",
               **{f"{side}_{tip}": f"{side[0]}{tip}" for side in ("left", "right")
                  for tip in ("thumb", "index", "middle", "ring", "pinky")}}
REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


class ModelArrays(NamedTuple):
    """The arrays of an SMPL-format body model (float64, dense), checked for consistent shapes."""

    v_template: np.ndarray  # [N, 3]
    shapedirs: np.ndarray  # [N, 3, S]
    posedirs: np.ndarray  # [N, 3, 9 (J - 1)]
    J_regressor: np.ndarray  # [J, N]
    weights: np.ndarray  # [N, J]
    parents: np.ndarray  # [J] (-1 for the root)
    faces: np.ndarray  # [F, 3] int64
    extra_vertex_ids: np.ndarray | None  # [K] int64
    vertex_colors: np.ndarray | None  # [N, 3] uint8


# ---------------------------------------------------------------------- the restricted unpickler
class _Stub:
    """An inert stand-in for a pickled object: it keeps the state the pickle gives it, nothing else."""

    def __init__(self, *args: Any) -> None:
        self.args, self.state = args, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class ChumpyArray(_Stub):
    """Stand-in for ``chumpy.ch.Ch``: its value is the array in the state's ``x``."""

    def array(self) -> np.ndarray:
        state = self.state[0] if isinstance(self.state, tuple) else self.state
        if not isinstance(state, dict) or not isinstance(state.get("x"), np.ndarray):
            raise ValueError("a chumpy object without an array 'x'")  # noqa: TRY004  (a bad file: one ValueError line)
        return state["x"]


class SparseMatrix(_Stub):
    """Stand-in for a scipy sparse matrix (CSC/CSR/COO): rebuilt from its ``data``/``indices``/``indptr``."""

    def array(self) -> np.ndarray:
        state = self.state if isinstance(self.state, dict) else {}
        shape = state.get("_shape", state.get("shape"))
        fmt = state.get("format", "csc")
        try:
            if fmt == "coo":
                matrix = scipy.sparse.coo_matrix((state["data"], (state["row"], state["col"])), shape=shape)
            else:
                cls = {"csc": scipy.sparse.csc_matrix, "csr": scipy.sparse.csr_matrix}[fmt]
                matrix = cls((state["data"], state["indices"], state["indptr"]), shape=shape)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"a sparse matrix that cannot be rebuilt ({err})") from None
        return np.asarray(matrix.todense())


def _numpy_core(name: str) -> Any:
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    return getattr(core.multiarray, name)


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles written by Python 3 use it for bytes (latin-1 only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refuses to encode with {encoding!r}")
    return text.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    """``copyreg._reconstructor`` for the stand-ins only (anything else was refused by ``find_class``)."""
    if not (isinstance(cls, type) and issubclass(cls, _Stub)) or base is not object:
        raise pickle.UnpicklingError(f"refuses to rebuild {cls!r}")
    return cls.__new__(cls)


class SafeUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays and dtypes, scipy sparse matrices and chumpy arrays (as stand-ins)."""

    ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_core("_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_core("_reconstruct"),
        ("numpy.core.multiarray", "scalar"): lambda: _numpy_core("scalar"),
        ("numpy._core.multiarray", "scalar"): lambda: _numpy_core("scalar"),
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("copyreg", "_reconstructor"): lambda: _reconstructor,
        ("builtins", "object"): lambda: object,
        ("_codecs", "encode"): lambda: _latin1_bytes,
        ("builtins", "set"): lambda: set,  # chumpy's bookkeeping
        ("builtins", "frozenset"): lambda: frozenset,
    }

    PYTHON2: ClassVar[dict[str, str]] = {"copy_reg": "copyreg", "__builtin__": "builtins"}  # module names in the Python 2 pickles of SMPL

    def find_class(self, module: str, name: str) -> Any:
        module = self.PYTHON2.get(module, module)
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]()
        if module.split(".")[0] == "chumpy" and name == "Ch":
            return ChumpyArray
        if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix", "coo_matrix"):
            return SparseMatrix
        raise pickle.UnpicklingError(
            f"refuses to load {module}.{name} (only numpy arrays, scipy sparse matrices and chumpy arrays are allowed)"
        )


def _plain(value: Any) -> Any:
    return value.array() if isinstance(value, (ChumpyArray, SparseMatrix)) else value


def read_smpl_pickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The dictionary of an official SMPL ``.pkl`` with its chumpy and sparse values as numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    try:
        data = SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
        if not isinstance(data, dict):
            raise pickle.UnpicklingError(f"holds a {type(data).__name__}, not the dictionary of an SMPL model")
        return {str(key): _plain(value) for key, value in data.items()}
    except (pickle.UnpicklingError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    except Exception as err:  # noqa: BLE001  (a truncated pickle fails with almost any exception type)
        raise ValueError(f"{path}: not a readable SMPL pickle ({type(err).__name__}: {err})") from None


# ---------------------------------------------------------------------- checking the arrays
def _dense(value: Any) -> np.ndarray:
    return np.asarray(value.todense()) if scipy.sparse.issparse(value) else np.asarray(value)


def _check(path: Path, data: dict[str, Any]) -> ModelArrays:
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)} (an SMPL-format model needs {', '.join(REQUIRED)})")
    arrays = {key: _dense(data[key]) for key in REQUIRED}

    def fail(key: str, expected: str) -> ValueError:
        return ValueError(f"{path}: {key} must be {expected}, got shape {list(arrays[key].shape)}")

    v = arrays["v_template"]
    if v.ndim != 2 or v.shape[1] != 3 or len(v) < 3:
        raise fail("v_template", "[N, 3]")
    N = len(v)
    kintree = arrays["kintree_table"]
    if kintree.ndim != 2 or kintree.shape[0] != 2 or kintree.shape[1] < 1:
        raise fail("kintree_table", "[2, J]")
    J = kintree.shape[1]
    expected = {"shapedirs": (N, 3, None), "posedirs": (N, 3, 9 * (J - 1)), "J_regressor": (J, N), "weights": (N, J),
                "f": (None, 3)}
    for key, shape in expected.items():
        got = arrays[key].shape
        if len(got) != len(shape) or any(e is not None and e != g for e, g in zip(shape, got, strict=True)):
            raise fail(key, "[" + ", ".join("*" if e is None else str(e) for e in shape) + "]")
    parents = kintree[0].astype(np.int64)
    parents[0] = -1
    if np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, J)):
        raise ValueError(f"{path}: kintree_table must list each joint after its parent, got parents {parents.tolist()}")
    faces = arrays["f"].astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= N):
        raise ValueError(f"{path}: f must index the {N} vertices, got ids {faces.min()}..{faces.max()}")
    extra = data.get("extra_vertex_ids")
    if extra is None and N == 6890 and J == NUM_JOINTS:
        extra = SMPL_EXTRA_VERTEX_IDS
    if extra is not None:
        extra = np.asarray(extra, dtype=np.int64).reshape(-1)
        if extra.size and (extra.min() < 0 or extra.max() >= N):
            raise ValueError(f"{path}: extra_vertex_ids must index the {N} vertices, got {extra.min()}..{extra.max()}")
    colors = data.get("vertex_colors")
    if colors is not None and np.shape(colors) != (N, 3):
        raise ValueError(f"{path}: vertex_colors must be [{N}, 3], got shape {list(np.shape(colors))}")
    floats = {key: arrays[key].astype(np.float64) for key in ("v_template", "shapedirs", "posedirs", "J_regressor",
                                                             "weights")}
    if not all(np.isfinite(a).all() for a in floats.values()):
        raise ValueError(f"{path}: holds non-finite values")
    return ModelArrays(**floats, parents=parents, faces=faces, extra_vertex_ids=extra,
                       vertex_colors=None if colors is None else np.asarray(colors, dtype=np.uint8))


def smplx_vertex_ids(path: str | os.PathLike[str]) -> dict[str, int]:
    """A model file's keypoint vertices as smplx's ``vertex_ids`` (so smplx reports the same extra joints)."""
    arrays = read_model(path)
    if arrays.extra_vertex_ids is None:
        raise ValueError(f"{path}: has no extra_vertex_ids")
    return {SMPLX_NAMES[name]: int(i) for name, i in zip(EXTRA_KEYPOINT_NAMES, arrays.extra_vertex_ids, strict=True)
            if name in SMPLX_NAMES}


def write_smpl_pickle(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Write an SMPL-format ``.npz`` as the ``.pkl`` layout of the official files (a dict of plain numpy arrays), so
    that tools that read only SMPL pickles (``smplx.SMPL(model_path=...)``) load it; :func:`read_model` reads it
    back through the restricted unpickler."""
    from envs.io.files import atomic_write_bytes

    data = read_npz(source)
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ValueError(f"{source}: missing {', '.join(missing)}")
    atomic_write_bytes(path, pickle.dumps(dict(data), protocol=2))
    return Path(path)


def read_model(path: str | os.PathLike[str]) -> ModelArrays:
    """The arrays of an SMPL-format model file (``.npz`` or SMPL's ``.pkl``), or one ``ValueError`` line."""
    path = Path(path)
    if path.suffix == ".pkl":
        data = read_smpl_pickle(path)
    elif path.suffix == ".npz":
        data = read_npz(path)
    else:
        raise ValueError(f"{path}: expected an SMPL-format model file ending in .npz or .pkl")
    arrays = _check(path, data)
    if arrays.extra_vertex_ids is not None and len(arrays.extra_vertex_ids) not in (0, len(EXTRA_KEYPOINT_NAMES)):
        raise ValueError(f"{path}: extra_vertex_ids must hold {len(EXTRA_KEYPOINT_NAMES)} ids "
                         f"({', '.join(EXTRA_KEYPOINT_NAMES)}), got {len(arrays.extra_vertex_ids)}")
    return arrays
