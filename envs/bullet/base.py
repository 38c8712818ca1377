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
from gymnasium import spaces

from envs.bullet import import_pybullet
from envs.registration import check_choice, check_integer
from envs.state import np_random_state, set_np_random_state

p = import_pybullet()

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
    return check_choice("obs_mode", obs_mode, get_args(ObsMode))


def check_image_size(name: str, size: Any) -> int:
    """``size`` as an int, or ``ValueError`` if it is not an integer >= :data:`MIN_IMAGE_SIZE`."""
    return check_integer(name, size, MIN_IMAGE_SIZE)


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


# ---------------------------------------------------------------------- the shared environment
class BulletEnv(gym.Env[np.ndarray, Any], ABC):
    """Base of the PyBullet environments: one client, a fixed time step, state or pixel observations.

    Subclasses set :attr:`camera`, implement :meth:`_build` (create the bodies; called once from
    ``__init__``), :meth:`_state_space`, :meth:`_state` and :meth:`_articulation`, and set
    ``action_space``. The agent acts every :attr:`dt` seconds; physics runs ``substeps`` steps of
    ``dt / substeps`` in between.

    ``get_state()`` returns the simulation as plain data (joint positions and velocities, what
    :meth:`_scene_state` adds, ``np_random``) and ``set_state`` puts it back; a simulation restored
    this way continues bit for bit as the original (the bodies have no contacts, so joint positions
    and velocities are all the dynamic state PyBullet keeps for them). ``copy.copy``,
    ``copy.deepcopy`` and ``pickle`` build a new environment with its own physics client from the
    constructor's arguments and that state, so a copy never shares a world with the original.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 50}
    dt = 0.02
    camera: Camera

    def __init__(self, obs_mode: ObsMode, image_size: int, render_mode: str | None, render_size: int,
                 substeps: int, arguments: dict[str, Any]) -> None:
        """``arguments``: the subclass constructor's keyword arguments, to rebuild the environment in a copy."""
        self._arguments = dict(arguments)
        self.obs_mode = check_obs_mode(obs_mode)
        self.image_size = check_image_size("image_size", image_size)
        self.render_size = check_image_size("render_size", render_size)
        self.render_mode = check_choice("render_mode", render_mode, [None, *self.metadata["render_modes"]])
        self.substeps = check_integer("substeps", substeps, 1)
        self.client_id = -1  # so that close() works if connecting fails
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

    @abstractmethod
    def _articulation(self) -> tuple[int, list[int]]:
        """The body whose joints move and those joints' indices, for :meth:`get_state`."""

    def _scene_state(self) -> dict[str, Any]:
        """Hook: what else :meth:`get_state` holds (a target's position, say); plain data."""
        return {}

    def _set_scene_state(self, state: dict[str, Any]) -> None:
        """Hook: the inverse of :meth:`_scene_state`."""

    # ------------------------------------------------------------------ state, copies and pickling
    def get_state(self) -> dict[str, Any]:
        """The simulation as plain data: ``q`` and ``qd`` (float64 ``[J]``), the scene's extras, ``np_random``."""
        if self.client_id < 0:
            raise ValueError(f"this {type(self).__name__} is closed; its state is gone")
        q, qd = self._joint_states(*self._articulation())
        return {"q": q, "qd": qd, **self._scene_state(), "np_random": np_random_state(self)}

    def set_state(self, state: dict[str, Any]) -> None:
        """Put back a :meth:`get_state` of an environment built with the same arguments."""
        body, joints = self._articulation()
        q, qd = (np.asarray(state[k], dtype=np.float64) for k in ("q", "qd"))
        if q.shape != (len(joints),) or qd.shape != (len(joints),):
            raise ValueError(f"state['q'] and state['qd'] must have shape ({len(joints)},), got {q.shape} and {qd.shape}")
        self._set_joint_states(body, joints, q, qd)
        self._set_scene_state(state)
        set_np_random_state(self, state["np_random"])

    def __reduce__(self) -> tuple[Any, ...]:
        """Copies and pickles rebuild the environment (a new physics client) and load the state."""
        if self.client_id < 0:
            raise ValueError(f"cannot copy or pickle a closed {type(self).__name__}")
        return _rebuild, (type(self), self._arguments, self.get_state(), self.spec)

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


def _rebuild(cls: type[BulletEnv], arguments: dict[str, Any], state: dict[str, Any], spec: Any) -> BulletEnv:
    """A new ``cls(**arguments)`` with its own client, in ``state`` (the other half of ``BulletEnv.__reduce__``)."""
    env = cls(**arguments)
    env.set_state(state)
    env.spec = spec
    return env
