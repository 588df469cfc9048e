"""tfmeta.rl.RLLeap: Leap's eq. 8 along the A2C parameter path. Skipped
without the rl extra (pip install 'tfmeta[rl]')."""

import importlib

import keras
import numpy as np
import pytest

pytest.importorskip("gymnasium", reason="the rl extra is not installed")
rl = importlib.import_module("tfmeta.rl")

OBS = 16  # the maze's observation size
UPDATES = 3
META_LR = 0.5


def maze_task(reward, episode_length, calls):
    """A tiny RL task: a maze with its own reward and episode length, a
    fresh 2-env A2C agent with fresh heads. ``calls`` records each seed."""
    def task(seed):
        calls.append((reward, episode_length, seed))
        keras.utils.set_random_seed(seed)
        model = rl.nets.mlp_net((OBS,), 4, hidden=(6,))
        envs = rl.vector_env(
            lambda: rl.Maze(episode_length=episode_length, reward=reward), 2)
        return rl.A2C(model, envs, keras.optimizers.SGD(0.2), unroll=3,
                      gamma=0.9, entropy_cost=0.05, max_grad_norm=0.5,
                      seed=seed)
    return task


def recorded_path(reward, episode_length, seed, init):
    """Reruns a task from ``init`` with a hook that returns each update's
    record: the encoder's (theta_i, theta_{i+1}, f_i, f_{i+1}, g_i) in
    numpy."""
    a2c = maze_task(reward, episode_length, [])(seed)
    enc = [v for v, m in zip(a2c.params, a2c.encoder_mask) if m]
    for v, x in zip(enc, init):
        v.assign(x)
    hook = lambda state, i, *record: record  # noqa: E731
    path, state = [], ()
    for _ in range(UPDATES):
        _, state = a2c.train_step(hook, state)
        th, th1, f, f1, g = state
        pick = lambda xs: np.concatenate([  # noqa: E731
            np.ravel(x.numpy()) for x, m in zip(xs, a2c.encoder_mask) if m])
        path.append((pick(th), pick(th1), float(f), float(f1), pick(g)))
    return path


def eq8_numpy(path, p):
    """Eq. 8 (factor p dropped, stabilizer on, loss in the manifold)."""
    meta = np.zeros_like(path[0][0], np.float64)
    for th, th1, f, f1, g in path:
        d_theta = th1.astype(np.float64) - th
        d_f = f1 - f
        norm2 = d_theta @ d_theta + d_f ** 2
        scale = 1.0 if p == 2 else 1.0 / np.sqrt(norm2)
        meta -= scale * (-abs(d_f) * g + d_theta)
    return meta


@pytest.mark.parametrize("metric,p,via", [("energy", 2, "meta_step"),
                                          ("length", 1, "fit")])
def test_rl_leap_moves_init_by_eq8_of_the_recorded_a2c_path(metric, p, via):
    calls = []
    tasks = [maze_task(10.0, 4, calls), maze_task(-3.0, 7, calls)]
    keras.utils.set_random_seed(123)
    encoder = rl.nets.mlp_net((OBS,), 4, hidden=(6,)).get_layer("encoder")
    leap = rl.RLLeap(encoder, tasks, updates=UPDATES, metric=metric, seed=7)
    leap.compile(keras.optimizers.SGD(META_LR))
    init = [v.numpy() for v in encoder.trainable_variables]
    if via == "meta_step":
        logs = leap.meta_step()
        assert sorted(log["task"] for log in logs) == [0, 1]
    else:
        history = leap.fit(steps_per_epoch=1, verbose=0).history
        assert set(history) == {"loss", "path_length", "mean_return"}
        assert np.isfinite(history["path_length"][0])
    assert len(calls) == 2 and calls[0][:2] != calls[1][:2]
    assert int(leap.optimizer.iterations.numpy()) == 1

    metas = []
    for reward, length, seed in calls:
        path = recorded_path(reward, length, seed, init)
        # the path is a real A2C path: the encoder moved and the loss changed
        assert all(np.abs(th1 - th).max() > 0 for th, th1, *_ in path)
        metas.append(eq8_numpy(path, p))
    expected = np.concatenate([x.ravel() for x in init]) - META_LR * np.mean(
        metas, axis=0)
    got = np.concatenate([v.numpy().ravel()
                          for v in encoder.trainable_variables])
    assert np.abs(got - np.concatenate([x.ravel() for x in init])).max() > 1e-4
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_rl_leap_bad_input():
    calls = []
    task = maze_task(10.0, 4, calls)
    encoder = rl.nets.mlp_net((OBS,), 4, hidden=(6,)).get_layer("encoder")
    with pytest.raises(ValueError, match="metric"):
        rl.RLLeap(encoder, [task], updates=1, metric="area")
    with pytest.raises(ValueError, match="meta_batch_size 2 exceeds"):
        rl.RLLeap(encoder, [task], updates=1, meta_batch_size=2)
    with pytest.raises(ValueError, match="non-empty list"):
        rl.RLLeap(encoder, [], updates=1)
    import tensorflow as tf
    with pytest.raises(ValueError, match="MultiWorkerMirroredStrategy"):
        rl.RLLeap(encoder, [task], updates=1,
                  strategy=tf.distribute.MirroredStrategy(["/cpu:0"]))
    leap = rl.RLLeap(encoder, [task], updates=1)
    with pytest.raises(RuntimeError, match="compile"):
        leap.meta_step()
    with pytest.raises(TypeError, match="Keras optimizer"):
        leap.compile("sgd")
    with pytest.raises(ValueError, match="runs eagerly"):
        leap.compile(keras.optimizers.SGD(0.1), run_eagerly=False)
    leap.compile(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="steps_per_epoch"):
        leap.fit()
    assert not calls  # nothing ran
    other = rl.nets.mlp_net((OBS,), 4, hidden=(5,)).get_layer("encoder")
    leap = rl.RLLeap(other, [task], updates=1)
    leap.compile(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="do not match the shared encoder"):
        leap.meta_step()


@pytest.mark.slow
def test_atari_experiment_tiny_writes_curves_over_seeds(tmp_path):
    """experiments/atari_leap.py --preset tiny on one process (~1 min): the
    evaluation's curves for each seed and initialization, the CSV of every
    episode and the Figure 4 PNG."""
    pytest.importorskip("ale_py", reason="the rl extra is not installed")
    import json
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]
                           / "experiments"))
    import atari_leap
    atari_leap.main(["--preset", "tiny", "--eval-seeds", "2",
                     "--curve-bins", "5", "--out", str(tmp_path / "run")])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["workers"] == 1
    for init in ("leap", "random"):
        row = results["evaluation"]["Breakout"][init]
        assert len(row["curves"]) == 2 and all(len(c) == 5
                                                for c in row["curves"])
        assert row["curve_updates"] == [2.0, 4.0, 6.0, 8.0, 10.0]
        assert sum(row["episodes"]) > 0
    lines = (tmp_path / "run" / "curves.csv").read_text().splitlines()
    assert lines[0] == "game,init,seed,update,env,episode_return"
    assert len(lines) - 1 == sum(
        sum(results["evaluation"]["Breakout"][i]["episodes"])
        for i in ("leap", "random"))
    assert (tmp_path / "run" / "atari_leap.png").stat().st_size > 0
