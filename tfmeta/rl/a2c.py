"""Synchronous advantage actor-critic (A2C) on a gymnasium vector environment.

One *update* = a rollout of ``unroll`` steps in each of the ``N`` environments
(the batch) with the current policy, then one optimizer step on the A2C loss
of that rollout. Both run in one ``tf.function`` call: the environment step is
a ``tf.numpy_function`` inside the compiled rollout loop, nothing else runs
eagerly per step.

The update is a pure function of the parameters and the rollout
(``A2C.loss``, ``A2C.update``) and each compiled update can call a ``hook``
once with ``(state, i, theta_i, theta_{i+1}, f(theta_i), f(theta_{i+1}),
grad f(theta_i))``, the signature of the inner loop's hook: Leap accumulates
its eq. 8 increment along the A2C parameter path with it, ``f`` being the A2C
loss of update ``i``'s rollout.

Policies are feed-forward (one batched forward pass over the rollout in the
loss) or recurrent (``nets.rnn_agent``: the state is carried across rollouts,
reset where an episode ends, and the loss re-runs the recurrence from the
rollout's initial state with ``tf.scan``).

Defaults are Leap's Atari hyper-parameters (appendix F): RMSProp with
learning rate 1e-4, epsilon 1e-4 and decay (alpha, Keras's ``rho``) 0.99,
entropy cost 0.01, rewards clipped to [-5, 5], discount 0.99, unroll 5, and
32 environments. The paper gives neither the value-loss weight nor the
gradient clipping; we use OpenAI Baselines' A2C values (0.5 and a global
norm of 0.5).
"""

import collections

import keras
import numpy as np
import tensorflow as tf

from tfmeta import checks, inner_optimizers
from tfmeta.errors import NonFiniteLossError

Rollout = collections.namedtuple(
    "Rollout", ["observations", "actions", "rewards", "discounts", "dones",
                "bootstrap_observation", "initial_state"])
Rollout.__doc__ = """One update's experience, time-major.

observations [T, N, ...]: what the policy saw; actions [T, N] (int32);
rewards [T, N]: clipped rewards, plus ``gamma * V(final observation)`` where
an episode was truncated (time limit) at that step; discounts [T, N]:
``gamma``, or 0 where an episode ended; dones [T, N] (bool): an episode ended
at that step (a recurrent policy's state is reset after it);
bootstrap_observation [N, ...]: the observation after the last step (its
value bootstraps the n-step returns); initial_state: a recurrent policy's
state at the first step (a tuple of [N, S] tensors; empty if feed-forward).
"""

UpdateRecord = collections.namedtuple(
    "UpdateRecord", ["params", "params_next", "loss", "loss_next", "grads"])
UpdateRecord.__doc__ = """One A2C update as a segment of the parameter path:
``params`` before and ``params_next`` after it, the A2C loss of its rollout at
both (``loss_next`` is NaN unless asked for), and the raw (unclipped)
gradient at ``params``."""

EpisodeRecord = collections.namedtuple(
    "EpisodeRecord", ["update", "env", "episode_return", "length"])


def n_step_returns(rewards, discounts, bootstrap):
    """``R_t = r_t + d_t R_{t+1}`` backwards from ``R_T = bootstrap``
    (``rewards``, ``discounts`` [T, N]; ``bootstrap`` [N])."""
    return tf.scan(lambda acc, x: x[0] + x[1] * acc, (rewards, discounts),
                   initializer=bootstrap, reverse=True)


def default_optimizer():
    """Leap appendix F's RMSProp (Keras's ``rho`` is the paper's alpha;
    Keras adds epsilon inside the square root)."""
    return keras.optimizers.RMSprop(learning_rate=1e-4, rho=0.99, epsilon=1e-4)


