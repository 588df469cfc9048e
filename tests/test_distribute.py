"""Meta-steps spread over tf.distribute replicas equal single-device ones."""

import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]

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

    def step(cls, strategy):
        with strategy.scope():
            meta = cls(mlp([2, 5, 1]), inner_optimizer=keras.optimizers.SGD(0.1),
                       inner_steps=4)
            meta.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse",
                         metrics=[keras.metrics.MeanAbsoluteError()])
        data = tf.data.Dataset.from_tensors(task_batch(num_tasks=4, seed=5))
        history = meta.fit(data.repeat(2), epochs=1, steps_per_epoch=2, verbose=0)
        return ([v.numpy() for v in meta.learner.trainable_variables],
                history.history)

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    for cls in (tfmeta.Leap, tfmeta.MAML):
        single, h1 = step(cls, tf.distribute.get_strategy())
        spread, h2 = step(cls, mirrored)
        for a, b in zip(single, spread):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        for key in ("loss", "mean_absolute_error"):
            np.testing.assert_allclose(h1[key], h2[key], rtol=1e-5)
    print("distributed meta-steps match")
""")


def test_mirrored_strategy_matches_single_device():
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distributed meta-steps match" in done.stdout
