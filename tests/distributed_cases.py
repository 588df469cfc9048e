"""Every meta-learner on a tiny net for a few meta-steps: the runs that the
distribution tests compare across strategies, and their worker script.

``run(name, strategy)`` builds case ``name`` under ``strategy``, fits it and
returns its weights and History; ``compare`` checks two such results to
1e-5. As a script it is one worker of a ``MultiWorkerMirroredStrategy``
job (``TF_CONFIG`` from the environment) or a one-device run, and writes
the results of the cases it ran to ``--out`` (a pickle)::

    python tests/distributed_cases.py --strategy multiworker --out w0.pkl \\
        --cases leap,maml
"""

import argparse
import collections
import os
import pickle
import sys
import time

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tfmeta  # noqa: E402
from conftest import mlp, task_batch  # noqa: E402
from tfmeta import layers as L  # noqa: E402

Case = collections.namedtuple(
    "Case", ["build", "outer", "num_tasks", "task_id"], defaults=(4, False))

SGD = keras.optimizers.SGD
Adam = keras.optimizers.Adam


def _net():
    return mlp([2, 5, 1])


def _warped():
    keras.utils.set_random_seed(0)
    return L.warped_sequential(
        (2,), [keras.layers.Dense(3, activation="tanh", name="h1")],
        lambda i, layer: L.ResidualMLPWarp(2, name=f"w{i + 1}"),
        head=[keras.layers.Dense(1, name="head")])


def _meta(cls, learner=None, lr=0.1, steps=3, batch=2, **kwargs):
    return lambda: cls(learner() if learner else _net(),
                       inner_optimizer=SGD(lr), inner_steps=steps,
                       inner_batch_size=batch, seed=3, **kwargs)


def _warp(**kwargs):
    return _meta(tfmeta.WarpGrad, _warped, lr=0.3, **kwargs)


def _transfer(encoder, **options):
    """A tiny ``MetaTransfer``: support points (2 inputs, 1 target) decoded
    to the weights of a 2-5-1 query MLP."""
    return lambda: tfmeta.MetaTransfer(
        encoder, query_learner=_net(), k=2, support_dims=(2, 1),
        decoder_hidden=4, seed=3, **options)


#: name -> Case. Meta-batches of 4 tasks, or 3 (2 + 1 over two replicas);
#: support minibatches of 2 (every task draws its own).
CASES = {
    "leap": Case(_meta(tfmeta.Leap), lambda: SGD(0.5)),
    "leap_energy_adam": Case(_meta(tfmeta.Leap, metric="energy"),
                             lambda: Adam(0.01), 3),
    "reptile_sgd": Case(_meta(tfmeta.Reptile), lambda: SGD(0.5)),
    "reptile_adam": Case(_meta(tfmeta.Reptile), lambda: Adam(0.01), 3),
    "maml": Case(_meta(tfmeta.MAML, steps=2), lambda: Adam(0.01), 3),
    "fomaml": Case(_meta(tfmeta.FOMAML), lambda: SGD(0.5)),
    "anil": Case(_meta(tfmeta.ANIL, steps=2), lambda: Adam(0.01)),
    "metasgd": Case(_meta(tfmeta.MetaSGD, steps=2), lambda: SGD(0.1), 3),
    "finetune": Case(_meta(tfmeta.FineTune), lambda: Adam(0.01), 3),
    "finetune_heads": Case(_meta(tfmeta.FineTune, num_heads=4),
                           lambda: SGD(0.1), 4, True),
    "scratch": Case(_meta(tfmeta.Scratch), lambda: SGD(0.1)),
    "warpgrad_online": Case(_warp(), lambda: SGD(0.5)),
    "warpgrad_task_lr": Case(_warp(learn_task_lr=True),
                             lambda: Adam(0.01), 3),
    "warpgrad_continual": Case(_warp(meta_training="continual",
                                     replay_batch_size=2), lambda: Adam(0.01)),
    "warp_leap": Case(_warp(initialization="leap", init_weight=0.5),
                      lambda: Adam(0.01), 3),
    "warp_maml": Case(_warp(initialization="maml", steps=2),
                      lambda: SGD(0.3)),
    "transfer_context": Case(_transfer("context", hidden=(3, 3),
                                       encoder_steps=2),
                             lambda: Adam(0.01), 3),
    "transfer_mean": Case(_transfer("mean", hidden=4, depth=1),
                          lambda: SGD(0.1)),
}

#: The default suite's multi-worker cases (the others: ``slow``).
QUICK = ("leap", "maml", "warpgrad_online")


def tasks(case):
    """The case's task batch (the same in every process)."""
    batch = task_batch(num_tasks=case.num_tasks, seed=5)
    if case.task_id:
        batch["task_id"] = np.arange(case.num_tasks, dtype="int32")
    return batch