class A2C:
    """A2C on ``envs`` with the actor-critic ``model``.

    Args:
      model: a built Keras model mapping a batch of observations to
        ``(logits [B, A], value [B, 1])`` (``tfmeta.rl.nets``), or, for a
        recurrent policy, ``[observations, *state]`` to ``(logits, value,
        *new_state)`` (``nets.rnn_agent``): the state is carried through the
        rollouts and reset to zeros where an episode ends. A game with fewer
        actions than ``A`` uses the first logits; more is an error.
      envs: a gymnasium vector environment with a discrete action space built
        with ``AutoresetMode.SAME_STEP`` (``tfmeta.rl.vector_env``,
        ``make_atari_vector``); its size is the batch.
      optimizer: a Keras SGD, Adam or RMSprop, applied functionally; default
        ``default_optimizer()``.
      unroll: steps per environment per update (n of the n-step returns).
      gamma: discount.
      entropy_cost: weight of the entropy bonus.
      value_cost: weight of the value loss ``0.5 (R - V)^2``.
      reward_clip: rewards are clipped to ``[-reward_clip, reward_clip]``
        (``None``: no clipping).
      max_grad_norm: the gradient is clipped to this global norm before the
        optimizer step (``None``: no clipping).
      seed: seeds the environments' resets (environment i gets ``seed + i``)
        and the action draws; ``None`` draws one.
      fixed: trainable variables of ``model`` the updates leave unchanged
        (default none): WarpGrad's warp parameters (``tfmeta.rl.RLWarpGrad``).
        Their gradient is still computed and handed to the hook; clipping
        and the optimizer see the other parameters only.
    """

    def __init__(self, model, envs, optimizer=None, *, unroll=5, gamma=0.99,
                 entropy_cost=0.01, value_cost=0.5, reward_clip=5.0,
                 max_grad_norm=0.5, seed=None, fixed=()):
        import gymnasium as gym
        if not isinstance(envs, gym.vector.VectorEnv):
            raise TypeError(
                "envs must be a gymnasium vector environment "
                f"(tfmeta.rl.vector_env), got {type(envs).__name__}.")
        if not isinstance(envs.single_action_space, gym.spaces.Discrete):
            raise ValueError(
                "A2C needs a discrete action space, got "
                f"{envs.single_action_space}.")
        mode = envs.metadata.get("autoreset_mode")
        if mode != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError(
                f"envs autoreset mode is {mode}; A2C needs "
                "AutoresetMode.SAME_STEP (build envs with "
                "tfmeta.rl.vector_env).")
        if not (isinstance(model, keras.Model) and model.built
                and len(model.outputs or []) == len(model.inputs) + 1):
            raise ValueError(
                "model must be a built Keras model mapping observations to "
                "(logits, value) (e.g. tfmeta.rl.nets.atari_net) or "
                "[observations, *state] to (logits, value, *new_state) "
                "(tfmeta.rl.nets.rnn_agent).")
        state_in = [tuple(x.shape[1:]) for x in model.inputs[1:]]
        state_out = [tuple(x.shape[1:]) for x in model.outputs[2:]]
        if state_in != state_out:
            raise ValueError(
                f"recurrent model's state inputs {state_in} and state "
                f"outputs {state_out} differ.")
        obs_shape = tuple(envs.single_observation_space.shape)
        in_shape = tuple(model.inputs[0].shape[1:])
        if in_shape != obs_shape:
            raise ValueError(
                f"model input shape {in_shape} does not match the "
                f"environment's observation shape {obs_shape}.")
        head = int(model.outputs[0].shape[-1])
        self.num_actions = int(envs.single_action_space.n)
        if self.num_actions > head:
            name = getattr(getattr(envs, "spec", None), "id", None) or (
                envs.envs[0].spec.id if hasattr(envs, "envs") else "envs")
            raise ValueError(
                f"{name} has {self.num_actions} actions but the policy head "
                f"has {head} outputs; build the model with num_actions >= "
                f"{self.num_actions}.")
        self.model, self.envs = model, envs
        self.num_envs = int(envs.num_envs)
        self.optimizer = inner_optimizers.from_keras(
            default_optimizer() if optimizer is None else optimizer)
        self.unroll = checks.positive_int("unroll", unroll)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}.")
        for name, value in (("entropy_cost", entropy_cost),
                            ("value_cost", value_cost)):
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(
                    f"{name} must be a non-negative number, got {value!r}.")
        self.gamma = float(gamma)
        self.entropy_cost, self.value_cost = float(entropy_cost), float(value_cost)
        self.reward_clip = (None if reward_clip is None else
                            checks.positive_number("reward_clip", reward_clip))
        self.max_grad_norm = (
            None if max_grad_norm is None else
            checks.positive_number("max_grad_norm", max_grad_norm))
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2 ** 31))
        self.seed = int(seed)

        self.params = list(model.trainable_variables)
        encoder = [l for l in model.layers if l.name == "encoder"]
        enc_ids = ({id(v) for v in encoder[0].trainable_variables}
                   if encoder else set())
        self.encoder_mask = [id(v) in enc_ids for v in self.params]
        fixed_ids = {id(v) for v in fixed}
        own = {id(v) for v in self.params}
        if not fixed_ids <= own:
            raise ValueError(
                "fixed must list trainable variables of the model; "
                f"{len(fixed_ids - own)} of them are not.")
        self.fixed_mask = [id(v) in fixed_ids for v in self.params]
        if all(self.fixed_mask):
            raise ValueError("fixed lists every trainable variable of the "
                             "model: the updates would change nothing.")
        self.opt_state = tf.nest.map_structure(
            lambda t: tf.Variable(t, trainable=False),
            self.optimizer.init([tf.convert_to_tensor(p) for p, f in zip(
                self.params, self.fixed_mask) if not f]))
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False,
                                   name="updates")
        self.recurrent = bool(state_in)
        self.state = [tf.Variable(tf.zeros((self.num_envs,) + shape),
                                  trainable=False, name=f"state_{i}")
                      for i, shape in enumerate(state_in)]
        obs, _ = envs.reset(seed=self.seed)
        self._obs_dtype = tf.as_dtype(envs.single_observation_space.dtype)
        self.observation = tf.Variable(obs, trainable=False, name="observation")
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, np.int64)
        self.episodes = []  # EpisodeRecord of each finished episode
        self._update_count = 0
        self._train_step = tf.function(self._train_step_fn)

    # ----------------------------------------------------------- pure parts
    def forward(self, params, observations, state=()):
        """``(logits [B, num_actions], value [B], new_state)`` at ``params``
        (``new_state`` is ``()`` for a feed-forward policy).

        Args:
          params: list of parameter tensors (``self.params`` order).
          observations: a batch of observations ``[B, ...]``.
          state: the recurrent policy's state (default ``()``: feed-forward).
        """
        inputs = [observations, *state] if self.recurrent else observations
        outputs, _ = self.model.stateless_call(
            params, [tf.convert_to_tensor(v)
                     for v in self.model.non_trainable_variables],
            inputs, training=False)
        logits, value, *new_state = outputs
        return logits[:, :self.num_actions], value[:, 0], tuple(new_state)

    def _policy_outputs(self, params, rollout):
        """Logits [T, N, A] and values [T, N] of the rollout's observations
        and the (constant) bootstrap value [N]."""
        obs = rollout.observations
        t, n = tf.shape(obs)[0], tf.shape(obs)[1]
        if not self.recurrent:
            flat = tf.reshape(obs, tf.concat([[t * n], tf.shape(obs)[2:]], 0))
            logits, values, _ = self.forward(
                params, tf.concat([flat, rollout.bootstrap_observation], 0))
            bootstrap = values[t * n:]
            values = tf.reshape(values[:t * n], [t, n])
            logits = tf.reshape(logits[:t * n], [t, n, self.num_actions])
            return logits, values, tf.stop_gradient(bootstrap)

        def step(carry, inputs):
            state = carry[0]
            obs_t, done_t = inputs
            logits, value, state = self.forward(params, obs_t, state)
            return _reset(state, done_t), logits, value

        first = tuple(rollout.initial_state)
        init = (first, tf.zeros([n, self.num_actions]), tf.zeros([n]))
        states, logits, values = tf.scan(
            step, (obs, rollout.dones), initializer=init)
        last = tuple(s[-1] for s in states)
        bootstrap = self.forward(params, rollout.bootstrap_observation, last)[1]
        return logits, values, tf.stop_gradient(bootstrap)

    def loss(self, params, rollout):
        """A2C loss of ``rollout`` at ``params`` and its parts: policy
        gradient ``-mean(log pi(a) A)``, ``value_cost * mean(0.5 A^2)`` and
        ``-entropy_cost * mean(H(pi))``, with ``A = R - V`` and ``R`` the
        n-step returns bootstrapped from ``V(bootstrap_observation)``
        (returns and the policy's advantages are constants).

        Args:
          params: list of parameter tensors (``self.params`` order).
          rollout: a ``Rollout`` (``self.rollout()``).
        """
        logits, values, bootstrap = self._policy_outputs(params, rollout)
        returns = tf.stop_gradient(n_step_returns(
            rollout.rewards, rollout.discounts, bootstrap))
        advantages = returns - values
        log_pi = tf.nn.log_softmax(logits)
        log_pi_a = tf.gather(log_pi, rollout.actions, batch_dims=2)
        policy_loss = -tf.reduce_mean(log_pi_a * tf.stop_gradient(advantages))
        value_loss = 0.5 * tf.reduce_mean(tf.square(advantages))
        entropy = -tf.reduce_mean(tf.reduce_sum(tf.exp(log_pi) * log_pi, -1))
        total = (policy_loss + self.value_cost * value_loss
                 - self.entropy_cost * entropy)
        return total, {"policy_loss": policy_loss, "value_loss": value_loss,
                       "entropy": entropy}

    def update(self, params, opt_state, step, rollout, loss_next=False):
        """One A2C update, pure: returns ``(UpdateRecord, opt_state, logs)``.

        ``step`` is the optimizer's 0-based iteration; with ``loss_next`` the
        record holds the loss of the same rollout after the update (one more
        forward pass). A non-finite loss or gradient leaves the parameters
        and optimizer state unchanged (``logs["finite"]`` is False).

        Args:
          params: list of parameter tensors (``self.params`` order).
          opt_state: the functional optimizer's state.
          step: the optimizer's 0-based iteration.
          rollout: a ``Rollout`` (``self.rollout()``).
          loss_next: also compute the rollout's loss after the update (default
            ``False``).
        """
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss, logs = self.loss(params, rollout)
        grads = tape.gradient(loss, params)
        grads = [tf.zeros_like(p) if g is None else g
                 for p, g in zip(params, grads)]
        free = [i for i, f in enumerate(self.fixed_mask) if not f]
        clipped = [grads[i] for i in free]
        norm = tf.linalg.global_norm(clipped)
        if self.max_grad_norm is not None:
            clipped, _ = tf.clip_by_global_norm(clipped, self.max_grad_norm,
                                                use_norm=norm)
        stepped, new_state = self.optimizer.update(
            step, clipped, [params[i] for i in free], opt_state)
        new_params = list(params)   # fixed parameters stay as they are
        for i, value in zip(free, stepped):
            new_params[i] = value
        finite = tf.math.is_finite(loss) & tf.math.is_finite(
            tf.linalg.global_norm(grads))
        keep = lambda new, old: tf.where(finite, new, old)  # noqa: E731
        new_params = [keep(a, b) for a, b in zip(new_params, params)]
        new_state = tf.nest.map_structure(keep, new_state, opt_state)
        after = (self.loss(new_params, rollout)[0] if loss_next
                 else tf.constant(np.nan, loss.dtype))
        logs = dict(logs, loss=loss, grad_norm=norm, finite=finite)
        return UpdateRecord(params, new_params, loss, after, grads), new_state, logs

    # ------------------------------------------------------ the environment
    def _env_step(self, actions):
        obs, reward, terminated, truncated, info = self.envs.step(actions)
        final = np.array(obs, copy=True)
        if "_final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                final[i] = info["final_obs"][i]
        self._returns += reward
        self._lengths += 1
        update = self._update_count
        for i in np.flatnonzero(np.logical_or(terminated, truncated)):
            self.episodes.append(EpisodeRecord(
                update, int(i), float(self._returns[i]), int(self._lengths[i])))
            self._returns[i], self._lengths[i] = 0.0, 0
        obs_dtype = self._obs_dtype.as_numpy_dtype
        return (np.asarray(obs, obs_dtype), np.asarray(reward, np.float32),
                np.asarray(terminated, bool), np.asarray(truncated, bool),
                np.asarray(final, obs_dtype))

    def rollout(self):
        """Steps every environment ``unroll`` times with the current policy
        (actions drawn statelessly from ``(seed, update, t)``); a ``Rollout``.
        Call inside ``tf.function`` (``train_step`` does)."""
        params = [tf.convert_to_tensor(v) for v in self.params]
        shape = self.observation.shape
        spec = (self._obs_dtype, tf.float32, tf.bool, tf.bool, self._obs_dtype)
        obs_ta = tf.TensorArray(self._obs_dtype, self.unroll,
                                element_shape=shape)
        act_ta = tf.TensorArray(tf.int32, self.unroll)
        rew_ta = tf.TensorArray(tf.float32, self.unroll)
        disc_ta = tf.TensorArray(tf.float32, self.unroll)
        done_ta = tf.TensorArray(tf.bool, self.unroll)
        obs = tf.convert_to_tensor(self.observation)
        state = initial_state = tuple(
            tf.convert_to_tensor(v) for v in self.state)
        base = self.updates * self.unroll
        for t in tf.range(self.unroll):
            logits, _, new_state = self.forward(params, obs, state)
            logits = tf.debugging.assert_all_finite(
                logits, "A2C policy logits are not finite (NaN/inf "
                "parameters or observations); no action can be drawn")
            seed = tf.stack([tf.constant(self.seed, tf.int64),
                             base + tf.cast(t, tf.int64)])
            action = tf.cast(tf.random.stateless_categorical(
                logits, 1, seed)[:, 0], tf.int32)
            nxt, reward, term, trunc, final = tf.numpy_function(
                self._env_step, [action], spec, stateful=True)
            nxt.set_shape(shape)
            final.set_shape(shape)
            for x in (reward, term, trunc):
                x.set_shape([self.num_envs])
            if self.reward_clip is not None:
                reward = tf.clip_by_value(reward, -self.reward_clip,
                                          self.reward_clip)
            cut = trunc & ~term
            # A time limit is not a terminal state: bootstrap from V(final).
            tail = tf.cond(tf.reduce_any(cut),
                           lambda: self.forward(params, final, new_state)[1],
                           lambda: tf.zeros([self.num_envs]))
            reward += self.gamma * tf.where(cut, tail, 0.0)
            done = term | trunc
            discount = self.gamma * (1.0 - tf.cast(done, tf.float32))
            obs_ta = obs_ta.write(t, obs)
            act_ta = act_ta.write(t, action)
            rew_ta = rew_ta.write(t, reward)
            disc_ta = disc_ta.write(t, discount)
            done_ta = done_ta.write(t, done)
            obs = nxt
            state = _reset(new_state, done)
        self.observation.assign(obs)
        for var, value in zip(self.state, state):
            var.assign(value)
        return Rollout(obs_ta.stack(), act_ta.stack(), rew_ta.stack(),
                       disc_ta.stack(), done_ta.stack(), obs, initial_state)

    # ------------------------------------------------------------- training
    def _train_step_fn(self, hook, hook_state, loss_next):
        rollout = self.rollout()
        step = tf.convert_to_tensor(self.updates)
        params = [tf.convert_to_tensor(v) for v in self.params]
        opt_state = tf.nest.map_structure(tf.convert_to_tensor, self.opt_state)
        record, new_state, logs = self.update(
            params, opt_state, step, rollout, loss_next=loss_next)
        for var, value in zip(self.params, record.params_next):
            var.assign(value)
        tf.nest.map_structure(lambda v, x: v.assign(x), self.opt_state,
                              new_state)
        self.updates.assign_add(1)
        if hook is not None:
            hook_state = hook(hook_state, step, *record)
        return logs, hook_state

    def train_step(self, hook=None, hook_state=()):
        """One compiled update. Returns ``logs`` (loss, its parts, gradient
        norm, finite), or ``(logs, hook_state)`` with a ``hook``.

        Args:
          hook: ``hook(state, step, theta, theta_next, loss, loss_next, grads)
            -> state`` called for every update, the inner loop's hook form
            (default ``None``).
          hook_state: the hook's initial state (default ``()``).
        """
        self._update_count = int(self.updates.numpy())
        logs, hook_state = self._train_step(hook, hook_state, hook is not None)
        logs = {k: v.numpy() for k, v in logs.items()}
        if not logs["finite"]:
            raise NonFiniteLossError(
                f"A2C update {int(self.updates.numpy()) - 1} had a non-finite "
                f"loss ({logs['loss']}) or gradient norm ({logs['grad_norm']});"
                " it was not applied.", step=int(self.updates.numpy()) - 1)
        return logs if hook is None else (logs, hook_state)

    def train(self, updates, hook=None, hook_state=()):
        """``updates`` compiled updates; returns the last logs (and the hook
        state with a ``hook``). Finished episodes are in ``self.episodes``.

        Args:
          updates: compiled updates to run, >= 1.
          hook: ``hook(state, step, theta, theta_next, loss, loss_next, grads)
            -> state`` called for every update, the inner loop's hook form
            (default ``None``).
          hook_state: the hook's initial state (default ``()``).
        """
        updates = checks.positive_int("updates", updates)
        for _ in range(updates):
            out = self.train_step(hook, hook_state)
            if hook is not None:
                out, hook_state = out
        return out if hook is None else (out, hook_state)

    # --------------------------------------------------------------- resume
    def _variables(self):
        return ([*self.params, *tf.nest.flatten(self.opt_state), self.updates,
                 self.observation, *self.state])

    def get_state(self):
        """Everything a run needs to continue exactly (a picklable dict):
        parameters, optimizer state, update counter, current observations,
        recurrent state, the episode statistics and the environments
        (``envs.dumps_envs``: sync vector environments only). The seed is
        not in it: build the resumed ``A2C`` with the same one."""
        from tfmeta.rl.envs import dumps_envs
        return {"variables": [v.numpy() for v in self._variables()],
                "episodes": list(self.episodes),
                "returns": self._returns.copy(),
                "lengths": self._lengths.copy(),
                "envs": dumps_envs(self.envs)}

    def set_state(self, state):
        """Continues the run ``get_state`` saved: the next updates are those
        the saved run would have made (same seed, model and settings). The
        restored environments replace ``self.envs``.

        Args:
          state: what ``get_state`` returned.
        """
        from tfmeta.rl.envs import loads_envs
        variables = self._variables()
        values = state["variables"]
        if len(values) != len(variables) or any(
                tuple(v.shape) != np.shape(x)
                for v, x in zip(variables, values)):
            raise ValueError(
                "saved A2C state does not fit this A2C (another model, "
                "optimizer, number of environments or observation shape).")
        envs = loads_envs(state["envs"])
        if envs.num_envs != self.num_envs:
            raise ValueError(
                f"saved state has {envs.num_envs} environments, this A2C "
                f"{self.num_envs}.")
        for var, value in zip(variables, values):
            var.assign(value)
        self.episodes = list(state["episodes"])
        self._returns = np.array(state["returns"], copy=True)
        self._lengths = np.array(state["lengths"], copy=True)
        self.envs = envs

    @property
    def env_steps(self):
        """Agent steps taken so far, all environments together (Atari:
        x frame skip 4 = emulator frames)."""
        return int(self.updates.numpy()) * self.unroll * self.num_envs

    def mean_return(self, last=100):
        """Mean return of the last ``last`` finished episodes (NaN if none).

        Args:
          last: episodes averaged (default 100).
        """
        eps = self.episodes[-last:]
        return float(np.mean([e.episode_return for e in eps])) if eps else np.nan


def _reset(state, done):
    """Zeros the recurrent state of the environments whose episode ended."""
    return tuple(tf.where(done[:, None], tf.zeros_like(x), x) for x in state)
