"""Actor-critic networks: a shared encoder (a nested model named
``"encoder"``, the part Leap meta-learns across games) with linear policy and
value heads. Each model maps observations to ``(logits [B, A], value [B, 1])``.
"""

import keras

ENCODER = "encoder"
"""Name of the shared encoder model inside every actor-critic (what Leap
meta-learns)."""


def _heads(encoder, observation_shape, num_actions, name):
    if not (isinstance(num_actions, int) and num_actions > 0):
        raise ValueError(
            f"num_actions must be a positive integer, got {num_actions!r}.")
    obs = keras.Input(observation_shape, name="observation")
    features = encoder(obs)
    logits = keras.layers.Dense(num_actions, name="policy")(features)
    value = keras.layers.Dense(1, name="value")(features)
    return keras.Model(obs, [logits, value], name=name)


def mnih_encoder(observation_shape, name=ENCODER):
    """Mnih et al. (2013)'s network without its output layer: conv 16 8x8/4,
    conv 32 4x4/2, dense 256, ReLUs. Takes uint8 frames ``[H, W, C]`` (or a
    stack ``[K, H, W, C]``, channels concatenated) scaled to [0, 1].

    Args:
      observation_shape: ``(H, W, C)`` or ``(K, H, W, C)``.
      name: the model's name (default ``ENCODER``).
    """
    layers = [keras.layers.Rescaling(1.0 / 255)]
    if len(observation_shape) == 4:
        k, h, w, c = observation_shape
        layers += [keras.layers.Permute((2, 3, 1, 4)),
                   keras.layers.Reshape((h, w, k * c))]
    elif len(observation_shape) != 3:
        raise ValueError(
            f"mnih_encoder needs image observations [H, W, C] or [K, H, W, C], "
            f"got shape {tuple(observation_shape)}.")
    layers += [
        keras.layers.Conv2D(16, 8, strides=4, activation="relu"),
        keras.layers.Conv2D(32, 4, strides=2, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="relu"),
    ]
    return keras.Sequential([keras.Input(observation_shape)] + layers, name=name)


def atari_net(observation_shape=(84, 84, 3), num_actions=18):
    """Leap's Atari agent (appendix F): Mnih et al.'s conv encoder shared by
    linear policy and value heads.

    Args:
      observation_shape: frame shape (default ``(84, 84, 3)``).
      num_actions: policy logits (default 18, the full action set).
    """
    return _heads(mnih_encoder(observation_shape), observation_shape,
                  num_actions, "atari_actor_critic")


def mlp_net(observation_shape, num_actions, hidden=(64, 64)):
    """A tanh MLP encoder with linear policy and value heads (CartPole).

    Args:
      observation_shape: the observation's shape.
      num_actions: policy logits.
      hidden: hidden widths (default ``(64, 64)``).
    """
    encoder = keras.Sequential(
        [keras.Input(observation_shape), keras.layers.Flatten()]
        + [keras.layers.Dense(h, activation="tanh") for h in hidden],
        name=ENCODER)
    return _heads(encoder, observation_shape, num_actions, "mlp_actor_critic")


def rnn_agent(observation_size, num_actions, units=100, cell=None):
    """A recurrent actor-critic (Wang et al., 2016; WarpGrad appendix I):
    a basic tanh RNN (``units`` = 100 in the paper) whose hidden state
    linear policy and value heads read. One step per call:
    ``[observation [B, F], *state] -> (logits, value, *new_state)``, the
    recurrent form ``tfmeta.rl.A2C`` takes.

    Args:
      observation_size: features per observation ``F``.
      num_actions: policy logits.
      units: hidden units of the default cell (default 100).
      cell: any Keras RNN cell in place of ``SimpleRNNCell(units)``, e.g.
        ``tfmeta.layers.WarpRNNCell(100)`` for the Warp-RNN (eq. 20)
        (default ``None``).
    """
    if cell is None:
        cell = keras.layers.SimpleRNNCell(units, activation="tanh", name="rnn")
    sizes = cell.state_size if isinstance(cell.state_size, (list, tuple)) \
        else [cell.state_size]
    obs = keras.Input((observation_size,), name="observation")
    state = [keras.Input((int(s),), name=f"state_{i}")
             for i, s in enumerate(sizes)]
    hidden, new_state = cell(obs, state)
    if not isinstance(new_state, (list, tuple)):
        new_state = [new_state]
    logits = keras.layers.Dense(num_actions, name="policy")(hidden)
    value = keras.layers.Dense(1, name="value")(hidden)
    return keras.Model([obs, *state], [logits, value, *new_state],
                       name="rnn_actor_critic")
