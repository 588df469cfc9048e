"""ANIL (tfmeta.ANIL): the body holds still while a task adapts, the
meta-gradient (second order) against central differences, fit, export and
tfmeta.load."""

import keras
import numpy as np
import pytest

import tfmeta
from conftest import (assert_exported_adapt_matches, central_difference,
                      fit_lowers_the_query_loss, mlp, one_meta_step,
                      query_loss_after_adaptation, task_batch)


def test_head_selection_and_the_body_held_fixed():
    learner = mlp([2, 6, 5, 1], seed=1)
    assert tfmeta.ANIL(learner).task_mask == [False] * 4 + [True] * 2
    assert tfmeta.ANIL(learner, head=2).task_mask == [False] * 2 + [True] * 4
    name = learner.layers[1].name
    assert tfmeta.ANIL(learner, head=[name]).task_mask == (
        [False] * 2 + [True] * 2 + [False] * 2)
    meta = tfmeta.ANIL(learner, inner_steps=4,
                       inner_optimizer=keras.optimizers.SGD(0.1))
    meta.compile(optimizer="sgd", loss="mse")
    batch = task_batch(num_tasks=1, seed=2)
    before = [v.numpy() for v in learner.trainable_variables]
    adapted = meta.adapt(batch["support_x"][0], batch["support_y"][0])
    moved = [np.abs(a.numpy() - b).max()
             for a, b in zip(adapted.trainable_variables, before)]
    assert moved[:4] == [0.0] * 4 and min(moved[4:]) > 1e-4, moved


@pytest.mark.parametrize("head, message", [
    (3, "at least one in the head and one in the body"),
    (0, "at least one in the head"),
    (["nope"], "not layers with weights"),
    (1.5, "head must be None"),
])
def test_bad_heads_are_refused_by_name(head, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tfmeta.ANIL(mlp([2, 4, 4, 1]), head=head)


def test_a_learner_without_dense_layer_needs_a_head():
    learner = keras.Sequential([keras.Input((4, 4, 1)),
                                keras.layers.Conv2D(2, 3),
                                keras.layers.Conv2D(1, 2)])
    with pytest.raises(ValueError, match="last Dense layer"):
        tfmeta.ANIL(learner)
    assert tfmeta.ANIL(learner, head=1).task_mask == [False, False, True, True]


def test_anil_meta_gradient_matches_finite_differences(float64):
    """Second order: every parameter's gradient (the body's through the
    head's inner updates) against central differences of the
    post-adaptation query loss; the first-order gradient differs."""
    batch = task_batch(num_tasks=2, dtype="float64", seed=4)
    meta = tfmeta.ANIL(mlp([2, 3, 1]), inner_steps=3,
                       inner_optimizer=keras.optimizers.SGD(0.5))
    meta.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    before, after = one_meta_step(meta, batch)
    autodiff = [b - a for b, a in zip(before, after)]
    assert min(np.abs(g).max() for g in autodiff) > 1e-4  # body and head
    for var, value in zip(meta.learner.trainable_variables, before):
        var.assign(value)
    objective = query_loss_after_adaptation(meta, batch)
    for var, grad in zip(meta.learner.trainable_variables, autodiff):
        numeric = central_difference(var, objective)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    first = tfmeta.ANIL(meta.learner, inner_steps=3, first_order=True,
                        inner_optimizer=keras.optimizers.SGD(0.5))
    first.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    f_before, f_after = one_meta_step(first, batch)
    gap = max(np.abs((b - a) - g).max()
              for b, a, g in zip(f_before, f_after, autodiff))
    assert gap > 1e-4


def test_fit_lowers_the_query_loss_and_export_round_trips(tmp_path):
    first_order = False
    train = task_batch(num_tasks=4, support=10, query=10, seed=1)
    meta = tfmeta.ANIL(mlp([2, 16, 16, 1], seed=3), inner_steps=5,
                       first_order=first_order,
                       inner_optimizer=keras.optimizers.SGD(0.1))
    meta.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    fit_lowers_the_query_loss(meta, train)

    path = meta.export(str(tmp_path / "anil"))
    sx, sy = train["support_x"][0], train["support_y"][0]
    out = assert_exported_adapt_matches(meta, path, sx, sy)
    names = tfmeta.export.adapted_weight_names(meta.learner)
    for j, (name, var) in enumerate(zip(names, meta.learner.trainable_variables)):
        if not meta.task_mask[j]:  # the body stays fixed in the export too
            np.testing.assert_array_equal(out[name].numpy(), var.numpy())
    again = tfmeta.load(path)
    assert type(again) is tfmeta.ANIL
    assert again.task_mask == meta.task_mask
    assert again.first_order == first_order and again.head is None


def test_the_cli_builds_anil_and_metasgd(capsys):
    from tfmeta import cli
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "anil" in out and "metasgd" in out
    config = cli.resolve_config({"method": "anil", "method_options": {
        "head": 2, "first_order": True}}, {})
    meta, family = cli.build(config)
    assert type(meta) is tfmeta.ANIL and meta.first_order
    n = len(meta.learner.trainable_variables)
    assert meta.task_mask == [False] * (n - 4) + [True] * 4
    meta, _ = cli.build(cli.resolve_config({"method": "metasgd"}, {}))
    assert type(meta) is tfmeta.MetaSGD
    assert float(meta.task_lr[0].numpy().flat[0]) == pytest.approx(
        config["inner_lr"])
