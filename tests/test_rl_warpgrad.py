"""tfmeta.rl.RLWarpGrad: WarpGrad's continual meta-training (Algorithm 3,
eq. 12) of the maze agent's warp parameters through the A2C hook; the
T-Nets-RNN cell. Skipped without the rl extra."""

import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmeta import layers as L
from tfmeta.warpgrad import partition, warp_gradient

pytest.importorskip("gymnasium", reason="the rl extra is not installed")
rl = importlib.import_module("tfmeta.rl")

OBS, UNITS, META_UNITS, INTERVAL, WARP_LR = 16, 4, 3, 3, 0.5


def agent(seed=0, cell="warp", fixed=True):
    """A tiny maze agent (2 environments, 12-step episodes, unroll 6) with
    a Warp-RNN (warp parameters fixed in the A2C) or another cell."""
    keras.utils.set_random_seed(seed)
    cell = {"warp": lambda: L.WarpRNNCell(UNITS, meta_units=META_UNITS,
                                          modulation_initializer="glorot_uniform"),
            "tnets": lambda: L.TNetsRNNCell(UNITS)}[cell]()
    model = rl.nets.rnn_agent(OBS, 4, cell=cell)
    envs = rl.vector_env(lambda: rl.Maze(episode_length=12), 2)
    return rl.A2C(model, envs, keras.optimizers.Adam(0.05), unroll=6,
                  gamma=0.9, entropy_cost=0.03, value_cost=0.1,
                  reward_clip=None, max_grad_norm=4.0, seed=seed,
                  fixed=partition(model)[1] if fixed else ())


def values(variables):
    return [v.numpy().copy() for v in variables]


def record_path(a2c, updates):
    """The A2C path rebuilt from its public pieces (the rollout, the pure
    update), keeping each update's rollout: [(rollout, UpdateRecord)]."""
    rollout_fn = tf.function(a2c.rollout)
    path = []
    for _ in range(updates):
        rollout = rollout_fn()
        params = [tf.convert_to_tensor(v) for v in a2c.params]
        opt = tf.nest.map_structure(tf.convert_to_tensor, a2c.opt_state)
        record, opt, _ = a2c.update(params, opt, tf.convert_to_tensor(
            a2c.updates), rollout)
        for v, x in zip(a2c.params, record.params_next):
            v.assign(x)
        tf.nest.map_structure(lambda v, x: v.assign(x), a2c.opt_state, opt)
        a2c.updates.assign_add(1)
        path.append((rollout, record))
    return path


def test_warp_parameters_step_every_interval_with_eq12_on_the_path():
    """RLWarpGrad.fit (two meta-steps of INTERVAL task updates) against the
    same run rebuilt by hand from the A2C's public pieces: every task
    update leaves phi as it is and moves theta; phi takes one SGD step with
    the mean of eq. 12's terms every INTERVAL updates, each term computed
    by ``tfmeta.warpgrad.warp_gradient`` (eq. 12 with the stored theta_k,
    L_meta the A2C loss of update k's rollout)."""
    a2c = agent()
    warp = rl.RLWarpGrad(a2c, interval=INTERVAL)
    warp.compile(keras.optimizers.SGD(WARP_LR))
    phi0 = values(warp.meta_variables)
    history = warp.fit(epochs=1, steps_per_epoch=2, verbose=0)
    assert int(a2c.updates.numpy()) == 2 * INTERVAL
    assert np.isfinite(history.history["loss"][0])
    assert max(np.abs(a - v.numpy()).max()
               for a, v in zip(phi0, warp.meta_variables)) > 1e-4
    last = [g.numpy() for g in warp.last_gradient]
    final = values(a2c.params)

    ref = agent()   # the same seeds: the same run, rebuilt by hand
    mask = warp.warp_mask
    phi_vars = [v for v, m in zip(ref.params, mask) if m]

    def merge(theta, phi):
        it_t, it_p = iter(theta), iter(phi)
        return [next(it_p) if m else next(it_t) for m in mask]

    def objective(params, nontrainable, rollout):
        return ref.loss(params, rollout)[0], None, nontrainable

    task_part = lambda xs: [x for x, m in zip(xs, mask) if not m]  # noqa: E731
    for _ in range(2):
        total = None
        for rollout, record in record_path(ref, INTERVAL):
            for a, b, m in zip(record.params, record.params_next, mask):
                if m:   # a task update leaves phi as it is ...
                    np.testing.assert_array_equal(a.numpy(), b.numpy())
            assert max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(
                task_part(record.params), task_part(record.params_next))) > 0
            phi = [tf.convert_to_tensor(v) for v in phi_vars]
            term, _ = warp_gradient(
                objective, merge, phi, [], task_part(record.params),
                task_part(record.params), None, rollout, step_size=None,
                approximate=True)
            total = term if total is None else [
                a + b for a, b in zip(total, term)]
        mean = [g.numpy() / INTERVAL for g in total]
        assert max(np.abs(g).max() for g in mean) > 1e-4
        for v, g in zip(phi_vars, mean):   # ... and the warp update does
            v.assign(v.numpy() - WARP_LR * g)
    for mine, theirs in zip(last, mean):
        np.testing.assert_allclose(mine, theirs, rtol=2e-4, atol=1e-6)
    for mine, theirs in zip(final, values(ref.params)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)


