"""The ``tfmeta`` command line: train, evaluate, export and list.

    tfmeta train leap --tasks sine --steps 1000 --out runs/leap-sine
    tfmeta train transfer --encoder linear --tasks cos-sin --out runs/cs
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
import contextlib
import csv
import fcntl
import json
import math
import os
import pathlib
import re
import signal
import sys
import tempfile
import threading
import time

from tfmeta import config as schema
from tfmeta.errors import UsageError  # noqa: F401 - tfmeta.cli.UsageError

EXIT_BAD_INPUT, EXIT_NON_FINITE, EXIT_INTERRUPTED = 2, 3, 130


def _methods():
    """The methods ``tfmeta train`` takes (``tfmeta.registry``)."""
    from tfmeta import registry
    return registry.methods(cli_only=True)


# Every option, its type and default: tfmeta/config.py (one schema for the
# flags, config files and --method-option).
DEFAULTS = schema.DEFAULTS
OPTIMIZERS = schema.OPTIMIZERS


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
    defaults = schema.FAMILY_DEFAULTS["omniglot"]

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


class TransferFamily:
    """What the meta-transfer families share: ``MetaTransfer`` built from
    ``task_dim``, ``support_dims``, ``query_dims`` and ``learner`` (the query
    learner), and held-out results of the query predictions. Regression
    families report the query MSE per task (mean, std)."""

    loss, metrics = "mse", ()

    def encoder_options(self, encoder):
        """Constructor options of ``MetaTransfer`` for ``encoder`` (the
        gradient encoders' support loss where it is not the MSE)."""
        return {}

    def results(self, meta, tasks):
        """Held-out results beyond ``evaluate``'s (a dict of floats)."""
        import numpy as np
        pred = meta.transfer(tasks["support_x"], tasks["support_y"],
                             tasks["query_x"])
        axes = tuple(range(1, pred.ndim))
        per_task = np.mean((pred - tasks["query_y"]) ** 2, axis=axes)
        return {"sigma": self.sigma,
                "test_query_mse_mean": float(per_task.mean()),
                "test_query_mse_std": float(per_task.std())}


class CosSinFamily(TransferFamily):
    """cos -> sin meta-transfer (gradient-based transfer paper, Table 1):
    support ``A cos(x + b)`` with noise ``sigma``, query ``A sin(x + b)``."""

    name = "cos-sin"
    description = "meta-transfer: support A cos(x+b), query A sin(x+b)"
    task_dim, support_dims, query_dims = 2, (1, 1), (1, 1)
    support_size, query_size, test_query_size = 10, 10, 100

    def __init__(self, config):
        self.sigma = config["sigma"]

    def learner(self, seed):
        from tfmeta.tasks import cos_sin
        return cos_sin.query_mlp(seed=seed)

    def dataset(self, meta_batch, seed, start):
        from tfmeta.tasks import cos_sin
        return cos_sin.dataset(meta_batch, self.support_size, self.query_size,
                               sigma=self.sigma, seed=seed, start=start)

    def test_tasks(self, num, seed):
        from tfmeta.tasks import cos_sin
        return cos_sin.tasks(num, self.support_size, self.test_query_size,
                             sigma=self.sigma, seed=seed)


class RLFamily:
    """RL tasks (``tfmeta.rl``, the ``rl`` extra): the meta-learner is an
    ``RLMetaModel`` whose environments are the data (no task data set, no
    held-out batch: ``fit`` runs ``steps_per_epoch`` meta-steps), and each
    meta-step's ``scalars`` go to TensorBoard (``tensorboard/<board>``) at
    the outer optimizer's step."""

    board = None

    def __init__(self, config):
        try:
            from tfmeta import rl
        except ImportError as err:
            raise UsageError(str(err)) from err
        self.rl, self.config = rl, config

    def compiled(self, make, config):
        """``make()``'s meta-learner (its errors as a ``UsageError``),
        compiled with the run's outer optimizer."""
        import keras
        try:
            meta = make()
        except (TypeError, ValueError) as err:
            raise UsageError(
                f"bad options for {config['method']} on {config['tasks']} "
                f"{config['method_options']}: {err}") from err
        lr = _outer_learning_rate(config)
        meta.compile(getattr(keras.optimizers,
                             OPTIMIZERS[config["meta_optimizer"]])(lr))
        return meta

    def dataset(self, meta_batch, seed, start):
        return None     # the environments are the data: fit draws them

    def validation(self, config):
        return None

    def scalars(self, meta):
        """``{tag: value}`` of the meta-step just run (NaN: left out)."""
        return {}

    def callbacks(self, run):
        import keras
        import tensorflow as tf
        writer = tf.summary.create_file_writer(
            str(run.path / "tensorboard" / self.board))
        family = self

        class PerStep(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                step = int(self.model.optimizer.iterations.numpy())
                with writer.as_default():
                    for tag, value in family.scalars(self.model).items():
                        if value == value:  # not NaN
                            tf.summary.scalar(tag, value, step)

            def on_epoch_end(self, epoch, logs=None):
                writer.flush()

        return [PerStep()]


class AtariFamily(RLFamily):
    """Atari games as RL tasks for Leap's A2C form (Leap section 4.3,
    ``tfmeta.rl.RLLeap``): a task is a game; each meta-step trains a fresh
    agent per game of a meta-batch from the shared encoder. No task data
    set: ``fit`` runs ``steps_per_epoch`` meta-steps; evaluation trains an
    agent on each ``eval_games`` game from the meta-learned encoder."""

    name = "atari"
    description = "Atari games as A2C tasks, Leap's encoder (Leap section 4.3)"
    board = "games"

    def __init__(self, config):
        super().__init__(config)
        try:
            for game in config["games"] + config["eval_games"]:
                self.rl.game_id(game)  # an unknown game fails before any work
        except (ImportError, ValueError) as err:
            raise UsageError(str(err)) from err

    def build(self, config, cls):
        rl, c = self.rl, config
        tasks = [lambda seed, g=g: rl.atari.agent(
            g, c["envs"], seed, c["max_episode_frames"]) for g in c["games"]]
        encoder = rl.nets.mnih_encoder((84, 84, 3))
        if c["meta_batch"] > len(tasks):
            raise UsageError(f"meta_batch ({c['meta_batch']}) is larger than "
                             f"the {len(tasks)} games of --games.")
        return self.compiled(lambda: rl.RLLeap(
            encoder, tasks, updates=c["updates"],
            meta_batch_size=c["meta_batch"], seed=c["seed"],
            **c["method_options"]), config)

    def scalars(self, meta):
        """Each game's mean episode return and A2C loss (``tensorboard/
        games``)."""
        games, out = self.config["games"], {}
        for log in meta.last_logs:
            game = games[log["task"]]
            out[f"mean_return/{game}"] = log["mean_return"]
            out[f"loss/{game}"] = log["loss"]
        return out

    def evaluate(self, meta, config, step):
        c, games = config, {}
        for game in c["eval_games"]:
            score, episodes = self.rl.atari.evaluate(
                game, meta.encoder, updates=c["eval_updates"], envs=c["envs"],
                seed=10_000 + c["seed"], max_episode_steps=c["max_episode_frames"])
            finished = episodes > 0   # else no return to report (null)
            games[game] = {
                "mean_return": float(score) if finished else None,
                "episodes": episodes,
                "normalized": float(self.rl.atari.normalized_score(
                    game, score)) if finished else None}
        return {"step": step, "method": "leap", "tasks": "atari",
                "eval_updates": c["eval_updates"], "games": games}


class WarpMazeFamily(RLFamily):
    """``warpgrad`` on ``maze``: WarpGrad appendix I's Warp-RNN A2C agent on
    Miconi et al.'s maze (``tfmeta.rl.maze_agent``, ``RLWarpGrad``), one
    continual stream (a new goal every episode): each meta-step is
    ``updates`` A2C updates on ``envs`` whole episodes, then a warp update.
    The agent of experiments/warpgrad_maze.py (100 units, 200-step
    episodes); the results are the stream's own returns."""

    name = "maze"
    description = ("with warpgrad: WarpGrad's Warp-RNN A2C agent on "
                   "Miconi's 11 x 11 maze (RL)")
    board = "agent"

    def build(self, config, cls):
        import keras
        rl, c = self.rl, config
        task_optimizer = getattr(keras.optimizers, OPTIMIZERS[
            c["inner_optimizer"]])(c["inner_lr"])
        a2c = rl.maze_agent("Warp-RNN", envs=c["envs"],
                            optimizer=task_optimizer, seed=c["seed"])
        return self.compiled(
            lambda: rl.RLWarpGrad(a2c, interval=c["updates"]), config)

    def scalars(self, meta):
        """The meta-step's A2C loss, warp gradient norm and mean return of
        the last 300 episodes (``tensorboard/agent``)."""
        return dict(meta.last_logs)

    def evaluate(self, meta, config, step):
        a2c = meta.a2c
        returns = [e.episode_return for e in a2c.episodes]  # none: null

        def mean(values):
            return float(sum(values) / len(values)) if values else None

        return {"step": step, "method": "warpgrad", "tasks": "maze",
                "updates": int(a2c.updates.numpy()),
                "episodes": len(returns), "mean_return": mean(returns),
                "mean_return_last_300": mean(returns[-300:])}


class PendulumFamily(TransferFamily):
    """Single -> double inverted pendulum (gradient-based transfer paper,
    Table 4): support one-step dynamics of MuJoCo's ``InvertedPendulum``
    with noise ``sigma``, query those of ``InvertedDoublePendulum`` with
    the same pole length and gravity. Training tasks: a fixed set of
    ``train_tasks`` ``(L, g)`` simulated once (``pendulum.simulate``), as
    experiments/transfer_pendulum.py."""

    name = "pendulum"
    description = ("meta-transfer: single -> double MuJoCo pendulum "
                   "dynamics")
    support_size, query_size, points, test_query_size = 50, 50, 200, 100

    def __init__(self, config):
        from tfmeta.tasks import pendulum
        self.pendulum = pendulum
        try:
            pendulum.require_mujoco()
        except ImportError as err:
            raise UsageError(str(err)) from err
        self.task_dim = pendulum.TASK_DIM
        self.support_dims = pendulum.SUPPORT_DIMS
        self.query_dims = pendulum.QUERY_DIMS
        self.sigma, self.train_tasks = config["sigma"], config["train_tasks"]
        self.seed, self._train = config["seed"], None

    def learner(self, seed):
        return self.pendulum.query_mlp(seed=seed)

    def dataset(self, meta_batch, seed, start):
        if self._train is None:   # simulated on first use, then kept
            self._train = self.pendulum.simulate(
                self.train_tasks, self.points, seed=self.seed)
        return self.pendulum.sampled_dataset(
            self._train, meta_batch, self.support_size, self.query_size,
            sigma=self.sigma, seed=seed, start=start)

    def test_tasks(self, num, seed):
        held_out = self.pendulum.simulate(num, self.test_query_size,
                                          seed=seed)
        return self.pendulum.fixed_batch(
            held_out, self.support_size, self.test_query_size,
            sigma=self.sigma, seed=seed)

    def results(self, meta, tasks):
        return {**super().results(meta, tasks),
                "test_current_state_mse":
                    self.pendulum.current_state_mse(tasks)}


class MazeFamily(TransferFamily):
    """2 x N mazes (gradient-based transfer paper, Table 3): support
    (position, occupied) of the maze's cells, query the optimal action at
    free cells; code size ``N / 2`` (the task's dimension). Reports the
    held-out greedy rollouts' normalized distance to the goal (Table 3's
    reward: 0 at the goal, -1 at the start) and the query accuracy."""

    name = "maze"
    description = "meta-transfer: 2 x N maze cells -> optimal actions"
    metrics = ("accuracy",)
    support_dims = (2, 1)

    def __init__(self, config):
        import keras

        from tfmeta.tasks import maze
        self.maze, self.width = maze, config["width"]
        self.task_dim = self.width // 2
        self.query_dims = (2, len(maze.ACTIONS))
        self.loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True)

    def encoder_options(self, encoder):
        import keras

        from tfmeta.transfer import GRADIENT_ENCODERS
        if encoder not in GRADIENT_ENCODERS:
            return {}
        return {"support_loss": keras.losses.BinaryCrossentropy(
            from_logits=True, reduction=None)}

    def learner(self, seed):
        return self.maze.query_mlp(seed=seed)

    def dataset(self, meta_batch, seed, start):
        return self.maze.dataset(meta_batch, self.width, seed=seed,
                                 start=start)

    def test_tasks(self, num, seed):
        return self.maze.tasks(num, self.width, seed=seed)

    def results(self, meta, tasks):
        import numpy as np
        grids = tasks["grid"]
        cells = np.array([(r, c) for r in range(2) for c in range(self.width)],
                         np.float32)
        logits = meta.transfer(tasks["support_x"], tasks["support_y"],
                               np.repeat(cells[None], len(grids), 0))
        rewards = np.array([
            self.maze.normalized_distance(grid, self.maze.rollout(
                grid, np.argmax(task, -1).reshape(2, self.width)))
            for grid, task in zip(grids, logits)])
        return {"width": self.width,
                "test_reward_mean": float(rewards.mean()),
                "test_reward_std": float(rewards.std()),
                "test_reached": float(np.mean(rewards == 0.0))}


FAMILIES = {"sine": SineFamily, "omniglot": OmniglotFamily,
            "cos-sin": CosSinFamily, "pendulum": PendulumFamily,
            "maze": MazeFamily, "atari": AtariFamily}
# A (method, family) that is another task than the family's own
# (config.PAIR_OPTIONS).
PAIR_FAMILIES = {("warpgrad", "maze"): WarpMazeFamily}


def family_class(config):
    """The task family class of a config's ``tasks`` and ``method``."""
    return PAIR_FAMILIES.get((config["method"], config["tasks"]),
                             FAMILIES[config["tasks"]])


# ------------------------------------------------------------------ config
def load_config_file(path):
    """Options from a YAML or JSON file (a mapping of option names)."""
    return schema.load_file(path)


def resolve_config(file_options, cli_options):
    """Defaults < config file < explicit command-line options, typed and
    validated by the one schema (tfmeta/config.py)."""
    config = schema.resolve(file_options, cli_options)
    return config


def check_out(path):
    """Refuses an ``--out`` that cannot be a run directory, before any work:
    empty, a file, or in a place where no directory can be created."""
    if not str(path).strip():
        raise UsageError("--out is empty; give the run directory, e.g. "
                         "--out runs/leap-sine.")
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} exists and is not a directory.")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"--out {path}: cannot write in it.")
        return path
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out {path}: {existing} is not a directory.")
    try:  # can we create it? (a probe directory, removed at once)
        os.rmdir(tempfile.mkdtemp(prefix=".tfmeta-probe-", dir=existing))
    except OSError as err:
        raise UsageError(f"--out {path}: cannot write in {existing} "
                         f"({err.strerror or err}).") from err
    return path


