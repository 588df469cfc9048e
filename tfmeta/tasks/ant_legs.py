"""Ant with varied legs: meta-imitation (gradient-based transfer paper,
section 5.4, Table 2 and appendix A.4).

A task is an upper-leg length and an ankle length, both ``~ U[0.2, 0.6]``
(the same on all four legs). The model is gymnasium's MuJoCo ``Ant`` (the
``ant.xml`` it ships, simulated by its ``Ant-v5`` environment with the
contact forces left out of the observation): each leg's upper-leg capsule,
the position of the ankle body at its end and the ankle capsule are
rescaled along their own direction to the task's lengths (``model_xml``).

* Support: a ``SUPPORT_STEPS`` (30)-step trajectory of a uniformly random
  policy from the environment's reset, as points ``(s_t, a_t) -> s_{t+1}``
  (``support_x [30, 35]``, ``support_y [30, 27]``); the targets get white
  noise ``N(0, sigma^2)``.
* Query: behaviour cloning of an expert policy conditioned on the task's
  lengths (``tfmeta.rl.PPO`` trained by ``experiments/ant_expert.py``):
  ``query_x`` states visited by the expert in that task, ``query_y`` the
  expert's (deterministic) actions there.
* ``rollout``: the reward of per-task policies in the tasks' Ants (Table 2
  reports the reward of the decoded query policy).

Observations are gymnasium's ``Ant-v5`` ones without contact forces (27:
``qpos[2:]`` and ``qvel``), actions 8 torques in ``[-1, 1]``.

Needs the ``mujoco`` extra: ``pip install 'tfmeta[mujoco]'`` (gymnasium
and mujoco from the package registry; nothing is downloaded at run time).
"""

import functools
import os
import pathlib
import tempfile
import xml.etree.ElementTree as ET

import numpy as np
import tensorflow as tf

from tfmeta.checks import positive_int
from tfmeta.tasks.pipeline import task_stream

LENGTH_RANGE = (0.2, 0.6)
"""Upper-leg and ankle lengths ``~ U[0.2, 0.6]`` (appendix A.4)."""
OBS_DIM = 27
"""Observation size: ``qpos[2:]`` (13) and ``qvel`` (14)."""
ACTION_DIM = 8
"""Action size: 8 hip and ankle torques in ``[-1, 1]``."""
SUPPORT_STEPS = 30
"""Steps of the random-policy support trajectory (the paper's ``T``)."""
SUPPORT_DIMS = (OBS_DIM + ACTION_DIM, OBS_DIM)
"""``(state + action, next state)`` sizes of a support point."""
QUERY_DIMS = (OBS_DIM, ACTION_DIM)
"""``(state, expert action)`` sizes of a query point."""
TASK_DIM = 2
"""The task's true dimension: ``(upper-leg length, ankle length)``."""
HORIZON = 200
"""Steps of an episode in ``rollout`` and in the expert's training (ours:
the paper does not give its episode length)."""
EXTRA_HINT = ("the ant_legs tasks need MuJoCo: pip install 'tfmeta[mujoco]' "
              "(gymnasium and mujoco)")
"""The install hint of the ``ImportError`` raised without MuJoCo."""

# (upper-leg geom, ankle geom) of each leg in gymnasium's ant.xml
LEG_GEOMS = (("left_leg_geom", "left_ankle_geom"),
             ("right_leg_geom", "right_ankle_geom"),
             ("back_leg_geom", "third_ankle_geom"),
             ("rightback_leg_geom", "fourth_ankle_geom"))
"""The ``(upper-leg, ankle)`` capsule names of the four legs."""


def _require_mujoco():
    try:
        import mujoco
        import gymnasium.envs.mujoco as envs
        from gymnasium.envs.mujoco.ant_v5 import AntEnv
    except ImportError as err:
        raise ImportError(f"{EXTRA_HINT}; import failed: {err}") from err
    return mujoco, AntEnv, pathlib.Path(envs.__file__).parent / "assets"