def run_rl_leap(strategy=None, steps=2):
    """``tfmeta.rl.RLLeap`` on three tiny maze tasks (each its own reward
    and episode length; 2 environments, 3 A2C updates), meta-batches of all
    three (uneven over 2 workers: 2 + 1), ``steps`` meta-steps: the encoder's
    weights, and the tasks this process trained."""
    from tfmeta import rl

    def task(reward, length):
        def build(seed):
            keras.utils.set_random_seed(seed)
            model = rl.nets.mlp_net((16,), 4, hidden=(6,))
            envs = rl.vector_env(
                lambda: rl.Maze(episode_length=length, reward=reward), 2)
            return rl.A2C(model, envs, SGD(0.2), unroll=3, gamma=0.9,
                          entropy_cost=0.05, max_grad_norm=0.5, seed=seed)
        return build
    keras.utils.set_random_seed(11)
    encoder = rl.nets.mlp_net((16,), 4, hidden=(6,)).get_layer("encoder")
    leap = rl.RLLeap(encoder, [task(10.0, 4), task(-3.0, 7), task(5.0, 5)],
                     updates=3, seed=3, strategy=strategy)
    leap.compile(SGD(0.5))
    trained = [[log["task"] for log in leap.meta_step()] for _ in range(steps)]
    return {"weights": [(v.path, np.array(v.numpy()))
                        for v in encoder.trainable_variables],
            "history": {}, "trained": trained}


def run(name, strategy=None, steps=3, callbacks=None):
    """``steps`` meta-steps (one per epoch) of case ``name`` under
    ``strategy`` (default: one device): ``{"weights": [(path, array)],
    "history": {key: list}}``."""
    if name == "rl_leap":
        return run_rl_leap(strategy)
    case = CASES[name]
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        meta = case.build()
        meta.compile(optimizer=case.outer(), loss="mse",
                     metrics=[keras.metrics.MeanAbsoluteError()])
    data = tf.data.Dataset.from_tensors(tasks(case)).repeat()
    history = meta.fit(data, epochs=steps, steps_per_epoch=1, verbose=0,
                       callbacks=callbacks)
    return {"weights": [(v.path, np.array(v.numpy())) for v in meta.weights],
            "history": {k: list(map(float, v))
                        for k, v in history.history.items()}}


def compare(expected, got, name=""):
    """Weights (in ``meta.weights`` order; the paths may differ in their
    numbering) and History of two ``run`` results, to 1e-5."""
    assert len(expected["weights"]) == len(got["weights"]), name
    for (path, value), (_, other) in zip(expected["weights"], got["weights"]):
        np.testing.assert_allclose(other, value, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name}: {path}")
    assert sorted(expected["history"]) == sorted(got["history"]), (
        name, sorted(expected["history"]), sorted(got["history"]))
    for key, value in expected["history"].items():
        np.testing.assert_allclose(got["history"][key], value, rtol=1e-5,
                                   atol=1e-7, err_msg=f"{name}: {key}")


def multiworker_strategy(heartbeat_timeout=300):
    """``MultiWorkerMirroredStrategy`` of TF_CONFIG's cluster, with a
    heartbeat timeout of TensorFlow's coordination service of
    ``heartbeat_timeout`` seconds instead of its default 10 s, which a
    worker starved of CPU on a loaded test machine can miss (it is then
    declared dead and the job aborted). A dead worker is still noticed at
    once by the launcher (its exit status)."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    workers = resolver.cluster_spec().num_tasks("worker")
    context.context().configure_coordination_service(
        service_type="standalone", service_leader="/job:worker/replica:0/task:0",
        heartbeat_timeout_in_ms=int(heartbeat_timeout * 1000),
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(
            name="worker", num_tasks=workers)])
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=["one", "multiworker"],
                        default="multiworker")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", required=True)
    parser.add_argument("--backup-dir", help="keras.callbacks.BackupAndRestore "
                        "there (one case)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds of sleep before each meta-step (so "
                        "that a test can kill the run in the middle)")
    args = parser.parse_args(argv)
    strategy = (multiworker_strategy() if args.strategy == "multiworker"
                else None)
    callbacks = [keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: time.sleep(args.pause))]
    if args.backup_dir:
        callbacks.append(keras.callbacks.BackupAndRestore(args.backup_dir))
    results = {}
    for name in args.cases.split(","):
        try:
            results[name] = run(name, strategy, args.steps, callbacks)
        except Exception as err:  # noqa: BLE001 - reported by the test
            results[name] = {"error": f"{type(err).__name__}: {err}"[:2000]}
    with open(args.out, "wb") as f:
        pickle.dump(results, f)


if __name__ == "__main__":
    main()
