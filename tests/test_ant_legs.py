"""Ant with varied legs (transfer paper, section 5.4), its PPO expert's
loss pieces and the Table 2 experiment at a tiny budget; what needs MuJoCo
is skipped where the ``mujoco`` extra is not installed."""

import builtins
import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import requires_mujoco
from tfmeta.tasks import ant_legs

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _step(env, qpos, qvel, action):
    """One environment step from a given state (the same for any legs)."""
    env.reset(seed=0)
    env.set_state(qpos, qvel)
    return env.step(action)[0]


@requires_mujoco
def test_leg_lengths_reach_every_leg_and_change_the_dynamics():
    import mujoco
    for upper, ankle in ((0.2, 0.6), (0.45, 0.25)):
        env = ant_legs.make_env(upper, ankle)
        uppers, ankles = ant_legs.leg_lengths(env.model)
        np.testing.assert_allclose(uppers, [upper] * 4, atol=1e-9)
        np.testing.assert_allclose(ankles, [ankle] * 4, atol=1e-9)
        # the ankle's body sits at the end of the upper leg on every leg
        ends = [env.model.body_pos[env.model.geom_bodyid[mujoco.mj_name2id(
            env.model, mujoco.mjtObj.mjOBJ_GEOM, a)]] for _, a in
            ant_legs.LEG_GEOMS]
        np.testing.assert_allclose(np.linalg.norm(ends, axis=1), upper)
    # gymnasium's own lengths reproduce its stock Ant exactly
    from gymnasium.envs.mujoco.ant_v5 import AntEnv
    stock = ant_legs.random_trajectory(
        AntEnv(include_cfrc_ext_in_observation=False),
        np.random.default_rng(1), steps=5)
    ours = ant_legs.random_trajectory(
        ant_legs.make_env(np.sqrt(0.08), np.sqrt(0.32)),
        np.random.default_rng(1), steps=5)
    np.testing.assert_array_equal(stock[1], ours[1])
    # same state and action, different legs: a different next state
    base = ant_legs.make_env(0.3, 0.3)
    qpos, qvel = base.init_qpos.copy(), base.init_qvel.copy() + 0.1
    action = np.linspace(-1, 1, 8)
    nxt = {lengths: _step(ant_legs.make_env(*lengths), qpos, qvel, action)
           for lengths in ((0.3, 0.3), (0.55, 0.3), (0.3, 0.55))}
    again = _step(ant_legs.make_env(0.3, 0.3), qpos, qvel, action)
    np.testing.assert_array_equal(nxt[(0.3, 0.3)], again)
    assert np.abs(nxt[(0.3, 0.3)] - nxt[(0.55, 0.3)]).max() > 1e-2
    assert np.abs(nxt[(0.3, 0.3)] - nxt[(0.3, 0.55)]).max() > 1e-2


def _expert(obs, lengths):
    """A deterministic stand-in expert that depends on the legs."""
    return np.tanh(obs[:, :8] * lengths[:, :1] - lengths[:, 1:])


