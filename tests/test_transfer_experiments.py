"""Meta-transfer experiments at a tiny budget: the pendulum (Table 4,
Figure 3; its simulated fixed task set and in-graph sampler; skipped where
the ``mujoco`` extra is not installed) and the maze (Table 3)."""

import pathlib
import sys

import numpy as np
import pytest

from conftest import requires_mujoco
from tfmeta.tasks import pendulum

ROOT = pathlib.Path(__file__).resolve().parents[1]


def experiment(name):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


@pytest.fixture(scope="module")
def data():
    return pendulum.simulate(6, 30, seed=0)


@requires_mujoco
def test_simulated_tasks_are_the_simulators_dynamics(data):
    assert data["single_x"].shape == (6, 30, 5)
    assert data["double_y"].shape == (6, 30, 6)
    i = 3
    L, g = data["length"][i], data["gravity"][i]
    for kind in ("single", "double"):
        x = data[f"{kind}_x"][i].astype(np.float64)
        n = x.shape[1] - 1
        np.testing.assert_allclose(
            pendulum.Pendulum(kind, L, g).step(x[:, :n], x[:, n:]),
            data[f"{kind}_y"][i], rtol=1e-4, atol=1e-4)


@requires_mujoco
def test_sampled_batches_pair_points_add_noise_and_repeat(data):
    clean = next(iter(pendulum.sampled_dataset(data, 4, 10, 12, seed=5)))
    noisy = next(iter(pendulum.sampled_dataset(data, 4, 10, 12, sigma=2.0,
                                               seed=5)))
    again = next(iter(pendulum.sampled_dataset(data, 4, 10, 12, sigma=2.0,
                                               seed=5)))
    later = next(iter(pendulum.sampled_dataset(data, 4, 10, 12, sigma=2.0,
                                               seed=5, start=1)))
    for key in noisy:
        np.testing.assert_array_equal(noisy[key], again[key])
    assert not np.array_equal(noisy["support_x"], later["support_x"])
    np.testing.assert_array_equal(noisy["query_y"], clean["query_y"])
    assert 1.5 < float(np.std(noisy["support_y"] - clean["support_y"])) < 2.5
    # every query pair (x, y) is one simulated point of that task
    qx, qy = clean["query_x"].numpy(), clean["query_y"].numpy()
    for b in range(4):
        task = int(np.argmin(np.abs(data["length"] - clean["length"][b])))
        rows = [np.flatnonzero((data["double_x"][task] == x).all(1))
                for x in qx[b]]
        assert all(len(r) == 1 for r in rows)
        np.testing.assert_array_equal(
            data["double_y"][task][[r[0] for r in rows]], qy[b])
        assert len({int(r[0]) for r in rows}) == 12   # without replacement
    params = next(iter(pendulum.sampled_dataset(data, 4, 10, 12, seed=5,
                                                parameters=True)))
    np.testing.assert_allclose(params["query_y"][:, 0, 0], params["length"])
    with pytest.raises(ValueError, match="larger than the 30 points"):
        pendulum.sampled_dataset(data, 4, 31, 12)
    with pytest.raises(ValueError, match="sigma must be a non-negative"):
        pendulum.sampled_dataset(data, 4, 10, 12, sigma=-1.0)


@requires_mujoco
def test_pendulum_experiment_runs_at_a_tiny_budget(tmp_path):
    rows = experiment("transfer_pendulum").main([
        "--preset", "tiny", "--out", str(tmp_path), "--encoders",
        "linear,mean", "--meta-steps", "3", "--sigmas", "3",
        "--parameter-sigmas", "0"])
    assert {(r["table"], r["encoder"]) for r in rows} == {
        ("dynamics", "linear"), ("dynamics", "mean"),
        ("parameters", "linear"), ("parameters", "mean")}
    assert all(np.isfinite(r["query_mse"]) for r in rows)
    text = (tmp_path / "results.md").read_text()
    assert "| linear | " in text and "[0.41 ± 0.05]" in text
    assert "predict-the-current-state" in text
    for name in ("results.csv", "table4_mse_vs_sigma.png",
                 "figure3_parameters.png"):
        assert (tmp_path / name).exists(), name


def test_maze_experiment_runs_at_a_tiny_budget(tmp_path):
    transfer_maze = experiment("transfer_maze")
    rows = transfer_maze.main(["--preset", "tiny", "--out", str(tmp_path),
                               "--encoders", "linear,deep_kernel",
                               "--meta-steps", "3"])
    assert [r["encoder"] for r in rows] == ["linear", "deep_kernel"]
    assert all(-1.0 <= r["reward"] <= 0.0 for r in rows)
    text = (tmp_path / "results.md").read_text()
    assert "[-0.036 ± 0.029]" not in text            # width 12 not run
    assert "| linear | " in text and "[0.000 ± 0.000]" in text
    assert (tmp_path / "table3_reward.png").exists()


def test_maze_reward_is_zero_for_the_optimal_policy_and_minus_one_stuck():
    """The experiment's scoring: a policy table that is the DFS policy
    reaches the goal (reward 0); one that never moves scores -1."""
    from tfmeta.tasks import maze

    transfer_maze = experiment("transfer_maze")
    test = maze.tasks(5, 6, seed=3)

    class Oracle:
        def transfer(self, support_x, support_y, query_x):
            out = []
            for grid, cells in zip(test["grid"], query_x):
                policy = maze.optimal_policy(grid)
                actions = [policy[int(r), int(c)] for r, c in cells]
                out.append(np.eye(4)[np.maximum(actions, 0)])
            return np.array(out)

    class Stuck:
        def transfer(self, support_x, support_y, query_x):
            logits = np.zeros(query_x.shape[:2] + (4,))
            logits[..., 2] = 1.0          # always "up": off the top row
            return logits

    np.testing.assert_array_equal(transfer_maze.rewards(Oracle(), test), 0.0)
    np.testing.assert_array_equal(transfer_maze.rewards(Stuck(), test), -1.0)
