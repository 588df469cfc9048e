"""The sine task family and short meta-training runs on it."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from tfmeta.tasks import sine


def test_task_batches_follow_the_protocol():
    batch = next(iter(sine.dataset(meta_batch_size=64, support_size=10,
                                   query_size=7, seed=3)))
    assert batch["support_x"].shape == (64, 10, 1)
    assert batch["query_y"].shape == (64, 7, 1)
    a, b = batch["amplitude"].numpy(), batch["phase"].numpy()
    assert a.min() >= 0.1 and a.max() <= 5.0
    assert b.min() >= 0.0 and b.max() <= math.pi
    x = batch["support_x"].numpy()
    assert x.min() >= -5.0 and x.max() <= 5.0
    np.testing.assert_allclose(batch["support_y"],
                               a[:, None, None] * np.sin(x + b[:, None, None]),
                               rtol=1e-5, atol=1e-5)


def test_seeded_and_deterministic():
    first = [b["support_y"].numpy() for b in sine.dataset(seed=1).take(3)]
    again = [b["support_y"].numpy() for b in sine.dataset(seed=1).take(3)]
    other = [b["support_y"].numpy() for b in sine.dataset(seed=2).take(3)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0], other[0])
    assert not np.allclose(first[0], first[1])
    np.testing.assert_array_equal(sine.tasks(5, seed=4)["query_x"],
                                  sine.tasks(5, seed=4)["query_x"])


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="support_size must be a positive"):
        sine.dataset(support_size=0)


def held_out_mse(meta, tasks):
    data = tf.data.Dataset.from_tensors({k: tasks[k] for k in tfmeta.TASK_KEYS})
    return meta.evaluate(data, verbose=0, return_dict=True)["loss"]


def test_sequence_tasks_are_windows_of_one_sine_per_task():
    """``sequence_dataset``: every window of a task lies on that task's
    ``a sin(w x + b)`` at spacing ``step``; the target is the next value;
    deterministic per (seed, index); ranges respected; sizes checked."""
    batch = next(iter(sine.sequence_dataset(3, 4, 5, length=6, step=0.3,
                                            seed=2)))
    assert batch["support_x"].shape == (3, 4, 6, 1)
    assert batch["support_y"].shape == (3, 4, 1)
    assert batch["query_x"].shape == (3, 5, 6, 1)
    a, w = (batch[k].numpy()[:, None] for k in ("amplitude", "frequency"))
    assert np.all((0.5 <= w) & (w <= 2.0)) and np.all((0.1 <= a) & (a <= 5))
    seq = np.concatenate([batch["query_x"].numpy()[..., 0],
                          batch["query_y"].numpy()], -1)     # [3, 5, 7]
    assert np.all(np.abs(seq) <= a[..., None] + 1e-5)
    # second-order linear recurrence of a sampled sine: y_{i+1} =
    # 2 cos(w step) y_i - y_{i-1}, for the target too
    c = 2 * np.cos(w[..., None] * 0.3)
    np.testing.assert_allclose(seq[..., 2:], c * seq[..., 1:-1] - seq[..., :-2],
                               atol=1e-4)
    again = next(iter(sine.sequence_dataset(3, 4, 5, length=6, step=0.3,
                                            seed=2)))
    np.testing.assert_array_equal(again["support_x"], batch["support_x"])
    other = next(iter(sine.sequence_dataset(3, 4, 5, length=6, seed=3)))
    assert not np.allclose(other["support_x"], batch["support_x"])
    fixed = sine.sequence_tasks(2, support_size=3, query_size=4, length=5)
    assert fixed["query_x"].shape == (2, 4, 5, 1)
    with pytest.raises(ValueError, match="length must be a positive integer"):
        sine.sequence_dataset(length=0)


def test_meta_learners_beat_scratch_on_held_out_sine_tasks():
    """A few seconds of meta-training each; post-adaptation MSE on 100
    held-out tasks must be well below adapting from a random init."""
    test_tasks = sine.tasks(100, support_size=10, query_size=50, seed=999)
    inner = dict(inner_steps=16, eval_steps=32)
    setups = {
        "Scratch": (tfmeta.Scratch, {}, keras.optimizers.SGD(0.0)),
        "Leap": (tfmeta.Leap, {}, keras.optimizers.SGD(0.01)),
        "Reptile": (tfmeta.Reptile, {}, keras.optimizers.SGD(0.1)),
        "FOMAML": (tfmeta.FOMAML, {}, keras.optimizers.Adam(1e-3)),
        "MAML": (tfmeta.MAML, {"inner_steps": 5}, keras.optimizers.Adam(1e-3)),
    }
    mse = {}
    for name, (cls, kwargs, outer) in setups.items():
        meta = cls(sine.mlp(seed=0), inner_optimizer=keras.optimizers.SGD(0.02),
                   seed=0, **{**inner, **kwargs})
        meta.compile(optimizer=outer, loss="mse")
        meta.fit(sine.dataset(meta_batch_size=5, seed=0), epochs=1,
                 steps_per_epoch=250, verbose=0)
        mse[name] = held_out_mse(meta, test_tasks)
    for name in ("Leap", "Reptile", "FOMAML", "MAML"):
        assert mse[name] < 0.6 * mse["Scratch"], mse
