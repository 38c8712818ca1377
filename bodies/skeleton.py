"""The skeletons of notes chapter 13: the 24-joint kinematic tree of SMPL-format models (§13.2) and the
14-keypoint tree of the 2D pose methods (§13.1, the LSP layout that pictorial structures, DeepPose and
convolutional pose machines are evaluated on).

Body coordinates are SMPL's: metres, **+y up**, the body faces **+z**, and its left side is at **+x**.
"""

from __future__ import annotations

import numpy as np

#: The 24 joints of SMPL, in SMPL's order (joint 0 is the root; the 23 others carry the pose's rotations).
JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand",
    "right_hand",
)
#: Parent of each joint along the kinematic tree (-1 for the root); row 0 of SMPL's ``kintree_table``.
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
NUM_JOINTS = len(JOINT_NAMES)
NUM_POSE_FEATURES = 9 * (NUM_JOINTS - 1)  # R(theta) - R(theta*) of notes §13.2: 207 values

#: Keypoints read off vertices (``BodyModel(..., extra_vertex_ids)``), named as smplx names SMPL's extra joints.
EXTRA_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel", "left_thumb", "left_index", "left_middle", "left_ring",
    "left_pinky", "right_thumb", "right_index", "right_middle", "right_ring", "right_pinky", "head_top",
)

#: The 14 keypoints of the 2D methods (LSP's set), each a body joint or an extra keypoint by name.
KEYPOINT_NAMES: tuple[str, ...] = (
    "head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
)
#: Tree of the 2D keypoints (pictorial structures' edges ``(i, parent(i))``), rooted at the neck.
KEYPOINT_PARENTS: tuple[int, ...] = (1, -1, 1, 2, 3, 1, 5, 6, 1, 8, 9, 1, 11, 12)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
#: Pairs that define the PCK scales: the torso diameter (left shoulder - right hip, as LSP's PCK) and the
#: head segment (head top - neck, as PCKh).
TORSO_PAIR = (KEYPOINT_NAMES.index("left_shoulder"), KEYPOINT_NAMES.index("right_hip"))
HEAD_PAIR = (KEYPOINT_NAMES.index("head_top"), KEYPOINT_NAMES.index("neck"))
#: Left/right swap of the keypoints (for horizontal flips).
FLIP_PERMUTATION: tuple[int, ...] = tuple(
    KEYPOINT_NAMES.index(n.replace("left", "@").replace("right", "left").replace("@", "right")) for n in KEYPOINT_NAMES
)


def kintree_table() -> np.ndarray:  # [2, 24]
    """SMPL's ``kintree_table``: row 0 the parents (the root's as 2**32 - 1, as SMPL files store it), row 1 the ids."""
    parents = np.array(PARENTS, dtype=np.int64)
    parents[0] = 4294967295
    return np.stack([parents, np.arange(NUM_JOINTS)])


def depth_levels(parents: tuple[int, ...] | np.ndarray = PARENTS) -> list[np.ndarray]:
    """Nodes grouped by depth in the forest ``parents`` (level 0 the roots, ``parents[i] < 0``): each level's parents
    are in the level before. Any order of the nodes; a cycle or an out-of-range parent is a ``ValueError``."""
    parents = np.asarray(parents, dtype=np.int64)
    K = len(parents)
    depth = np.full(K, -1)
    for i in range(K):
        path, j = [], i
        while depth[j] < 0 and parents[j] >= 0:
            if j in path or not 0 <= parents[j] < K:
                raise ValueError(f"parents must describe a forest over {K} nodes, got {parents.tolist()}")
            path.append(j)
            j = parents[j]
        depth[j] = max(depth[j], 0)  # a root
        for p in reversed(path):
            depth[p] = depth[parents[p]] + 1
    return [np.flatnonzero(depth == d) for d in range(int(depth.max()) + 1)]