@functools.lru_cache(maxsize=None)
def _xml():
    _, _, assets = _require_mujoco()
    return (assets / "ant.xml").read_text()


def check_lengths(upper, ankle):
    """``(upper, ankle)`` as floats, or ``ValueError`` naming the one out of
    ``LENGTH_RANGE``.

    Args:
      upper: upper-leg length.
      ankle: ankle length.
    """
    out = []
    for name, value in (("upper-leg length", upper), ("ankle length", ankle)):
        if isinstance(value, (np.floating, np.integer)):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not np.isfinite(value) \
                or not LENGTH_RANGE[0] <= value <= LENGTH_RANGE[1]:
            raise ValueError(f"the {name} must be a number in "
                             f"[{LENGTH_RANGE[0]}, {LENGTH_RANGE[1]}], got "
                             f"{value!r}.")
        out.append(float(value))
    return tuple(out)


def _vec(text):
    return np.array([float(v) for v in text.split()])


def _fmt(values):
    return " ".join(repr(float(v)) for v in values)


def model_xml(upper, ankle):
    """gymnasium's ``ant.xml`` with every leg's upper-leg capsule of length
    ``upper`` and ankle capsule of length ``ankle`` (each along its own
    direction; the ankle's body moves to the new end of the upper leg).

    Args:
      upper: upper-leg length in ``[0.2, 0.6]``.
      ankle: ankle length in ``[0.2, 0.6]``.
    """
    upper, ankle = check_lengths(upper, ankle)
    root = ET.fromstring(_xml())
    parents = {child: parent for parent in root.iter() for child in parent}
    geoms = {g.get("name"): g for g in root.iter("geom")}
    for upper_name, ankle_name in LEG_GEOMS:
        for name, length in ((upper_name, upper), (ankle_name, ankle)):
            geom = geoms.get(name)
            if geom is None:
                raise RuntimeError(f"gymnasium's ant.xml changed: no geom "
                                   f"{name!r}")
            ends = _vec(geom.get("fromto"))
            direction = ends[3:] - ends[:3]
            end = ends[:3] + direction / np.linalg.norm(direction) * length
            geom.set("fromto", _fmt(np.concatenate([ends[:3], end])))
            if name == upper_name:   # the ankle's body sits at its end
                ankle_body = parents[geoms[ankle_name]]
                ankle_body.set("pos", _fmt(end))
    return ET.tostring(root, encoding="unicode")


def make_env(upper, ankle, **kwargs):
    """gymnasium's ``Ant-v5`` environment (``AntEnv``, no wrappers, contact
    forces left out of the observation) with the task's legs.

    Args:
      upper: upper-leg length in ``[0.2, 0.6]``.
      ankle: ankle length in ``[0.2, 0.6]``.
      **kwargs: more ``AntEnv`` arguments.
    """
    _, AntEnv, _ = _require_mujoco()
    xml = model_xml(upper, ankle)
    kwargs.setdefault("include_cfrc_ext_in_observation", False)
    # AntEnv loads from a path: a file of our own in a directory of our own
    with tempfile.TemporaryDirectory(prefix="tfmeta_ant_") as folder:
        path = os.path.join(folder, "ant.xml")
        with open(path, "w") as f:
            f.write(xml)
        return AntEnv(xml_file=path, **kwargs)


def leg_lengths(model):
    """The ``(upper [4], ankle [4])`` capsule lengths of a compiled MuJoCo
    Ant model (``env.unwrapped.model``), leg by leg.

    Args:
      model: a ``mujoco.MjModel`` of the ant.
    """
    mujoco, _, _ = _require_mujoco()
    out = []
    for names in zip(*LEG_GEOMS):
        out.append(np.array([
            2 * model.geom_size[mujoco.mj_name2id(
                model, mujoco.mjtObj.mjOBJ_GEOM, n)][1] for n in names]))
    return out[0], out[1]


def sample_lengths(rng, n):
    """``n`` tasks ``[n, 2]`` (upper, ankle) ``~ U[0.2, 0.6]^2``.

    Args:
      rng: a ``numpy.random.Generator``.
      n: number of tasks.
    """
    return rng.uniform(*LENGTH_RANGE, size=(n, 2))


