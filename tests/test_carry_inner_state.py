"""``carry_inner_state``: the inner Adam's moments and step count carried from
one meta-training task to the next (Reptile section 5.1), checked against an
independent NumPy computation; evaluation starts from the carried state and
leaves it unchanged; the state is saved with the weights and exported."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import (as_dataset, assert_export_adapts_like_meta, mlp,
                      task_batch)

LR, B2, EPS = 0.05, 0.999, 1e-7


def numpy_adam_tasks(params, batch, steps, m, v, t):
    """Serial Adam (beta_1 = 0) over the tasks of ``batch``, full-batch MSE
    on the support split of a 2-4-1 tanh MLP, the state (m, v, t) carried
    from task to task. Returns the adapted weights per task and the state."""
    adapted = []
    for i in range(batch["support_x"].shape[0]):
        x, y = batch["support_x"][i], batch["support_y"][i]
        w = [p.copy() for p in params]
        for _ in range(steps):
            grads = mlp_grads(w, x, y)
            t += 1
            alpha = LR * np.sqrt(1 - B2 ** t)  # beta_1 = 0: no 1 - b1^t
            for j, g in enumerate(grads):
                m[j] = g
                v[j] = v[j] + (g * g - v[j]) * (1 - B2)
                w[j] = w[j] - alpha * m[j] / (np.sqrt(v[j]) + EPS)
        adapted.append(w)
    return adapted, m, v, t


def mlp_grads(w, x, y):
    k1, b1, k2, b2 = w
    h = np.tanh(x @ k1 + b1)
    out = h @ k2 + b2
    d_out = 2 * (out - y) / out.size
    dh = d_out @ k2.T * (1 - h * h)
    return [x.T @ dh, dh.sum(0), h.T @ d_out, d_out.sum(0)]


def reptile(carry=True, **kwargs):
    learner = mlp([2, 4, 1], seed=3)
    meta = tfmeta.Reptile(learner, inner_optimizer=keras.optimizers.Adam(
        LR, beta_1=0.0, epsilon=EPS), inner_steps=3, carry_inner_state=carry,
        **kwargs)
    meta.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    return meta


def carried(meta):
    slots, updates = meta.inner_state
    return [[v.numpy() for v in slot] for slot in slots], int(updates.numpy())


def test_meta_steps_carry_adam_across_tasks_like_numpy(float64):
    meta = reptile()
    batches = [task_batch(num_tasks=3, seed=s, dtype="float64")
               for s in (0, 1)]
    phi = [v.numpy() for v in meta.learner.trainable_variables]
    m = [np.zeros_like(p) for p in phi]
    v = [np.zeros_like(p) for p in phi]
    t = 0
    for batch in batches:
        meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
        adapted, m, v, t = numpy_adam_tasks(phi, batch, 3, m, v, t)
        phi = [p - 0.5 * np.mean([p - w[j] for w in adapted], axis=0)
               for j, p in enumerate(phi)]
        (ms, vs), updates = carried(meta)
        assert updates == t
        for ours, theirs in zip(vs, v):
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
        for ours, theirs in zip(ms, m):
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    for ours, theirs in zip(meta.learner.trainable_variables, phi):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-8,
                                   atol=1e-10)
    # A fresh inner optimizer per task moves elsewhere (the test can fail).
    fresh = reptile(carry=False)
    for batch in batches:
        fresh.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    assert not np.allclose(fresh.learner.trainable_variables[0].numpy(),
                           phi[0])


def test_adapt_starts_from_the_carried_state_and_keeps_it(float64):
    meta = reptile(eval_steps=4)
    batch = task_batch(num_tasks=2, seed=0, dtype="float64")
    meta.fit(as_dataset(batch).repeat(), epochs=1, steps_per_epoch=2,
             verbose=0)
    (ms, vs), t = carried(meta)
    phi = [v.numpy() for v in meta.learner.trainable_variables]
    test = task_batch(num_tasks=1, seed=7, dtype="float64")
    adapted = meta.adapt(test["support_x"][0], test["support_y"][0])
    expected, _, _, _ = numpy_adam_tasks(phi, test, 4, [a.copy() for a in ms],
                                         [a.copy() for a in vs], t)
    for ours, theirs in zip(adapted.trainable_variables, expected[0]):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-8,
                                   atol=1e-10)
    (ms2, vs2), t2 = carried(meta)
    assert t2 == t
    for a, b in zip(vs + ms, vs2 + ms2):
        np.testing.assert_array_equal(a, b)
    meta.evaluate(as_dataset(batch), verbose=0)
    assert carried(meta)[1] == t


def test_carried_state_is_saved_and_exported(tmp_path):
    meta = reptile(inner_batch_size=4, eval_batch_size=6)
    batch = task_batch(num_tasks=2, seed=0)
    meta.fit(as_dataset(batch).repeat(), epochs=1, steps_per_epoch=2,
             verbose=0)
    path = str(tmp_path / "w.weights.h5")
    meta.save_weights(path)
    other = reptile(inner_batch_size=4, eval_batch_size=6)
    other.load_weights(path)
    (ms, vs), t = carried(meta)
    (ms2, vs2), t2 = carried(other)
    assert t2 == t == 12
    for a, b in zip(vs, vs2):
        np.testing.assert_array_equal(a, b)
    sx, sy = batch["support_x"][0], batch["support_y"][0]
    # eval_batch_size=6 = the whole support split: the export's adaptation
    # is deterministic and equals meta.adapt, carried state included.
    path = meta.export(str(tmp_path / "model"))
    assert_export_adapts_like_meta(meta, path, sx, sy, batch["query_x"][0])
    ours = meta.adapt(sx, sy).predict(batch["query_x"][0], verbose=0)
    fresh = reptile(carry=False, inner_batch_size=4, eval_batch_size=6)
    for src, dst in zip(meta.learner.trainable_variables,
                        fresh.learner.trainable_variables):
        dst.assign(src)
    assert not np.allclose(fresh.adapt(sx, sy).predict(
        batch["query_x"][0], verbose=0), ours, atol=1e-4)


def test_carry_refuses_parallel_and_vectorized_tasks():
    with pytest.raises(ValueError, match="one after another"):
        reptile(vectorize_tasks=True)
    with pytest.raises(ValueError, match="parallel_tasks"):
        reptile(parallel_tasks=2)
    with pytest.raises(TypeError, match="carry_inner_state"):
        reptile(carry="yes")


def test_epochs_sampling_passes_through_the_support_split(monkeypatch):
    from tfmeta import inner_loop
    n, b, steps = 12, 5, 10
    data = tf.range(n)
    seed = tf.constant([3, 4], tf.int64)
    batch = inner_loop.samplers(data, b, seed, steps, sampling="epochs")
    drawn = np.concatenate([batch(i).numpy() for i in range(steps + 1)])
    passes = [drawn[k:k + n] for k in range(0, len(drawn) - n + 1, n)]
    assert len(passes) == 4
    for order in passes:       # every example once per pass
        assert sorted(order) == list(range(n))
    assert len({tuple(o) for o in passes}) == len(passes)   # reshuffled
    # The path without precomputed indices draws the same minibatches.
    monkeypatch.setattr(inner_loop, "PRECOMPUTE_LIMIT", 0)
    dynamic = inner_loop.samplers(data, b, seed, steps, sampling="epochs")
    again = np.concatenate([dynamic(tf.constant(i)).numpy()
                            for i in range(steps + 1)])
    np.testing.assert_array_equal(drawn, again)
    independent = inner_loop.samplers(data, b, seed, steps)
    first = np.concatenate([independent(i).numpy() for i in range(3)])
    assert sorted(first[:n]) != list(range(n))   # can repeat within a pass
    with pytest.raises(ValueError, match="inner sampling"):
        inner_loop.samplers(data, b, seed, steps, sampling="cycle")
    with pytest.raises(ValueError, match="inner sampling"):
        reptile(inner_sampling="cycle")


def test_epochs_sampling_through_fit_and_config():
    meta = reptile(inner_batch_size=4, eval_batch_size=3,
                   inner_sampling="epochs")
    batch = task_batch(num_tasks=2, seed=0)
    meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    assert meta.get_config()["inner_sampling"] == "epochs"
    assert np.all(np.isfinite(meta.evaluate_tasks(batch)["loss_after"]))
