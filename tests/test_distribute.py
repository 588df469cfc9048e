"""Meta-steps spread over tf.distribute replicas equal single-device ones."""

import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]

# One subprocess (two logical CPUs) for every case: each prints its verdict,
# so a failure names the case.
SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import tfmeta
    sys.path.insert(0, "tests")
    from conftest import mlp, task_batch

    def step(cls, strategy, num_tasks, inner_batch_size):
        with strategy.scope():
            meta = cls(mlp([2, 5, 1]), inner_optimizer=keras.optimizers.SGD(0.1),
                       inner_steps=4, inner_batch_size=inner_batch_size, seed=3)
            meta.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse",
                         metrics=[keras.metrics.MeanAbsoluteError()])
        data = tf.data.Dataset.from_tensors(
            task_batch(num_tasks=num_tasks, seed=5))
        history = meta.fit(data.repeat(2), epochs=1, steps_per_epoch=2, verbose=0)
        return ([v.numpy() for v in meta.learner.trainable_variables],
                history.history)

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    cases = [(tfmeta.Leap, 4, None), (tfmeta.MAML, 4, None),
             # minibatches: every task draws its own (global-index seeds)
             (tfmeta.Reptile, 4, 2),
             # 3 tasks on 2 replicas (2 + 1): weighted by the real counts
             (tfmeta.Reptile, 3, 2), (tfmeta.Leap, 3, 2)]
    failed = 0
    for cls, num_tasks, batch in cases:
        name = f"{cls.__name__} tasks={num_tasks} inner_batch_size={batch}"
        try:
            single, h1 = step(cls, tf.distribute.get_strategy(), num_tasks, batch)
            spread, h2 = step(cls, mirrored, num_tasks, batch)
            for a, b in zip(single, spread):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            # (grad_norm is the replicas' mean norm: not compared)
            for key in ("loss", "support_loss", "mean_absolute_error"):
                np.testing.assert_allclose(h1[key], h2[key], rtol=1e-5,
                                           err_msg=key)
            print("match:", name)
        except Exception as err:  # reported per case
            failed += 1
            print("MISMATCH:", name, type(err).__name__, str(err)[:800])
    try:  # fewer tasks than replicas: a message, not a slicing error
        step(tfmeta.Reptile, mirrored, 1, None)
        failed += 1
        print("MISMATCH: 1 task on 2 replicas ran")
    except tf.errors.InvalidArgumentError as err:
        if "at least one task per replica (2)" not in str(err):
            failed += 1
            print("MISMATCH: 1 task on 2 replicas:", str(err)[:800])
    if not failed:
        print("distributed meta-steps match")
""")


def test_mirrored_strategy_matches_single_device():
    """Weights and History after two meta-steps, to 1e-5: Leap and MAML
    full-batch on 4 tasks; Reptile with support minibatches
    (``inner_batch_size=2``) on 4 tasks, and Reptile and Leap with them on
    3 tasks over the 2 replicas."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "distributed meta-steps match" in done.stdout, done.stdout[-3000:]
