"""Single -> double inverted pendulum transfer (gradient-based transfer
paper, section 5.3, Table 4 and Figure 3).

A task is a pole length ``L`` and a gravity ``g``. Its support is one-step
dynamics of gymnasium's MuJoCo ``InvertedPendulum`` with that pole and
gravity, its query the same for ``InvertedDoublePendulum`` (both poles of
length ``L``, the same ``g``): the MJCF models that gymnasium ships are
edited (pole geometry, the second pole's position, the tip site and the
``gravity`` option) and simulated with ``mujoco`` as gymnasium's ``step``
does (RK4, ``frame_skip`` 2 and 5, each model's own actuator).

* Inputs ``(state, action)``: states ``x, x_dot, theta, theta_dot`` (the
  double pendulum adds ``theta2, theta2_dot``), drawn uniformly from a box
  (``STATE_BOX``: our choice, the paper does not say how states were
  drawn), actions uniform in ``[-3, 3]`` (the double pendulum's actuator
  clips them to its ``ctrlrange`` of ``[-1, 1]``, as in gymnasium).
* Targets: the next state. The support targets get white noise
  ``N(0, sigma^2)``.
* ``parameter_tasks`` (Figure 3): the query is the task's ``(L, g)`` itself
  (``query_x`` a single zero input, ``query_y [B, 1, 2]``).

Task parameters: ``L ~ U[0.3, 0.9]`` m, ``g ~ U[5, 15]`` m/s^2 (our ranges;
gymnasium's default model has ``L = 0.6``, ``g = 9.81``).

Needs the ``mujoco`` extra: ``pip install 'tfmeta[mujoco]'`` (gymnasium
and mujoco from the package registry; nothing is downloaded at run time).
"""

import functools
import pathlib
import re
import threading

import numpy as np
import tensorflow as tf

from tfmeta.checks import positive_int
from tfmeta.tasks import numpy_tasks
from tfmeta.tasks.pipeline import task_stream

LENGTH_RANGE = (0.3, 0.9)
"""Pole length ``L ~ U[0.3, 0.9]`` in metres."""
GRAVITY_RANGE = (5.0, 15.0)
"""Gravity ``g ~ U[5, 15]`` in m/s^2."""
ACTION_RANGE = (-3.0, 3.0)
"""Actions drawn uniformly in this range (the double pendulum clips to ``[-1,
1]``)."""
# half-widths of the uniform state box: x, x_dot, theta, theta_dot
STATE_BOX = (0.5, 1.0, 0.5, 1.0)
"""Half-widths of the uniform state box: ``x`` (m), ``x_dot`` (m/s), ``theta``
(rad), ``theta_dot`` (rad/s)."""
SUPPORT_DIMS = (5, 4)      # (state + action, next state) of the single pendulum
"""``(state + action, next state)`` sizes of the single pendulum's points."""
QUERY_DIMS = (7, 6)        # the same for the double pendulum
"""The same for the double pendulum."""
TASK_DIM = 2               # (L, g)
"""The task's true dimension, ``(L, g)``."""
FRAME_SKIP = {"single": 2, "double": 5}
"""MuJoCo steps per transition, as gymnasium's environments."""
EXTRA_HINT = ("the pendulum tasks need MuJoCo: pip install 'tfmeta[mujoco]' "
              "(gymnasium and mujoco)")
"""The install hint of the ``ImportError`` raised without MuJoCo."""


def require_mujoco():
    """``(mujoco, gymnasium's MuJoCo assets folder)``; an ``ImportError``
    that names the extra to install (``EXTRA_HINT``) without them."""
    try:
        import mujoco
        import gymnasium.envs.mujoco as envs
    except ImportError as err:
        raise ImportError(f"{EXTRA_HINT}; import failed: {err}") from err
    return mujoco, pathlib.Path(envs.__file__).parent / "assets"


@functools.lru_cache(maxsize=None)
def _xml(kind):
    _, assets = require_mujoco()
    name = {"single": "inverted_pendulum.xml",
            "double": "inverted_double_pendulum.xml"}[kind]
    return (assets / name).read_text()


def _sub(pattern, replacement, text):
    new, count = re.subn(pattern, replacement, text)
    if count != 1:
        raise RuntimeError(f"gymnasium's pendulum MJCF changed: {pattern!r} "
                           f"matched {count} times")
    return new


