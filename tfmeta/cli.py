"""The ``tfmeta`` command line: train, evaluate, export and list.

    tfmeta train leap --tasks sine --steps 1000 --out runs/leap-sine
    tfmeta train --config runs.yaml --out runs/x     # options from YAML/JSON
    tfmeta evaluate runs/leap-sine
    tfmeta list

A run directory holds ``config.json`` (the resolved options), atomic
checkpoints (``checkpoint.json`` naming the latest ``ckpt-<step>.weights.h5``),
``log.csv``, ``tensorboard/``, ``results.json`` and ``loss.png``. Running the
same ``train`` command again resumes from the last checkpoint, and a resumed
run finishes with the same weights as an uninterrupted one (see
``docs/reliability.md``). Every option is validated before any work starts.
"""

import argparse
import json
import math
import os
import pathlib
import signal
import sys
import time

EXIT_BAD_INPUT, EXIT_NON_FINITE = 2, 3


def _methods():
    """The methods ``tfmeta train`` takes (``tfmeta.registry``)."""
    from tfmeta import registry
    return registry.methods(cli_only=True)


DEFAULTS = {
    "method": None, "tasks": "sine", "steps": 1000, "meta_batch": 5,
    "inner_steps": 32, "eval_steps": 32, "inner_lr": 0.02,
    "inner_optimizer": "sgd", "inner_batch_size": None, "meta_lr": 0.01,
    "meta_optimizer": "sgd", "anneal": False, "seed": 0,
    "checkpoint_every": None, "eval_every": 1, "test_tasks": 100,
    "data_dir": None, "method_options": {}, "deterministic": True,
    "vectorize_tasks": False,
}

OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop"}


class UsageError(ValueError):
    """Bad input on the command line or in a config file."""


# ------------------------------------------------------------ task families
class SineFamily:
    """Sine regression (Reptile section 3)."""

    name, description = "sine", "sine-wave regression, 10-shot (Reptile/MAML)"
    loss, metrics = "mse", ()

    def __init__(self, config):
        self.config = config

    def learner(self, seed):
        from tfmeta.tasks import sine
        return sine.mlp(seed=seed)

    def dataset(self, meta_batch, seed, start):
        from tfmeta.tasks import sine
        return sine.dataset(meta_batch_size=meta_batch, seed=seed, start=start)

    def test_tasks(self, num, seed):
        from tfmeta.tasks import sine
        return sine.tasks(num, support_size=10, query_size=100, seed=seed)


class OmniglotFamily:
    """Omniglot alphabets as 20-way tasks (Leap section 4.1, Table 2)."""

    name = "omniglot"
    description = "Omniglot alphabets as 20-way tasks (Leap section 4.1)"
    metrics = ("accuracy",)
    # The paper's task-level settings (Leap appendix, Table 3).
    defaults = {"inner_lr": 0.1, "inner_steps": 100, "eval_steps": 100,
                "inner_batch_size": 20, "meta_lr": 0.1, "meta_batch": 20,
                "test_tasks": 10}

    def __init__(self, config):
        from tfmeta.tasks import omniglot
        self.omniglot = omniglot
        try:
            self.data = omniglot.load(config["data_dir"])
        except (OSError, ValueError) as err:
            raise UsageError(str(err)) from err
        import keras
        self.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def learner(self, seed):
        return self.omniglot.leap_convnet(seed=seed)

    def dataset(self, meta_batch, seed, start):
        return self.omniglot.dataset(meta_batch_size=meta_batch, seed=seed,
                                     data=self.data, start=start)

    def test_tasks(self, num, seed):
        return self.omniglot.tasks("test", num_tasks=num, seed=seed,
                                   data=self.data)


FAMILIES = {"sine": SineFamily, "omniglot": OmniglotFamily}


# ------------------------------------------------------------------ config
def _positive(name, value, kind=int, allow_none=False):
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok or not value > 0 or (kind is float and not math.isfinite(value)):
        what = "a positive integer" if kind is int else "a positive number"
        raise UsageError(f"{name} must be {what}, got {value!r}.")
    return kind(value)