def _check_policy_output(actions, n):
    actions = np.asarray(actions, np.float64)
    if actions.shape != (n, ACTION_DIM):
        raise ValueError(f"the policy must return actions of shape "
                         f"[{n}, {ACTION_DIM}], got {list(actions.shape)}.")
    if not np.all(np.isfinite(actions)):
        raise FloatingPointError("the policy returned non-finite actions.")
    return np.clip(actions, -1.0, 1.0)


def random_trajectory(env, rng, steps=SUPPORT_STEPS):
    """A ``steps``-step trajectory of a uniformly random policy from a reset
    of ``env``: ``(x [steps, 35], y [steps, 27])`` with ``x = (s_t, a_t)``,
    ``y = s_{t+1}``. The physics runs on after a termination (the data is
    dynamics, not an episode).

    Args:
      env: an environment of ``make_env``.
      rng: a ``numpy.random.Generator`` (reset noise and actions).
      steps: trajectory length (default 30).
    """
    obs, _ = env.reset(seed=int(rng.integers(2 ** 31)))
    xs, ys = [], []
    for _ in range(steps):
        action = rng.uniform(-1.0, 1.0, ACTION_DIM)
        nxt, *_ = env.step(action)
        xs.append(np.concatenate([obs, action]))
        ys.append(nxt)
        obs = nxt
    return np.asarray(xs, np.float32), np.asarray(ys, np.float32)


def rollout(lengths, policy, horizon=HORIZON, seed=0):
    """One episode of ``horizon`` steps in each task's Ant, all tasks in
    lockstep: ``policy(obs [n, 27]) -> actions [n, 8]`` (row ``i`` for task
    ``i``; clipped to ``[-1, 1]``) is called once a step on the tasks still
    running. Returns ``returns [n]`` (the sum of gymnasium's ``Ant-v5``
    rewards; an episode ends early where the ant is unhealthy) and
    ``steps [n]``.

    Args:
      lengths: ``[n, 2]`` (upper, ankle) per task.
      policy: the per-task policy function.
      horizon: episode length (default 200).
      seed: seed of the resets (default 0).
    """
    lengths = _check_lengths_array(lengths)
    positive_int("horizon", horizon)
    envs = [make_env(u, a) for u, a in lengths]
    obs = np.stack([env.reset(seed=seed * 100_003 + i)[0]
                    for i, env in enumerate(envs)])
    running = np.ones(len(envs), bool)
    returns = np.zeros(len(envs))
    steps = np.zeros(len(envs), int)
    for _ in range(horizon):
        actions = _check_policy_output(policy(obs.astype(np.float32)),
                                       len(envs))
        for i in np.flatnonzero(running):
            obs[i], reward, terminated, _, _ = envs[i].step(actions[i])
            returns[i] += reward
            steps[i] += 1
            running[i] = not terminated
        if not running.any():
            break
    return returns, steps


def _check_lengths_array(lengths):
    lengths = np.asarray(lengths, np.float64)
    if lengths.ndim != 2 or lengths.shape[1] != 2:
        raise ValueError("lengths must be [n, 2] (upper-leg, ankle) per task, "
                         f"got shape {list(lengths.shape)}.")
    for upper, ankle in lengths:
        check_lengths(upper, ankle)
    return lengths