def model_xml(kind, length, gravity):
    """The MJCF of ``kind`` (``"single"`` or ``"double"``) with pole length
    ``length`` and gravity ``gravity`` (m/s^2, pointing down).

    Args:
      kind: ``"single"`` or ``"double"``.
      length: pole length ``L`` in metres.
      gravity: ``g`` in m/s^2, pointing down.
    """
    xml = _xml(kind)
    if kind == "single":
        xml = _sub(r'gravity="0 0 -9\.81"', f'gravity="0 0 {-gravity!r}"', xml)
        xml = _sub(r'fromto="0 0 0 0\.001 0 0\.6" name="cpole"',
                   f'fromto="0 0 0 0.001 0 {length!r}" name="cpole"', xml)
        return xml
    xml = _sub(r'gravity="1e-5 0 -9\.81"', f'gravity="1e-5 0 {-gravity!r}"', xml)
    xml = _sub(r'fromto="0 0 0 0 0 0\.6" name="cpole"',
               f'fromto="0 0 0 0 0 {length!r}" name="cpole"', xml)
    xml = _sub(r'<body name="pole2" pos="0 0 0\.6">',
               f'<body name="pole2" pos="0 0 {length!r}">', xml)
    xml = _sub(r'fromto="0 0 0 0 0 0\.6" name="cpole2"',
               f'fromto="0 0 0 0 0 {length!r}" name="cpole2"', xml)
    xml = _sub(r'<site name="tip" pos="0 0 \.6"',
               f'<site name="tip" pos="0 0 {length!r}"', xml)
    return xml


class Pendulum:
    """One MuJoCo pendulum (``kind``, ``length``, ``gravity``) and its
    one-step dynamics ``step(states, actions) -> next states`` in the order
    ``x, x_dot, theta, theta_dot[, theta2, theta2_dot]``.

    ``step`` holds a lock: ``tf.data`` builds batches on several threads
    and the cached models are shared (one ``MjData`` stepped by two threads
    at once diverged). A step that MuJoCo flags as unstable raises
    ``FloatingPointError`` instead of returning MuJoCo's reset state.

    Args:
      kind: ``"single"`` or ``"double"``.
      length: pole length ``L`` in metres.
      gravity: ``g`` in m/s^2, pointing down.
    """

    def __init__(self, kind, length, gravity):
        mujoco, _ = require_mujoco()
        self._mujoco = mujoco
        self.kind = kind
        self.model = mujoco.MjModel.from_xml_string(
            model_xml(kind, float(length), float(gravity)))
        self.data = mujoco.MjData(self.model)
        self.frame_skip = FRAME_SKIP[kind]
        self._lock = threading.Lock()
        self._unstable = [mujoco.mjtWarning.mjWARN_BADQACC,
                          mujoco.mjtWarning.mjWARN_BADQPOS,
                          mujoco.mjtWarning.mjWARN_BADQVEL]

    @property
    def state_dim(self):
        return 2 * self.model.nq

    def step(self, states, actions):
        states = np.asarray(states, np.float64)
        out = np.empty_like(states)
        nq = self.model.nq
        with self._lock:
            for i, (state, action) in enumerate(zip(states, actions)):
                self._mujoco.mj_resetData(self.model, self.data)
                self.data.qpos[:] = state[0::2]
                self.data.qvel[:] = state[1::2]
                self.data.ctrl[:] = np.reshape(action, -1)
                self._mujoco.mj_step(self.model, self.data,
                                     nstep=self.frame_skip)
                if any(self.data.warning[w].number for w in self._unstable):
                    raise FloatingPointError(
                        f"the {self.kind} pendulum's simulation was unstable "
                        f"from state {state.tolist()} with action "
                        f"{np.reshape(action, -1).tolist()}.")
                out[i, 0::2] = self.data.qpos[:nq]
                out[i, 1::2] = self.data.qvel[:nq]
        return out


def _states(rng, n, kind):
    half = np.array(STATE_BOX + (STATE_BOX[2:] if kind == "double" else ()))
    return rng.uniform(-half, half, size=(n, half.size))