def load_config_file(path):
    """Options from a YAML or JSON file (a mapping of option names)."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise UsageError(f"cannot read config file {path}: {err.strerror}.") from err
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml
            data = yaml.safe_load(text)
    except Exception as err:  # noqa: BLE001 - parser errors vary
        raise UsageError(f"config file {path} is not valid "
                         f"{'JSON' if path.suffix.lower() == '.json' else 'YAML'}: "
                         f"{err}") from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of options, "
                         f"got {type(data).__name__}.")
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise UsageError(f"config file {path} has unknown option(s) {unknown}; "
                         f"known options: {sorted(DEFAULTS)}.")
    return data


def resolve_config(file_options, cli_options):
    """Defaults < config file < explicit command-line options, validated."""
    config = dict(DEFAULTS)
    family = cli_options.get("tasks") or file_options.get("tasks") or "sine"
    config.update(getattr(FAMILIES.get(family), "defaults", {}))
    config.update(file_options)
    config.update({k: v for k, v in cli_options.items() if v is not None})
    method = config["method"]
    if method is None:
        raise UsageError("no method given: tfmeta train METHOD (one of "
                         f"{sorted(_methods())}), or 'method:' in the config file.")
    if method not in _methods():
        raise UsageError(
            f"unknown method {method!r}; choose from {sorted(_methods())}.")
    if config["tasks"] not in FAMILIES:
        raise UsageError(f"unknown task family {config['tasks']!r}; choose from "
                         f"{sorted(FAMILIES)}.")
    for key in ("steps", "meta_batch", "inner_steps", "eval_steps", "eval_every",
                "test_tasks"):
        config[key] = _positive(key, config[key])
    config["inner_batch_size"] = _positive(
        "inner_batch_size", config["inner_batch_size"], allow_none=True)
    for key in ("inner_lr", "meta_lr"):
        config[key] = _positive(key, config[key], kind=float)
    for key in ("inner_optimizer", "meta_optimizer"):
        if config[key] not in OPTIMIZERS:
            raise UsageError(f"unknown {key} {config[key]!r}; choose from "
                             f"{sorted(OPTIMIZERS)}.")
    if not isinstance(config["seed"], int) or isinstance(config["seed"], bool):
        raise UsageError(f"seed must be an integer, got {config['seed']!r}.")
    if not isinstance(config["method_options"], dict):
        raise UsageError("method_options must be a mapping, e.g. "
                         "{\"metric\": \"energy\"}.")
    every = config["checkpoint_every"]
    if every is None:
        every = max(d for d in range(1, min(100, config["steps"]) + 1)
                    if config["steps"] % d == 0)
    every = _positive("checkpoint_every", every)
    if config["steps"] % every:
        raise UsageError(f"steps ({config['steps']}) must be a multiple of "
                         f"checkpoint_every ({every}).")
    config["checkpoint_every"] = every
    return config


# -------------------------------------------------------------- run state
def _atomic_write(path, text):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDir:
    """A run directory: config, checkpoints, logs and results."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"--out {self.path} exists and is not a directory.")
        self.config_file = self.path / "config.json"
        self.state_file = self.path / "checkpoint.json"

    def stored_config(self):
        if not self.config_file.exists():
            return None
        try:
            return json.loads(self.config_file.read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"{self.config_file} is unreadable or corrupt: "
                             f"{err}.") from err

    def claim(self, config):
        """Creates the run, or checks that a resumed run has the same config."""
        stored = self.stored_config()
        if stored is None:
            self.path.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.config_file, json.dumps(config, indent=2))
            return
        # Options added to tfmeta since the run started take their defaults.
        stored = resolve_config(stored, {})
        differ = sorted(k for k in set(stored) | set(config)
                        if stored.get(k) != config.get(k))
        if differ:
            details = ", ".join(f"{k}: {stored.get(k)!r} -> {config.get(k)!r}"
                                for k in differ)
            raise UsageError(
                f"{self.path} holds a run with a different configuration "
                f"({details}). Use another --out, or the original options to "
                "resume it.")

    def latest(self):
        """``(step, weights file)`` of the latest checkpoint, or ``(0, None)``."""
        if not self.state_file.exists():
            return 0, None
        try:
            state = json.loads(self.state_file.read_text())
            step, name = int(state["step"]), state["weights"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{self.state_file} is unreadable or corrupt: "
                             f"{err}.") from err
        weights = self.path / name
        if not weights.exists():
            raise UsageError(f"{self.state_file} names {weights}, which is missing.")
        return step, weights

    def save(self, meta, step, keep=2):
        """Weights to a temporary file, renamed, then the state file: a crash
        at any point leaves the previous checkpoint usable."""
        name = f"ckpt-{step}.weights.h5"
        tmp = self.path / f"{name}.tmp.weights.h5"
        meta.save_weights(str(tmp))
        _fault_injection("TFMETA_TEST_KILL_IN_CHECKPOINT", step)
        os.replace(tmp, self.path / name)
        _atomic_write(self.state_file, json.dumps({"step": step, "weights": name}))
        old = sorted(self.path.glob("ckpt-*.weights.h5"),
                     key=lambda p: int(p.name.split("-")[1].split(".")[0]))
        for stale in old[:-keep]:
            stale.unlink()