# -------------------------------------------------------------- run state
CHECKPOINT = re.compile(r"^ckpt-(\d+)\.weights\.h5$")   # the names tfmeta writes


def _atomic_write(path, text):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDir:
    """A run directory: config, checkpoints, logs and results.

    One process at a time: ``lock`` takes an exclusive ``flock`` on
    ``RUN/.lock`` (the kernel releases it when the process ends, however it
    ends) and writes the holder's pid there for the message of the next one.
    Only files tfmeta wrote are ever replaced or removed: its checkpoints
    (``ckpt-<step>.weights.h5``, and ``ckpt-<step>.state.pkl`` beside them
    for a meta-learner with a run state, ``RLMetaModel.get_run_state``),
    their temporary files and its logs.
    """

    LOCK = ".lock"

    def __init__(self, path):
        self.path = pathlib.Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"{self.path} exists and is not a directory.")
        self.config_file = self.path / "config.json"
        self.state_file = self.path / "checkpoint.json"
        self._lock = None

    def lock(self):
        """Owns the run directory (created if needed) until ``unlock``."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            f = open(self.path / self.LOCK, "a+")
        except OSError as err:
            raise UsageError(f"cannot create the run directory {self.path}: "
                             f"{err.strerror or err}.") from err
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            # The holder writes its pid right after taking the lock: between
            # the two the file is empty, so read again for a moment.
            for _ in range(50):
                f.seek(0)
                holder = f.read().strip()
                if holder:
                    break
                time.sleep(0.02)
            f.close()
            raise UsageError(
                f"{self.path} is in use by another tfmeta process"
                f"{f' (pid {holder})' if holder.isdigit() else ''}; wait for "
                "it to finish or stop it, or use another --out.") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock = f

    def unlock(self):
        if self._lock is not None:
            self._lock.seek(0)
            self._lock.truncate()  # an idle run names no process
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def stored_config(self):
        if not self.config_file.exists():
            return None
        try:
            return json.loads(self.config_file.read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"{self.config_file} is unreadable or corrupt: "
                             f"{err}.") from err

    def check_config(self, config, locked=False):
        """Refuses to resume a run with another configuration, or to start
        one among files tfmeta did not write (reads only). Without the lock,
        a folder with a ``.lock`` is tfmeta's (maybe a run being created by
        another process): ``claim`` checks it again under the lock."""
        stored = self.stored_config()
        if stored is None:
            entries = set(os.listdir(self.path)) if self.path.is_dir() else set()
            if self.LOCK in entries and not locked:
                return
            others = sorted(entries - {self.LOCK, "config.json.tmp"})
            if others:  # never write (or overwrite) among files not ours
                raise UsageError(
                    f"{self.path} is not empty ({', '.join(others[:5])}"
                    f"{', ...' if len(others) > 5 else ''}) and holds no "
                    "tfmeta run (no config.json); give --out a new or empty "
                    "directory (nothing was written).")
            return
        try:
            # Options added to tfmeta since the run started take their defaults.
            stored = resolve_config(stored, {})
        except UsageError as err:
            raise UsageError(f"{self.config_file} is not a valid tfmeta config "
                             f"({err})") from err
        # (a restarted multiworker job may have other addresses: the
        # cluster of the run's first start stays in config.json)
        differ = sorted(k for k in set(stored) | set(config)
                        if stored.get(k) != config.get(k) and k != "cluster")
        if differ:
            details = ", ".join(f"{k}: {stored.get(k)!r} -> {config.get(k)!r}"
                                for k in differ)
            raise UsageError(
                f"{self.path} holds a run with a different configuration "
                f"({details}). Use another --out, or the original options to "
                "resume it.")

    def claim(self, config):
        """Creates the run, or checks that a resumed run has the same config."""
        self.check_config(config, locked=True)
        if self.stored_config() is None:
            self.path.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.config_file, json.dumps(config, indent=2))

    def checkpoints(self):
        """``{step: file}`` of the checkpoint files tfmeta wrote here."""
        if not self.path.is_dir():
            return {}
        return {int(m.group(1)): self.path / m.group(0)
                for m in map(CHECKPOINT.match, os.listdir(self.path)) if m}

    def latest(self):
        """``(step, weights file)`` of the latest checkpoint, or ``(0, None)``."""
        if not self.state_file.exists():
            return 0, None
        try:
            state = json.loads(self.state_file.read_text())
            step, name = int(state["step"]), state["weights"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{self.state_file} is unreadable or corrupt: "
                             f"{err}.{self._older_hint(None)}") from err
        weights = self.path / name
        if not weights.exists():
            raise UsageError(f"{self.state_file} names {weights}, which is "
                             f"missing.{self._older_hint(step)}")
        return step, weights

    def _older_hint(self, step):
        """How to resume from the newest checkpoint before ``step``."""
        older = sorted(s for s in self.checkpoints() if step is None or s < step)
        if not older:
            return " Nothing else was changed; remove the run directory to start again."
        return (f" Nothing was changed. An older checkpoint is there "
                f"({self.checkpoints()[older[-1]].name}, meta-step "
                f"{older[-1]}): to resume from it, run the same command with "
                f"--resume-from {older[-1]}.")

    def rewind(self, step, every):
        """Makes checkpoint ``step`` the latest: ``checkpoint.json`` names it
        and ``log.csv`` drops the rows after it (they will be trained again)."""
        if step not in self.checkpoints():
            raise UsageError(f"--resume-from {step}: {self.path} has no "
                             f"checkpoint at meta-step {step} (it has "
                             f"{sorted(self.checkpoints()) or 'none'}).")
        log = self.path / "log.csv"
        if log.exists():
            with open(log, newline="") as f:
                rows = list(csv.reader(f))
            keep = rows[:1] + [r for r in rows[1:]
                               if r and r[0].isdigit() and int(r[0]) < step // every]
            with open(log.with_name("log.csv.tmp"), "w", newline="") as f:
                csv.writer(f, lineterminator="\n").writerows(keep)
            os.replace(log.with_name("log.csv.tmp"), log)
        _atomic_write(self.state_file, json.dumps(
            {"step": step, "weights": self.checkpoints()[step].name}))

    def run_state(self, step):
        """The run-state file of the checkpoint at ``step`` (written beside
        the weights for a meta-learner with ``has_run_state``)."""
        return self.path / f"ckpt-{step}.state.pkl"

    def save(self, meta, step, keep=2):
        """Weights to a temporary file, renamed, then the state file: a crash
        at any point leaves the previous checkpoint usable."""
        if getattr(meta, "has_run_state", False):
            import pickle
            _atomic_write(self.run_state(step), pickle.dumps(
                meta.get_run_state(), protocol=pickle.HIGHEST_PROTOCOL))
        name = f"ckpt-{step}.weights.h5"
        tmp = self.path / f"{name}.tmp.weights.h5"
        meta.save_weights(str(tmp))
        _fault_injection("TFMETA_TEST_KILL_IN_CHECKPOINT", step)
        os.replace(tmp, self.path / name)
        _atomic_write(self.state_file, json.dumps({"step": step, "weights": name}))
        checkpoints = self.checkpoints()
        for stale in sorted(checkpoints)[:-keep]:
            checkpoints[stale].unlink()
            if self.run_state(stale).exists():
                self.run_state(stale).unlink()


def _fault_injection(variable, step):
    """Test hook: SIGKILL this process at ``step`` when ``variable`` says so."""
    if os.environ.get(variable) == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


# -------------------------------------------------------------- building
def strategy(name):
    """The ``tf.distribute`` strategy of a ``strategy`` option (``None``:
    one device). Created first, before any other TensorFlow work, as
    ``MultiWorkerMirroredStrategy`` requires."""
    if name == "one":
        return None
    import tensorflow as tf
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MultiWorkerMirroredStrategy()


def cluster(name):
    """The cluster a ``strategy`` runs on, as config.json records it:
    TF_CONFIG's ``cluster`` for ``multiworker`` (a ``UsageError`` naming
    TF_CONFIG when it is missing or malformed), else ``None``."""
    if name != "multiworker":
        return None
    text = os.environ.get("TF_CONFIG", "").strip()
    example = ('{"cluster": {"worker": ["host0:2222", "host1:2222"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not text:
        raise UsageError(
            "--strategy multiworker needs TF_CONFIG in the environment, e.g. "
            f"TF_CONFIG='{example}' on worker 0 (experiments/"
            "launch_multiworker.py sets it per worker; docs/distributed.md).")
    try:
        tf_config = json.loads(text)
        spec = schema.Cluster().parse("TF_CONFIG cluster",
                                      tf_config["cluster"])
        task = tf_config["task"]
        index = task["index"]
        if task["type"] not in spec or not 0 <= int(index) < len(
                spec[task["type"]]):
            raise ValueError(f"task {task} is not in the cluster")
    except (ValueError, KeyError, TypeError, UsageError) as err:
        raise UsageError(
            f"TF_CONFIG is not a valid multiworker configuration ({err}); "
            f"expected e.g. {example}.") from None
    return spec


def build(config, distribute=True):
    """The compiled meta-learner and task family of a config; built in the
    scope of the config's ``strategy`` unless ``distribute=False``."""
    distribution = strategy(config["strategy"]) if distribute else None
    import keras

    import tfmeta
    family = family_class(config)(config)
    keras.utils.set_random_seed(config["seed"])
    method = _methods().get(config["method"])   # None: an RL-only method
    cls = method and method.cls
    scope = (distribution.scope() if distribution is not None
             else contextlib.nullcontext())
    if config["method"] == "transfer":
        with scope:
            return _build_transfer(config, family, cls), family
    if hasattr(family, "build"):
        return family.build(config, cls), family
    inner = getattr(keras.optimizers, OPTIMIZERS[config["inner_optimizer"]])(
        config["inner_lr"])
    outer = _outer_optimizer(config)
    with scope:
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
        meta.compile(optimizer=outer, loss=family.loss,
                     metrics=list(family.metrics))
    return meta, family