def _points(rng, n, pendulum):
    states = _states(rng, n, pendulum.kind)
    actions = rng.uniform(*ACTION_RANGE, size=(n, 1))
    inputs = np.concatenate([states, actions], -1)
    return inputs.astype(np.float32), \
        pendulum.step(states, actions).astype(np.float32)


@functools.lru_cache(maxsize=1024)
def _pendulum(kind, length, gravity):
    return Pendulum(kind, length, gravity)


def _task_parameters(rng, meta_batch_size, seed, pool_size):
    if pool_size is None:
        return (rng.uniform(*LENGTH_RANGE, meta_batch_size),
                rng.uniform(*GRAVITY_RANGE, meta_batch_size))
    ids = rng.integers(0, pool_size, meta_batch_size)
    params = [np.random.default_rng([seed, 5, int(i)]).uniform(
        (LENGTH_RANGE[0], GRAVITY_RANGE[0]), (LENGTH_RANGE[1], GRAVITY_RANGE[1]))
        for i in ids]
    return np.array([p[0] for p in params]), np.array([p[1] for p in params])


def _task_batch(index, meta_batch_size, support_size, query_size, sigma, seed,
                parameters, pool_size=None):
    rng = np.random.default_rng([seed, 4, int(index)])
    lengths, gravities = _task_parameters(rng, meta_batch_size, seed, pool_size)
    sx, sy, qx, qy = [], [], [], []
    for length, gravity in zip(lengths, gravities):
        x, y = _points(rng, support_size, _pendulum("single", length, gravity))
        sx.append(x)
        sy.append(y + sigma * rng.normal(size=y.shape).astype(np.float32))
        if parameters:
            qx.append(np.zeros((1, 1), np.float32))
            qy.append(np.array([[length, gravity]], np.float32))
        else:
            x, y = _points(rng, query_size, _pendulum("double", length, gravity))
            qx.append(x)
            qy.append(y)
    return (np.stack(sx), np.stack(sy), np.stack(qx), np.stack(qy),
            lengths.astype(np.float32), gravities.astype(np.float32))


KEYS = ("support_x", "support_y", "query_x", "query_y", "length", "gravity")
"""Keys of a pendulum task batch: the task keys plus ``length`` and
``gravity``."""


def _check(meta_batch_size, support_size, query_size, sigma):
    positive_int("meta_batch_size", meta_batch_size)
    positive_int("support_size", support_size)
    positive_int("query_size", query_size)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) \
            or not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a non-negative number, got {sigma!r}.")
    require_mujoco()


def tasks(num_tasks, support_size=50, query_size=100, sigma=0.0, seed=0,
          parameters=False, index=0):
    """One fixed batch of pendulum tasks (NumPy), with each task's
    ``length`` and ``gravity``; ``parameters=True`` for the Figure 3
    variant (query = ``(L, g)``).

    Args:
      num_tasks: tasks in the batch.
      support_size: support transitions per task (default 50).
      query_size: query transitions per task (default 100).
      sigma: the support targets' noise standard deviation (default 0.0).
      seed: int seed (default 0).
      parameters: the Figure 3 variant (default ``False``).
      index: which batch of the seed's stream (default 0).
    """
    _check(num_tasks, support_size, query_size, sigma)
    return dict(zip(KEYS, _task_batch(index, num_tasks, support_size,
                                      query_size, float(sigma), seed,
                                      parameters)))


def dataset(meta_batch_size=10, support_size=50, query_size=50, sigma=0.0,
            seed=0, parameters=False, pool_size=None, start=0):
    """An endless ``tf.data.Dataset`` of pendulum task batches; element
    ``i`` depends on ``(seed, i)`` only. ``pool_size``: draw the tasks from
    a fixed pool of that many ``(L, g)`` (their compiled MuJoCo models are
    cached: building a model costs ~35 ms, a step ~0.15 ms); ``None``:
    fresh tasks every batch.

    Args:
      meta_batch_size: tasks per element (default 10).
      support_size: support transitions per task (default 50).
      query_size: query transitions per task (default 50).
      sigma: the support targets' noise standard deviation (default 0.0).
      seed: int seed (default 0).
      parameters: the Figure 3 variant (default ``False``).
      pool_size: draw tasks from a fixed pool of this many ``(L, g)``
        (default ``None``: fresh tasks).
      start: index of the first element (default 0).
    """
    _check(meta_batch_size, support_size, query_size, sigma)
    positive_int("pool_size", pool_size, allow_none=True)
    m = 1 if parameters else query_size
    shapes = ([meta_batch_size, support_size, SUPPORT_DIMS[0]],
              [meta_batch_size, support_size, SUPPORT_DIMS[1]],
              [meta_batch_size, m, 1 if parameters else QUERY_DIMS[0]],
              [meta_batch_size, m, TASK_DIM if parameters else QUERY_DIMS[1]],
              [meta_batch_size], [meta_batch_size])

    return numpy_tasks.dataset(
        lambda j: _task_batch(j, meta_batch_size, support_size, query_size,
                              float(sigma), seed, parameters, pool_size),
        KEYS, [tf.float32] * 6, shapes, start)