def _fault_injection(variable, step):
    """Test hook: SIGKILL this process at ``step`` when ``variable`` says so."""
    if os.environ.get(variable) == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


# -------------------------------------------------------------- building
def build(config):
    """The compiled meta-learner and task family of a config."""
    import keras

    import tfmeta
    family = FAMILIES[config["tasks"]](config)
    keras.utils.set_random_seed(config["seed"])
    cls = _methods()[config["method"]].cls
    inner = getattr(keras.optimizers, OPTIMIZERS[config["inner_optimizer"]])(
        config["inner_lr"])
    lr = config["meta_lr"]
    if config["anneal"]:
        lr = tfmeta.linear_annealing(lr, config["steps"])
    outer = getattr(keras.optimizers, OPTIMIZERS[config["meta_optimizer"]])(lr)
    try:
        meta = cls(family.learner(config["seed"]), inner_optimizer=inner,
                   inner_steps=config["inner_steps"],
                   eval_steps=config["eval_steps"],
                   inner_batch_size=config["inner_batch_size"],
                   vectorize_tasks=bool(config["vectorize_tasks"]),
                   seed=config["seed"], **config["method_options"])
    except (TypeError, ValueError) as err:
        raise UsageError(f"bad method_options for {config['method']} "
                         f"{config['method_options']}: {err}") from err
    meta.compile(optimizer=outer, loss=family.loss, metrics=list(family.metrics))
    return meta, family


def _restore(meta, run):
    step, weights = run.latest()
    if weights is not None:
        try:
            meta.load_weights(str(weights))
        except Exception as err:  # noqa: BLE001 - h5 errors vary
            raise UsageError(
                f"checkpoint {weights} is unreadable or corrupt ({err}). It was "
                "left as it is; remove the run directory to start again.") from err
    return step


def _test_data(family, config):
    import tensorflow as tf

    import tfmeta
    tasks = family.test_tasks(config["test_tasks"], 10_000 + config["seed"])
    return tasks, tf.data.Dataset.from_tensors(
        {k: tasks[k] for k in tfmeta.TASK_KEYS})


