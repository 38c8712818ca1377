"""Shared PyBullet plumbing for the ``mp/Bullet*`` environments.

Every environment owns one headless physics client (``p.DIRECT``) and passes its id as
``physicsClientId`` to every call, so several environments in one process never share a world.
Pictures come from the CPU tiny renderer (``p.ER_TINY_RENDERER``): no GPU and no display needed.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal, get_args

import gymnasium as gym
import numpy as np
import pybullet as p
from gymnasium import spaces

ObsMode = Literal["state", "pixels"]
MIN_IMAGE_SIZE = 16
GRAVITY = 9.81  # m/s^2, along -z


@dataclass(frozen=True)
class Camera:
    """A fixed pinhole camera; lengths in metres, angles in degrees."""

    eye: tuple[float, float, float]
    """Position of the camera in the world."""
    target: tuple[float, float, float]
    """The point the camera looks at (the image centre)."""
    up: tuple[float, float, float]
    """World direction that points up in the image (not parallel to ``target - eye``)."""
    fov: float
    """Vertical field of view, degrees."""
    near: float = 0.01
    """Near clipping distance."""
    far: float = 20.0
    """Far clipping distance."""

    @cached_property
    def matrices(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """OpenGL view and projection matrices (16 floats each, column-major) for a square image."""
        view = p.computeViewMatrix(self.eye, self.target, self.up)
        return view, p.computeProjectionMatrixFOV(self.fov, 1.0, self.near, self.far)

    def image(self, client_id: int, size: int) -> np.ndarray:
        """The scene of client ``client_id`` as ``uint8 [size, size, 3]`` RGB from the tiny renderer."""
        view, projection = self.matrices
        _, _, rgba, _, _ = p.getCameraImage(
            size, size, view, projection, shadow=0, renderer=p.ER_TINY_RENDERER,
            flags=p.ER_NO_SEGMENTATION_MASK, physicsClientId=client_id,
        )
        return np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[..., :3].copy()


@dataclass(frozen=True)
class Link:
    """One link of a fixed-base multibody and the joint to its parent (``createMultiBody``'s per-link arguments)."""

    mass: float
    """kg."""
    visual: int
    """Visual shape id, or -1."""
    position: tuple[float, float, float]
    """Joint frame in the parent's link frame (URDF convention), m."""
    inertial_position: tuple[float, float, float]
    """Centre of mass in this link's frame, m."""
    inertia: tuple[float, float, float]
    """Diagonal of the inertia tensor about the centre of mass, kg m^2."""
    parent: int
    """0 for the base, ``k + 1`` for link ``k``."""
    joint_type: int
    """``p.JOINT_REVOLUTE`` or ``p.JOINT_PRISMATIC``."""
    axis: tuple[float, float, float]
    """Joint axis in the joint frame."""


# ---------------------------------------------------------------------- argument checks
def check_obs_mode(obs_mode: str) -> ObsMode:
    """``obs_mode`` itself, or ``ValueError`` naming the allowed modes."""
    if obs_mode not in get_args(ObsMode):
        raise ValueError(f"obs_mode must be one of {get_args(ObsMode)}, got {obs_mode!r}")
    return obs_mode  # type: ignore[return-value]


def check_image_size(name: str, size: Any) -> int:
    """``size`` as an int, or ``ValueError`` if it is not an integer >= :data:`MIN_IMAGE_SIZE`."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_IMAGE_SIZE:
        raise ValueError(f"{name} must be an integer >= {MIN_IMAGE_SIZE} (pixels), got {size!r}")
    return int(size)


def box_action(action: Any, space: spaces.Box) -> np.ndarray:
    """``action`` as float64 ``[n]``; ``ValueError`` if its shape differs from ``space`` or a value leaves it."""
    try:
        a = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"action must be an array of shape {space.shape} in [{space.low.min()}, {space.high.max()}], "
                         f"got {action!r}") from None
    if a.shape != space.shape:
        raise ValueError(f"action must have shape {space.shape}, got shape {a.shape}")
    if not (np.all(a >= space.low) and np.all(a <= space.high)):  # also rejects NaN
        raise ValueError(f"action must lie in [{space.low.min()}, {space.high.max()}], got {a.tolist()}")
    return a


def discrete_action(action: Any, n: int) -> int:
    """``action`` as an int, or ``ValueError`` unless it is an integer scalar in ``[0, n)`` (as ``Discrete.contains``)."""
    a = np.asarray(action)
    if a.shape != () or not np.issubdtype(a.dtype, np.integer) or not 0 <= int(a) < n:
        raise ValueError(f"action must be an integer in [0, {n}), got {action!r}")
    return int(a)


# ---------------------------------------------------------------------- the shared environment
class BulletEnv(gym.Env[np.ndarray, Any], ABC):
    """Base of the PyBullet environments: one client, a fixed time step, state or pixel observations.

    Subclasses set :attr:`camera`, implement :meth:`_build` (create the bodies; called once from
    ``__init__``), :meth:`_state_space` and :meth:`_state`, and set ``action_space``. The agent acts
    every :attr:`dt` seconds; physics runs ``substeps`` steps of ``dt / substeps`` in between.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 50}
    dt = 0.02
    camera: Camera

    def __init__(self, obs_mode: ObsMode, image_size: int, render_mode: str | None, render_size: int,
                 substeps: int) -> None:
        self.obs_mode = check_obs_mode(obs_mode)
        self.image_size = check_image_size("image_size", image_size)
        self.render_size = check_image_size("render_size", render_size)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        if isinstance(substeps, bool) or not isinstance(substeps, (int, np.integer)) or substeps < 1:
            raise ValueError(f"substeps must be a positive integer, got {substeps!r}")
        self.render_mode, self.substeps = render_mode, int(substeps)
        self.client_id: int = p.connect(p.DIRECT)
        p.setGravity(0.0, 0.0, -GRAVITY, physicsClientId=self.client_id)
        p.setPhysicsEngineParameter(fixedTimeStep=self.dt / self.substeps, deterministicOverlappingPairs=1,
                                    physicsClientId=self.client_id)
        self._build()
        if self.obs_mode == "state":
            self.observation_space = self._state_space()
        else:
            self.observation_space = spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _build(self) -> None:
        """Create the bodies in ``self.client_id``."""

    @abstractmethod
    def _state_space(self) -> spaces.Box:
        """The observation space of ``obs_mode="state"``."""

    @abstractmethod
    def _state(self) -> np.ndarray:
        """The state observation of the current simulation."""

    # ------------------------------------------------------------------ shared helpers
    def _observe(self) -> np.ndarray:
        if self.obs_mode == "state":
            return self._state()
        return self.camera.image(self.client_id, self.image_size)

    def _body(self, base_visual: int, base_position: tuple[float, float, float], links: list[Link]) -> int:
        """A fixed-base multibody of ``links`` without collision shapes (nothing here touches anything).

        Masses and inertias are set explicitly; links get no default damping and their joints no default
        velocity motor, so only the torques applied in :meth:`_simulate` and gravity act on them.
        """
        n = len(links)
        body = p.createMultiBody(
            baseMass=0.0, baseCollisionShapeIndex=-1, baseVisualShapeIndex=base_visual, basePosition=base_position,
            linkMasses=[link.mass for link in links], linkCollisionShapeIndices=[-1] * n,
            linkVisualShapeIndices=[link.visual for link in links],
            linkPositions=[link.position for link in links], linkOrientations=[(0, 0, 0, 1)] * n,
            linkInertialFramePositions=[link.inertial_position for link in links],
            linkInertialFrameOrientations=[(0, 0, 0, 1)] * n, linkParentIndices=[link.parent for link in links],
            linkJointTypes=[link.joint_type for link in links], linkJointAxis=[link.axis for link in links],
            physicsClientId=self.client_id,
        )
        for j, link in enumerate(links):
            p.changeDynamics(body, j, localInertiaDiagonal=link.inertia, linearDamping=0.0, angularDamping=0.0,
                             jointDamping=0.0, physicsClientId=self.client_id)
        p.setJointMotorControlArray(body, list(range(n)), p.VELOCITY_CONTROL, forces=[0.0] * n,
                                    physicsClientId=self.client_id)
        return body

    def _visual(self, shape: int, rgba: tuple[float, float, float, float], offset: tuple[float, float, float] = (0, 0, 0),
                **size: Any) -> int:
        """A visual shape (``p.GEOM_BOX`` with ``halfExtents``, ``p.GEOM_SPHERE`` with ``radius``, ...)."""
        return p.createVisualShape(shape, rgbaColor=rgba, visualFramePosition=offset, physicsClientId=self.client_id,
                                   **size)

    def _joint_states(self, body: int, joints: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities of ``joints``, each ``float64 [len(joints)]``."""
        states = p.getJointStates(body, joints, physicsClientId=self.client_id)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def _set_joint_states(self, body: int, joints: list[int], q: np.ndarray, qd: np.ndarray) -> None:
        for j, qj, qdj in zip(joints, q, qd):
            p.resetJointState(body, j, float(qj), float(qdj), physicsClientId=self.client_id)

    def _simulate(self, body: int, joints: list[int], torques: np.ndarray) -> None:
        """Hold joint ``torques`` (N or N m) for one agent step of :attr:`dt` seconds.

        A torque set with ``TORQUE_CONTROL`` lasts for one ``stepSimulation`` only, so it is set before each substep.
        """
        forces = [float(t) for t in torques]
        for _ in range(self.substeps):
            p.setJointMotorControlArray(body, joints, p.TORQUE_CONTROL, forces=forces, physicsClientId=self.client_id)
            p.stepSimulation(physicsClientId=self.client_id)

    # ------------------------------------------------------------------ gymnasium API
    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' to gym.make")
            return None
        return self.camera.image(self.client_id, self.render_size)

    def close(self) -> None:
        """Disconnect the physics client; calling it again does nothing."""
        if self.client_id >= 0:
            if p.isConnected(physicsClientId=self.client_id):
                p.disconnect(physicsClientId=self.client_id)
            self.client_id = -1  # pybullet calls with -1 fail, and a later client may reuse the old id

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown may have torn pybullet down already
            self.close()