def query_mlp(parameters=False, seed=None):
    """The query learner ``g_psi`` of the pendulum tasks: a 7-40-40-6 ReLU
    MLP (double-pendulum dynamics) or, with ``parameters=True``, 1-40-40-2
    (``(L, g)`` from a constant input; Figure 3).

    Args:
      parameters: the Figure 3 variant (default ``False``).
      seed: Glorot-uniform initializers seeded ``seed + i`` for layer ``i``
        (default ``None``: unseeded).
    """
    from tfmeta.tasks import sine

    dims = (1, TASK_DIM) if parameters else QUERY_DIMS
    return sine.mlp((40, 40), "relu", seed, name="pendulum_query_mlp",
                    dims=dims)


def current_state_mse(batch):
    """The paper's reference ``E[(x_{t+1} - x_t)^2]``: the query MSE of
    predicting the current state (Table 4's last row).

    Args:
      batch: a pendulum task batch (``tasks``).
    """
    dims = batch["query_y"].shape[-1]
    return float(np.mean((batch["query_x"][..., :dims] - batch["query_y"]) ** 2))


# ------------------------------------------------- a fixed, simulated set
def simulate(num_tasks, points=200, seed=0):
    """A fixed data set of ``num_tasks`` tasks, simulated once (the paper
    trains on a fixed set of tasks; simulating every batch anew costs
    ~0.15 ms a point in Python): for each task ``(L, g)``, ``points``
    single-pendulum points (``single_x [T, P, 5]``, clean ``single_y
    [T, P, 4]``) and as many double-pendulum points (``double_x [T, P, 7]``,
    ``double_y [T, P, 6]``), with ``length`` and ``gravity`` ``[T]``.
    ``sampled_dataset`` draws task batches from it.

    Args:
      num_tasks: tasks ``(L, g)`` to simulate (``L ~ U[0.3, 0.9]`` m,
        ``g ~ U[5, 15]`` m/s^2).
      points: points per task and pendulum (default 200).
      seed: seed of the task parameters, states and actions (default 0).
    """
    positive_int("num_tasks", num_tasks)
    positive_int("points", points)
    require_mujoco()
    rng = np.random.default_rng([seed, 6])
    lengths, gravities = _task_parameters(rng, num_tasks, seed, None)
    out = {k: [] for k in ("single_x", "single_y", "double_x", "double_y")}
    for length, gravity in zip(lengths, gravities):
        for kind in ("single", "double"):
            x, y = _points(rng, points, Pendulum(kind, length, gravity))
            out[f"{kind}_x"].append(x)
            out[f"{kind}_y"].append(y)
    out = {k: np.stack(v) for k, v in out.items()}
    out["length"] = lengths.astype(np.float32)
    out["gravity"] = gravities.astype(np.float32)
    return out