def _outer_learning_rate(config):
    import tfmeta
    lr = config["meta_lr"]
    if config["anneal"]:
        lr = tfmeta.linear_annealing(lr, config["steps"])
    return lr


def _outer_optimizer(config):
    import keras
    return getattr(keras.optimizers, OPTIMIZERS[config["meta_optimizer"]])(
        _outer_learning_rate(config))


def _build_transfer(config, family, cls):
    """``MetaTransfer`` for a meta-transfer family (``--encoder``, ``--k``)."""
    encoder = config["encoder"]
    deep_kernel = encoder == "deep_kernel"
    k = None if deep_kernel else (config["k"] or family.task_dim)
    learner = None if deep_kernel else family.learner(config["seed"])
    query_dims = family.query_dims if deep_kernel else None
    try:
        meta = cls(encoder, query_learner=learner, k=k,
                   support_dims=family.support_dims, query_dims=query_dims,
                   seed=config["seed"], **family.encoder_options(encoder),
                   **config["method_options"])
    except (TypeError, ValueError) as err:
        raise UsageError(f"bad options for transfer ({encoder} encoder) "
                         f"{config['method_options']}: {err}") from err
    meta.compile(optimizer=_outer_optimizer(config), loss=family.loss,
                 metrics=list(family.metrics))
    return meta


