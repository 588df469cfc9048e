"""The extension API of issue 22: the one loop over tasks, the adaptation
spec, the method registry, and a method written as one file
(docs/add_a_method.md). The objective contract and the step-by-step inner
loop are tested in test_inner_loop.py."""

import importlib.util
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import as_dataset, mlp, task_batch

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _anil_module():
    spec = importlib.util.spec_from_file_location(
        "anil_example", ROOT / "docs" / "examples" / "anil.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------- the task loop
def test_evaluate_tasks_respects_vectorize_tasks():
    """``evaluate_tasks`` runs through ``over_tasks``: vectorized or not, the
    same per-task losses (full-batch steps, so no seed dependence)."""
    batch = task_batch(num_tasks=2, seed=5)
    out = []
    for vectorize in (False, True):
        meta = tfmeta.Reptile(mlp([2, 5, 1]), inner_steps=3,
                              inner_optimizer=keras.optimizers.SGD(0.1),
                              vectorize_tasks=vectorize)
        meta.compile(optimizer="sgd", loss="mse")
        out.append(meta.evaluate_tasks(batch))
    for key in ("loss_before", "loss_after"):
        assert out[0][key].shape == (2,)
        np.testing.assert_allclose(out[0][key], out[1][key], rtol=1e-5)
    assert np.abs(out[0]["loss_after"] - out[0]["loss_before"]).min() > 1e-4


def test_offline_warpgrad_refuses_vectorize_tasks():
    from tfmeta import layers as L
    learner = L.warped_sequential(
        (2,), [keras.layers.Dense(3)], lambda i, layer: L.LinearWarp(),
        head=[keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="offline.*vectorize_tasks"):
        tfmeta.WarpGrad(learner, meta_training="offline", vectorize_tasks=True)


# --------------------------------------------- registry and a new method
def test_registry_lists_every_method_and_the_cli_lists_it(capsys):
    names = list(tfmeta.registry.methods())
    assert names[:6] == ["leap", "reptile", "maml", "fomaml", "finetune",
                         "scratch"]
    assert tfmeta.registry.get("warpgrad") is tfmeta.WarpGrad
    assert "warpgrad" not in tfmeta.registry.methods(cli_only=True)
    from tfmeta import cli
    assert cli.main(["list"]) == 0
    assert "warpgrad" in capsys.readouterr().out
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        tfmeta.registry.get("nope")


def test_a_method_in_one_file_anil(tmp_path):
    """docs/examples/anil.py (shown in docs/add_a_method.md, verbatim):
    the body does not move while a task adapts, the head does; a few
    meta-steps lower the query loss after adaptation; export holds the body
    fixed too (the adaptation spec) and tfmeta.load finds the method in the
    registry."""
    source = (ROOT / "docs" / "examples" / "anil.py").read_text()
    assert source.strip() in (ROOT / "docs" / "add_a_method.md").read_text()
    ANIL = _anil_module().FirstOrderANIL
    assert "tfmeta._" not in source and "._" not in source.replace("__", "")
    train = task_batch(num_tasks=4, support=10, query=10, seed=1)
    meta = ANIL(mlp([2, 16, 16, 1], seed=3), inner_steps=5,
                inner_optimizer=keras.optimizers.SGD(0.1))
    meta.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    before = [v.numpy() for v in meta.learner.trainable_variables]
    adapted = meta.adapt(train["support_x"][0], train["support_y"][0])
    moved = [np.abs(a.numpy() - b).max()
             for a, b in zip(adapted.trainable_variables, before)]
    assert moved[:4] == [0.0] * 4 and min(moved[4:]) > 1e-4
    start = meta.evaluate_tasks(train)["loss_after"].mean()
    meta.fit(as_dataset(train).repeat(), epochs=1, steps_per_epoch=30,
             verbose=0)
    after = meta.evaluate_tasks(train)["loss_after"].mean()
    assert after < 0.9 * start, (start, after)
    assert any(np.abs(v.numpy() - b).max() > 1e-3 for v, b in
               zip(meta.learner.trainable_variables[:4], before[:4]))
    path = meta.export(str(tmp_path / "anil"))
    loaded = tf.saved_model.load(path)
    out = loaded.adapt(train["support_x"][0], train["support_y"][0])
    names = tfmeta.export.adapted_weight_names(meta.learner)
    for name, var in zip(names[:4], meta.learner.trainable_variables[:4]):
        np.testing.assert_array_equal(out[name].numpy(), var.numpy())
    again = tfmeta.load(path)
    assert type(again) is ANIL and again.task_mask == meta.task_mask