# -------------------------------------------------------------- callbacks
def _callbacks(run, config, start_step):
    import keras
    import tensorflow as tf

    every = config["checkpoint_every"]

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("loss")
            if self.model.stop_training or (loss is not None
                                            and not math.isfinite(loss)):
                return  # a stopped epoch is not complete: keep the last one
            run.save(self.model, (epoch + 1) * every)

    class StepTime(keras.callbacks.Callback):
        """Seconds per meta-step to TensorBoard; the fault-injection hook."""

        def __init__(self):
            super().__init__()
            self.writer = tf.summary.create_file_writer(
                str(run.path / "tensorboard" / "steps"))
            self.step = start_step

        def on_train_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            with self.writer.as_default():
                tf.summary.scalar("seconds_per_meta_step",
                                  time.perf_counter() - self.started, self.step)
            _fault_injection("TFMETA_TEST_KILL_AT_STEP", self.step)

    return [Checkpoint(), StepTime(),
            keras.callbacks.CSVLogger(str(run.path / "log.csv"), append=True),
            keras.callbacks.TensorBoard(str(run.path / "tensorboard"))]


def _evaluate(meta, family, config, step):
    tasks, data = _test_data(family, config)
    results = meta.evaluate(data, verbose=0, return_dict=True)
    per_task = meta.evaluate_tasks(tasks)
    return {
        "step": step,
        "method": config["method"],
        "tasks": config["tasks"],
        **{f"test_{k}": float(v) for k, v in results.items()},
        "test_loss_before_mean": float(per_task["loss_before"].mean()),
        "test_loss_after_mean": float(per_task["loss_after"].mean()),
        "test_loss_after_std": float(per_task["loss_after"].std()),
    }


def _plot(run):
    import csv

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    log = run.path / "log.csv"
    if not log.exists():
        return
    with open(log) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    for key, label in (("loss", "meta-training query loss"),
                       ("val_loss", "held-out loss after adaptation")):
        values = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
        if values:
            ax.plot(epochs[-len(values):], values, label=label)
    ax.set_xlabel(f"checkpoint interval ({run.path.name})")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.path / "loss.png", dpi=100)
    plt.close(fig)


# --------------------------------------------------------------- commands
def cmd_train(args):
    file_options = load_config_file(args.config) if args.config else {}
    cli = {k: getattr(args, k) for k in DEFAULTS if hasattr(args, k)}
    if args.method_option:
        cli["method_options"] = dict(file_options.get("method_options", {}))
        for item in args.method_option:
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"--method-option expects KEY=VALUE, got {item!r}.")
            try:
                cli["method_options"][key] = json.loads(value)
            except ValueError:
                cli["method_options"][key] = value
    config = resolve_config(file_options, cli)
    run = RunDir(args.out)
    if config["deterministic"]:
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()
    meta, family = build(config)   # validates method options before writing
    run.claim(config)              # refuses a different config, changes nothing
    start = _restore(meta, run)
    every = config["checkpoint_every"]
    if start < config["steps"]:
        print(f"{'resuming' if start else 'starting'} {config['method']} on "
              f"{config['tasks']} at meta-step {start} of {config['steps']}",
              flush=True)
        _, test = _test_data(family, config)
        import tfmeta
        try:
            meta.fit(family.dataset(config["meta_batch"], config["seed"], start),
                     epochs=config["steps"] // every, steps_per_epoch=every,
                     initial_epoch=start // every,
                     validation_data=test, validation_freq=config["eval_every"],
                     callbacks=_callbacks(run, config, start),
                     verbose=1 if sys.stdout.isatty() else 2)
        except tfmeta.NonFiniteLossError as err:
            step, _ = run.latest()
            print(f"error: {err} The last checkpoint (meta-step {step}) in "
                  f"{run.path} is intact.", file=sys.stderr)
            return EXIT_NON_FINITE
    step, _ = run.latest()
    results = _evaluate(meta, family, config, step)
    _atomic_write(run.path / "results.json", json.dumps(results, indent=2))
    _plot(run)
    print(json.dumps(results, indent=2))
    return 0


def _load_run(path):
    run = RunDir(path)
    config = run.stored_config()
    if config is None:
        raise UsageError(f"{run.path} is not a tfmeta run directory (no "
                         "config.json); train one with 'tfmeta train'.")
    config = resolve_config(config, {})
    step, weights = run.latest()
    if weights is None:
        raise UsageError(f"{run.path} has no checkpoint yet.")
    meta, family = build(config)
    _restore(meta, run)
    return run, config, meta, family, step


