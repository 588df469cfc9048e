"""tfmeta.rl: A2C (checked by hand and on CartPole), the Miconi maze and the
Atari factory. Skipped without the rl extra (pip install 'tfmeta[rl]')."""

import importlib
import pickle
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

gym = pytest.importorskip("gymnasium", reason="the rl extra is not installed")
rl = importlib.import_module("tfmeta.rl")

try:  # Atari needs ale-py and OpenCV (gymnasium's AtariPreprocessing)
    import ale_py  # noqa: F401
    import cv2  # noqa: F401
    HAVE_ATARI = True
except ImportError:
    HAVE_ATARI = False
requires_atari = pytest.mark.skipif(
    not HAVE_ATARI, reason="ale-py/opencv (the rl extra) not installed")

GAMMA = 0.9


def linear_actor_critic(obs_dim, num_actions, seed=0):
    """logits = x W + b, value = x u + c: gradients are easy by hand."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((obs_dim,))
    return keras.Model(x, [keras.layers.Dense(num_actions, name="policy")(x),
                           keras.layers.Dense(1, name="value")(x)])


def maze_a2c(model, num_envs=2, unroll=3, seed=0, **maze_kwargs):
    envs = rl.vector_env(lambda: rl.Maze(**maze_kwargs), num_envs)
    return rl.A2C(model, envs, keras.optimizers.SGD(0.1), unroll=unroll,
                  gamma=GAMMA, entropy_cost=0.05, value_cost=0.5,
                  reward_clip=5.0, max_grad_norm=None, seed=seed)


# ------------------------------------------------------------------- A2C
def test_rollout_returns_loss_and_gradient_by_hand():
    """A rollout across a truncation (episode_length 2, unroll 3) with a
    constant value function: the truncated step's reward is gamma V(final)
    and its discount 0; loss and gradient equal a numpy computation."""
    model = linear_actor_critic(16, 4)
    model.get_layer("value").set_weights([np.zeros((16, 1)), np.array([0.7])])
    a2c = maze_a2c(model, episode_length=2, reward=0.0)
    rollout = tf.function(a2c.rollout)()
    np.testing.assert_allclose(rollout.discounts.numpy(),
                               [[GAMMA] * 2, [0.0] * 2, [GAMMA] * 2])
    np.testing.assert_allclose(rollout.rewards.numpy(),
                               [[0.0] * 2, [GAMMA * 0.7] * 2, [0.0] * 2],
                               rtol=1e-6)
    # a second episode started at t = 2: step counter back to 0
    np.testing.assert_allclose(rollout.observations.numpy()[2, :, 10], 0.0)

    # Perturb the value head so the advantages are not trivial.
    rng = np.random.default_rng(0)
    u, c = rng.normal(size=(16, 1)) * 0.3, np.array([0.2])
    model.get_layer("value").set_weights([u, c])
    w, b = model.get_layer("policy").get_weights()
    x = rollout.observations.numpy().astype(np.float64)        # [T, N, 16]
    a = rollout.actions.numpy()
    r, d = rollout.rewards.numpy(), rollout.discounts.numpy()
    boot = rollout.bootstrap_observation.numpy() @ u[:, 0] + c[0]
    returns = np.zeros_like(r)
    acc = boot
    for t in reversed(range(3)):
        acc = r[t] + d[t] * acc
        returns[t] = acc
    v = x @ u[:, 0] + c[0]
    adv = returns - v
    z = x @ w + b
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    pi = np.exp(logp)
    ent = -(pi * logp).sum(-1)
    m = adv.size
    pg = -np.mean(np.take_along_axis(logp, a[..., None], -1)[..., 0] * adv)
    expected = pg + 0.5 * 0.5 * np.mean(adv ** 2) - 0.05 * np.mean(ent)
    onehot = np.eye(4)[a]
    dz = (-(onehot - pi) * adv[..., None]
          + 0.05 * pi * (logp + ent[..., None])) / m      # d loss / d logits
    dv = -0.5 * adv / m                                  # d loss / d value
    by_hand = {"policy": [np.einsum("tni,tnj->ij", x, dz), dz.sum((0, 1))],
               "value": [np.einsum("tni,tn->i", x, dv)[:, None],
                         np.array([dv.sum()])]}

    params = [tf.convert_to_tensor(p) for p in a2c.params]
    opt_state = a2c.optimizer.init(params)
    record, _, logs = a2c.update(params, opt_state, tf.constant(0, tf.int64),
                                 rollout, loss_next=True)
    np.testing.assert_allclose(record.loss.numpy(), expected, rtol=1e-5)
    for var, grad in zip(a2c.params, record.grads):
        layer = var.path.split("/")[0]
        index = 0 if var.path.endswith("kernel") else 1
        np.testing.assert_allclose(grad.numpy(), by_hand[layer][index],
                                   rtol=1e-4, atol=1e-6)
    for p, q, g in zip(record.params, record.params_next, record.grads):
        np.testing.assert_allclose(q.numpy(), (p - 0.1 * g).numpy(), rtol=1e-6)
    np.testing.assert_allclose(record.loss_next.numpy(),
                               a2c.loss(record.params_next, rollout)[0].numpy(),
                               rtol=1e-6)
    assert bool(logs["finite"])


def test_hook_sees_every_update_as_a_path_segment():
    """One hook call per update with (i, theta_i, theta_{i+1}, f, f', grad):
    consecutive segments chain, and the model ends at the last theta_{i+1}."""
    model = linear_actor_critic(16, 4)
    a2c = maze_a2c(model)
    seen = []

    def hook(state, i, theta, theta_next, loss, loss_next, grads):
        seen.append(None)  # traced once
        return state + [tf.concat([tf.reshape(p, [-1]) for p in theta], 0),
                        tf.concat([tf.reshape(p, [-1]) for p in theta_next], 0),
                        tf.stack([tf.cast(i, tf.float32), loss, loss_next])]

    states = []
    for _ in range(3):
        _, state = a2c.train_step(hook, [])
        states.append([s.numpy() for s in state])
    assert len(seen) == 1
    for k, (theta, theta_next, scalars) in enumerate(states):
        assert scalars[0] == k and np.all(np.isfinite(scalars[1:]))
        assert not np.allclose(theta, theta_next)
        if k:
            np.testing.assert_array_equal(theta, states[k - 1][1])
    final = np.concatenate([v.numpy().ravel() for v in a2c.params])
    np.testing.assert_array_equal(final, states[-1][1])
    assert a2c.env_steps == 3 * 3 * 2
    assert a2c.encoder_mask == [False] * 4  # no nested "encoder" model here


def _np_a2c_loss(logits, values, actions, returns, adv_const, ec=0.05,
                 vc=0.5):
    """The A2C loss in numpy with the returns and the policy's advantages
    given as constants."""
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ent = -(np.exp(logp) * logp).sum(-1)
    pg = -np.mean(np.take_along_axis(logp, actions[..., None], -1)[..., 0]
                  * adv_const)
    return pg + vc * 0.5 * np.mean((returns - values) ** 2) - ec * np.mean(ent)


def test_recurrent_rollout_loss_and_gradient_by_hand():
    """A basic RNN agent across an episode end (episode_length 3, unroll 5):
    the state the rollout carries, the loss and its gradient (central
    differences of the loss with returns and advantages held constant)
    equal a numpy RNN that resets its state where an episode ended."""
    keras.utils.set_random_seed(1)
    a2c = maze_a2c(rl.nets.rnn_agent(16, 4, units=3), unroll=5,
                   episode_length=3)
    rollout = tf.function(a2c.rollout)()
    dones = rollout.dones.numpy()
    assert dones[2].all() and not dones[[0, 1, 3, 4]].any()
    names = ["rnn/kernel", "rnn/recurrent_kernel", "rnn/bias", "policy/kernel",
             "policy/bias", "value/kernel", "value/bias"]
    assert [v.path for v in a2c.params] == names
    theta0 = [v.numpy().astype(np.float64) for v in a2c.params]
    x = rollout.observations.numpy().astype(np.float64)
    a, r, d = (rollout.actions.numpy(), rollout.rewards.numpy(),
               rollout.discounts.numpy())

    def forward(theta):
        w, u, b, wp, bp, wv, bv = theta
        h = np.zeros((2, 3))
        logits, values = [], []
        for t in range(5):
            h = np.tanh(x[t] @ w + h @ u + b)
            logits.append(h @ wp + bp)
            values.append((h @ wv + bv)[:, 0])
            h = np.where(dones[t][:, None], 0.0, h)
        boot_h = np.tanh(rollout.bootstrap_observation.numpy() @ w + h @ u + b)
        return np.array(logits), np.array(values), (boot_h @ wv + bv)[:, 0], h

    logits, values, boot, h_end = forward(theta0)
    np.testing.assert_allclose(a2c.state[0].numpy(), h_end, atol=1e-6)
    returns = np.zeros_like(r)
    acc = boot
    for t in reversed(range(5)):
        acc = r[t] + d[t] * acc
        returns[t] = acc
    adv = returns - values

    def surrogate(theta):
        lg, v, _, _ = forward(theta)
        return _np_a2c_loss(lg, v, a, returns, adv)

    params = [tf.convert_to_tensor(p) for p in a2c.params]
    record, _, _ = a2c.update(params, a2c.optimizer.init(params),
                              tf.constant(0, tf.int64), rollout)
    np.testing.assert_allclose(record.loss.numpy(), surrogate(theta0),
                               rtol=1e-5)
    eps = 1e-6
    for k, grad in enumerate(record.grads):
        numeric = np.zeros_like(theta0[k])
        for index in np.ndindex(numeric.shape):
            losses = []
            for sign in (1, -1):
                theta = [p.copy() for p in theta0]
                theta[k][index] += sign * eps
                losses.append(surrogate(theta))
            numeric[index] = (losses[0] - losses[1]) / (2 * eps)
        np.testing.assert_allclose(grad.numpy(), numeric, rtol=1e-3,
                                   atol=1e-6, err_msg=names[k])


def test_same_seed_same_run():
    """Same seed: the same episodes and parameters after 3 updates."""
    def run(seed):
        a2c = maze_a2c(linear_actor_critic(16, 4), seed=seed, episode_length=4)
        start = np.concatenate([v.numpy().ravel() for v in a2c.params])
        a2c.train(3)
        return (start, np.concatenate([v.numpy().ravel() for v in a2c.params]),
                a2c.episodes)

    (s1, p1, e1), (s2, p2, e2) = run(5), run(5)
    assert len(e1) == 2 * 2 and e1 == e2  # 9 steps of 4-step episodes
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, s1)


def test_exact_resume_from_saved_state():
    """get_state after 2 updates, pickled; after 3 more updates the run is
    set back to it (new environment objects from the saved bytes) and makes
    the same 3 updates again: parameters, Adam state, recurrent state,
    observations and episodes. (The same A2C object: a second one would
    trace the recurrent update again, ~4 s.)"""
    keras.utils.set_random_seed(0)
    envs = rl.vector_env(lambda: rl.Maze(episode_length=4), 2)
    run = rl.A2C(rl.nets.rnn_agent(16, 4, units=3), envs,
                 keras.optimizers.Adam(0.01), unroll=3, seed=3)

    def snapshot(a2c):
        return [v.numpy() for v in a2c._variables()], list(a2c.episodes)

    run.train(2)
    saved = pickle.loads(pickle.dumps(run.get_state()))
    run.train(3)
    v1, e1 = snapshot(run)
    run.set_state(saved)
    assert run.envs is not envs and len(run.episodes) == 2
    run.train(3)
    v2, e2 = snapshot(run)
    assert len(e1) == 2 * 3 and e1 == e2
    for a, b in zip(v1, v2):
        np.testing.assert_array_equal(a, b)
    other = rl.A2C(rl.nets.rnn_agent(16, 4, units=5),
                   rl.vector_env(rl.MAZE_ID, 2), seed=3)
    with pytest.raises(ValueError, match="does not fit this A2C"):
        other.set_state(saved)
    with pytest.raises(ValueError, match="only a sync vector environment"):
        rl.dumps_envs(gym.make(rl.MAZE_ID))


def test_a2c_learns_cartpole():
    """Seeded A2C lifts CartPole-v1's mean return (last 20 episodes) above
    150 within 1500 updates of 8 environments x 5 steps."""
    envs = rl.vector_env("CartPole-v1", 8)
    keras.utils.set_random_seed(0)
    a2c = rl.A2C(rl.nets.mlp_net((4,), 2), envs, keras.optimizers.Adam(3e-3),
                 gamma=0.95, entropy_cost=0.0, max_grad_norm=None, seed=0)
    assert a2c.encoder_mask == [True] * 4 + [False] * 4
    start = np.mean([e.episode_return for e in a2c.episodes] or [0.0])
    best = 0.0
    for _ in range(30):
        a2c.train(50)
        best = max(best, a2c.mean_return(20))
        if best > 150:
            break
    assert start < 50 and best > 150, (a2c.env_steps, best)


def test_a2c_bad_input():
    envs = rl.vector_env("CartPole-v1", 2)
    with pytest.raises(ValueError, match="2 actions but the policy head has 1"):
        rl.A2C(linear_actor_critic(4, 1), envs)
    with pytest.raises(ValueError, match=r"input shape \(3,\) does not match"):
        rl.A2C(linear_actor_critic(3, 2), envs)
    with pytest.raises(ValueError, match="unroll must be a positive integer"):
        rl.A2C(linear_actor_critic(4, 2), envs, unroll=0)
    with pytest.raises(ValueError, match="gamma must be in"):
        rl.A2C(linear_actor_critic(4, 2), envs, gamma=1.5)
    plain = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")])
    with pytest.raises(ValueError, match="SAME_STEP"):
        rl.A2C(linear_actor_critic(4, 2), plain)
    with pytest.raises(TypeError, match="vector environment"):
        rl.A2C(linear_actor_critic(4, 2), gym.make("CartPole-v1"))


def test_non_finite_update_is_not_applied():
    envs = rl.vector_env(lambda: gym.wrappers.TransformReward(
        rl.Maze(), lambda r: np.nan), 2)
    a2c = rl.A2C(linear_actor_critic(16, 4), envs, seed=0)
    before = [v.numpy() for v in a2c.params]
    with pytest.raises(rl.a2c.NonFiniteLossError, match="not applied"):
        a2c.train_step()
    for v, old in zip(a2c.params, before):
        np.testing.assert_array_equal(v.numpy(), old)
    a2c.params[0].assign(np.full(a2c.params[0].shape, np.nan, np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="policy logits are not finite"):
        a2c.train_step()


# ------------------------------------------------------------------ maze
def test_maze_every_cell_reachable_and_moves_follow_the_walls():
    env = rl.Maze()
    walls = env.walls
    assert walls.shape == (11, 11) and walls[0].all() and walls[:, -1].all()
    open_cells = {tuple(rc) for rc in np.argwhere(~walls)}
    assert len(open_cells) == 9 * 9 - 16  # 4 x 4 pillars, centre open
    assert rl.maze.reachable(walls, env.centre) == open_cells
    goal = (1, 1)
    for cell in open_cells - {goal}:
        for action, (dr, dc) in enumerate(rl.maze.ACTIONS):
            env.reset(seed=0, options={"goal": goal, "start": cell})
            obs, reward, term, trunc, info = env.step(action)
            target = (cell[0] + dr, cell[1] + dc)
            if target == goal:
                assert reward == 10.0 and tuple(info["position"]) != goal
                assert tuple(info["position"]) in open_cells
            else:
                expected = cell if walls[target] else target
                assert tuple(info["position"]) == expected and reward == 0.0
            assert obs[9 + 3 + action] == 1.0 and obs[11] == reward


def test_maze_check_env_registered_seeded_and_vectorized():
    from gymnasium.utils.env_checker import check_env
    check_env(rl.Maze(), skip_render_check=True)
    env = gym.make(rl.MAZE_ID, max_episode_steps=None)
    assert isinstance(env.unwrapped, rl.Maze)

    def trajectory(seed):
        env = gym.make(rl.MAZE_ID)
        obs, info = env.reset(seed=seed)
        out = [info["goal"]]
        for t in range(200):
            obs, r, term, trunc, info = env.step(t % 4)
            out.append(np.concatenate([obs, info["position"]]))
        assert trunc and not term
        return np.concatenate([np.ravel(o) for o in out])

    np.testing.assert_array_equal(trajectory(3), trajectory(3))
    assert not np.array_equal(trajectory(3), trajectory(4))
    envs = rl.vector_env(rl.MAZE_ID, 4, seed=0)
    obs, _ = envs.step(np.zeros(4, int))[:2]
    assert obs.shape == (4, 16)


def test_maze_bad_input():
    with pytest.raises(ValueError, match="odd integer >= 5"):
        rl.Maze(size=10)
    env = rl.Maze()
    with pytest.raises(ValueError, match=r"goal \(2, 2\) is not an open cell"):
        env.reset(options={"goal": (2, 2)})
    with pytest.raises(ValueError, match="Unknown Maze reset options"):
        env.reset(options={"target": (1, 1)})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be in 0..3"):
        env.step(4)


# ----------------------------------------------------------------- Atari
TABLE_6 = {"AirRaid": 6, "UpNDown": 6, "WizardOfWor": 10, "Breakout": 4,
           "SpaceInvaders": 6, "Asteroids": 14, "Alien": 18, "Gravitar": 18,
           "RoadRunner": 18}


@requires_atari
def test_atari_table6_games_open_offline_with_their_action_counts():
    assert {g: rl.action_count(g) for g in TABLE_6} == TABLE_6
    assert len(rl.atari_games()) > 100
    env = rl.make_atari("breakout")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (84, 84, 3) and obs.dtype == np.uint8
    assert env.unwrapped.spec.id == "ALE/Breakout-v5"
    obs, *_ = env.step(1)
    assert obs.shape == (84, 84, 3)
    stacked = rl.make_atari("Breakout", frame_stack=2)
    assert stacked.observation_space.shape == (2, 84, 84, 3)
    envs = rl.make_atari_vector("Breakout", 2, seed=0)   # exact save/load
    rng = np.random.default_rng(0)
    for _ in range(20):
        envs.step(rng.integers(4, size=2))
    copy = rl.loads_envs(rl.dumps_envs(envs))
    for a in rng.integers(4, size=(100, 2)):
        for x, y in zip(envs.step(a)[:4], copy.step(a)[:4]):
            np.testing.assert_array_equal(x, y)
    net = rl.nets.atari_net((2, 84, 84, 3), 4)
    logits, value = net(stacked.reset(seed=0)[0][None])
    assert logits.shape == (1, 4) and value.shape == (1, 1)


@requires_atari
def test_atari_bad_input():
    with pytest.raises(ValueError, match="Unknown Atari game 'Breakot'. "
                                         "Did you mean 'Breakout'"):
        rl.make_atari("Breakot")
    with pytest.raises(ValueError, match="Unknown Atari game"):
        rl.make_atari_vector("NoSuchGame", 2)
    envs = rl.make_atari_vector("Alien", 1)
    with pytest.raises(ValueError, match="ALE/Alien-v5 has 18 actions but the "
                                         "policy head has 10 outputs"):
        rl.A2C(rl.nets.atari_net((84, 84, 3), 10), envs)


def test_missing_extra_names_it(monkeypatch):
    if HAVE_ATARI:
        monkeypatch.setitem(sys.modules, "cv2", None)
        with pytest.raises(ImportError, match=r"OpenCV.*tfmeta\[rl\]"):
            rl.make_atari("Breakout")
    monkeypatch.setitem(sys.modules, "ale_py", None)
    rl.atari._game_ids.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"ale-py.*tfmeta\[rl\]"):
            rl.game_id("Breakout")
    finally:
        rl.atari._game_ids.cache_clear()
    for name in [m for m in sys.modules if m.startswith("tfmeta.rl")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    with pytest.raises(ImportError, match=r"gymnasium.*tfmeta\[rl\]"):
        importlib.import_module("tfmeta.rl")