def _restore(meta, run):
    step, weights = run.latest()
    if weights is not None:
        try:
            meta.load_weights(str(weights))
        except Exception as err:  # noqa: BLE001 - h5 errors vary
            raise UsageError(
                f"checkpoint {weights} is unreadable or corrupt "
                f"({' '.join(str(err).split())})."
                f"{run._older_hint(step)}") from err
        if getattr(meta, "has_run_state", False):
            _restore_run_state(meta, run, step)
    return step


def _restore_run_state(meta, run, step):
    """The run state saved beside checkpoint ``step`` (an RL agent's
    environments, optimizer state, episodes): our own pickle."""
    import pickle
    path = run.run_state(step)
    try:
        state = pickle.loads(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(
            f"{path} is missing: the checkpoint at meta-step {step} cannot "
            f"continue the run.{run._older_hint(step)}") from None
    except Exception as err:  # noqa: BLE001 - unpickling errors vary
        raise UsageError(f"{path} is unreadable or corrupt ({err})."
                         f"{run._older_hint(step)}") from err
    try:
        meta.set_run_state(state)
    except (TypeError, ValueError, KeyError) as err:
        raise UsageError(f"{path} does not fit this run ({err})."
                         f"{run._older_hint(step)}") from err


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
        """Seconds per meta-step to TensorBoard; the fault-injection hook.

        After a resume, the steps a killed run already logged are not logged
        again (one value per meta-step)."""

        def __init__(self):
            super().__init__()
            logdir = run.path / "tensorboard" / "steps"
            self.logged = _last_logged_step(logdir)
            self.writer = tf.summary.create_file_writer(str(logdir))
            self.step = start_step

        def on_train_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step > self.logged:
                with self.writer.as_default():
                    tf.summary.scalar("seconds_per_meta_step",
                                      time.perf_counter() - self.started,
                                      self.step)
            _fault_injection("TFMETA_TEST_KILL_AT_STEP", self.step)

        def on_epoch_end(self, epoch, logs=None):
            self.writer.flush()  # the steps up to a checkpoint are on disk

    return [Checkpoint(), StepTime(),
            keras.callbacks.CSVLogger(str(run.path / "log.csv"), append=True),
            keras.callbacks.TensorBoard(str(run.path / "tensorboard"))]


def _family_callbacks(family, run):
    """A family's own TensorBoard logs (Atari: episode return per game)."""
    return family.callbacks(run) if hasattr(family, "callbacks") else []


def _last_logged_step(logdir):
    """The largest step of the event files in ``logdir`` (0 if none); a file
    cut short by a kill ends where it was cut."""
    import tensorflow as tf

    last = 0
    for path in sorted(pathlib.Path(logdir).glob("events.out.tfevents.*")):
        try:
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                last = max(last, int(event.step))
        except tf.errors.DataLossError:
            pass
    return last


def _evaluate(meta, family, config, step):
    if hasattr(family, "evaluate"):
        return family.evaluate(meta, config, step)
    tasks, data = _test_data(family, config)
    results = meta.evaluate(data, verbose=0, return_dict=True)
    if config["method"] == "transfer":
        return {"step": step, "method": "transfer", "tasks": config["tasks"],
                "encoder": config["encoder"],
                **{f"test_{k}": float(v) for k, v in results.items()},
                **family.results(meta, tasks)}
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
    """``loss.png``: the meta-training loss (and held-out loss) against
    meta-steps; for RL runs also the mean episode return."""
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
    every = json.loads(run.config_file.read_text())["checkpoint_every"]
    steps = [(int(r["epoch"]) + 1) * every for r in rows]

    def points(key):
        out = []
        for s, r in zip(steps, rows):
            try:   # CSVLogger writes NA for keys an epoch did not log
                value = float(r.get(key))
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):
                out.append((s, value))
        return out

    panels = [[("loss", "meta-training loss"),
               ("val_loss", "held-out loss after adaptation")]]
    if points("mean_return"):
        panels.append([("mean_return", "mean episode return")])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.2),
                             squeeze=False)
    for ax, panel in zip(axes[0], panels):
        values = []
        for key, label in panel:
            pts = points(key)
            if pts:
                ax.plot(*zip(*pts), marker=".", label=label)
                values += [v for _, v in pts]
        ax.set_xlabel("meta-step")
        ax.set_ylabel(panel[0][1].split()[-1])
        if values and min(values) > 0 and panel[0][0] == "loss":
            ax.set_yscale("log")
        ax.legend()
    axes[0][0].set_title(run.path.name)
    fig.tight_layout()
    fig.savefig(run.path / "loss.png", dpi=100)
    plt.close(fig)


