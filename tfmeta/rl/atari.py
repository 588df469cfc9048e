"""Atari 2600 games through ``ale-py`` (its ROMs ship inside the wheel: no
download), preprocessed with gymnasium's own wrappers.

``make_atari("Breakout")`` gives one environment as in Leap's appendix F:
``ALE/<Game>-v5`` with the minimal action set, ``AtariPreprocessing`` (no-op
starts up to 30, frame skip 4 with max-pooling of the last two frames,
84 x 84 RGB frames, full games: no terminal on life loss) and, when
``frame_stack > 1``, ``FrameStackObservation``. Rewards are raw game scores;
A2C clips them. ``make_atari_vector`` builds ``num_envs`` of them as one
gymnasium vector environment for A2C.
"""

import difflib
import functools

import gymnasium as gym
import numpy as np

from tfmeta.rl.envs import vector_env


def _ale():
    try:
        import ale_py
    except ImportError as err:
        raise ImportError(
            "Atari games need ale-py (the ROMs ship inside it): install the "
            "rl extra, pip install 'tfmeta[rl]'.") from err
    gym.register_envs(ale_py)
    return ale_py


@functools.lru_cache(maxsize=None)
def _game_ids():
    _ale()
    return {k[len("ALE/"):-len("-v5")]: k for k in gym.registry
            if k.startswith("ALE/") and k.endswith("-v5")}


def atari_games():
    """Names of the ALE games (``"Breakout"``, ``"SpaceInvaders"``, ...)."""
    return sorted(_game_ids())


def game_id(game):
    """The gymnasium id ``ALE/<Game>-v5`` of a game name (case-insensitive;
    ``"ALE/<Game>-v5"`` itself is accepted); a clear error if unknown.

    Args:
      game: a game name (``"Breakout"``, case-insensitive) or its id
        ``"ALE/<Game>-v5"``.
    """
    if not isinstance(game, str):
        raise TypeError(f"Atari game must be a name string, got {game!r}.")
    ids = _game_ids()
    name = game
    if name.startswith("ALE/") and name.endswith("-v5"):
        name = name[len("ALE/"):-len("-v5")]
    by_lower = {k.lower(): k for k in ids}
    key = by_lower.get(name.lower().replace("_", ""))
    if key is None:
        close = difflib.get_close_matches(name.lower(), list(by_lower), n=3)
        hint = (f" Did you mean {', '.join(repr(by_lower[c]) for c in close)}?"
                if close else "")
        raise ValueError(
            f"Unknown Atari game {game!r}.{hint} tfmeta.rl.atari_games() "
            f"lists the {len(ids)} games ale-py ships.")
    return ids[key]


@functools.lru_cache(maxsize=None)
def action_count(game):
    """Size of the game's minimal action set (Leap's Table 6 column).

    Args:
      game: a game name (``"Breakout"``, case-insensitive) or its id
        ``"ALE/<Game>-v5"``.
    """
    env = gym.make(game_id(game))
    try:
        return int(env.action_space.n)
    finally:
        env.close()


def make_atari(game, *, screen_size=84, grayscale=False, frame_skip=4,
               frame_stack=1, noop_max=30, repeat_action_probability=0.25,
               full_action_space=False, max_episode_steps=None):
    """One preprocessed Atari environment (see the module docstring).

    The defaults follow Leap's appendix F (84 x 84 x 3 RGB frames, one frame)
    and ALE v5 (sticky actions with probability 0.25, the minimal action
    set); ``repeat_action_probability=0.0`` gives the older NoFrameskip-v4
    dynamics.

    Args:
      game: a game name (``"Breakout"``, case-insensitive) or its id
        ``"ALE/<Game>-v5"``.
      screen_size: frame side in pixels (default 84).
      grayscale: grayscale frames instead of RGB (default ``False``).
      frame_skip: emulator frames per action, max-pooled over the last two
        (default 4).
      frame_stack: frames stacked per observation (default 1: none).
      noop_max: at most this many no-op actions at the start (default 30).
      repeat_action_probability: sticky-action probability (default 0.25).
      full_action_space: all 18 actions instead of the minimal set (default
        ``False``).
      max_episode_steps: truncate episodes after this many steps (default
        ``None``: full games).
    """
    env_id = game_id(game)
    try:
        import cv2  # noqa: F401  (AtariPreprocessing resizes with OpenCV)
    except ImportError as err:
        raise ImportError(
            "Atari preprocessing needs OpenCV (opencv-python-headless): "
            "install the rl extra, pip install 'tfmeta[rl]'.") from err
    env = gym.make(env_id, frameskip=1,
                   repeat_action_probability=repeat_action_probability,
                   full_action_space=full_action_space,
                   max_episode_steps=max_episode_steps)
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=noop_max, frame_skip=frame_skip,
        screen_size=screen_size, terminal_on_life_loss=False,
        grayscale_obs=grayscale, scale_obs=False)
    if frame_stack > 1:
        env = gym.wrappers.FrameStackObservation(env, frame_stack)
    return env


