"""Single -> double pendulum tasks (transfer paper, section 5.3); skipped
where the ``mujoco`` extra is not installed."""

import builtins
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import requires_mujoco
from tfmeta.tasks import pendulum


@requires_mujoco
def test_single_and_double_pendulum_differ_and_parameters_matter():
    state = np.array([[0.1, 0.2, 0.3, -0.4]])
    double_state = np.array([[0.1, 0.2, 0.3, -0.4, 0.0, 0.0]])
    action = [[1.5]]
    single = pendulum.Pendulum("single", 0.6, 9.81).step(state, action)
    double = pendulum.Pendulum("double", 0.6, 9.81).step(double_state, action)
    assert single.shape == (1, 4) and double.shape == (1, 6)
    # same state and action, different dynamics
    assert np.abs(single[0] - double[0, :4]).max() > 1e-2
    for kind, s in (("single", state), ("double", double_state)):
        base = pendulum.Pendulum(kind, 0.6, 9.81).step(s, action)
        longer = pendulum.Pendulum(kind, 0.9, 9.81).step(s, action)
        heavier = pendulum.Pendulum(kind, 0.6, 15.0).step(s, action)
        assert np.abs(base - longer).max() > 1e-2, kind
        assert np.abs(base - heavier).max() > 1e-2, kind
        # deterministic, and the state really moves
        np.testing.assert_array_equal(
            base, pendulum.Pendulum(kind, 0.6, 9.81).step(s, action))
        assert np.abs(base - s).max() > 1e-3
    # the edit reached the model: the default length and gravity
    # reproduce gymnasium's own MJCF
    xml = pendulum.model_xml("double", 0.6, 9.81)
    assert 'pos="0 0 0.6"' in xml and "-9.81" in xml


@requires_mujoco
def test_task_batches():
    batch = pendulum.tasks(3, support_size=7, query_size=5, sigma=0.0, seed=1)
    assert batch["support_x"].shape == (3, 7, 5)
    assert batch["support_y"].shape == (3, 7, 4)
    assert batch["query_x"].shape == (3, 5, 7)
    assert batch["query_y"].shape == (3, 5, 6)
    L, g = batch["length"][1], batch["gravity"][1]
    sim = pendulum.Pendulum("double", L, g)
    x = batch["query_x"][1].astype(np.float64)
    np.testing.assert_allclose(sim.step(x[:, :6], x[:, 6:]),
                               batch["query_y"][1], rtol=1e-4, atol=1e-4)
    assert np.abs(batch["support_x"][..., 4]).max() <= 3.0
    noisy = pendulum.tasks(3, support_size=7, query_size=5, sigma=2.0, seed=1)
    np.testing.assert_array_equal(noisy["query_y"], batch["query_y"])
    assert np.abs(noisy["support_y"] - batch["support_y"]).std() > 1.0
    params = pendulum.tasks(3, 7, sigma=0.0, seed=1, parameters=True)
    np.testing.assert_allclose(params["query_y"][:, 0],
                               np.stack([batch["length"], batch["gravity"]], 1))
    assert pendulum.current_state_mse(batch) > 0
    element = next(iter(pendulum.dataset(2, 7, 5, seed=3, pool_size=4)))
    assert element["query_y"].shape == (2, 5, 6)


@requires_mujoco
def test_a_shared_model_steps_the_same_from_several_threads(
        tmp_path, monkeypatch):
    """tf.data builds batches on several threads and models are cached."""
    monkeypatch.chdir(tmp_path)   # MuJoCo logs its warnings to the cwd
    sim = pendulum.Pendulum("double", 0.5, 12.0)
    rng = np.random.default_rng(0)
    states = [pendulum._states(rng, 200, "double") for _ in range(4)]
    actions = [rng.uniform(-3, 3, (200, 1)) for _ in range(4)]
    serial = [sim.step(s, a) for s, a in zip(states, actions)]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(sim.step, states, actions))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FloatingPointError, match="unstable"):
        sim.step(np.full((1, 6), 1e30), [[0.0]])


def test_missing_mujoco_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_mujoco(name, *args, **kwargs):
        if name == "mujoco" or name.startswith("mujoco."):
            raise ImportError("No module named 'mujoco'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mujoco)
    with pytest.raises(ImportError, match=r"pip install 'tfmeta\[mujoco\]'"):
        pendulum.tasks(2)
    with pytest.raises(ImportError, match="pendulum tasks need MuJoCo"):
        pendulum.Pendulum("single", 0.6, 9.81)
