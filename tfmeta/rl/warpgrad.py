"""WarpGrad's continual meta-training on an A2C agent (WarpGrad section 4.3,
appendix I; Algorithm 3, eq. 12): the Warp-RNN on the maze.

The agent's model holds warp layers (``tfmeta.layers.WarpRNNCell``: the
meta-LSTM and its projection; ``TNetsRNNCell``: the T-Nets projections);
``tfmeta.warpgrad.partition`` splits its trainable variables into task
parameters theta (the RNN's W, V, b and the heads) and warp parameters phi.
The ``A2C`` is built with ``fixed=phi``: every task update (a batch of
episodes, Adam in the paper) moves theta only. Task training is one
continual stream (Algorithm 3): no task resets, the maze's goal changes with
every episode.

The meta-gradient (eq. 12, the A2C loss as both L_task and L_meta): the
sample theta_k's term is ``grad_phi L_meta(theta_{k+1}; phi)`` with the
stored theta_{k+1} held constant (the approximate objective) and L_meta the
A2C loss of a batch of the task's data other than the one theta_k's update
used (appendix E). We take the next batch, update k+1's rollout: then the
term is the phi-part of update k+1's own raw gradient, which the A2C's
backward pass computes anyway and hands to the hook (``grads``). The hook
sums it over ``interval`` updates (30 in the paper) and the warp parameters
take one step of the Keras optimizer given to ``compile`` with the mean.
``tests/test_rl_warpgrad.py`` checks the sum against
``tfmeta.warpgrad.warp_gradient`` (eq. 12 with the stored theta_{k+1})
evaluated on the recorded path. (Not against finite differences: the A2C
loss holds ``stop_gradient``s (advantages, bootstrap), so its tape gradient
is by design not the derivative of its value.)

``RLWarpGrad`` is a ``tfmeta.rl.RLMetaModel`` (a ``keras.Model``) whose
``train_step`` is one meta-step (``interval`` compiled A2C updates, then the
warp update), so ``fit`` with Keras callbacks drives it; it runs eagerly, as
``RLLeap`` does (it steps Python environments), and refuses a
``tf.distribute`` strategy.
"""

import numpy as np
import tensorflow as tf

from tfmeta import checks
from tfmeta.rl.meta_model import RLMetaModel
from tfmeta.warpgrad import partition


class RLWarpGrad(RLMetaModel):
    """WarpGrad continual meta-training of an A2C agent's warp parameters
    (an ``RLMetaModel``, so a ``keras.Model``).

        cell = tfmeta.layers.WarpRNNCell(100)
        model = rl.nets.rnn_agent(16, 4, cell=cell)
        a2c = rl.A2C(model, rl.vector_env(rl.MAZE_ID, 30),
                     keras.optimizers.Adam(1e-3), unroll=200,
                     fixed=tfmeta.warpgrad.partition(model)[1])
        warp = rl.RLWarpGrad(a2c, interval=30)
        warp.compile(keras.optimizers.Adam(1e-3))     # the warp update
        warp.fit(epochs=1, steps_per_epoch=10)        # 300 task updates

    ``fit`` logs the A2C loss of the meta-step's last update (``loss``), the
    norm of the mean warp gradient (``warp_grad_norm``) and the mean return
    of the last 300 finished episodes (``mean_return``, NaN before the
    first).

    Args:
      a2c: an ``A2C`` whose model has warp layers and which was built with
        ``fixed=`` their warp variables (``tfmeta.warpgrad.partition(
        model)[1]``), so task updates leave them unchanged.
      interval: task updates per warp update (eta of Algorithm 3; 30 in the
        paper), >= 1.
      **kwargs: passed on to ``keras.Model`` (e.g. ``name``).
    """

    def __init__(self, a2c, *, interval=30, **kwargs):
        super().__init__(("loss", "warp_grad_norm", "mean_return"),
                         optional_logs=("mean_return",), **kwargs)
        self.interval = checks.positive_int("interval", interval)
        if not hasattr(a2c, "fixed_mask"):
            raise TypeError(
                f"a2c must be a tfmeta.rl.A2C, got {type(a2c).__name__}.")
        _, warp = partition(a2c.model)
        if not warp:
            raise ValueError(
                "the A2C's model has no warp parameters (no "
                "tfmeta.layers.WarpLayer such as WarpRNNCell or "
                "TNetsRNNCell): nothing to meta-learn.")
        warp_ids = {id(v) for v in warp}
        mask = [id(v) in warp_ids for v in a2c.params]
        if mask != list(a2c.fixed_mask):
            raise ValueError(
                "the A2C must hold exactly the warp parameters fixed: build "
                "it with fixed=tfmeta.warpgrad.partition(model)[1] (WarpGrad "
                "updates them every interval-th task update, never in a "
                "task update).")
        self.a2c, self.agent = a2c, a2c.model
        self.warp_mask = mask
        self.last_gradient = None   # the last meta-step's mean warp gradient

        def hook(state, step, theta, theta_next, loss, loss_next, grads):
            warp_grads = [g for g, m in zip(grads, self.warp_mask) if m]
            return [s + g for s, g in zip(state, warp_grads)]
        self._hook = hook   # one function: the compiled update traces it once
        self.built = True

    def call(self, inputs):
        """The agent's outputs (``[observations, *state] -> (logits, value,
        *new_state)``).

        Args:
          inputs: the agent's inputs.
        """
        return self.agent(inputs)

    has_run_state = True

    def get_run_state(self):
        """The A2C's whole state (``A2C.get_state()``: its parameters, Adam
        state, update counter, observations, recurrent state, episodes and
        environments): the continual stream goes on from there. The warp
        parameters' optimizer is in the Keras weights."""
        return self.a2c.get_state()

    def set_run_state(self, state):
        """Continues the stream ``get_run_state`` saved (``A2C.set_state``;
        the restored environments replace, and close, the current ones).

        Args:
          state: what ``get_run_state`` returned.
        """
        envs = self.a2c.envs
        self.a2c.set_state(state)
        envs.close()

    @property
    def meta_variables(self):
        """The warp parameters phi (the agent's variables the task updates
        hold fixed), in ``a2c.params`` order."""
        return [v for v, m in zip(self.a2c.params, self.warp_mask) if m]

    def warp_gradient(self, updates):
        """Runs ``updates`` A2C updates and returns ``(sum, logs)``: the sum
        over them of eq. 12's warp gradient (the phi-part of each update's
        raw gradient, see the module docstring), shaped like
        ``meta_variables``, and the last update's logs. Changes no warp
        parameter.

        Args:
          updates: task updates to run, >= 1.
        """
        zeros = [tf.zeros_like(v) for v in self.meta_variables]
        logs, total = self.a2c.train(updates, hook=self._hook,
                                     hook_state=zeros)
        return list(total), logs

    def meta_step(self):
        """One meta-step of Algorithm 3: ``interval`` task updates, then the
        warp parameters take one optimizer step with the mean of their
        eq. 12 gradients. Returns the logs (``loss``, ``warp_grad_norm``,
        ``mean_return`` of the last 300 episodes)."""
        self.require_compiled()
        total, logs = self.warp_gradient(self.interval)
        mean = [g / self.interval for g in total]
        norm = float(tf.linalg.global_norm(mean).numpy())
        if not np.isfinite(norm):
            raise ValueError(
                f"the warp gradient is not finite (norm {norm}); the warp "
                "parameters were not updated.")
        self.optimizer.apply_gradients(zip(mean, self.meta_variables))
        self.last_gradient = mean
        return {"loss": float(logs["loss"]), "warp_grad_norm": norm,
                "mean_return": self.a2c.mean_return(300)}


