"""A cart-pole in PyBullet: Gymnasium's CartPole (Barto, Sutton & Anderson 1983) in 3D rigid-body physics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.bullet import import_pybullet
from envs.bullet.base import BulletEnv, Camera, Link, ObsMode, box_action
from envs.registration import check_bool, check_number, discrete_action

p = import_pybullet()

CART_MASS = 1.0  # kg, as Gymnasium's CartPole
POLE_MASS = 0.1  # kg
POLE_LENGTH = 1.0  # m, a uniform rod pivoted at one end (Gymnasium's "length" is half of it)
RAIL_HEIGHT = 0.3  # m, height of the pivot above the ground
X_THRESHOLD = 2.4  # m
THETA_THRESHOLD = 12 * 2 * math.pi / 360  # rad
CART, POLE = 0, 1  # joint (= link) indices: the prismatic cart joint, the revolute pole joint


def cartpole_accelerations(x_dot: float, theta: float, theta_dot: float, force: float,
                           g: float = 9.81) -> tuple[float, float]:
    """``(x_ddot, theta_ddot)`` of the frictionless cart-pole (Florian 2007, as Gymnasium's CartPole).

    The pole is a uniform rod of :data:`POLE_LENGTH` pivoted at its lower end; ``theta`` is its
    angle from upright, positive leaning towards +x; ``force`` pushes the cart along +x.
    A reference for the simulated physics; the environment itself steps PyBullet.
    """
    del x_dot  # no friction: the velocity of the cart does not enter
    total = CART_MASS + POLE_MASS
    half = POLE_LENGTH / 2
    sin, cos = math.sin(theta), math.cos(theta)
    temp = (force + POLE_MASS * half * theta_dot**2 * sin) / total
    theta_ddot = (g * sin - cos * temp) / (half * (4.0 / 3.0 - POLE_MASS * cos**2 / total))
    return temp - POLE_MASS * half * theta_ddot * cos / total, theta_ddot


class BulletCartPoleEnv(BulletEnv):
    """Balance a pole on a cart that slides along a rail, simulated by PyBullet.

    ## Description
    Gymnasium's CartPole rebuilt as a PyBullet multibody: a cart of 1 kg on a frictionless
    prismatic joint along the world x axis carries a 1 m, 0.1 kg uniform pole on a revolute
    joint about the y axis. The agent pushes the cart left or right. Physics runs at
    ``dt / substeps`` (default 1/200 s); the agent acts every ``dt = 0.02`` s, as in Gymnasium.

    ## Action Space
    ``continuous=False`` (default): ``Discrete(2)``, 0 pushes the cart towards -x and 1 towards
    +x with ``force_mag`` newtons. ``continuous=True``: ``Box(-1, 1, (1,), float32)``, the force
    as a fraction of ``force_mag``. Anything else raises ``ValueError``.

    ## Observation Space
    ``obs_mode="state"`` (default): ``Box((4,), float32)`` holding ``[x, x_dot, theta,
    theta_dot]`` (m, m/s, rad, rad/s), ``theta`` positive when the pole leans towards +x.
    ``obs_mode="pixels"``: ``Box(0, 255, (image_size, image_size, 3), uint8)``, a side view from a
    fixed camera showing the rail from x = -2.4 to 2.4 m. One frame holds no velocities; stack
    frames (``gymnasium.wrappers.FrameStackObservation``) to learn from pixels.

    ## Rewards
    +1 for every step, including the one that ends the episode.

    ## Episode End
    Terminated when ``|theta| > 12`` degrees or ``|x| > 2.4`` m. Truncated after 500 steps by the
    registered ``max_episode_steps``. The episode starts with all four state variables drawn
    uniformly from ``[-0.05, 0.05]`` with ``self.np_random``.

    ## Arguments
    ``continuous``, ``obs_mode`` (``"state"`` or ``"pixels"``), ``image_size`` (side of pixel
    observations, >= 16), ``render_mode`` (``None`` or ``"rgb_array"``), ``render_size`` (side
    of rendered frames), ``force_mag`` (newtons), ``substeps`` (physics steps per agent step).
    ``env.unwrapped.client_id`` is this environment's own PyBullet client. ``set_physics([x, x_dot,
    theta, theta_dot])`` puts the system in a chosen state; ``get_state``/``set_state`` (see
    :class:`~envs.bullet.base.BulletEnv`) save and restore everything, random generator included.

    ## Version History
    * v0: initial release.
    """

    camera = Camera(eye=(0.0, -6.0, RAIL_HEIGHT + 0.5), target=(0.0, 0.0, RAIL_HEIGHT + 0.5), up=(0.0, 0.0, 1.0),
                    fov=2 * math.degrees(math.atan2(X_THRESHOLD + 0.3, 6.0)))

    def __init__(self, *, continuous: bool = False, obs_mode: ObsMode = "state", image_size: int = 64,
                 render_mode: str | None = None, render_size: int = 256, force_mag: float = 10.0,
                 substeps: int = 4) -> None:
        arguments = {"continuous": continuous, "obs_mode": obs_mode, "image_size": image_size, "render_mode": render_mode,
                     "render_size": render_size, "force_mag": force_mag, "substeps": substeps}
        self.continuous = check_bool("continuous", continuous)
        self.force_mag = check_number("force_mag", force_mag, positive=True, unit="newtons")
        super().__init__(obs_mode, image_size, render_mode, render_size, substeps, arguments)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32) if self.continuous else spaces.Discrete(2)

    def _build(self) -> None:
        v = self._visual
        rail = v(p.GEOM_BOX, (0.3, 0.3, 0.3, 1.0), halfExtents=(X_THRESHOLD + 0.3, 0.02, 0.02))
        cart = v(p.GEOM_BOX, (0.2, 0.3, 0.8, 1.0), halfExtents=(0.25, 0.1, 0.15))
        # Drawn 0.16 m thick (about 2 pixels at image_size=64) so that small images show it; the
        # inertia below is that of a thin rod, as in Gymnasium.
        pole = v(p.GEOM_BOX, (0.8, 0.5, 0.2, 1.0), offset=(0.0, 0.0, POLE_LENGTH / 2),
                 halfExtents=(0.08, 0.08, POLE_LENGTH / 2))
        rod = POLE_MASS * POLE_LENGTH**2 / 12  # about the centre of mass
        self.body = self._body(rail, (0.0, 0.0, RAIL_HEIGHT), [
            Link(mass=CART_MASS, visual=cart, position=(0, 0, 0), inertial_position=(0, 0, 0),
                 inertia=(0.01, 0.01, 0.01), parent=0, joint_type=p.JOINT_PRISMATIC, axis=(1, 0, 0)),
            Link(mass=POLE_MASS, visual=pole, position=(0, 0, 0), inertial_position=(0, 0, POLE_LENGTH / 2),
                 inertia=(rod, rod, 1e-6), parent=1, joint_type=p.JOINT_REVOLUTE, axis=(0, 1, 0)),
        ])

    def _state_space(self) -> spaces.Box:
        big = np.finfo(np.float32).max  # velocities are unbounded; Gymnasium's checker warns on inf bounds
        high = np.array([2 * X_THRESHOLD, big, 2 * THETA_THRESHOLD, big], np.float32)
        return spaces.Box(-high, high, dtype=np.float32)

    def _state(self) -> np.ndarray:
        q, qd = self._joint_states(self.body, [CART, POLE])
        return np.array([q[0], qd[0], q[1], qd[1]], np.float32)

    def _articulation(self) -> tuple[int, list[int]]:
        return self.body, [CART, POLE]

    def set_physics(self, state: np.ndarray) -> None:
        """Put the system in ``state = [x, x_dot, theta, theta_dot]`` (``[4]``)."""
        x, x_dot, theta, theta_dot = np.asarray(state, np.float64)
        self._set_joint_states(self.body, [CART, POLE], np.array([x, theta]), np.array([x_dot, theta_dot]))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.set_physics(self.np_random.uniform(-0.05, 0.05, size=4))
        return self._observe(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.continuous:
            force = self.force_mag * float(box_action(action, self.action_space)[0])
        else:
            force = self.force_mag if discrete_action(action, 2) == 1 else -self.force_mag
        self._simulate(self.body, [CART, POLE], np.array([force, 0.0]))
        q, _ = self._joint_states(self.body, [CART, POLE])
        terminated = bool(abs(q[0]) > X_THRESHOLD or abs(q[1]) > THETA_THRESHOLD)
        return self._observe(), 1.0, terminated, False, {}