@requires_mujoco
def test_simulated_tasks_support_query_and_seeds():
    data = ant_legs.simulate(3, _expert, query_points=6, trajectories=2,
                             seed=4)
    assert data["support_x"].shape == (3, 2, 30, 35)
    assert data["support_y"].shape == (3, 2, 30, 27)
    assert data["query_x"].shape == (3, 6, 27)
    assert data["query_y"].shape == (3, 6, 8)
    lengths = data["lengths"]
    assert lengths.shape == (3, 2) and lengths.min() >= 0.2 \
        and lengths.max() <= 0.6
    # a trajectory: each point's next state is the next point's state
    sx, sy = data["support_x"][1, 0], data["support_y"][1, 0]
    np.testing.assert_array_equal(sx[1:, :27], sy[:-1])
    assert np.abs(sx[:, 27:]).max() <= 1.0 and sx[:, 27:].std() > 0.3
    # the query is the expert's action at its states
    np.testing.assert_allclose(
        data["query_y"], np.stack([_expert(x, np.tile(l, (6, 1))) for x, l in
                                   zip(data["query_x"], lengths)]),
        rtol=1e-5, atol=1e-6)
    again = ant_legs.simulate(3, _expert, query_points=6, trajectories=2,
                              seed=4)
    other = ant_legs.simulate(3, _expert, query_points=6, trajectories=2,
                              seed=5)
    for key in data:
        np.testing.assert_array_equal(data[key], again[key])
    assert not np.allclose(data["lengths"], other["lengths"])

    batch = next(iter(ant_legs.sampled_dataset(data, 4, 5, sigma=0.0,
                                               seed=1)))
    noisy = next(iter(ant_legs.sampled_dataset(data, 4, 5, sigma=2.0,
                                               seed=1)))
    assert batch["support_x"].shape == (4, 30, 35)
    assert batch["query_y"].shape == (4, 5, 8)
    np.testing.assert_array_equal(batch["query_y"], noisy["query_y"])
    assert 1.5 < float(np.std(noisy["support_y"] - batch["support_y"])) < 2.5
    test = ant_legs.fixed_batch(data, sigma=1.0, seed=3)
    np.testing.assert_array_equal(test["support_x"], data["support_x"][:, 0])
    assert test["query_x"].shape == (3, 6, 27)
    with pytest.raises(ValueError, match="larger than the 6 expert points"):
        ant_legs.sampled_dataset(data, 4, 7)
    with pytest.raises(ValueError, match="sigma must be a non-negative"):
        ant_legs.fixed_batch(data, sigma=-1.0)


@requires_mujoco
def test_rollout_scores_policies_and_refuses_bad_input():
    lengths = [[0.3, 0.4], [0.5, 0.5]]
    zero, steps = ant_legs.rollout(lengths, lambda o: np.zeros((len(o), 8)),
                                   horizon=20, seed=2)
    again, _ = ant_legs.rollout(lengths, lambda o: np.zeros((len(o), 8)),
                                horizon=20, seed=2)
    np.testing.assert_array_equal(zero, again)
    np.testing.assert_array_equal(steps, [20, 20])
    # standing still: ~1 a step (healthy), a full-torque policy pays control
    assert np.all((zero / 20 > 0.5) & (zero / 20 < 1.5))
    full, _ = ant_legs.rollout(lengths, lambda o: np.ones((len(o), 8)),
                               horizon=20, seed=2)
    assert np.all(full < zero - 20)   # control cost 0.5 * 8 a step
    # the expert's training environment: new legs every reset, appended
    env = ant_legs.RandomLegsAnt(horizon=3, seed=1)
    obs, _ = env.reset()
    assert obs.shape == (29,)
    np.testing.assert_array_equal(obs[27:], env.lengths)
    np.testing.assert_allclose(ant_legs.leg_lengths(env.env.model)[0],
                               env.lengths[0])
    first = env.lengths.copy()
    flags = [env.step(np.zeros(8))[3] for _ in range(3)]
    assert flags == [False, False, True]
    env.reset()
    assert not np.array_equal(first, env.lengths)
    with pytest.raises(ValueError, match=r"actions of shape \[2, 8\]"):
        ant_legs.rollout(lengths, lambda o: np.zeros((len(o), 3)), horizon=2)
    with pytest.raises(ValueError, match=r"lengths must be \[n, 2\]"):
        ant_legs.rollout([[0.3, 0.4, 0.5]], lambda o: o[:, :8], horizon=2)
    with pytest.raises(ValueError, match=r"ankle length must be a number in "
                                         r"\[0.2, 0.6\], got 0.7"):
        ant_legs.rollout([[0.3, 0.7]], lambda o: o[:, :8], horizon=2)