def test_tnets_cell_shapes_identity_at_init_and_split():
    """T_h, T_x, T_b are units x units identities: the untrained cell is
    keras's SimpleRNNCell with the same W, V, b; partition puts the T's in
    phi; a non-identity T changes the step."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 2)).astype("float32")
    h = rng.normal(size=(3, 5)).astype("float32")
    cell, plain = L.TNetsRNNCell(5), keras.layers.SimpleRNNCell(5)
    cell.build((None, 2))
    plain.build((None, 2))
    assert [tuple(v.shape) for v in (cell.t_h, cell.t_x, cell.t_b)] == \
        [(5, 5)] * 3
    for v in (cell.t_h, cell.t_x, cell.t_b):
        np.testing.assert_array_equal(v.numpy(), np.eye(5))
    for mine, theirs in zip(cell.task_variables, plain.weights):
        mine.assign(rng.normal(size=mine.shape))
        theirs.assign(mine)
    out, state = cell(x, [h])
    np.testing.assert_allclose(out, plain(x, [h])[0], rtol=1e-5, atol=1e-6)
    assert out.shape == (3, 5) and state[0].shape == (3, 5)
    cell.t_h.assign(rng.normal(size=(5, 5)))
    want = np.tanh(h @ cell.recurrent_kernel.numpy() @ cell.t_h.numpy()
                   + x @ cell.kernel.numpy() + cell.bias.numpy())
    np.testing.assert_allclose(cell(x, [h])[0], want, rtol=1e-5, atol=1e-6)
    model = rl.nets.rnn_agent(OBS, 4, cell=L.TNetsRNNCell(5))
    task, phi = partition(model)
    assert sorted(v.path.rsplit("/", 1)[1] for v in phi) == \
        ["t_b", "t_h", "t_x"]
    assert len(task) == 7


def test_bad_input():
    with pytest.raises(ValueError, match="interval"):
        rl.RLWarpGrad(agent(), interval=0)
    with pytest.raises(ValueError, match="fixed=tfmeta.warpgrad.partition"):
        rl.RLWarpGrad(agent(fixed=False))
    plain = rl.A2C(rl.nets.rnn_agent(OBS, 4, units=3),
                   rl.vector_env(rl.MAZE_ID, 1), unroll=2, seed=0)
    with pytest.raises(ValueError, match="no warp parameters"):
        rl.RLWarpGrad(plain)
    with pytest.raises(RuntimeError, match="compile"):
        rl.RLWarpGrad(agent()).meta_step()
    warp = rl.RLWarpGrad(agent())
    with pytest.raises(ValueError, match="runs eagerly"):
        warp.compile(keras.optimizers.SGD(0.1), run_eagerly=False)
    with pytest.raises(TypeError, match="Keras optimizer"):
        warp.compile("sgd")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        warp.fit()
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        warp = rl.RLWarpGrad(agent())
        with pytest.raises(ValueError, match="RLWarpGrad cannot run under "
                                             "MirroredStrategy"):
            warp.compile(keras.optimizers.SGD(0.1))
    model = rl.nets.rnn_agent(OBS, 4, units=3)
    with pytest.raises(ValueError, match="every trainable variable"):
        rl.A2C(model, rl.vector_env(rl.MAZE_ID, 1),
               fixed=model.trainable_variables)
    with pytest.raises(ValueError, match="not"):
        rl.A2C(model, rl.vector_env(rl.MAZE_ID, 1),
               fixed=[tf.Variable(1.0)])


def test_maze_experiment_tiny(tmp_path):
    """experiments/warpgrad_maze.py --preset tiny: the four agents, round
    by round, into results.csv, results.md and the PNG; it refuses a
    non-empty --out and an update count that is not a multiple of the
    warp interval."""
    import csv
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]
                           / "experiments"))
    import warpgrad_maze
    out = tmp_path / "run"
    rows = warpgrad_maze.main(["--preset", "tiny", "--out", str(out)])
    with open(out / "results.csv") as handle:
        saved = list(csv.DictReader(handle))
    assert [(r["agent"], int(r["episodes"])) for r in saved] == [
        (a, e) for e in (4, 8) for a in warpgrad_maze.AGENTS]
    assert len(rows) == 8 and all(np.isfinite(r["mean_return"])
                                  for r in rows)
    report = (out / "results.md").read_text()
    assert "~160" in report and all(f"| {a} | 8 |" in report
                                    for a in warpgrad_maze.AGENTS)
    assert (out / "warpgrad_maze.png").stat().st_size > 1000
    with pytest.raises(SystemExit, match="not empty"):
        warpgrad_maze.main(["--preset", "tiny", "--out", str(out)])
    with pytest.raises(SystemExit):
        warpgrad_maze.main(["--preset", "tiny", "--updates", "3",
                            "--out", str(tmp_path / "other")])
    assert not (tmp_path / "other").exists()

    # A run cut after the 2nd chunk's row but before its state was saved
    # (as a kill there would), continued by --resume: the same rows as the
    # uninterrupted run (each agent is its own stream: one agent alone makes
    # its same rows; the Warp-RNN's state includes the warp optimizer's).
    # Wall time (seconds) aside.
    cut, args = tmp_path / "cut", ["--preset", "tiny", "--agents", "Warp-RNN"]
    save, saves = warpgrad_maze.atomic_write, []

    def killed_at_second_state(path, data):
        if path.name == warpgrad_maze.STATE:
            saves.append(path)
            if len(saves) == 2:
                raise KeyboardInterrupt
        save(path, data)

    warpgrad_maze.atomic_write = killed_at_second_state
    try:
        with pytest.raises(KeyboardInterrupt):
            warpgrad_maze.main(args + ["--out", str(cut)])
    finally:
        warpgrad_maze.atomic_write = save
    assert len(read(cut)) == 2      # the 2nd chunk's row, not its state
    warpgrad_maze.main(args + ["--out", str(cut), "--resume"])
    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert strip(read(cut)) == strip([r for r in saved
                                      if r["agent"] == "Warp-RNN"])
    with pytest.raises(SystemExit, match="other settings"):
        warpgrad_maze.main(["--preset", "tiny", "--out", str(cut),
                            "--resume"])
    with pytest.raises(SystemExit, match="holds no state.pkl"):
        warpgrad_maze.main(args + ["--out", str(tmp_path / "none"),
                                   "--resume"])


def read(run):
    import csv
    with open(run / "results.csv") as handle:
        return list(csv.DictReader(handle))
