"""Proximal policy optimization (Schulman et al. 2017) for continuous
actions, in TF/Keras: the Ant experiment's expert (gradient-based transfer
paper, section 5.4).

One *iteration* = ``rollout_length`` steps in each of a list of gymnasium
environments with the current stochastic policy (a diagonal Gaussian whose
mean is an MLP and whose log standard deviation is a free vector), then
``epochs`` passes of minibatch Adam steps on

    L = -E[min(r A, clip(r, 1 - eps, 1 + eps) A)]        (PPO eq. 7)
        + c_v E[(V(s) - R)^2] - c_e E[entropy],

with ``r = pi(a|s) / pi_old(a|s)``, ``A`` the generalized advantage
estimate (GAE, Schulman et al. 2016, eq. 16, ``lambda``) normalized per
minibatch, and ``R = A + V_old`` the value target. The whole update (every
epoch and minibatch) is one ``tf.function`` call. Observations are
normalized by running moments; rewards are scaled by a running standard
deviation of the discounted return (as OpenAI Baselines' ``VecNormalize``).

Defaults are the usual MuJoCo ones (Baselines / SB3): Adam 3e-4, 2048
steps an iteration, 10 epochs, minibatches of 64, gamma 0.99, lambda
0.95, eps 0.2, c_v 0.5, c_e 0, gradient global norm 0.5, 64-64 tanh nets.
"""

import json

import keras
import numpy as np
import tensorflow as tf

from tfmeta import checks
from tfmeta.errors import NonFiniteLossError


def gae(rewards, values, next_values, terminals, ends, gamma, lam):
    """Generalized advantage estimates (Schulman et al. 2016, eq. 16),
    time-major ``[T, N]``:
    ``delta_t = r_t + gamma (1 - term_t) V(s_{t+1}) - V(s_t)`` and
    ``A_t = delta_t + gamma lam (1 - end_t) A_{t+1}`` (``A_T = 0``), where
    ``term_t`` marks a termination (no bootstrap) and ``end_t`` any episode
    end (termination or time limit). Returns ``(advantages, returns =
    advantages + values)``.

    Args:
      rewards: ``[T, N]`` rewards.
      values: ``[T, N]`` ``V(s_t)``.
      next_values: ``[T, N]`` ``V(s_{t+1})`` (the final observation's
        value where an episode was truncated).
      terminals: ``[T, N]`` 1 where the episode terminated at that step.
      ends: ``[T, N]`` 1 where an episode ended (terminated or truncated).
      gamma: discount.
      lam: GAE's ``lambda``.
    """
    rewards, values, next_values, terminals, ends = (
        tf.convert_to_tensor(x, tf.float32)
        for x in (rewards, values, next_values, terminals, ends))
    deltas = rewards + gamma * (1.0 - terminals) * next_values - values
    carry = gamma * lam * (1.0 - ends)
    advantages = tf.scan(lambda acc, x: x[0] + x[1] * acc, (deltas, carry),
                         initializer=tf.zeros_like(deltas[0]), reverse=True)
    return advantages, advantages + values


def clipped_surrogate(log_prob, old_log_prob, advantages, clip):
    """PPO's clipped surrogate loss (eq. 7, negated to be minimized):
    ``-mean(min(r A, clip(r, 1 - clip, 1 + clip) A))`` with
    ``r = exp(log_prob - old_log_prob)``.

    Args:
      log_prob: ``[B]`` log-probabilities under the current policy.
      old_log_prob: ``[B]`` the same under the policy that acted.
      advantages: ``[B]`` advantage estimates.
      clip: ``eps``.
    """
    ratio = tf.exp(log_prob - old_log_prob)
    clipped = tf.clip_by_value(ratio, 1.0 - clip, 1.0 + clip)
    return -tf.reduce_mean(tf.minimum(ratio * advantages,
                                      clipped * advantages))


def gaussian_log_prob(mean, log_std, actions):
    """Log-density ``[B]`` of ``actions [B, A]`` under the diagonal Gaussian
    ``N(mean [B, A], exp(log_std [A])^2)``.

    Args:
      mean: ``[B, A]`` means.
      log_std: ``[A]`` log standard deviations.
      actions: ``[B, A]`` actions.
    """
    z = (actions - mean) * tf.exp(-log_std)
    return tf.reduce_sum(-0.5 * tf.square(z) - log_std
                         - 0.5 * np.log(2.0 * np.pi), axis=-1)