# --------------------------------------------------------------- commands
def _support_size(family, config):
    """Examples in a training task's support split (a static shape)."""
    spec = family.dataset(config["meta_batch"], config["seed"], 0).element_spec
    return spec["support_x"].shape[1]


def cmd_train(args):
    """Meta-train a method on a task family; running the same command again
    resumes the run from its last checkpoint."""
    file_options = load_config_file(args.config) if args.config else {}
    cli = {k: getattr(args, k) for k in DEFAULTS if hasattr(args, k)}
    if args.method_option:
        cli["method_options"] = schema.parse_key_values(args.method_option)
    if file_options.get("cluster") is not None:
        raise UsageError(
            "cluster is not an option: a multiworker run records the cluster "
            "of TF_CONFIG (remove 'cluster' from the config file).")
    config = resolve_config(file_options, cli)
    config["cluster"] = cluster(config["strategy"])
    resume_from = (None if args.resume_from is None else
                   schema.Int().parse("--resume-from", args.resume_from))
    run = RunDir(check_out(args.out))
    meta, family = build(config)   # validates method options before writing
    if config["deterministic"]:
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()
    support = None if config["tasks"] in schema.NO_INNER_LOOP else \
        _support_size(family, config)
    if config["inner_batch_size"] and support \
            and config["inner_batch_size"] > support:
        raise UsageError(
            f"inner_batch_size ({config['inner_batch_size']}) is larger than "
            f"the support split of a {config['tasks']} task ({support} "
            f"examples); use at most {support}.")
    run.check_config(config)       # refuses a different config, reads only
    run.lock()                     # one process per run directory
    try:
        return _train(run, config, meta, family, resume_from)
    finally:
        run.unlock()


