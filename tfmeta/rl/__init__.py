"""Reinforcement learning for tfmeta: a synchronous A2C task learner
(``A2C``), Miconi et al.'s grid maze (``gymnasium.make("tfmeta/Maze-v0")``,
registered on import), Atari games through ale-py (``make_atari``) and
Leap across RL tasks (``RLLeap``), WarpGrad's continual meta-training of
a Warp-RNN agent (``RLWarpGrad``), both ``RLMetaModel``s (eager,
environment-driven Keras models), and PPO for continuous actions
(``PPO``: the Ant experiment's expert).

Needs the ``rl`` extra: ``pip install 'tfmeta[rl]'`` (gymnasium, ale-py and
OpenCV for gymnasium's Atari preprocessing).
"""

try:
    import gymnasium  # noqa: F401
except ImportError as err:
    raise ImportError(
        "tfmeta.rl needs gymnasium: install the rl extra, "
        "pip install 'tfmeta[rl]'.") from err

from tfmeta.rl import nets  # noqa: E402
from tfmeta.rl.a2c import A2C, Rollout, UpdateRecord  # noqa: E402
from tfmeta.rl.atari import (  # noqa: E402
    action_count, atari_games, game_id, make_atari, make_atari_vector)
from tfmeta.rl.envs import (  # noqa: E402
    MAZE_ID, dumps_envs, loads_envs, register, vector_env)
from tfmeta.rl.leap import RLLeap  # noqa: E402
from tfmeta.rl.maze import Maze  # noqa: E402
from tfmeta.rl.meta_model import RLMetaModel  # noqa: E402
from tfmeta.rl.ppo import PPO  # noqa: E402
from tfmeta.rl.warpgrad import (  # noqa: E402
    MAZE_AGENTS, RLWarpGrad, maze_agent)

register()

__all__ = [
    "A2C", "MAZE_AGENTS", "MAZE_ID", "Maze", "PPO", "RLLeap", "RLMetaModel",
    "RLWarpGrad", "Rollout", "UpdateRecord", "action_count",
    "atari_games", "dumps_envs", "game_id", "loads_envs", "make_atari",
    "make_atari_vector", "maze_agent", "nets", "register", "vector_env",
]
