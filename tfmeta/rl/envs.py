"""Vector environments for A2C and the registration of ``tfmeta/Maze-v0``."""

import gymnasium as gym

MAZE_ID = "tfmeta/Maze-v0"
"""The gymnasium id of the maze environment (``tfmeta.rl.Maze``)."""


def register():
    """Registers ``tfmeta/Maze-v0`` with gymnasium (idempotent; done when
    ``tfmeta.rl`` is imported)."""
    if MAZE_ID not in gym.registry:
        gym.register(MAZE_ID, entry_point="tfmeta.rl.maze:Maze")


def vector_env(env_fn, num_envs, *, seed=None, mode="sync"):
    """``num_envs`` environments from ``env_fn`` (a callable returning a
    ``gymnasium.Env``, or a registered id) as one vector environment whose
    finished episodes reset within the same step (``AutoresetMode.SAME_STEP``,
    what A2C expects: ``info["final_obs"]`` holds the last observation).

    Args:
      env_fn: a callable returning a ``gymnasium.Env``, or a registered id.
      num_envs: environments, >= 1.
      seed: reset seed of environment 0; environment i gets ``seed + i``
        (default ``None``).
      mode: ``"sync"`` (default; one process) or ``"async"`` (one process
        each).
    """
    if not (isinstance(num_envs, int) and num_envs > 0):
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}.")
    if isinstance(env_fn, str):
        env_id = env_fn
        env_fn = lambda: gym.make(env_id)  # noqa: E731
    if not callable(env_fn):
        raise TypeError(f"env_fn must be a callable or an id, got {env_fn!r}.")
    classes = {"sync": gym.vector.SyncVectorEnv,
               "async": gym.vector.AsyncVectorEnv}
    if mode not in classes:
        raise ValueError(f"Unknown vector mode {mode!r}; use 'sync' or 'async'.")
    envs = classes[mode]([env_fn] * num_envs,
                         autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    if seed is not None:
        envs.reset(seed=seed)
    return envs


def _rebuild_atari(args, kwargs, ale_state, rng_state):
    from ale_py.env import AtariEnv
    env = AtariEnv(*args, **kwargs)
    env.restore_state(ale_state)
    env.np_random.bit_generator.state = rng_state
    return env


def _reduce_atari(env):
    # ale-py pickles an AtariEnv as its constructor arguments only (a fresh
    # game); we add the emulator state with its RNG (sticky actions) and the
    # env's numpy generator (no-op starts).
    return _rebuild_atari, (env._ezpickle_args, env._ezpickle_kwargs,
                            env.clone_state(include_rng=True),
                            env.np_random.bit_generator.state)


def dumps_envs(envs):
    """The exact state of a sync vector environment as bytes (pickle): every
    wrapper's buffers, the environments' random generators and, for Atari,
    the emulator state with its RNG; ``loads_envs`` continues it step for
    step. Async vector environments (one process each) cannot be saved.

    Args:
      envs: a ``gymnasium.vector.SyncVectorEnv``.
    """
    import copyreg
    import io
    import pickle
    if not isinstance(envs, gym.vector.SyncVectorEnv):
        raise ValueError(
            f"only a sync vector environment can be saved exactly, got "
            f"{type(envs).__name__} (build it with mode='sync').")
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer)
    pickler.dispatch_table = copyreg.dispatch_table.copy()
    try:
        from ale_py.env import AtariEnv
        pickler.dispatch_table[AtariEnv] = _reduce_atari
    except ImportError:
        pass
    try:
        pickler.dump({"envs": list(envs.envs),
                      "autoreset_mode": envs.metadata.get("autoreset_mode")})
    except (AttributeError, TypeError, pickle.PicklingError) as err:
        raise ValueError(
            f"the environments cannot be saved exactly: {err}") from err
    return buffer.getvalue()


def loads_envs(data):
    """The vector environment ``dumps_envs`` saved, as a sync vector
    environment (only load bytes your own runs wrote: this is pickle).

    Args:
      data: the bytes ``dumps_envs`` returned.
    """
    import pickle
    saved = pickle.loads(data)
    return gym.vector.SyncVectorEnv(
        [lambda env=env: env for env in saved["envs"]],
        autoreset_mode=saved["autoreset_mode"])