class RandomLegsAnt:
    """An Ant whose legs change at every reset, for training an expert
    conditioned on them: ``reset`` draws new lengths ``~ U[0.2, 0.6]^2`` and
    builds the model; observations are the Ant's 27 with the two lengths
    appended (29); an episode is truncated after ``horizon`` steps.
    gymnasium's ``reset(seed=)`` / ``step(action)`` API.

    Args:
      horizon: episode length (default ``HORIZON``, 200).
      seed: seed of the lengths (a ``reset(seed=)`` reseeds them too).
    """

    def __init__(self, horizon=HORIZON, seed=0):
        _require_mujoco()
        self.horizon = positive_int("horizon", horizon)
        self._rng = np.random.default_rng([seed, 17])
        self.env, self.lengths, self._t = None, None, 0

    def reset(self, seed=None):
        """A new task and its first observation ``(obs [29], info)``.

        Args:
          seed: reseeds the lengths and the Ant's reset noise.
        """
        if seed is not None:
            self._rng = np.random.default_rng([seed, 17])
        self.lengths = sample_lengths(self._rng, 1)[0]
        self.env = make_env(*self.lengths)
        obs, info = self.env.reset(seed=int(self._rng.integers(2 ** 31)))
        self._t = 0
        return np.concatenate([obs, self.lengths]), info

    def step(self, action):
        """gymnasium's ``(obs [29], reward, terminated, truncated, info)``.

        Args:
          action: ``[8]`` torques in ``[-1, 1]``.
        """
        obs, reward, terminated, _, info = self.env.step(action)
        self._t += 1
        return (np.concatenate([obs, self.lengths]), reward, terminated,
                self._t >= self.horizon, info)


# ------------------------------------------------- a fixed, simulated set
def simulate(num_tasks, expert, query_points=200, trajectories=4, seed=0,
             lengths=None):
    """A fixed data set of ``num_tasks`` tasks, simulated once: per task,
    ``trajectories`` random-policy support trajectories of 30 steps
    (``support_x [T, R, 30, 35]``, clean ``support_y [T, R, 30, 27]``) and
    ``query_points`` states the expert visits with its actions there
    (``query_x [T, P, 27]``, ``query_y [T, P, 8]``: episodes of the
    expert's deterministic policy from resets, a new one where the ant
    falls), with ``lengths [T, 2]``.

    Args:
      num_tasks: tasks to simulate (lengths ``~ U[0.2, 0.6]^2``).
      expert: ``expert(obs [n, 27], lengths [n, 2]) -> actions [n, 8]``,
        e.g. ``tfmeta.rl.PPO.conditioned_policy(...)``.
      query_points: expert states per task (default 200).
      trajectories: support trajectories per task (default 4).
      seed: seed of the tasks, resets and random actions (default 0).
      lengths: ``[num_tasks, 2]`` lengths to use instead of drawing them.
    """
    positive_int("num_tasks", num_tasks)
    positive_int("query_points", query_points)
    positive_int("trajectories", trajectories)
    _require_mujoco()
    rng = np.random.default_rng([seed, 15])
    if lengths is None:
        lengths = sample_lengths(rng, num_tasks)
    lengths = _check_lengths_array(lengths)
    if len(lengths) != num_tasks:
        raise ValueError(f"lengths has {len(lengths)} tasks, num_tasks is "
                         f"{num_tasks}.")
    envs = [make_env(u, a) for u, a in lengths]
    sx, sy = [], []
    for env in envs:
        pairs = [random_trajectory(env, rng) for _ in range(trajectories)]
        sx.append(np.stack([p[0] for p in pairs]))
        sy.append(np.stack([p[1] for p in pairs]))
    # the expert's states, all tasks in lockstep (one policy call a step)
    obs = np.stack([env.reset(seed=int(rng.integers(2 ** 31)))[0]
                    for env in envs])
    t = np.zeros(num_tasks, int)
    qx = np.zeros((num_tasks, query_points, OBS_DIM), np.float32)
    qy = np.zeros((num_tasks, query_points, ACTION_DIM), np.float32)
    for p in range(query_points):
        actions = _check_policy_output(
            expert(obs.astype(np.float32), lengths.astype(np.float32)),
            num_tasks)
        qx[:, p], qy[:, p] = obs, actions
        for i, env in enumerate(envs):
            obs[i], _, terminated, _, _ = env.step(actions[i])
            t[i] += 1
            if terminated or t[i] >= HORIZON:
                obs[i] = env.reset(seed=int(rng.integers(2 ** 31)))[0]
                t[i] = 0
    return {"support_x": np.stack(sx), "support_y": np.stack(sy),
            "query_x": qx, "query_y": qy,
            "lengths": lengths.astype(np.float32)}