def _train(run, config, meta, family, resume_from):
    run.claim(config)
    every = config["checkpoint_every"]
    if resume_from is not None:
        run.rewind(resume_from, every)
    start = _restore(meta, run)
    if start < config["steps"]:
        print(f"{'resuming' if start else 'starting'} {config['method']} on "
              f"{config['tasks']} at meta-step {start} of {config['steps']}",
              flush=True)
        test = (family.validation(config) if hasattr(family, "validation")
                else _test_data(family, config)[1])
        import tfmeta
        try:
            with _ctrl_c_between_steps() as stop:
                meta.fit(family.dataset(config["meta_batch"], config["seed"],
                                        start),
                         epochs=config["steps"] // every, steps_per_epoch=every,
                         initial_epoch=start // every, validation_data=test,
                         validation_freq=config["eval_every"],
                         callbacks=[stop] + _callbacks(run, config, start)
                         + _family_callbacks(family, run),
                         verbose=1 if sys.stdout.isatty() else 2)
        except tfmeta.NonFiniteLossError as err:
            step, _ = run.latest()
            kept = (f"The last checkpoint (meta-step {step}) in {run.path} is "
                    "intact." if step else
                    f"No checkpoint was written yet (the first is at meta-step "
                    f"{every}); {run.path} holds the config and logs only.")
            print(f"tfmeta train: error: {err} {kept}", file=sys.stderr)
            return EXIT_NON_FINITE
        except KeyboardInterrupt:
            step, _ = run.latest()
            raise Interrupted(
                f"interrupted. {run.path} keeps its checkpoint at meta-step "
                f"{step}: run the same command again to resume from there."
                if step else
                f"interrupted before the first checkpoint (meta-step {every}); "
                "run the same command again to start over.") from None
    step, _ = run.latest()
    results = _evaluate(meta, family, config, step)
    _atomic_write(run.path / "results.json", json.dumps(results, indent=2))
    _plot(run)
    print(json.dumps(results, indent=2))
    return 0