def make_atari_vector(game, num_envs=32, *, seed=None, mode="sync", **kwargs):
    """``num_envs`` copies of ``make_atari(game, **kwargs)`` as a vector
    environment.

    Args:
      game: a game name (``"Breakout"``, case-insensitive) or its id
        ``"ALE/<Game>-v5"``.
      num_envs: environments (default 32).
      seed: reset seed of environment 0; environment i gets ``seed + i``
        (default ``None``).
      mode: ``"sync"`` (default; one process) or ``"async"`` (one process
        each).
      **kwargs: ``make_atari``'s options.
    """
    game_id(game)  # fail before spawning anything
    return vector_env(functools.partial(make_atari, game, **kwargs),
                      num_envs, seed=seed, mode=mode)



# ------------------------------------------- Leap's Atari tasks (sec. 4.3)
# Leap's Table 6: action-set size, baseline mean and standard deviation of
# the score, and whether the game is in the pretraining pool.
TABLE6 = {
    "AirRaid": (6, 2538, 624, True),
    "UpNDown": (6, 52417, 2797, True),
    "WizardOfWor": (10, 2531, 182, True),
    "Breakout": (4, 338, 13, False),
    "SpaceInvaders": (6, 1065, 103, False),
    "Asteroids": (14, 1760, 139, False),
    "Alien": (18, 1280, 182, False),
    "Gravitar": (18, 329, 15, False),
    "RoadRunner": (18, 29593, 2890, False),
}
HELD_OUT = ("Breakout", "SpaceInvaders")
MAX_POOL_ACTIONS = 10


def pretraining_pool():
    """Leap's pretraining pool: every ALE game with at most
    ``MAX_POOL_ACTIONS`` actions but the held-out Breakout and
    SpaceInvaders (27 games in the paper's ALE version, 45 in ale-py
    0.12.1)."""
    return [g for g in atari_games() if g not in HELD_OUT
            and action_count(g) <= MAX_POOL_ACTIONS]


def agent(game, envs=32, seed=0, max_episode_steps=None):
    """A fresh A2C agent for ``game`` with Leap appendix F's defaults
    (``tfmeta.rl.nets.atari_net``: the Mnih encoder with heads sized to the
    game's action set), its own vector environment.

    Args:
      game: an ALE game name (``"Breakout"``).
      envs: environments of the agent (default 32).
      seed: seeds the environments, the agent's actions and its weights.
      max_episode_steps: cut episodes after this many emulator frames
        (``None``: full games).
    """
    import keras

    from tfmeta.rl import nets
    from tfmeta.rl.a2c import A2C
    vector = make_atari_vector(game, envs, seed=seed,
                               max_episode_steps=max_episode_steps)
    keras.utils.set_random_seed(seed)
    model = nets.atari_net(vector.single_observation_space.shape,
                           action_count(game))
    return A2C(model, vector, seed=seed)


def normalized_score(game, score):
    """``(score - mean) / std`` with Table 6's baseline of ``game`` (NaN
    for a game Table 6 does not list).

    Args:
      game: a game name in ``TABLE6``.
      score: a mean episode return.
    """
    if game not in TABLE6:
        return float("nan")
    _, mean, std, _ = TABLE6[game]
    return (score - mean) / std


def train_agent(game, encoder, *, updates, envs=32, seed=0,
                max_episode_steps=None):
    """Trains a fresh agent (``agent``) on ``game`` for ``updates`` A2C
    updates from ``encoder``'s weights (``None``: a random initialization)
    and returns its finished episodes (``A2C.episodes``: the learning curve,
    each record with the update that ended it and its return).

    Args:
      game: an ALE game name.
      encoder: a Keras model shaped as ``nets.mnih_encoder`` (the meta-learned
        initialization), or ``None``.
      updates: A2C updates.
      envs: environments (default 32).
      seed: the agent's seed.
      max_episode_steps: as in ``agent``.
    """
    a2c = agent(game, envs, seed, max_episode_steps)
    try:
        if encoder is not None:
            targets = [v for v, m in zip(a2c.params, a2c.encoder_mask) if m]
            for v, w in zip(targets, encoder.trainable_variables):
                v.assign(w)
        a2c.train(updates)
    finally:
        a2c.envs.close()
    return list(a2c.episodes)


def evaluate(game, encoder, **kwargs):
    """``train_agent``, summarized: ``(mean return of the agent's last 100
    episodes (NaN if none ended), episodes finished)``.

    Args:
      game: an ALE game name.
      encoder: the initialization (``None``: random), as in ``train_agent``.
      **kwargs: ``train_agent``'s keyword arguments (``updates``, required;
        ``envs``, ``seed``, ``max_episode_steps``).
    """
    episodes = train_agent(game, encoder, **kwargs)
    last = [e.episode_return for e in episodes[-100:]]
    return (float(np.mean(last)) if last else float("nan")), len(episodes)