def _check_sigma(sigma):
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) \
            or not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a non-negative number, got {sigma!r}.")
    return float(sigma)


def sampled_dataset(data, meta_batch_size=10, query_size=50, sigma=0.0,
                    seed=0, start=0):
    """An endless ``tf.data.Dataset`` of task batches drawn from ``data``
    (``simulate``'s arrays), all in the graph: tasks uniformly with
    replacement, one of each task's support trajectories (30 points, targets
    with noise ``N(0, sigma^2)``), ``query_size`` of its expert points
    without replacement; element ``i`` depends on ``(seed, i)`` only. Keys:
    ``support_x``, ``support_y``, ``query_x``, ``query_y``, ``lengths``.

    Args:
      data: ``simulate``'s dict of arrays.
      meta_batch_size: tasks per batch (default 10).
      query_size: expert points per task (default 50), at most the
        simulated ``query_points``.
      sigma: standard deviation of the support targets' noise (default 0).
      seed: seed of the draws (default 0).
      start: index of the first element (default 0; for resuming).
    """
    positive_int("meta_batch_size", meta_batch_size)
    available = data["query_x"].shape[1]
    if positive_int("query_size", query_size) > available:
        raise ValueError(f"query_size ({query_size}) is larger than the "
                         f"{available} expert points simulated per task.")
    sigma = _check_sigma(sigma)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}.")
    arrays = {k: tf.constant(v) for k, v in data.items()}
    num_tasks, trajectories = data["support_x"].shape[:2]

    def batch(i):
        base = tf.stack([tf.constant(seed, tf.int64), i])
        seeds = tf.random.experimental.stateless_split(base, 4)
        tasks = tf.random.stateless_uniform(
            [meta_batch_size], seeds[0], 0, num_tasks, tf.int32)
        which = tf.random.stateless_uniform(
            [meta_batch_size], seeds[1], 0, trajectories, tf.int32)
        pick = tf.stack([tasks, which], -1)
        sx = tf.gather_nd(arrays["support_x"], pick)
        sy = tf.gather_nd(arrays["support_y"], pick)
        sy += sigma * tf.random.stateless_normal(tf.shape(sy), seeds[2])
        scores = tf.random.stateless_uniform([meta_batch_size, available],
                                             seeds[3])
        idx = tf.argsort(scores, axis=1)[:, :query_size]
        qx = tf.gather(tf.gather(arrays["query_x"], tasks), idx, batch_dims=1)
        qy = tf.gather(tf.gather(arrays["query_y"], tasks), idx, batch_dims=1)
        return {"support_x": sx, "support_y": sy, "query_x": qx,
                "query_y": qy, "lengths": tf.gather(arrays["lengths"], tasks)}

    return task_stream(batch, start, autotune=True)


def fixed_batch(data, query_size=None, sigma=0.0, seed=0):
    """Every task of ``data`` (``simulate``) in order, as one NumPy batch:
    its first support trajectory (targets with noise ``N(0, sigma^2)`` drawn
    from ``seed``) and its last ``query_size`` expert points (default all):
    a held-out test set. Keys as ``sampled_dataset``'s.

    Args:
      data: ``simulate``'s dict of arrays.
      query_size: expert points per task (default ``None``: all).
      sigma: standard deviation of the support targets' noise (default 0).
      seed: seed of that noise (default 0).
    """
    sigma = _check_sigma(sigma)
    available = data["query_x"].shape[1]
    query_size = available if query_size is None else \
        positive_int("query_size", query_size)
    if query_size > available:
        raise ValueError(f"query_size ({query_size}) is larger than the "
                         f"{available} expert points simulated per task.")
    rng = np.random.default_rng([seed, 16])
    sy = data["support_y"][:, 0]
    return {"support_x": data["support_x"][:, 0],
            "support_y": (sy + sigma * rng.normal(size=sy.shape)).astype(
                np.float32),
            "query_x": data["query_x"][:, -query_size:],
            "query_y": data["query_y"][:, -query_size:],
            "lengths": data["lengths"]}