def test_lengths_out_of_range_are_refused():
    with pytest.raises(ValueError, match="upper-leg length must be a number "
                                         r"in \[0.2, 0.6\], got 0.1"):
        ant_legs.check_lengths(0.1, 0.3)
    with pytest.raises(ValueError, match="ankle length"):
        ant_legs.check_lengths(0.3, float("nan"))
    with pytest.raises(ValueError, match="upper-leg length"):
        ant_legs.model_xml(True, 0.3)


def test_missing_mujoco_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_mujoco(name, *args, **kwargs):
        if name == "mujoco" or name.startswith("mujoco."):
            raise ImportError("No module named 'mujoco'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mujoco)
    with pytest.raises(ImportError, match=r"ant_legs tasks need MuJoCo: "
                                          r"pip install 'tfmeta\[mujoco\]'"):
        ant_legs.make_env(0.3, 0.3)
    with pytest.raises(ImportError, match=r"tfmeta\[mujoco\]"):
        ant_legs.simulate(2, _expert)


# ------------------------------------------------------------------ PPO
ppo_module = pytest.importorskip("tfmeta.rl.ppo")


def test_gae_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    T, N, gamma, lam = 7, 3, 0.9, 0.8
    rewards, values, next_values = rng.normal(size=(3, T, N))
    terminals = np.zeros((T, N))
    ends = np.zeros((T, N))
    terminals[2, 0] = ends[2, 0] = 1      # a fall: no bootstrap
    ends[4, 1] = 1                        # a time limit: bootstrap, cut
    adv, ret = ppo_module.gae(rewards, values, next_values, terminals, ends,
                              gamma, lam)
    expected = np.zeros((T, N))
    for n in range(N):
        acc = 0.0
        for t in reversed(range(T)):
            if ends[t, n]:
                acc = 0.0
            delta = rewards[t, n] + gamma * (1 - terminals[t, n]) * \
                next_values[t, n] - values[t, n]
            acc = delta + gamma * lam * acc
            expected[t, n] = acc
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, expected + values, rtol=1e-5, atol=1e-5)
    # lambda = 1 without ends: discounted returns minus values
    adv1, _ = ppo_module.gae(rewards, values, np.r_[values[1:], values[-1:]],
                             np.zeros((T, N)), np.zeros((T, N)), gamma, 1.0)
    disc = [sum(gamma ** (k - t) * rewards[k] for k in range(t, T))
            + gamma ** (T - t) * values[-1] for t in range(T)]
    np.testing.assert_allclose(adv1, np.array(disc) - values, rtol=1e-4,
                               atol=1e-4)


