"""The procedural body's geometry (notes §13.2): a phenotype vector, the 24-joint skeleton it implies, the
mannequin's implicit surface (a smooth union of capsules, ellipsoids and rounded boxes hung on the bones),
the template mesh extracted from it, and the registration of that template to any other phenotype.

Everything here is our own construction from textbook anthropometric proportions (segment lengths as
fractions of stature); no scan, SMPL or MakeHuman data is used. Body coordinates are SMPL's: metres, +y up,
facing +z, the body's left at +x, rest pose a T-pose with the palms down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from bodies.skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS
from vision3d.extraction import grid_axis, keep_largest_component, mesh_from_grid

#: The phenotype's entries; every one but ``height`` (metres) is a factor around 1.
PHENOTYPE_NAMES: tuple[str, ...] = (
    "height", "leg_length", "arm_length", "torso_length", "shoulder_width", "hip_width", "weight", "arm_girth",
    "leg_girth", "belly", "chest", "head_size", "hand_size", "foot_size", "neck_girth", "waist",
)
PHENOTYPE_MEAN = np.array([1.70] + [1.0] * (len(PHENOTYPE_NAMES) - 1))
PHENOTYPE_STD = np.array([0.08, 0.03, 0.03, 0.03, 0.05, 0.05, 0.10, 0.06, 0.06, 0.12, 0.08, 0.04, 0.05, 0.05, 0.06,
                          0.06])
#: Where the rest pelvis joint sits, as in SMPL's templates.
PELVIS = np.array([0.0, -0.23, 0.0])
_J = {name: k for k, name in enumerate(JOINT_NAMES)}


def sample_phenotypes(rng: np.random.Generator, count: int) -> np.ndarray:  # [count, P]
    """``count`` phenotypes: independent Gaussians (clipped at 2.5 sd) plus the correlations that make bodies
    plausible (heavier people have bigger bellies, waists and necks; taller ones slightly larger hands/feet)."""
    z = np.clip(rng.standard_normal((count, len(PHENOTYPE_NAMES))), -2.5, 2.5)
    ph = PHENOTYPE_MEAN + PHENOTYPE_STD * z
    idx = {name: i for i, name in enumerate(PHENOTYPE_NAMES)}
    heavy, tall = z[:, idx["weight"]], z[:, idx["height"]]
    ph[:, idx["belly"]] += 0.12 * heavy
    ph[:, idx["waist"]] += 0.05 * heavy
    ph[:, idx["neck_girth"]] += 0.04 * heavy
    for name in ("hand_size", "foot_size", "shoulder_width"):
        ph[:, idx[name]] += 0.02 * tall
    return ph


def _unpack(phenotype: np.ndarray) -> dict[str, float]:
    phenotype = np.asarray(phenotype, dtype=np.float64)
    if phenotype.shape != (len(PHENOTYPE_NAMES),):
        raise ValueError(f"phenotype: expected shape [{len(PHENOTYPE_NAMES)}], got {phenotype.shape}")
    return dict(zip(PHENOTYPE_NAMES, phenotype.tolist()))


def skeleton_joints(phenotype: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # [24, 3], [24, 3]
    """The rest (T-pose) joints of a phenotype and the far end of each joint's bone.

    Joint ``k`` drives the bone from itself to ``ends[k]`` (its child, or for the leaves the head top, the
    mitten's tip and the toe tip), as SMPL's ``G_k`` moves the segment below joint ``k``. Lengths are the
    usual fractions of stature (thigh and shank 0.235 H each, upper arm 0.153 H, forearm 0.144 H, ...).
    """
    p = _unpack(phenotype)
    s = p["height"] / 1.70
    leg, arm, torso = s * p["leg_length"], s * p["arm_length"], s * p["torso_length"]
    hip_x, sh_x = 0.082 * s * p["hip_width"], 0.175 * s * p["shoulder_width"]
    hand, foot, head = s * p["hand_size"], s * p["foot_size"], s * p["head_size"]
    left = {
        "left_hip": (hip_x, -0.09 * s, 0.0),
        "left_knee": (0.92 * hip_x, -0.09 * s - 0.40 * leg, 0.008 * s),
        "left_ankle": (0.88 * hip_x, -0.09 * s - 0.80 * leg, -0.02 * s),
        "left_collar": (0.075 * s * p["shoulder_width"], 0.43 * torso, -0.005 * s),
        "left_shoulder": (sh_x, 0.465 * torso, -0.012 * s),
    }
    left["left_foot"] = np.add(left["left_ankle"], (0.012 * s, -0.05 * s, 0.125 * foot))
    left["left_elbow"] = np.add(left["left_shoulder"], (0.26 * arm, -0.004 * s, -0.008 * s))
    left["left_wrist"] = np.add(left["left_elbow"], (0.245 * arm, 0.0, 0.006 * s))
    left["left_hand"] = np.add(left["left_wrist"], (0.085 * hand, -0.004 * s, 0.0))
    joints = np.zeros((NUM_JOINTS, 3))
    for name, xyz in left.items():
        joints[_J[name]] = xyz
        joints[_J[name.replace("left", "right")]] = np.multiply(xyz, (-1.0, 1.0, 1.0))
    joints[_J["spine1"]] = (0.0, 0.115 * torso, -0.015 * s)
    joints[_J["spine2"]] = (0.0, 0.245 * torso, 0.0)
    joints[_J["spine3"]] = (0.0, 0.30 * torso, 0.012 * s)
    joints[_J["neck"]] = (0.0, 0.52 * torso, -0.01 * s)
    joints[_J["head"]] = joints[_J["neck"]] + (0.0, 0.065 * s, 0.025 * s)
    ends = np.zeros_like(joints)
    for k in range(NUM_JOINTS - 1, 0, -1):  # each bone ends at the first child; pelvis -> spine1, spine3 -> neck
        ends[PARENTS[k]] = joints[k]
    ends[0] = joints[_J["spine1"]]
    ends[_J["head"]] = joints[_J["head"]] + (0.0, 0.155 * head, -0.01 * head)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        ends[_J[f"{side}_hand"]] = joints[_J[f"{side}_hand"]] + (sign * 0.10 * hand, 0.0, 0.0)
        ends[_J[f"{side}_foot"]] = joints[_J[f"{side}_foot"]] + (0.0, -0.012 * s, 0.075 * foot)
    return joints + PELVIS, ends + PELVIS


def girth_scales(phenotype: np.ndarray) -> np.ndarray:  # [24, 4]
    """Per joint's bone, how the phenotype scales offsets from the bone: ``(x, y, z in front, z behind)`` in
    body axes (the component along the bone is carried by the bone's length instead)."""
    p = _unpack(phenotype)
    s = p["height"] / 1.70
    w = p["weight"]
    out = np.ones((NUM_JOINTS, 4))
    trunk = {
        "pelvis": (p["hip_width"] ** 0.5 * w, w, w * p["belly"] ** 0.5, w),
        "spine1": (p["waist"] * w, w, w * p["belly"], w),
        "spine2": (p["waist"] ** 0.5 * w, w, w * (p["belly"] * p["chest"]) ** 0.5, w),
        "spine3": (p["shoulder_width"] ** 0.5 * w, w, w * p["chest"], w),
        "neck": (p["neck_girth"] * w**0.5,) * 4,
        "head": (p["head_size"] / s,) * 4,  # the head's size does not follow stature
    }
    for name, value in trunk.items():
        out[_J[name]] = value
    for side in ("left", "right"):
        out[_J[f"{side}_collar"]] = (1.0, w, w, w)
        for name in ("shoulder", "elbow"):
            out[_J[f"{side}_{name}"]] = p["arm_girth"] * w
        for name in ("wrist", "hand"):
            out[_J[f"{side}_{name}"]] = p["hand_size"]
        out[_J[f"{side}_hip"]] = p["leg_girth"] * w
        out[_J[f"{side}_knee"]] = p["leg_girth"] * w**0.6
        for name in ("ankle", "foot"):
            out[_J[f"{side}_{name}"]] = p["foot_size"]
    return out * s  # girths follow stature


# ---------------------------------------------------------------------------------------------- the surface
@dataclass(frozen=True)
class Primitive:
    """One solid of the mannequin: ``kind`` capsule (``a``, ``b``, radii ``r[0]`` -> ``r[1]``), ellipsoid (centre
    ``a``, radii ``r``) or box (centre ``a``, half extents ``r``, corner rounding ``b[0]``)."""

    kind: str
    a: tuple[float, float, float]
    b: tuple[float, float, float]
    r: tuple[float, float, float]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:  # [3], [3]
        a, b, r = np.array(self.a), np.array(self.b), np.array(self.r)
        if self.kind == "capsule":
            return np.minimum(a, b) - max(r), np.maximum(a, b) + max(r)
        return a - r, a + r

    def distance(self, x: np.ndarray) -> np.ndarray:  # [..., 3] -> [...]
        a, b, r = np.array(self.a), np.array(self.b), np.array(self.r)
        if self.kind == "capsule":  # a cone-capsule: the radius runs linearly along the segment
            ab = b - a
            h = np.clip(((x - a) @ ab) / (ab @ ab), 0.0, 1.0)
            return np.linalg.norm(x - a - h[..., None] * ab, axis=-1) - (r[0] + h * (r[1] - r[0]))
        if self.kind == "ellipsoid":  # level set exact, distance scaled by the smallest radius
            return (np.linalg.norm((x - a) / r, axis=-1) - 1.0) * r.min()
        q = np.abs(x - a) - (r - b[0])
        return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(-1), 0.0) - b[0]


def mannequin_primitives(phenotype: np.ndarray) -> list[Primitive]:
    """The solids of the mannequin for one phenotype: torso ellipsoids, buttocks, neck, head with jaw, nose
    and ears, tapered limbs, deltoids and calves, mitten hands with a thumb, and rounded-box feet."""
    J, E = skeleton_joints(phenotype)
    g = girth_scales(phenotype)[:, 0]
    s = _unpack(phenotype)["height"] / 1.70
    P = PELVIS
    out: list[Primitive] = []

    def add(kind: str, a, b, r) -> None:
        a, b, r = (tuple(np.broadcast_to(np.asarray(v, float), (3,)).tolist()) for v in (a, b, r))
        out.append(Primitive(kind, a, b, r))

    def y(name: str) -> float:
        return J[_J[name], 1]

    add("ellipsoid", (0, P[1], -0.01 * s), 0, (0.165 * g[0], 0.125 * s, 0.11 * g[0]))  # hips
    add("ellipsoid", (0, y("spine1") + 0.03 * s, 0.0), 0, (0.14 * g[3], 0.12 * s, 0.10 * g[3]))  # waist, belly
    add("ellipsoid", (0, y("spine2") - 0.01 * s, 0.005 * s), 0, (0.145 * g[6], 0.12 * s, 0.102 * g[6]))  # belly
    add("ellipsoid", (0, y("spine3") + 0.03 * s, 0.0), 0, (0.16 * g[9], 0.15 * s, 0.108 * g[9]))  # chest
    add("capsule", J[_J["right_collar"]] + (-0.06 * s, -0.01, -0.01), J[_J["left_collar"]] + (0.06 * s, -0.01, -0.01),
        (0.06 * s, 0.06 * s, 0))  # shoulder girdle
    for sign, side in ((1.0, "left"), (-1.0, "right")):
        add("ellipsoid", (sign * 0.07 * s, P[1] - 0.05 * s, -0.05 * s), 0, (0.085 * s, 0.095 * s, 0.08 * s))  # buttock
        add("ellipsoid", (sign * 0.055 * s, y("spine3") + 0.04 * s, 0.055 * s), 0, (0.07 * s, 0.06 * s, 0.05 * s))
        sh, el, wr = (J[_J[f"{side}_{n}"]] for n in ("shoulder", "elbow", "wrist"))
        add("ellipsoid", sh + (sign * 0.01, -0.005, 0), 0, (0.065 * s, 0.058 * s, 0.058 * s))  # deltoid
        add("capsule", sh, el, (0.048 * g[16], 0.038 * g[16], 0))
        add("capsule", el, wr, (0.039 * g[18], 0.026 * g[18], 0))
        hs = g[20]
        add("box", wr + (sign * 0.092 * hs, -0.006 * hs, 0), (0.014 * hs, 0, 0), (0.092 * hs, 0.017 * hs, 0.044 * hs))
        add("capsule", wr + (sign * 0.02 * hs, -0.008 * hs, 0.03 * hs), wr + (sign * 0.07 * hs, -0.012 * hs, 0.075 * hs),
            (0.013 * hs, 0.0105 * hs, 0))  # thumb
        hip, kn, an, ft = (J[_J[f"{side}_{n}"]] for n in ("hip", "knee", "ankle", "foot"))
        add("capsule", hip + (0.01 * sign * s, 0.02 * s, 0), kn, (0.09 * g[1], 0.055 * g[4], 0))
        add("capsule", kn, an, (0.052 * g[4], 0.034 * g[4], 0))
        add("ellipsoid", kn + (0.004 * sign, -0.13 * s, -0.025 * s), 0, (0.048 * g[4], 0.1 * s, 0.045 * g[4]))  # calf
        fs = g[7]
        floor = an[1] - 0.07 * s
        toe = E[_J[f"{side}_foot"]]
        heel_z, length = an[2] - 0.065 * fs, toe[2] - an[2] + 0.065 * fs
        add("box", (ft[0], floor + 0.035 * fs, heel_z + length / 2), (0.025 * fs, 0, 0),
            (0.047 * fs, 0.035 * fs, length / 2))
        add("capsule", an + (0, -0.015 * s, -0.005), ft + (0, 0.005, -0.02), (0.042 * fs, 0.036 * fs, 0))  # instep
    hd, nk = J[_J["head"]], J[_J["neck"]]
    hs = g[15]
    add("capsule", nk + (0, -0.03 * s, 0), hd, (0.056 * g[12], 0.05 * g[12], 0))
    center = hd + (0, 0.055 * hs, 0.005 * hs)
    add("ellipsoid", center, 0, (0.077 * hs, 0.105 * hs, 0.094 * hs))  # cranium
    add("ellipsoid", center + (0, -0.06 * hs, 0.035 * hs), 0, (0.058 * hs, 0.055 * hs, 0.06 * hs))  # jaw
    add("capsule", center + (0, 0.005 * hs, 0.088 * hs), center + (0, -0.028 * hs, 0.106 * hs), (0.011 * hs, 0.014 * hs, 0))
    for sign in (1.0, -1.0):
        add("ellipsoid", center + (sign * 0.083 * hs, -0.008 * hs, -0.008 * hs), 0, (0.016 * hs, 0.03 * hs, 0.02 * hs))
    return out


def smooth_union_grid(
    primitives: list[Primitive], resolution: int, bound: float, center: np.ndarray, k: float
) -> np.ndarray:  # [R, R, R] float32, negative inside
    """``f = -k log(sum_i exp(-d_i / k))`` (a symmetric smooth minimum with blend radius ~k) on the grid
    ``center + grid_axis(resolution, bound)^3``. Each solid is evaluated only in its box grown by ``6 k``, where
    its term matters; elsewhere a background term caps the field at ``6 k`` (outside)."""
    axis = grid_axis(resolution, bound)
    margin = 6.0 * k
    total = np.full((resolution,) * 3, np.exp(-margin / k), dtype=np.float64)
    for prim in primitives:
        lo, hi = prim.bounds()
        idx = [np.flatnonzero((axis + c >= l_ - margin) & (axis + c <= h_ + margin)) for c, l_, h_ in zip(center, lo, hi)]
        if any(len(i) == 0 for i in idx):
            continue
        pts = np.stack(np.meshgrid(*(axis[i] + c for i, c in zip(idx, center)), indexing="ij"), axis=-1)
        sl = tuple(slice(i[0], i[-1] + 1) for i in idx)
        total[sl] += np.exp(-np.minimum(prim.distance(pts), margin) / k)
    return (-k * np.log(total)).astype(np.float32)


def template_mesh(phenotype: np.ndarray, resolution: int, target_vertices: int, k: float = 0.012) -> trimesh.Trimesh:
    """The mannequin's surface: marching cubes of :func:`smooth_union_grid` (vision3d's one extraction), the
    largest component kept, then quadric decimation (open3d) down to about ``target_vertices``. Raises
    ``ValueError`` when the result is not one watertight, outward-wound component."""
    import open3d as o3d

    prims = mannequin_primitives(phenotype)
    lo = np.min([p.bounds()[0] for p in prims], axis=0)
    hi = np.max([p.bounds()[1] for p in prims], axis=0)
    center, bound = (lo + hi) / 2, float((hi - lo).max() / 2 + 0.03)
    values = smooth_union_grid(prims, resolution, bound, center, k)
    mesh = keep_largest_component(mesh_from_grid(values, bound))
    mesh = trimesh.Trimesh(mesh.vertices + center, mesh.faces)
    if len(mesh.vertices) > target_vertices:
        o3 = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(mesh.vertices), o3d.utility.Vector3iVector(mesh.faces))
        o3 = o3.simplify_quadric_decimation(target_number_of_triangles=2 * target_vertices - 4)
        o3 = o3.remove_degenerate_triangles().remove_unreferenced_vertices()
        mesh = trimesh.Trimesh(np.asarray(o3.vertices), np.asarray(o3.triangles))
    mesh = keep_largest_component(mesh)
    if not (mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0):
        raise ValueError(f"template_mesh: not a closed outward surface at resolution {resolution}, "
                         f"target_vertices {target_vertices}")
    return mesh