class Interrupted(Exception):
    """Ctrl-C: the message says where the run can be resumed from."""


class _ctrl_c_between_steps:
    """Ctrl-C during ``fit`` stops it after the current meta-step (a
    ``KeyboardInterrupt`` raised by a callback, in Python, rather than
    inside TensorFlow's runtime); a second Ctrl-C stops at once."""

    def __enter__(self):
        import keras

        flag = self.flag = []

        class Stop(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if flag:
                    raise KeyboardInterrupt

        def handler(signum, frame):
            flag.append(signum)
            signal.signal(signal.SIGINT, signal.default_int_handler)

        self.previous = None
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, handler)
        return Stop()

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _load_run(path):
    run = RunDir(path)
    config = run.stored_config()
    if config is None:
        raise UsageError(f"{run.path} is not a tfmeta run directory (no "
                         "config.json); train one with 'tfmeta train'.")
    try:
        config = resolve_config(config, {})
    except UsageError as err:
        raise UsageError(f"{run.config_file} is not a valid tfmeta config "
                         f"({err})") from err
    step, weights = run.latest()
    if weights is None:
        raise UsageError(f"{run.path} has no checkpoint yet.")
    meta, family = build(config, distribute=False)  # one device suffices
    _restore(meta, run)
    return run, config, meta, family, step


