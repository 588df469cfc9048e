"""Progressive Nets and HAT (tfmeta.baselines): what each protects stays
unchanged when a new task trains."""

import numpy as np
import tensorflow as tf

from tfmeta.baselines import HAT, ProgressiveNet, fit_dataset
from tfmeta.tasks import multicv


def toy(seed, n=48, classes=2, name=None):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 32, 32, 1), dtype=np.uint8)
    y = (x[:, :16].mean(axis=(1, 2, 3)) > x[:, 16:].mean(axis=(1, 2, 3)))
    y = y.astype(int) % classes
    return multicv.from_arrays(name or f"toy{seed}", (x, y), (x[:16], y[:16]),
                               num_classes=classes, mean=(0.5,), std=(0.3,))


def test_progressive_net_earlier_columns_stay_frozen():
    net = ProgressiveNet([2, 2, 3], filters=4, blocks=2, seed=0)
    assert len(net.laterals[2][0]) == 2 and len(net.head_laterals[1]) == 1
    net.select(0)
    fit_dataset(net, toy(0), epochs=1, batch_size=8, eval_every=3)
    x = toy(1).test[0]
    before = {v.path: v.numpy().copy() for j in (0,)
              for layer in net.column_layers(j) for v in layer.weights}
    out0 = net(x).numpy()
    net.select(2)
    assert net(x).shape == (16, 3)
    new = [v.numpy().copy() for v in net.convs[2][0].weights]
    run = fit_dataset(net, toy(2, classes=3), epochs=2, batch_size=8,
                      eval_every=2, early_stopping=False,
                      restore_best=False)
    # 43 training examples (48 less 10% validation): 5 batches per epoch
    assert run.steps == 10 and run.eval_steps == [0, 2, 4, 6, 8, 10]
    for layer in net.column_layers(0):
        for v in layer.weights:
            np.testing.assert_array_equal(v.numpy(), before[v.path])
    assert not np.array_equal(net.convs[2][0].kernel.numpy(), new[0])
    net.select(0)
    np.testing.assert_allclose(net(x).numpy(), out0, rtol=1e-6, atol=1e-6)


def test_hat_keeps_previous_tasks_weights():
    hat = HAT([2, 2], filters=4, blocks=2, seed=1)
    hat.select(0)
    fit_dataset(hat, toy(0), epochs=2, batch_size=8, eval_every=4,
                early_stopping=False)
    hat.finish(0)
    x = toy(1).test[0]
    hat.select(0)
    out0 = hat(x).numpy()
    masks = {k: v.numpy() for k, v in hat.weight_masks(1).items()}
    assert any((m == 0).any() for m in masks.values())      # something kept
    assert any((m == 1).any() for m in masks.values())      # something free
    before = {v.path: v.numpy().copy() for v in hat.weights}
    hat.select(1)
    fit_dataset(hat, toy(3), epochs=2, batch_size=8, eval_every=4,
                early_stopping=False, restore_best=False)
    for v in hat.weights:
        if v.path in masks:         # task 0's weights, where protected
            keep = masks[v.path] == 0
            np.testing.assert_array_equal(v.numpy()[keep],
                                          before[v.path][keep])
            assert not np.array_equal(v.numpy(), before[v.path])
    for name in ("head0",):        # the other task's head and embeddings
        layer = [h for h in hat.heads if h.name == name][0]
        for v in layer.weights:
            np.testing.assert_array_equal(v.numpy(), before[v.path])
    for e in hat.embeddings:
        np.testing.assert_array_equal(e.numpy()[0], before[e.path][0])
    hat.select(0)
    np.testing.assert_allclose(hat(x).numpy(), out0, rtol=1e-4, atol=1e-4)
    assert float(tf.reduce_max(hat.protected(1))) <= 1.0