def cmd_evaluate(args):
    run, config, meta, family, step = _load_run(args.run)
    if args.test_tasks is not None:
        config["test_tasks"] = _positive("test_tasks", args.test_tasks)
    results = _evaluate(meta, family, config, step)
    _atomic_write(run.path / "evaluation.json", json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


def cmd_export(args):
    run, config, meta, family, step = _load_run(args.run)
    from tfmeta import export
    try:
        path = export.export(meta, args.path, overwrite=args.overwrite)
    except (export.ExportError, FileExistsError) as err:
        raise UsageError(str(err)) from err
    print(f"exported {config['method']} (meta-step {step}) to {path}")
    return 0


def cmd_list(args):
    from tfmeta import registry
    print("methods:")
    for name, method in registry.methods().items():
        where = "" if method.cli else " (Python API only)"
        print(f"  {name:10s} {method.description}{where}")
    print("task families:")
    for name, family in FAMILIES.items():
        print(f"  {name:10s} {family.description}")
    return 0


def parser():
    p = argparse.ArgumentParser(
        prog="tfmeta", description="Gradient-based meta-learning with Keras.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="meta-train (resumes an existing run)",
                       description=cmd_train.__doc__)
    t.add_argument("method", nargs="?", help=f"one of {sorted(_methods())}")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--config", help="YAML or JSON file of options (the flags "
                   "below override it)")
    t.add_argument("--tasks", help="task family (default sine)")
    t.add_argument("--steps", type=int, help="meta-steps (default 1000)")
    t.add_argument("--meta-batch", type=int, help="tasks per meta-step (5)")
    t.add_argument("--inner-steps", type=int, help="adaptation steps in training (32)")
    t.add_argument("--eval-steps", type=int, help="adaptation steps in evaluation (32)")
    t.add_argument("--inner-lr", type=float, help="task learning rate (0.02)")
    t.add_argument("--inner-optimizer", help=f"{sorted(OPTIMIZERS)} (sgd)")
    t.add_argument("--inner-batch-size", type=int, help="support minibatch (all)")
    t.add_argument("--meta-lr", type=float, help="outer learning rate (0.01)")
    t.add_argument("--meta-optimizer", help=f"{sorted(OPTIMIZERS)} (sgd)")
    t.add_argument("--anneal", action="store_true", default=None,
                   help="anneal the outer step size linearly to 0")
    t.add_argument("--seed", type=int, help="random seed (0)")
    t.add_argument("--checkpoint-every", type=int,
                   help="meta-steps between checkpoints (a divisor of --steps)")
    t.add_argument("--eval-every", type=int,
                   help="checkpoint intervals between held-out evaluations (1)")
    t.add_argument("--test-tasks", type=int, help="held-out tasks (100)")
    t.add_argument("--data-dir", help="data directory (default ../shared/data "
                   "or $TFMETA_DATA)")
    t.add_argument("--method-option", action="append", metavar="KEY=VALUE",
                   help="method argument, e.g. metric=energy (repeatable)")
    t.add_argument("--vectorize-tasks", action="store_true", default=None,
                   help="batch the tasks of a meta-step (fast for small nets)")
    t.add_argument("--no-determinism", dest="deterministic", action="store_false",
                   default=None, help="allow non-deterministic ops (faster)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a run's latest checkpoint")
    e.add_argument("run", help="run directory")
    e.add_argument("--test-tasks", type=int, help="held-out tasks")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="export a run as a SavedModel")
    x.add_argument("run", help="run directory")
    x.add_argument("--path", help="export directory (saved_models/<name>)")
    x.add_argument("--overwrite", action="store_true",
                   help="replace an existing export")
    x.set_defaults(func=cmd_export)

    ls = sub.add_parser("list", help="methods and task families")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as err:
        print(f"tfmeta {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