MAZE_AGENTS = ("RNN", "HyperRNN", "T-Nets-RNN", "Warp-RNN")
"""WarpGrad appendix I's maze agents (``maze_agent``'s kinds)."""

MAZE_META_AGENTS = ("T-Nets-RNN", "Warp-RNN")
"""The maze agents whose warp parameters ``RLWarpGrad`` meta-learns."""

MAZE_A2C = dict(gamma=0.9, entropy_cost=0.03, value_cost=0.1,
                reward_clip=None, max_grad_norm=4.0)
"""The A2C settings of the WarpGrad code for the maze (docs/rl.md)."""


def maze_agent(kind="Warp-RNN", *, units=100, meta_units=100, envs=30,
               episode_length=200, optimizer=None, seed=0):
    """WarpGrad appendix I's A2C agent of ``kind`` on the maze: a basic
    tanh RNN read by linear policy and value heads, trained on batches of
    ``envs`` whole episodes (``unroll`` = the episode length) with
    ``MAZE_A2C``. Returns the ``A2C``; for ``MAZE_META_AGENTS`` it holds
    the warp parameters fixed, for ``RLWarpGrad``. The initial weights come
    from Keras's global seed (``keras.utils.set_random_seed``).

    * ``RNN``: ``keras.layers.SimpleRNNCell`` (Wang et al., 2016);
    * ``HyperRNN``: ``tfmeta.layers.WarpRNNCell`` (eq. 20), every weight
      trained by every A2C update;
    * ``T-Nets-RNN``: ``tfmeta.layers.TNetsRNNCell``, its T's fixed;
    * ``Warp-RNN``: ``WarpRNNCell``, its meta-LSTM and projection fixed.

    Args:
      kind: one of ``MAZE_AGENTS`` (default ``"Warp-RNN"``).
      units: the RNN's hidden units (default 100, the paper's).
      meta_units: the meta-LSTM's units (``WarpRNNCell``; default 100).
      envs: maze environments, the episodes of a batch (default 30).
      episode_length: steps per episode and per update (default 200).
      optimizer: the task optimizer (default Adam 1e-3, the paper's).
      seed: the A2C's seed (environment resets and action draws).
    """
    import keras

    from tfmeta import layers
    from tfmeta.rl import nets
    from tfmeta.rl.a2c import A2C
    from tfmeta.rl.envs import vector_env
    from tfmeta.rl.maze import ACTIONS, Maze
    if kind not in MAZE_AGENTS:
        raise ValueError(f"unknown maze agent {kind!r}; one of "
                         f"{MAZE_AGENTS}.")
    if kind == "RNN":
        cell = keras.layers.SimpleRNNCell(units, activation="tanh",
                                          name="rnn")
    elif kind == "T-Nets-RNN":
        cell = layers.TNetsRNNCell(units, name="rnn")
    else:
        cell = layers.WarpRNNCell(units, meta_units=meta_units, name="rnn")
    # 16: the maze's observation (3 x 3 cells, bias, time, reward, action)
    model = nets.rnn_agent(16, len(ACTIONS), cell=cell)
    batch = vector_env(lambda: Maze(episode_length=episode_length), envs)
    fixed = partition(model)[1] if kind in MAZE_META_AGENTS else ()
    return A2C(model, batch, keras.optimizers.Adam(1e-3)
               if optimizer is None else optimizer, unroll=episode_length,
               seed=seed, fixed=fixed, **MAZE_A2C)