class RunningMoments:
    """Running mean and variance of vectors (Chan et al.'s parallel update).

    Args:
      shape: the vectors' shape (``()`` for scalars).
    """

    def __init__(self, shape=()):
        self.mean = np.zeros(shape)
        self.var = np.ones(shape)
        self.count = 1e-4

    def update(self, batch):
        """Add the rows of ``batch [n, *shape]``.

        Args:
          batch: the new vectors.
        """
        batch = np.asarray(batch, np.float64)
        mean, var, n = batch.mean(0), batch.var(0), len(batch)
        delta, total = mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + var * n
                    + delta ** 2 * self.count * n / total) / total
        self.count = total


class PPO:
    """PPO with a Gaussian MLP policy and an MLP value function.

    Args:
      obs_dim: observation size.
      action_dim: action size (actions are clipped to ``[-1, 1]`` when sent
        to the environment; the log-probabilities are of the unclipped
        draws).
      hidden: hidden layer sizes of both nets (default ``(64, 64)``, tanh).
      learning_rate: Adam's learning rate (default 3e-4).
      gamma: discount (default 0.99).
      lam: GAE's lambda (default 0.95).
      clip: the surrogate's ``eps`` (default 0.2).
      epochs: passes over an iteration's data (default 10).
      minibatch_size: samples per Adam step (default 64).
      value_coef: weight of the value loss (default 0.5).
      entropy_coef: weight of the entropy bonus (default 0).
      max_grad_norm: global-norm clipping of each step's gradient (default
        0.5; ``None``: none).
      init_log_std: the policy's initial log standard deviation (default
        0; it is learned).
      seed: seeds the initializers, action draws and minibatch shuffles.
    """

    def __init__(self, obs_dim, action_dim, hidden=(64, 64),
                 learning_rate=3e-4, gamma=0.99, lam=0.95, clip=0.2,
                 epochs=10, minibatch_size=64, value_coef=0.5,
                 entropy_coef=0.0, max_grad_norm=0.5, init_log_std=0.0,
                 seed=0):
        self.config = dict(
            obs_dim=checks.positive_int("obs_dim", obs_dim),
            action_dim=checks.positive_int("action_dim", action_dim),
            hidden=[checks.positive_int("hidden", h) for h in hidden],
            learning_rate=checks.positive_number("learning_rate",
                                                 learning_rate),
            gamma=float(gamma), lam=float(lam),
            clip=checks.positive_number("clip", clip),
            epochs=checks.positive_int("epochs", epochs),
            minibatch_size=checks.positive_int("minibatch_size",
                                               minibatch_size),
            value_coef=float(value_coef), entropy_coef=float(entropy_coef),
            max_grad_norm=None if max_grad_norm is None else
            checks.positive_number("max_grad_norm", max_grad_norm),
            init_log_std=float(init_log_std), seed=int(seed))
        for name in ("gamma", "lam"):
            if not 0.0 <= self.config[name] <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got "
                                 f"{self.config[name]!r}.")
        self.policy = self._mlp(action_dim, "policy", 0.01)
        self.value = self._mlp(1, "value", 1.0)
        self.log_std = tf.Variable(tf.fill([action_dim], float(init_log_std)),
                                   name="log_std")
        self.variables = (self.policy.trainable_variables
                          + self.value.trainable_variables + [self.log_std])
        self.optimizer = keras.optimizers.Adam(learning_rate, epsilon=1e-5)
        self.obs_moments = RunningMoments((obs_dim,))
        self.return_moments = RunningMoments()
        self._rng = np.random.default_rng([seed, 1])
        self._update = tf.function(self._update_fn)
        self._act = tf.function(self._act_fn)
        self._value = tf.function(lambda obs: self.value(obs)[:, 0])
        self.iterations = 0
        self.env_steps = 0
        self.episode_returns = []   # of every finished episode, raw rewards

    def _mlp(self, out, name, final_scale):
        seed = self.config["seed"]
        init = lambda i, s=np.sqrt(2): keras.initializers.Orthogonal(  # noqa
            s, seed=seed * 10 + i + (5 if name == "value" else 0))
        layers = [keras.Input((self.config["obs_dim"],))]
        for i, h in enumerate(self.config["hidden"]):
            layers.append(keras.layers.Dense(h, "tanh",
                                             kernel_initializer=init(i)))
        layers.append(keras.layers.Dense(out, kernel_initializer=init(
            9, final_scale)))
        return keras.Sequential(layers, name=name)

    # ------------------------------------------------------------ acting
    def normalize(self, obs):
        """Observations standardized by the running moments, clipped to
        ``[-10, 10]`` (float32).

        Args:
          obs: ``[B, obs_dim]`` observations.
        """
        z = (np.asarray(obs, np.float64) - self.obs_moments.mean) / np.sqrt(
            self.obs_moments.var + 1e-8)
        return np.clip(z, -10.0, 10.0).astype(np.float32)

    def _act_fn(self, obs, noise):
        mean = self.policy(obs)
        actions = mean + tf.exp(self.log_std) * noise
        return (actions, gaussian_log_prob(mean, self.log_std, actions),
                self.value(obs)[:, 0])

    def mean_action(self, obs):
        """The deterministic policy: the Gaussian's mean at ``obs``, clipped
        to ``[-1, 1]`` (NumPy ``[B, action_dim]``).

        Args:
          obs: ``[B, obs_dim]`` raw observations.
        """
        obs = np.asarray(obs)
        if obs.ndim != 2 or obs.shape[1] != self.config["obs_dim"]:
            raise ValueError(f"observations must be [B, "
                             f"{self.config['obs_dim']}], got "
                             f"{list(obs.shape)}.")
        mean = self.policy(self.normalize(obs), training=False)
        return np.clip(keras.ops.convert_to_numpy(mean), -1.0, 1.0)

    # ------------------------------------------------------------ update
    def loss(self, obs, actions, old_log_prob, advantages, returns):
        """``(total, surrogate, value loss, entropy)`` on a minibatch.

        Args:
          obs: ``[B, obs_dim]`` normalized observations.
          actions: ``[B, action_dim]`` the actions taken.
          old_log_prob: ``[B]`` their log-probabilities when taken.
          advantages: ``[B]`` advantages (normalized here).
          returns: ``[B]`` value targets.
        """
        c = self.config
        adv = (advantages - tf.reduce_mean(advantages)) / (
            tf.math.reduce_std(advantages) + 1e-8)
        mean = self.policy(obs, training=True)
        log_prob = gaussian_log_prob(mean, self.log_std, actions)
        surrogate = clipped_surrogate(log_prob, old_log_prob, adv, c["clip"])
        value_loss = tf.reduce_mean(tf.square(self.value(obs)[:, 0] - returns))
        entropy = tf.reduce_sum(self.log_std + 0.5 * np.log(2 * np.pi * np.e))
        total = surrogate + c["value_coef"] * value_loss \
            - c["entropy_coef"] * entropy
        return total, surrogate, value_loss, entropy

    def _update_fn(self, obs, actions, old_log_prob, advantages, returns,
                   seed):
        c = self.config
        n = tf.shape(obs)[0]
        mb = c["minibatch_size"]
        batches = n // mb
        total = tf.zeros([4])
        for epoch in tf.range(c["epochs"]):
            order = tf.argsort(tf.random.stateless_uniform(
                [n], tf.stack([seed, tf.cast(epoch, tf.int64)])))
            for b in tf.range(batches):
                idx = order[b * mb:(b + 1) * mb]
                with tf.GradientTape() as tape:
                    pieces = self.loss(
                        tf.gather(obs, idx), tf.gather(actions, idx),
                        tf.gather(old_log_prob, idx),
                        tf.gather(advantages, idx), tf.gather(returns, idx))
                grads = tape.gradient(pieces[0], self.variables)
                if c["max_grad_norm"] is not None:
                    grads, _ = tf.clip_by_global_norm(grads,
                                                      c["max_grad_norm"])
                self.optimizer.apply_gradients(zip(grads, self.variables))
                total += tf.stack(pieces)
        return total / tf.cast(c["epochs"] * batches, tf.float32)

    def train(self, envs, iterations, rollout_length=None, callback=None):
        """``iterations`` PPO iterations on ``envs`` (a list of gymnasium
        environments with Box observations of ``obs_dim`` and actions of
        ``action_dim``; ``rollout_length`` steps each an iteration, default
        ``2048 // len(envs)``). Episodes that end are reset in place.
        ``callback(ppo, logs)`` after each iteration. Returns the logs of
        the last iteration.

        Args:
          envs: the environments.
          iterations: number of iterations.
          rollout_length: steps per environment per iteration.
          callback: called with ``(self, logs)`` after each iteration.
        """
        c = self.config
        checks.positive_int("iterations", iterations)
        rollout_length = checks.positive_int(
            "rollout_length", rollout_length or max(1, 2048 // len(envs)))
        if not hasattr(self, "_obs"):
            self._obs = np.stack([e.reset(seed=int(self._rng.integers(2**31)))[0]
                                  for e in envs])
            self._ep_return = np.zeros(len(envs))
            self._disc_return = np.zeros(len(envs))
        if self._obs.shape != (len(envs), c["obs_dim"]):
            raise ValueError(f"observations of shape {list(self._obs.shape)}; "
                             f"expected [{len(envs)}, {c['obs_dim']}].")
        logs = {}
        for _ in range(iterations):
            T, N = rollout_length, len(envs)
            buf = {k: np.zeros((T, N) + s, np.float32) for k, s in (
                ("obs", (c["obs_dim"],)), ("actions", (c["action_dim"],)),
                ("log_prob", ()), ("values", ()), ("rewards", ()),
                ("next_values", ()), ("terminals", ()), ("ends", ()))}
            raw_obs = np.zeros((T, N, c["obs_dim"]))
            for t in range(T):
                raw_obs[t] = self._obs
                obs = self.normalize(self._obs)
                noise = self._rng.standard_normal(
                    (N, c["action_dim"])).astype(np.float32)
                actions, log_prob, values = (
                    x.numpy() for x in self._act(obs, noise))
                buf["obs"][t], buf["actions"][t] = obs, actions
                buf["log_prob"][t], buf["values"][t] = log_prob, values
                finals = {}
                for i, env in enumerate(envs):
                    nxt, reward, terminated, truncated, _ = env.step(
                        np.clip(actions[i], -1.0, 1.0))
                    self._ep_return[i] += reward
                    self._disc_return[i] = self._disc_return[i] * c["gamma"] \
                        + reward
                    buf["rewards"][t, i] = reward
                    buf["terminals"][t, i] = float(terminated)
                    if terminated or truncated:
                        buf["ends"][t, i] = 1.0
                        finals[i] = nxt
                        self.episode_returns.append(float(self._ep_return[i]))
                        self._ep_return[i] = 0.0
                        nxt, _ = env.reset(seed=int(self._rng.integers(2**31)))
                    self._obs[i] = nxt
                self.return_moments.update(self._disc_return)
                self._disc_return[buf["ends"][t] > 0] = 0.0
                # V(s_{t+1}): the final observation's where truncated
                nxt_obs = self._obs.copy()
                for i, final in finals.items():
                    nxt_obs[i] = final
                buf["next_values"][t] = self._value(
                    self.normalize(nxt_obs)).numpy()
            self.obs_moments.update(raw_obs.reshape(-1, c["obs_dim"]))
            scale = np.sqrt(self.return_moments.var + 1e-8)
            rewards = np.clip(buf["rewards"] / scale, -10, 10)
            adv, ret = gae(rewards, buf["values"], buf["next_values"],
                           buf["terminals"], buf["ends"], c["gamma"], c["lam"])
            flat = lambda x: tf.reshape(x, [T * N] + list(x.shape[2:]))  # noqa
            pieces = self._update(
                flat(tf.constant(buf["obs"])), flat(tf.constant(buf["actions"])),
                flat(tf.constant(buf["log_prob"])), flat(adv), flat(ret),
                tf.constant(self.iterations, tf.int64)).numpy()
            if not np.all(np.isfinite(pieces)):
                raise NonFiniteLossError(
                    f"PPO's loss was not finite at iteration "
                    f"{self.iterations}: {pieces.tolist()}")
            self.iterations += 1
            self.env_steps += T * N
            recent = self.episode_returns[-20:]
            logs = dict(iteration=self.iterations, env_steps=self.env_steps,
                        loss=float(pieces[0]), surrogate=float(pieces[1]),
                        value_loss=float(pieces[2]), entropy=float(pieces[3]),
                        mean_return=float(np.mean(recent)) if recent else
                        float("nan"),
                        mean_reward=float(buf["rewards"].mean()))
            if callback is not None:
                callback(self, logs)
        return logs

    # ------------------------------------------------------------ saving
    def save(self, path):
        """Write the policy, value net, log-std and observation moments to
        the new file ``path`` (``.npz``; an existing file is refused).

        Args:
          path: the file to create.
        """
        arrays = {f"policy_{i}": keras.ops.convert_to_numpy(v)
                  for i, v in enumerate(self.policy.weights)}
        arrays.update({f"value_{i}": keras.ops.convert_to_numpy(v)
                       for i, v in enumerate(self.value.weights)})
        arrays["log_std"] = self.log_std.numpy()
        arrays["obs_mean"] = self.obs_moments.mean
        arrays["obs_var"] = self.obs_moments.var
        arrays["config"] = np.array(json.dumps(self.config))
        with open(path, "xb") as f:   # never overwrite
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path):
        """A ``PPO`` with the weights ``save`` wrote to ``path``.

        Args:
          path: an ``.npz`` file written by ``save``.
        """
        with np.load(path) as data:
            if "config" not in data or "log_std" not in data:
                raise ValueError(f"{path} is not a PPO file written by "
                                 "PPO.save (no config or log_std).")
            ppo = cls(**json.loads(str(data["config"])))
            for prefix, net in (("policy", ppo.policy), ("value", ppo.value)):
                for i, v in enumerate(net.weights):
                    v.assign(data[f"{prefix}_{i}"])
            ppo.log_std.assign(data["log_std"])
            ppo.obs_moments.mean = data["obs_mean"]
            ppo.obs_moments.var = data["obs_var"]
        return ppo
