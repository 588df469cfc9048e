"""Vector environments for A2C and the registration of ``tfmeta/Maze-v0``."""

import gymnasium as gym

MAZE_ID = "tfmeta/Maze-v0"


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

    ``seed``: reset seed of environment 0 (environment i gets ``seed + i``);
    ``mode``: ``"sync"`` (one process) or ``"async"`` (one process each).
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