# ------------------------------------------------------------------------------------------------ registration
def bone_frames(joints: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # [24, 3], [24]
    """Unit direction and length of each joint's bone."""
    d = ends - joints
    length = np.linalg.norm(d, axis=1)
    return d / length[:, None], length


def _min_rotation(u: np.ndarray, v: np.ndarray) -> np.ndarray:  # [K, 3], [K, 3] -> [K, 3, 3]
    """The smallest rotation taking unit vectors ``u`` to ``v`` (Rodrigues; the bones never flip)."""
    axis = np.cross(u, v)
    c = np.sum(u * v, axis=1)
    K = np.zeros((len(u), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    K = K - K.transpose(0, 2, 1)
    return np.eye(3) + K + (K @ K) / (1.0 + c)[:, None, None]


def register(
    vertices: np.ndarray,  # [N, 3] the template
    weights: np.ndarray,  # [N, 24]
    phenotype: np.ndarray,  # [P]
    base: np.ndarray,  # [P] the template's phenotype
) -> tuple[np.ndarray, np.ndarray]:  # [N, 3], [24, 3]
    """The template (same topology) deformed to ``phenotype``, and that phenotype's joints.

    Each vertex is written in each of its bones' frames, ``x = J_k + t L_k u_k + r`` (``t`` along the bone,
    ``r`` across it), re-placed on the new skeleton with the new length and the girth scales applied to
    ``r``, and the per-bone placements are blended with the skinning weights. The base phenotype maps to the
    template exactly.
    """
    J0, E0 = skeleton_joints(base)
    J1, E1 = skeleton_joints(phenotype)
    u0, L0 = bone_frames(J0, E0)
    u1, L1 = bone_frames(J1, E1)
    R = _min_rotation(u0, u1)  # [24, 3, 3]
    scale = girth_scales(phenotype) / girth_scales(base)  # [24, 4]
    out = np.zeros_like(vertices)
    for k in np.flatnonzero(weights.max(0) > 0):
        w = weights[:, k]
        sel = w > 0
        rel = vertices[sel] - J0[k]
        t = rel @ u0[k] / L0[k]
        r = rel - (t * L0[k])[:, None] * u0[k]
        sz = np.where(r[:, 2] > 0, scale[k, 2], scale[k, 3])
        r = r * np.stack([np.full_like(sz, scale[k, 0]), np.full_like(sz, scale[k, 1]), sz], axis=1)
        placed = J1[k] + (t * L1[k])[:, None] * u1[k] + r @ R[k].T
        out[sel] += w[sel, None] * placed
    return out, J1


# ------------------------------------------------------------------------------------------------ rig dressing
#: Typical radius of the flesh around each joint's bone (m): distances to bones are measured in these units,
#: so a point on the chest is nearer (relatively) to the spine than to the thin upper arm.
BONE_RADII = np.array([0.13, 0.075, 0.075, 0.12, 0.045, 0.045, 0.13, 0.04, 0.04, 0.14, 0.035, 0.035, 0.055, 0.06,
                       0.06, 0.09, 0.045, 0.045, 0.033, 0.033, 0.03, 0.03, 0.025, 0.025])


def segment_distance(
    x: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float = 1.0, end_scale: float | None = None
) -> np.ndarray:  # [N, 3], [3], [3] -> [N]
    """Distance from points to the segment ``[a, b]``; with ``end_scale`` the part across the segment is measured
    in units of ``radius`` and the part beyond its ends in units of ``end_scale``."""
    ab = b - a
    h = (x - a) @ ab / (ab @ ab)
    hc = np.clip(h, 0.0, 1.0)
    if end_scale is None:
        return np.linalg.norm(x - a - hc[:, None] * ab, axis=1)
    radial = np.linalg.norm(x - a - h[:, None] * ab, axis=1)
    beyond = np.abs(h - hc) * np.linalg.norm(ab)
    return np.hypot(radial / radius, beyond / end_scale)


def vertex_adjacency(faces: np.ndarray, count: int):  # -> scipy sparse [count, count], rows averaging neighbours
    """The mesh's uniform Laplacian smoothing operator: row ``i`` averages the neighbours of vertex ``i``."""
    import scipy.sparse as sp

    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64)
    return sp.diags(1.0 / np.asarray(adj.sum(1)).ravel()) @ adj


def skinning_weights(
    vertices: np.ndarray,  # [N, 3]
    faces: np.ndarray,  # [F, 3]
    joints: np.ndarray,  # [24, 3]
    ends: np.ndarray,  # [24, 3]
    temperature: float = 0.12,
    end_scale: float = 0.025,
    smoothing_length: float = 0.03,
    max_influences: int = 4,
) -> np.ndarray:  # [N, 24]
    """Skinning weights from bone proximity: ``w_k ~ exp(-d_k / temperature)`` with ``d_k`` the distance to joint
    ``k``'s bone (the pelvis also owns the hip-to-hip segment), measured across the bone in units of its flesh
    radius ``r_k`` and beyond its ends in units of ``end_scale`` (so a bone's influence fades within a few cm
    past its joints, however thick it is), then
    half-step Laplacian smoothing on the mesh over about ``smoothing_length`` (the number of steps grows with
    the squared ratio of that length to the mean edge, so the result hardly depends on the resolution), then the
    ``max_influences`` largest kept and renormalised."""
    d = np.stack([segment_distance(vertices, joints[k], ends[k], BONE_RADII[k], end_scale) for k in range(len(joints))],
                 1)
    d[:, 0] = np.minimum(d[:, 0], segment_distance(vertices, joints[1], joints[2], BONE_RADII[0], end_scale))
    logits = -(d - d.min(1, keepdims=True)) / temperature
    w = np.exp(logits)
    w /= w.sum(1, keepdims=True)
    smooth = vertex_adjacency(faces, len(vertices))
    edge = np.linalg.norm(vertices[faces[:, 0]] - vertices[faces[:, 1]], axis=1).mean()
    for _ in range(int(np.ceil(4.0 * (smoothing_length / edge) ** 2))):
        w = 0.5 * w + 0.5 * (smooth @ w)
    drop = np.argsort(-w, axis=1)[:, max_influences:]
    np.put_along_axis(w, drop, 0.0, axis=1)
    w[w < 1e-4] = 0.0
    return w / w.sum(1, keepdims=True)


def _nearest(vertices: np.ndarray, target: np.ndarray, allowed: np.ndarray | None = None) -> int:
    d = np.linalg.norm(vertices - target, axis=1)
    if allowed is not None:
        d = np.where(allowed, d, np.inf)
    return int(np.argmin(d))


def extra_keypoint_vertices(vertices: np.ndarray, weights: np.ndarray, phenotype: np.ndarray) -> np.ndarray:  # [22]
    """Vertex ids of ``skeleton.EXTRA_KEYPOINT_NAMES``: the vertex nearest to a point placed on (or beyond) the
    surface: nose tip, eyes, ears, toes and heels, thumb tip and four points spread across the mitten's end
    (index on the thumb's side, +z, pinky at -z), and the head's top."""
    J, E = skeleton_joints(phenotype)
    center = J[_J["head"]] + (0.0, 0.055, 0.005)
    head = weights[:, _J["head"]] > 0.5
    out = {
        "nose": _nearest(vertices, center + (0.0, -0.03, 0.3), head),
        "head_top": int(np.argmax(np.where(head, vertices[:, 1], -np.inf))),
    }
    for side, sign in (("left", 1.0), ("right", -1.0)):
        out[f"{side}_eye"] = _nearest(vertices, center + (sign * 0.032, 0.0, 0.1), head)
        out[f"{side}_ear"] = _nearest(vertices, center + (sign * 0.2, -0.005, -0.005), head)
        ankle, toe = J[_J[f"{side}_ankle"]], E[_J[f"{side}_foot"]]
        feet = weights[:, _J[f"{side}_foot"]] + weights[:, _J[f"{side}_ankle"]] > 0.5
        floor = ankle[1] - 0.07
        out[f"{side}_big_toe"] = _nearest(vertices, (toe[0] - sign * 0.025, floor + 0.02, toe[2] + 0.1), feet)
        out[f"{side}_small_toe"] = _nearest(vertices, (toe[0] + sign * 0.06, floor + 0.02, toe[2] + 0.02), feet)
        out[f"{side}_heel"] = _nearest(vertices, (ankle[0], floor + 0.01, ankle[2] - 0.2), feet)
        wrist, tip = J[_J[f"{side}_wrist"]], E[_J[f"{side}_hand"]]
        hand = weights[:, _J[f"{side}_hand"]] + weights[:, _J[f"{side}_wrist"]] > 0.5
        out[f"{side}_thumb"] = _nearest(vertices, wrist + (sign * 0.1, -0.012, 0.12), hand)
        for name, z in zip(("index", "middle", "ring", "pinky"), (0.03, 0.01, -0.01, -0.03)):
            out[f"{side}_{name}"] = _nearest(vertices, tip + (sign * 0.1, -0.006, z), hand)
    from bodies.skeleton import EXTRA_KEYPOINT_NAMES

    return np.array([out[name] for name in EXTRA_KEYPOINT_NAMES], dtype=np.int64)


#: Colours of the mannequin's clothes and skin (uint8 RGB).
SKIN, HAIR, EYE = (226, 178, 145), (70, 45, 30), (40, 30, 30)
SHIRT, TROUSERS, SHOES = (48, 98, 168), (52, 58, 76), (92, 52, 30)


def vertex_colors(vertices: np.ndarray, weights: np.ndarray, phenotype: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """``[N, 3]`` uint8: skin on head, neck, forearms and hands, hair on the scalp, dark eyes, a short-sleeved shirt
    on the torso, trousers from the belt to the ankles, shoes on the feet."""
    J, _ = skeleton_joints(phenotype)
    top = np.argmax(weights, axis=1)
    names = np.array(JOINT_NAMES)[top]
    colors = np.tile(np.array(SHIRT, np.uint8), (len(vertices), 1))
    x, yv, z = vertices.T
    belt = J[0, 1] + 0.07
    legs = np.char.find(names, "hip") >= 0
    legs |= np.char.find(names, "knee") >= 0
    colors[(yv < belt) | legs] = TROUSERS
    sleeve = np.abs(x) > np.abs(J[_J["left_shoulder"], 0]) + 0.11
    neckline = (yv > J[_J["neck"], 1] - 0.025 + 0.5 * np.abs(x)) & (np.abs(x) < 0.08)
    skin = sleeve | neckline | np.isin(names, ["neck", "head"]) | (yv > J[_J["neck"], 1] + 0.01)
    colors[skin] = SKIN
    center = J[_J["head"]] + (0.0, 0.055, 0.005)
    hair = (yv > center[1] + 0.025 + 0.3 * np.maximum(z - center[2], 0.0)) | ((yv > center[1] - 0.06) & (z < center[2] - 0.02))
    colors[hair & (names == "head")] = HAIR
    for e in eyes:
        colors[np.linalg.norm(vertices - vertices[e], axis=1) < 0.011] = EYE
    feet = yv < J[_J["left_ankle"], 1] + 0.01
    colors[feet] = SHOES
    return colors