def test_clipped_surrogate_and_log_prob():
    rng = np.random.default_rng(1)
    lp_old = rng.normal(size=50)
    lp = lp_old + rng.normal(scale=0.5, size=50)
    adv = rng.normal(size=50)
    ratio = np.exp(lp - lp_old)
    expected = -np.mean(np.minimum(ratio * adv,
                                   np.clip(ratio, 0.8, 1.2) * adv))
    got = ppo_module.clipped_surrogate(tf.constant(lp), tf.constant(lp_old),
                                       tf.constant(adv), 0.2)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # outside the clip range the gradient vanishes, inside it does not
    lp_var = tf.Variable([np.log(2.0), 0.05], dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = ppo_module.clipped_surrogate(lp_var, tf.zeros(2),
                                            tf.constant([1.0, 1.0]), 0.2)
    grad = tape.gradient(loss, lp_var).numpy()
    assert grad[0] == 0.0 and grad[1] < 0.0
    mean, log_std = rng.normal(size=(4, 3)), rng.normal(size=3)
    actions = rng.normal(size=(4, 3))
    std = np.exp(log_std)
    density = np.prod(np.exp(-0.5 * ((actions - mean) / std) ** 2)
                      / (std * np.sqrt(2 * np.pi)), axis=1)
    np.testing.assert_allclose(
        ppo_module.gaussian_log_prob(tf.constant(mean), tf.constant(log_std),
                                     tf.constant(actions)),
        np.log(density), rtol=1e-6)


class _Line:
    """A 1-d task: reward -(a - s)^2, new s every step; 5-step episodes."""

    def __init__(self):
        self.rng, self.t = np.random.default_rng(0), 0

    def reset(self, seed=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.s, self.t = self.rng.uniform(-0.5, 0.5, 1), 0
        return self.s.copy(), {}

    def step(self, action):
        reward = -float((action[0] - self.s[0]) ** 2)
        self.s, self.t = self.rng.uniform(-0.5, 0.5, 1), self.t + 1
        return self.s.copy(), reward, False, self.t >= 5, {}


def test_ppo_learns_a_tiny_task_saves_and_refuses_bad_input(tmp_path):
    ppo = ppo_module.PPO(1, 1, hidden=(16,), learning_rate=3e-3, epochs=4,
                         minibatch_size=32, seed=0)
    envs = [_Line() for _ in range(4)]
    states = np.linspace(-0.5, 0.5, 11)[:, None]
    before = np.mean((ppo.mean_action(states) - states) ** 2)
    logs = ppo.train(envs, 15, rollout_length=32)
    after = np.mean((ppo.mean_action(states) - states) ** 2)
    assert logs["env_steps"] == 15 * 4 * 32 and np.isfinite(logs["loss"])
    assert after < 0.25 * before, (before, after)
    path = tmp_path / "expert.npz"
    ppo.save(path)
    np.testing.assert_allclose(ppo_module.PPO.load(path).mean_action(states),
                               ppo.mean_action(states), rtol=1e-6)
    with pytest.raises(FileExistsError):
        ppo.save(path)
    with pytest.raises(ValueError, match=r"observations must be \[B, 1\]"):
        ppo.mean_action(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="lam must be in"):
        ppo_module.PPO(1, 1, lam=1.5)
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="not a PPO file"):
        ppo_module.PPO.load(tmp_path / "other.npz")


# ----------------------------------------------------------- experiment
@requires_mujoco
def test_ant_experiment_runs_at_a_tiny_budget(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        transfer_ant = __import__("transfer_ant")
    finally:
        sys.path.pop(0)
    expert = tmp_path / "expert.npz"
    ppo_module.PPO(ant_legs.OBS_DIM + 2, ant_legs.ACTION_DIM).save(expert)
    out = tmp_path / "out"
    rows = transfer_ant.main([
        "--preset", "tiny", "--out", str(out), "--expert", str(expert),
        "--encoders", "linear,deep_kernel", "--meta-steps", "2",
        "--sigmas", "0,4", "--train-tasks", "3", "--test-tasks", "2"])
    assert [(r["encoder"], r["sigma"]) for r in rows] == [
        ("linear", 0.0), ("linear", 4.0), ("deep_kernel", 0.0),
        ("deep_kernel", 4.0)]
    assert all(np.isfinite(r["reward"]) and r["bc_mse"] >= 0 for r in rows)
    text = (out / "results.md").read_text()
    assert "[3.999 ± 0.112]" in text and "zero torque" in text
    assert (out / "results.csv").exists() and (out / "table2_reward.png").exists()
    # the NumPy policy of the decoded weights is the query learner's
    config = transfer_ant.parse_args(["--preset", "tiny", "--expert",
                                      str(expert)])
    data = ant_legs.simulate(3, _expert, query_points=4, trajectories=1)
    meta = transfer_ant.build("context", 0, data)
    test = ant_legs.fixed_batch(data, sigma=1.0)
    obs = data["query_x"][:, 0]
    np.testing.assert_allclose(
        transfer_ant.decoded_policy(meta, test)(obs),
        meta.transfer(test["support_x"], test["support_y"], obs[:, None])[:, 0],
        rtol=1e-4, atol=1e-5)
    assert config["horizon"] == 50
    with pytest.raises(SystemExit):
        transfer_ant.main(["--expert", str(tmp_path / "missing.npz")])