@contextlib.contextmanager
def _locked_run(path):
    """An existing run directory, held by this process while the block runs
    (the run-folder lock: a command that trains it meanwhile is refused)."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise UsageError(f"{run.path} is not a tfmeta run directory (it does "
                         "not exist).")
    run.lock()
    try:
        yield run
    finally:
        run.unlock()


def cmd_evaluate(args):
    """Evaluate a run's latest checkpoint on held-out tasks."""
    test_tasks = (None if args.test_tasks is None else
                  schema.OPTIONS["test_tasks"].parse(args.test_tasks))
    with _locked_run(args.run) as run:
        _, config, meta, family, step = _load_run(args.run)
        if test_tasks is not None:
            config["test_tasks"] = test_tasks
        results = _evaluate(meta, family, config, step)
        _atomic_write(run.path / "evaluation.json", json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


def cmd_export(args):
    """Export a run's latest checkpoint as a SavedModel."""
    if args.path is not None and not args.path.strip():
        raise UsageError("--path is empty; give the export directory.")
    from tfmeta import export
    with _locked_run(args.run):
        _, config, meta, family, step = _load_run(args.run)
        if isinstance(family, RLFamily):
            raise UsageError(
                f"{config['method']} on {config['tasks']} trains an RL agent, "
                "not a MetaLearner: there is no SavedModel export; its "
                f"checkpoint is in {args.run} (Keras weights).")
        try:
            path = export.export(meta, args.path, overwrite=args.overwrite)
        except (export.ExportError, FileExistsError) as err:
            raise UsageError(str(err).replace("pass overwrite=True",
                                              "pass --overwrite")) from err
        except OSError as err:
            raise UsageError(f"cannot write the export to {args.path}: "
                             f"{err.strerror or err}.") from err
    print(f"exported {config['method']} (meta-step {step}) to {path}")
    return 0


def cmd_list(args):
    """The methods and task families."""
    from tfmeta import registry
    print("methods:")
    for name, method in registry.methods().items():
        where = "" if method.cli else " (Python API only)"
        print(f"  {name:10s} {method.description}{where}")
    print("task families:")
    for name, family in FAMILIES.items():
        print(f"  {name:10s} {family.description}")
    for (_, name), family in PAIR_FAMILIES.items():
        print(f"  {name:10s} {family.description}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one line for errors (exit status 2)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see "
                  f"{self.prog} --help).\n")


def _add_option_flags(t):
    """``tfmeta train``'s flags, generated from the schema."""
    for name, option in schema.OPTIONS.items():
        if option.flag is None:
            continue
        help = option.help + schema.default_text(name)
        if isinstance(option.kind, schema.Bool):
            t.add_argument(option.flag, dest=name, default=None, help=help,
                           action=argparse.BooleanOptionalAction)
        else:
            t.add_argument(option.flag, dest=name, default=None, help=help,
                           metavar=option.kind.metavar)
    # The older spelling of --no-deterministic.
    t.add_argument("--no-determinism", dest="deterministic", default=None,
                   action="store_false", help=argparse.SUPPRESS)
    t.add_argument("--method-option", action="append", metavar="KEY=VALUE",
                   help=schema.method_options_help())


def parser():
    import tfmeta
    p = _Parser(prog="tfmeta",
                description="Gradient-based meta-learning with Keras.")
    p.add_argument("--version", action="version",
                   version=f"tfmeta {tfmeta.__version__}")
    sub = p.add_subparsers(dest="command", required=True,
                           parser_class=_Parser)

    t = sub.add_parser("train", help="meta-train (resumes an existing run)",
                       description=cmd_train.__doc__)
    t.add_argument("method", nargs="?", help=f"one of {sorted(_methods())}"
                   f", or {', '.join(schema.RL_ONLY_METHODS)} (RL tasks)")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--config", help="YAML or JSON file of options (the flags "
                   "below override it); keys are the flags' names with _, "
                   "e.g. inner_lr: 0.1, anneal: true, method_options: "
                   "{metric: energy}")
    t.add_argument("--resume-from", metavar="STEP",
                   help="resume from the checkpoint at this meta-step instead "
                   "of the latest (e.g. when the latest is damaged)")
    _add_option_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a run's latest checkpoint",
                       description=cmd_evaluate.__doc__)
    e.add_argument("run", help="run directory")
    e.add_argument("--test-tasks", metavar="N", help="held-out tasks")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="export a run as a SavedModel",
                       description=cmd_export.__doc__)
    x.add_argument("run", help="run directory")
    x.add_argument("--path", help="export directory (saved_models/<name>)")
    x.add_argument("--overwrite", action="store_true",
                   help="replace a previous tfmeta export at --path (nothing "
                   "else is ever replaced)")
    x.set_defaults(func=cmd_export)

    ls = sub.add_parser("list", help="methods and task families")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = "tfmeta"
    try:
        args, extra = parser().parse_known_args(argv)
        command = f"tfmeta {args.command}"
        if extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see "
                             f"{command} --help).")
        return args.func(args)
    except UsageError as err:
        print(f"{command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Interrupted as err:
        print(f"{command}: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"{command}: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
