"""A two-link planar arm reaching a target in PyBullet (Gymnasium's Reacher), with a scripted controller."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.bullet import import_pybullet
from envs.bullet.base import BulletEnv, Camera, Link, ObsMode, box_action
from envs.registration import check_number

p = import_pybullet()

LINK_LENGTHS = (0.1, 0.1)  # m
LINK_MASS = 0.1  # kg, each link a uniform rod
TARGET_RADIUS = 0.2  # m, targets are drawn uniformly from the disc of this radius (the arm's reach)
ARM_HEIGHT = 0.02  # m, the arm moves in the horizontal plane z = ARM_HEIGHT
CTRL_COST = 0.1
SHOULDER, ELBOW = 0, 1


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angles mapped to ``[-pi, pi)``, elementwise."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def forward_kinematics(q: np.ndarray, lengths: tuple[float, float] = LINK_LENGTHS) -> np.ndarray:
    """Fingertip ``[2]`` (x, y) of the planar arm with joint angles ``q`` ``[2]`` (shoulder, elbow)."""
    l1, l2 = lengths
    return np.array([l1 * math.cos(q[0]) + l2 * math.cos(q[0] + q[1]),
                     l1 * math.sin(q[0]) + l2 * math.sin(q[0] + q[1])])


def inverse_kinematics(xy: np.ndarray, lengths: tuple[float, float] = LINK_LENGTHS) -> np.ndarray:
    """Both joint solutions ``[2, 2]`` (elbow up, elbow down; rows are ``(shoulder, elbow)``) reaching ``xy`` ``[2]``.

    Law of cosines: ``cos q2 = (r^2 - l1^2 - l2^2) / (2 l1 l2)``, clipped to [-1, 1], so a point out
    of reach gives the closest pose (arm stretched towards it, or folded for the origin);
    ``q1 = atan2(y, x) - atan2(l2 sin q2, l1 + l2 cos q2)``.
    """
    l1, l2 = lengths
    x, y = float(xy[0]), float(xy[1])
    cos_q2 = np.clip((x * x + y * y - l1 * l1 - l2 * l2) / (2 * l1 * l2), -1.0, 1.0)
    solutions = []
    for q2 in (math.acos(cos_q2), -math.acos(cos_q2)):
        q1 = math.atan2(y, x) - math.atan2(l2 * math.sin(q2), l1 + l2 * math.cos(q2))
        solutions.append((q1, q2))
    return wrap_angle(np.array(solutions))


class BulletReacherEnv(BulletEnv):
    """Move the fingertip of a two-link planar arm onto a target, simulated by PyBullet.

    ## Description
    Gymnasium's Reacher rebuilt as a PyBullet multibody: two 0.1 m, 0.1 kg links on revolute
    joints about the vertical axis (no limits, no friction; gravity does no work in the plane).
    A target sphere lies in the arm's plane. The agent acts every ``dt = 0.02`` s with joint
    torques held for ``substeps`` physics steps. :class:`ScriptedReacher` solves the task.

    ## Action Space
    ``Box(-1, 1, (2,), float32)``: shoulder and elbow torques as fractions of ``max_torque``
    (N m). A wrong shape or a value outside ``[-1, 1]`` raises ``ValueError``.

    ## Observation Space
    ``obs_mode="state"`` (default): ``Box((10,), float32)``, Gymnasium's Reacher-v5 layout:
    ``[cos q1, cos q2, sin q1, sin q2, target x, target y, q1_dot, q2_dot, fingertip x - target x,
    fingertip y - target y]`` (rad, m, rad/s); ``q2`` is the elbow angle relative to the first link.
    ``obs_mode="pixels"``: ``Box(0, 255, (image_size, image_size, 3), uint8)``, a top-down view
    (+x right, +y up) of the arm (blue, green fingertip) and the target (red).

    ## Rewards
    ``-||fingertip - target|| - 0.1 * ||action||^2`` after the step (metres; ``info`` holds
    ``reward_dist``, ``reward_ctrl`` and ``distance``).

    ## Episode End
    Never terminated; truncated after 50 steps (1 s) by the registered ``max_episode_steps``.
    The episode starts with joint angles uniform in ``[-0.1, 0.1]`` rad, joint velocities uniform
    in ``[-0.005, 0.005]`` rad/s and the target uniform over the disc of radius 0.2 m, all drawn
    with ``self.np_random``.

    ## Arguments
    ``obs_mode`` (``"state"`` or ``"pixels"``), ``image_size`` (side of pixel observations, >= 16),
    ``render_mode`` (``None`` or ``"rgb_array"``), ``render_size`` (side of rendered frames),
    ``max_torque`` (N m), ``substeps`` (physics steps per agent step).
    ``env.unwrapped.client_id`` is this environment's own PyBullet client. ``set_physics(q, qd,
    target)`` puts the arm and target in a chosen state; ``get_state``/``set_state`` (see
    :class:`~envs.bullet.base.BulletEnv`) save and restore everything, random generator included.

    ## Version History
    * v0: initial release.
    """

    camera = Camera(eye=(0.0, 0.0, 0.7), target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0),
                    fov=2 * math.degrees(math.atan2(TARGET_RADIUS + 0.03, 0.7 - ARM_HEIGHT)))
    link_lengths = LINK_LENGTHS

    def __init__(self, *, obs_mode: ObsMode = "state", image_size: int = 64, render_mode: str | None = None,
                 render_size: int = 256, max_torque: float = 0.1, substeps: int = 4) -> None:
        arguments = {"obs_mode": obs_mode, "image_size": image_size, "render_mode": render_mode,
                     "render_size": render_size, "max_torque": max_torque, "substeps": substeps}
        self.max_torque = check_number("max_torque", max_torque, positive=True, unit="N m")
        super().__init__(obs_mode, image_size, render_mode, render_size, substeps, arguments)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _build(self) -> None:
        l1, l2 = self.link_lengths
        v, blue = self._visual, (0.2, 0.3, 0.8, 1.0)
        # No floor: the tiny renderer shades every covered pixel, and a floor filling the frame made pixel
        # observations four times slower; the arm and target stand out on the white background.
        hub = v(p.GEOM_CYLINDER, (0.2, 0.2, 0.2, 1.0), radius=0.015, length=0.01)
        link1 = v(p.GEOM_BOX, blue, offset=(l1 / 2, 0, 0), halfExtents=(l1 / 2, 0.008, 0.008))
        link2 = p.createVisualShapeArray(
            shapeTypes=[p.GEOM_BOX, p.GEOM_SPHERE], halfExtents=[(l2 / 2, 0.008, 0.008), (0, 0, 0)], radii=[0, 0.012],
            rgbaColors=[blue, (0.1, 0.7, 0.2, 1.0)], visualFramePositions=[(l2 / 2, 0, 0), (l2, 0, 0)],
            physicsClientId=self.client_id,
        )

        def rod(length: float) -> tuple[float, float, float]:  # uniform rod along x, about its centre
            return 1e-6, LINK_MASS * length**2 / 12, LINK_MASS * length**2 / 12

        self.arm = self._body(hub, (0.0, 0.0, ARM_HEIGHT), [
            Link(mass=LINK_MASS, visual=link1, position=(0, 0, 0), inertial_position=(l1 / 2, 0, 0),
                 inertia=rod(l1), parent=0, joint_type=p.JOINT_REVOLUTE, axis=(0, 0, 1)),
            Link(mass=LINK_MASS, visual=link2, position=(l1, 0, 0), inertial_position=(l2 / 2, 0, 0),
                 inertia=rod(l2), parent=1, joint_type=p.JOINT_REVOLUTE, axis=(0, 0, 1)),
        ])
        ball = v(p.GEOM_SPHERE, (0.9, 0.1, 0.1, 1.0), radius=0.015)
        self.target_body = p.createMultiBody(0.0, -1, ball, (0.0, 0.0, ARM_HEIGHT), physicsClientId=self.client_id)
        self.target = np.zeros(2)

    def _state_space(self) -> spaces.Box:
        big = np.finfo(np.float32).max  # velocities are unbounded; Gymnasium's checker warns on inf bounds
        reach = TARGET_RADIUS + sum(self.link_lengths) + 0.01  # bound on fingertip - target, with slack for rounding
        high = np.array([1, 1, 1, 1, TARGET_RADIUS, TARGET_RADIUS, big, big, reach, reach], np.float32)
        return spaces.Box(-high, high, dtype=np.float32)

    def fingertip(self) -> np.ndarray:
        """Fingertip ``[2]`` (x, y) in the world, from the simulated pose of the second link."""
        state = p.getLinkState(self.arm, ELBOW, computeForwardKinematics=True, physicsClientId=self.client_id)
        position, orientation = np.asarray(state[4]), state[5]
        rotation = np.asarray(p.getMatrixFromQuaternion(orientation)).reshape(3, 3)
        return (position + rotation[:, 0] * self.link_lengths[1])[:2]

    def _state(self) -> np.ndarray:
        q, qd = self._joint_states(self.arm, [SHOULDER, ELBOW])
        tip = self.fingertip()
        return np.concatenate([np.cos(q), np.sin(q), self.target, qd, tip - self.target]).astype(np.float32)

    def _articulation(self) -> tuple[int, list[int]]:
        return self.arm, [SHOULDER, ELBOW]

    def _scene_state(self) -> dict[str, Any]:
        return {"target": self.target.copy()}

    def _set_scene_state(self, state: dict[str, Any]) -> None:
        self._place_target(state["target"])

    def _place_target(self, target: np.ndarray) -> None:
        target = np.asarray(target, np.float64)
        if target.shape != (2,):
            raise ValueError(f"target must have shape (2,), got {target.shape}")
        self.target = target.copy()
        p.resetBasePositionAndOrientation(self.target_body, (*self.target, ARM_HEIGHT), (0, 0, 0, 1),
                                          physicsClientId=self.client_id)

    def set_physics(self, q: np.ndarray, qd: np.ndarray, target: np.ndarray) -> None:
        """Put the arm at joint angles ``q`` ``[2]`` and velocities ``qd`` ``[2]``, the target at ``target`` ``[2]``."""
        self._set_joint_states(self.arm, [SHOULDER, ELBOW], np.asarray(q, float), np.asarray(qd, float))
        self._place_target(target)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        q = self.np_random.uniform(-0.1, 0.1, size=2)
        qd = self.np_random.uniform(-0.005, 0.005, size=2)
        radius = TARGET_RADIUS * math.sqrt(self.np_random.uniform())  # uniform over the disc
        angle = self.np_random.uniform(-math.pi, math.pi)
        self.set_physics(q, qd, radius * np.array([math.cos(angle), math.sin(angle)]))
        return self._observe(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = box_action(action, self.action_space)
        self._simulate(self.arm, [SHOULDER, ELBOW], self.max_torque * a)
        distance = float(np.linalg.norm(self.fingertip() - self.target))
        reward_ctrl = -CTRL_COST * float(a @ a)
        info = {"reward_dist": -distance, "reward_ctrl": reward_ctrl, "distance": distance}
        return self._observe(), -distance + reward_ctrl, False, False, info


@dataclass
class ScriptedReacher:
    """A hand-written controller for :class:`BulletReacherEnv`: ``act(obs)`` on the *state* observation.

    Analytic inverse kinematics (:func:`inverse_kinematics`) turns the target into joint angles,
    taking the solution nearer the current pose; a PD law on the wrapped joint-angle error,
    ``a = clip(kp * (q* - q) - kd * q_dot, -1, 1)``, gives the normalised torques. The default gains
    suit the default ``max_torque = 0.1`` N m.
    """

    kp: tuple[float, float] = (2.5, 1.0)
    """Proportional gains, action units per radian (shoulder, elbow)."""
    kd: tuple[float, float] = (0.4, 0.03)
    """Derivative gains, action units per rad/s (shoulder, elbow)."""
    link_lengths: tuple[float, float] = LINK_LENGTHS
    """Link lengths of the arm, m."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Normalised torques ``float32 [2]`` for a state observation ``[10]``."""
        obs = np.asarray(obs, np.float64)
        if obs.shape != (10,):
            raise ValueError(f"obs must be a state observation of shape (10,), got shape {obs.shape}")
        q = np.arctan2(obs[2:4], obs[0:2])
        candidates = inverse_kinematics(obs[4:6], self.link_lengths)
        errors = wrap_angle(candidates - q)
        error = errors[np.argmin(np.abs(errors).sum(axis=1))]
        action = np.asarray(self.kp) * error - np.asarray(self.kd) * obs[6:8]
        return np.clip(action, -1.0, 1.0).astype(np.float32)
