"""The fast defaults (tfmeta.fast_path): chosen from the learner, the same
results as without them, and an explicit choice of the user wins. Values
only; the speed-ups are measured in benchmarks/ (docs/performance.md)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import mlp, task_batch
from tfmeta import fast_path


def conv_learner():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
        keras.layers.Dense(3)])


def tasks(n, seed=0):
    batches = [task_batch(num_tasks=2, support=6, seed=seed + i)
               for i in range(n)]
    return tf.data.Dataset.from_tensor_slices(
        {k: np.stack([b[k] for b in batches]) for k in batches[0]})


def test_chosen_from_the_learner():
    dense = tfmeta.Reptile(mlp([2, 8, 1]), inner_steps=2)
    dense.compile(optimizer="sgd", loss="mse")
    conv = tfmeta.Reptile(conv_learner(), inner_steps=2)
    conv.compile(optimizer="sgd", loss="mse")
    assert dense.jit_compile is True and conv.jit_compile is False
    assert fast_path.small_dense(dense.learner)
    assert not fast_path.small_dense(conv.learner)
    # tasks vectorized under XLA, for the methods that opt in
    assert dense.vectorize_tasks and not conv.vectorize_tasks
    assert dense.get_config()["vectorize_tasks"] is None  # chosen again
    for cls in (tfmeta.MAML, tfmeta.FOMAML, tfmeta.Leap):
        meta = cls(mlp([2, 8, 1]))
        meta.compile(optimizer="sgd", loss="mse")
        assert meta.vectorize_tasks and meta.jit_compile is True, cls
    for meta, jit in (
            (tfmeta.Reptile(mlp([2, 8, 1])), False),    # no XLA
            (tfmeta.Reptile(mlp([2, 8, 1]), vectorize_tasks=False), None),
            (tfmeta.Reptile(mlp([2, 8, 1]), carry_inner_state=True), None),
            (tfmeta.Reptile(mlp([2, 8, 1]), parallel_tasks=2), None),
            (tfmeta.MetaSGD(mlp([2, 8, 1])), None),     # not opted in
            (tfmeta.MAML(mlp([2, 8, 1]), checkpoint_every=2), None)):
        meta.compile(optimizer="sgd", loss="mse", jit_compile=jit)
        assert not meta.vectorize_tasks, meta
        assert meta.jit_compile is (jit is None)
    # second-order MAML vectorized cannot be compiled by XLA with
    # checkpoint_every (unrolled without it: above)
    maml = tfmeta.MAML(mlp([2, 8, 1]), vectorize_tasks=True,
                       checkpoint_every=2)
    maml.compile(optimizer="sgd", loss="mse")
    assert maml.jit_compile is False and maml.vectorize_tasks
    # meta-steps per execution: the largest divisor of the epoch's (and the
    # validation's) steps up to 32, 1 for a conv net, a batch-level
    # callback or an unknown step count
    data = tasks(12)
    spe = fast_path.steps_per_execution
    assert spe(dense, data) == 12
    assert spe(dense, data.repeat(), steps_per_epoch=64) == 32
    assert spe(dense, data, validation_data=tasks(8)) == 4
    assert spe(dense, data.repeat()) == 1
    assert spe(conv, data) == 1
    assert spe(dense, data, callbacks=[keras.callbacks.History(),
                                       keras.callbacks.BackupAndRestore("b")]) == 12
    assert spe(dense, data, callbacks=[keras.callbacks.BackupAndRestore(
        "b", save_freq=2)]) == 1
    assert spe(dense, data, callbacks=[keras.callbacks.LambdaCallback(
        on_train_batch_end=print)]) == 1


def fit(fast, cls=tfmeta.Leap, nan_at=None, **compile_kwargs):
    meta = cls(mlp([2, 8, 1]), inner_optimizer=keras.optimizers.SGD(0.3),
               inner_steps=3, inner_batch_size=4, seed=1)
    if not fast:
        compile_kwargs = dict(compile_kwargs, jit_compile=False,
                              steps_per_execution=1)
    meta.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse",
                 **compile_kwargs)
    data = tasks(6)
    if nan_at is not None:
        data = data.enumerate().map(lambda i, t: {
            k: tf.where(i == nan_at, np.nan, v) if k == "query_y" else v
            for k, v in t.items()})
    history = meta.fit(data, epochs=1, verbose=0)
    return meta, history


@pytest.mark.parametrize("cls", [
    tfmeta.Leap, pytest.param(tfmeta.MAML, marks=pytest.mark.slow)])
def test_same_results_with_and_without_the_fast_path(cls):
    fast, fast_history = fit(True, cls)
    slow, slow_history = fit(False, cls)
    # (Keras's train function is built for the steps per execution it ran)
    assert fast.jit_compile and fast.train_function.steps_per_execution == 6
    assert not slow.jit_compile and slow.train_function.steps_per_execution == 1
    np.testing.assert_allclose(fast_history.history["loss"],
                               slow_history.history["loss"], rtol=1e-5)
    for a, b in zip(fast.learner.trainable_variables,
                    slow.learner.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert int(fast.optimizer.iterations) == int(slow.optimizer.iterations) == 6


@pytest.mark.parametrize("cls", [
    tfmeta.MAML, pytest.param(tfmeta.Reptile, marks=pytest.mark.slow)])
def test_vectorized_default_equals_one_task_after_another(cls):
    """The default (tasks vectorized, MAML's inner loop unrolled, XLA) gives
    the meta-steps of the tasks one after another under XLA."""
    outcomes = []
    for vectorize in (None, False):
        meta = cls(mlp([2, 8, 1]), inner_optimizer=keras.optimizers.SGD(0.3),
                   inner_steps=3, inner_batch_size=4, seed=1,
                   vectorize_tasks=vectorize)
        meta.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        history = meta.fit(tasks(4, seed=7), epochs=1, verbose=0)
        assert meta.jit_compile is True
        assert meta.vectorize_tasks is (vectorize is None)
        outcomes.append((history.history["loss"],
                         [v.numpy() for v in meta.learner.trainable_variables]))
    (fast_loss, fast_w), (slow_loss, slow_w) = outcomes
    np.testing.assert_allclose(fast_loss, slow_loss, rtol=1e-5)
    for a, b in zip(fast_w, slow_w):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(
        fast_w, [v.numpy() for v in mlp([2, 8, 1]).trainable_variables])) > 1e-3


def test_non_finite_step_stops_at_the_same_step_and_weights():
    """With several meta-steps per execution fit still stops at the first
    non-finite meta-step, reports it and keeps the weights before it."""
    outcomes = []
    for fast in (True, False):
        with pytest.raises(tfmeta.NonFiniteLossError) as err:
            fit(fast, tfmeta.Reptile, nan_at=3)
        meta = err.value.history.model
        outcomes.append((err.value.step, int(meta.optimizer.iterations),
                         [v.numpy() for v in meta.learner.trainable_variables],
                         meta.train_function.steps_per_execution))
    (f_step, f_iters, f_w, f_spe), (s_step, s_iters, s_w, s_spe) = outcomes
    assert (f_spe, s_spe) == (6, 1)
    assert f_step == s_step == 3 and f_iters == s_iters == 3
    for a, b in zip(f_w, s_w):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_an_explicit_choice_wins():
    meta = tfmeta.Reptile(mlp([2, 8, 1]))
    meta.compile(optimizer="sgd", loss="mse", jit_compile=False)
    assert meta.jit_compile is False
    meta, _ = fit(True, tfmeta.Reptile, steps_per_execution=2)
    assert meta.jit_compile is True and meta.steps_per_execution == 2
    assert meta.train_function.steps_per_execution == 2
    conv = tfmeta.Reptile(conv_learner(), inner_steps=1)
    conv.compile(optimizer="sgd", loss="mse", jit_compile=True,
                 steps_per_execution=3)
    assert conv.jit_compile is True and conv.steps_per_execution == 3


def test_evaluate_after_fit_runs_its_own_steps():
    """fit's meta-steps per execution end with fit: evaluate(steps=3) on
    a repeated dataset runs 3 steps, not a whole execution of fit's."""
    meta, _ = fit(True, tfmeta.Reptile)
    seen = []
    meta.evaluate(tasks(6).repeat(), steps=3, verbose=0, callbacks=[
        keras.callbacks.LambdaCallback(
            on_test_batch_end=lambda batch, logs: seen.append(batch))])
    assert meta.steps_per_execution == 1 and seen == [0, 1, 2]


_HLO = """\
HloModule m, entry_computation_layout={(f32[4,4]{1,0})->f32[4,4]{1,0}}

%fused_computation (param_0: f32[4,4], param_1: f32[4,4]) -> f32[4,4] {
  %param_0 = f32[4,4]{1,0} parameter(0)
  %param_1 = f32[4,4]{1,0} parameter(1)
  %dot.1 = f32[4,4]{1,0} dot(%param_0, %param_1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT %tanh.1 = f32[4,4]{1,0} tanh(%dot.1)
}

%body (arg: (s32[], f32[4,4])) -> (s32[], f32[4,4]) {
  %arg = (s32[], f32[4,4]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%arg), index=0
  %x = f32[4,4]{1,0} get-tuple-element(%arg), index=1
  %tanh_fusion = f32[4,4]{1,0} fusion(%x, %x), kind=kOutput, calls=%fused_computation
  %dot.2 = f32[4,4]{1,0} dot(%tanh_fusion, %x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %one = s32[] constant(1)
  %next = s32[] add(%i, %one)
  ROOT %out = (s32[], f32[4,4]{1,0}) tuple(%next, %dot.2)
}

%cond (arg.1: (s32[], f32[4,4])) -> pred[] {
  %arg.1 = (s32[], f32[4,4]{1,0}) parameter(0)
  %i.1 = s32[] get-tuple-element(%arg.1), index=0
  %n = s32[] constant(5)
  ROOT %lt = pred[] compare(%i.1, %n), direction=LT
}

ENTRY %main (p: f32[4,4]) -> f32[4,4] {
  %p = f32[4,4]{1,0} parameter(0)
  %zero = s32[] constant(0)
  %init = (s32[], f32[4,4]{1,0}) tuple(%zero, %p)
  %while = (s32[], f32[4,4]{1,0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"5"}}
  %res = f32[4,4]{1,0} get-tuple-element(%while), index=1
  ROOT %dot.3 = f32[2,4]{1,0} dot(%res, %res), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
"""


def test_hlo_counts_what_runs(monkeypatch):
    """benchmarks/profile_meta_step.py's kernel counts: a loop's body once
    per iteration, matmuls fused into other kernels included (the count
    that first had JAX's MAML step at 59 matmuls instead of 91)."""
    import pathlib
    monkeypatch.syspath_prepend(
        str(pathlib.Path(__file__).parents[1] / "benchmarks"))
    from profile_meta_step import hlo_counts
    counts = hlo_counts(_HLO)
    assert counts["dot"] == 1 + 5 * 2
    assert counts["dot f32[4,4]"] == 10 and counts["dot f32[2,4]"] == 1
    assert counts["fusion"] == 5 and counts["while"] == 1
    # entry: while, dot; body: fusion, dot, add; condition: compare
    assert counts["thunks"] == 2 + 5 * 3 + 6 * 1
    assert counts["unknown trip count"] == 0
    unknown = _HLO.replace(', backend_config={"known_trip_count":{"n":"5"}}',
                           "")
    counts = hlo_counts(unknown, unknown_trip=3)
    assert counts["dot"] == 1 + 3 * 2 and counts["unknown trip count"] == 1