def sampled_dataset(data, meta_batch_size=10, support_size=50, query_size=50,
                    sigma=0.0, seed=0, parameters=False, start=0):
    """An endless ``tf.data.Dataset`` of task batches drawn from ``data``
    (``simulate``'s arrays), all in the graph: tasks uniformly with
    replacement, each task's support and query points without replacement
    from its simulated points, support noise ``N(0, sigma^2)`` on the
    support targets; element ``i`` depends on ``(seed, i)`` only.
    ``parameters=True``: the query is the task's ``(L, g)`` (Figure 3).

    Args:
      data: ``simulate``'s dict of arrays.
      meta_batch_size: tasks per batch (default 10).
      support_size: single-pendulum points per task (default 50), at most
        the simulated ``points``.
      query_size: double-pendulum points per task (default 50), at most
        the simulated ``points``.
      sigma: standard deviation of the support targets' noise (default 0).
      seed: seed of the draws (default 0).
      parameters: the query is ``(L, g)`` (``query_x`` one zero input,
        ``query_y [B, 1, 2]``) instead of the double pendulum.
      start: index of the first element (default 0; for resuming).
    """
    positive_int("meta_batch_size", meta_batch_size)
    available = data["single_x"].shape[1]
    for name, size in (("support_size", support_size),
                       ("query_size", query_size)):
        if positive_int(name, size) > available:
            raise ValueError(f"{name} ({size}) is larger than the {available} "
                             "points simulated per task.")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) \
            or not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a non-negative number, got {sigma!r}.")
    arrays = {k: tf.constant(v) for k, v in data.items()}
    num_tasks = data["single_x"].shape[0]

    def points(key, tasks, size, rng_seed):
        scores = tf.random.stateless_uniform(
            [meta_batch_size, available], rng_seed)
        idx = tf.argsort(scores, axis=1)[:, :size]
        return tf.gather(tf.gather(arrays[key], tasks), idx, batch_dims=1)

    def batch(i):
        base = tf.stack([tf.constant(seed, tf.int64), i])
        seeds = tf.random.experimental.stateless_split(base, 5)
        tasks = tf.random.stateless_uniform(
            [meta_batch_size], seeds[0], 0, num_tasks, tf.int32)
        support = tf.random.stateless_uniform(
            [meta_batch_size, available], seeds[1])
        idx = tf.argsort(support, axis=1)[:, :support_size]
        sx = tf.gather(tf.gather(arrays["single_x"], tasks), idx, batch_dims=1)
        sy = tf.gather(tf.gather(arrays["single_y"], tasks), idx, batch_dims=1)
        sy += float(sigma) * tf.random.stateless_normal(tf.shape(sy), seeds[2])
        length = tf.gather(arrays["length"], tasks)
        gravity = tf.gather(arrays["gravity"], tasks)
        if parameters:
            qx = tf.zeros([meta_batch_size, 1, 1])
            qy = tf.stack([length, gravity], -1)[:, None, :]
        else:   # the same seed: the same points for inputs and targets
            qx = points("double_x", tasks, query_size, seeds[3])
            qy = points("double_y", tasks, query_size, seeds[3])
        return {"support_x": sx, "support_y": sy, "query_x": qx,
                "query_y": qy, "length": length, "gravity": gravity}

    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}.")
    return task_stream(batch, start, autotune=True)


def fixed_batch(data, support_size=50, query_size=100, sigma=0.0, seed=0,
                parameters=False):
    """Every task of ``data`` (``simulate``) in order, as one NumPy batch:
    its first ``support_size`` single-pendulum points (targets with noise
    ``N(0, sigma^2)`` drawn from ``seed``) and its last ``query_size``
    double-pendulum points (or ``(L, g)`` with ``parameters=True``): a
    held-out test set.

    Args:
      data: ``simulate``'s dict of arrays.
      support_size: support points per task (default 50).
      query_size: query points per task (default 100); support and query
        come from different simulated points when their sum is at most the
        simulated ``points``.
      sigma: standard deviation of the support targets' noise (default 0).
      seed: seed of that noise (default 0).
      parameters: the query is ``(L, g)`` instead of the double pendulum.
    """
    available = data["single_x"].shape[1]
    if support_size > available or query_size > available:
        raise ValueError(f"support_size ({support_size}) and query_size "
                         f"({query_size}) must be at most the {available} "
                         "points simulated per task.")
    rng = np.random.default_rng([seed, 7])
    sy = data["single_y"][:, :support_size]
    out = {"support_x": data["single_x"][:, :support_size],
           "support_y": (sy + sigma * rng.normal(size=sy.shape)).astype(
               np.float32),
           "length": data["length"], "gravity": data["gravity"]}
    if parameters:
        out["query_x"] = np.zeros((len(sy), 1, 1), np.float32)
        out["query_y"] = np.stack([data["length"], data["gravity"]],
                                  -1)[:, None, :]
    else:
        out["query_x"] = data["double_x"][:, -query_size:]
        out["query_y"] = data["double_y"][:, -query_size:]
    return out
