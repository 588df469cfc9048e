"""Leap across Atari games (Leap section 4.3, appendix F, Table 6, Figure
4).

Meta-trains the Mnih conv encoder of an A2C agent with ``tfmeta.rl.RLLeap``
(energy metric, loss in the manifold, stabilizer; each game's agent gets
fresh policy and value heads sized to its action set), then trains an agent
on each evaluation game from the Leap encoder and from a random one and
writes their scores, normalized with Table 6's baseline mean and deviation.
Writes ``results.json`` (the settings, per-meta-step logs, timings, the
evaluation with each agent's binned learning curve, the cost per emulator
frame and the predicted cost of every preset), ``curves.csv`` (every
evaluation episode), ``atari_leap.png`` (Figure 4's layout) and
``encoder.weights.h5`` (the meta-learned encoder) to ``--out``.

Presets (``--preset``; the numbers can be overridden):

* ``tiny``: 2 pool games, 4 environments, 10 A2C updates per game, 2
  meta-steps, one evaluation game (Breakout, held out) for 10 updates with
  episodes cut at 200 emulator frames: a check that everything runs (a
  couple of minutes on 2 CPU cores). Its scores mean nothing.
* ``small``: 4 pool games, meta-batches of 2, 32 environments, 150 updates
  (24 000 agent steps) per game, 3 meta-steps, Table 6's nine games for
  100 updates each from both initializations, 2 evaluation seeds: sized
  for under an hour on 2 CPU cores from the measured cost of a
  32-environment agent with the path hook (predicted 0.74 h; ran in 53 min
  beside other jobs, docs/rl.md). At this budget (0.3 % of the paper's
  steps per game) the agents are still at their first episodes' level and
  the two initializations do not separate.
* ``paper``: the pool (every game with at most 10 actions but Breakout and
  SpaceInvaders), meta-batches of 16, 32 environments, 5 M agent steps
  (31 250 updates) per game, 100 meta-steps, Table 6's nine games from
  both initializations with 10 seeds each (Figure 4). Not run. It is meant
  as a multi-worker ``tf.distribute`` job (``--strategy multiworker``, one
  process per worker, ``TF_CONFIG`` each): every worker trains its share of
  each meta-batch's games, the meta-gradients are all-reduced
  (``RLLeap(strategy=...)``), and the evaluation agents are shared out the
  same way. With 16 workers, one game per worker per meta-step::

      python experiments/launch_multiworker.py --workers 16 -- \\
          python experiments/atari_leap.py --preset paper \\
          --strategy multiworker --out runs/atari_paper{index}

  (``--hosts`` instead of ``--workers`` for one worker per machine).
  ``results.json`` gives the predicted hours on one process and on 16
  workers from the measured cost of an agent.

    python experiments/atari_leap.py --preset tiny --out runs/atari_leap_tiny
"""

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tfmeta import rl  # noqa: E402

TABLE6, HELD_OUT = rl.atari.TABLE6, rl.atari.HELD_OUT

PRESETS = {
    "tiny": dict(pool=["AirRaid", "UpNDown"], meta_batch=2, meta_steps=2,
                 envs=4, updates=10, eval_games=["Breakout"],
                 eval_updates=10, max_episode_frames=200, meta_lr=0.1,
                 eval_seeds=1),
    "small": dict(pool=["AirRaid", "UpNDown", "WizardOfWor", "Pong"],
                  meta_batch=2, meta_steps=3, envs=32, updates=150,
                  eval_games=list(TABLE6), eval_updates=100,
                  max_episode_frames=None, meta_lr=0.1, eval_seeds=2),
    "paper": dict(pool="all", meta_batch=16, meta_steps=100, envs=32,
                  updates=5_000_000 // (32 * 5), eval_games=list(TABLE6),
                  eval_updates=5_000_000 // (32 * 5),
                  max_episode_frames=None, meta_lr=0.1, eval_seeds=10),
}


def make_agent(game, cfg, seed):
    """An A2C agent for ``game`` (``tfmeta.rl.atari.agent``) as ``cfg``
    sizes it."""
    return rl.atari.agent(game, cfg["envs"], seed, cfg["max_episode_frames"])


def evaluate(game, cfg, encoder, seed):
    """The evaluation agent's finished episodes (its learning curve)."""
    return rl.atari.train_agent(game, encoder, updates=cfg["eval_updates"],
                                envs=cfg["envs"], seed=seed,
                                max_episode_steps=cfg["max_episode_frames"])


def binned_curve(episodes, updates, bins):
    """Mean return of the episodes ending in each of ``bins`` equal spans of
    ``updates`` A2C updates (NaN where none ended): Figure 4's curve."""
    edges = np.linspace(0, updates, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        r = [e.episode_return for e in episodes if lo <= e.update < hi]
        out.append(float(np.mean(r)) if r else float("nan"))
    return edges[1:], out


def plot(evaluation, cfg, seeds, path):
    """Figure 4's layout: each evaluation game's mean episode return against
    agent steps, from the Leap encoder and from a random one (mean over the
    evaluation seeds), and the mean normalized score over games."""
    import warnings

    import matplotlib
    matplotlib.use("Agg")
    # NaN bins (no episode ended in them) are left blank in the plot
    warnings.simplefilter("ignore", RuntimeWarning)
    import matplotlib.pyplot as plt
    games = list(evaluation)
    cols = 4
    rows = -(-(len(games) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows),
                             squeeze=False)
    steps_per_update = cfg["envs"] * 5
    normalized = {}
    for ax, game in zip(axes.flat, games):
        for init, style in (("leap", "-"), ("random", "--")):
            curves = np.array([evaluation[game][init]["curves"][s]
                               for s in range(seeds)])
            x = steps_per_update * np.array(
                evaluation[game][init]["curve_updates"])
            mean = np.nanmean(curves, axis=0)
            ax.plot(x, mean, style, label=init)
            if seeds > 1:  # Figure 4: two standard deviations over seeds
                std = np.nanstd(curves, axis=0)
                ax.fill_between(x, mean - 2 * std, mean + 2 * std, alpha=0.2)
            normalized.setdefault(init, []).append(
                [rl.atari.normalized_score(game, m) for m in mean])
        ax.set_title(game)
        ax.set_xlabel("agent steps")
        ax.set_ylabel("mean episode return")
        ax.legend(fontsize=7)
    ax = axes.flat[len(games)]
    for init, style in (("leap", "-"), ("random", "--")):
        ax.plot(x, np.nanmean(np.array(normalized[init]), axis=0), style,
                label=init)
    ax.set_title("mean normalized score (Table 6 baselines)")
    ax.set_xlabel("agent steps")
    ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(games) + 1:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def agent_cost(game, envs, updates=3):
    """Measured cost of one agent with the Leap path hook at ``envs``
    environments: ``(setup, per_update)`` seconds, setup = building the
    environments and the model plus the first (traced) update."""
    cfg = dict(envs=envs, max_episode_frames=None)
    hook = lambda s, i, *r: s + r[3]  # noqa: E731  (needs loss_next)
    start = time.perf_counter()
    a2c = make_agent(game, cfg, 0)
    a2c.train(1, hook=hook, hook_state=0.0)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    a2c.train(updates, hook=hook, hook_state=0.0)
    per_update = (time.perf_counter() - start) / updates
    a2c.envs.close()
    return setup, per_update


def predicted_hours(cfg, per_update, setup, workers=1):
    """Hours of a preset from one agent's measured cost, on ``workers``
    workers (each runs its share of every meta-batch and of the evaluation
    agents, so the slowest share sets the time)."""
    meta = cfg["meta_steps"] * -(-cfg["meta_batch"] // workers) * (
        cfg["updates"] * per_update + setup)
    agents = 2 * cfg["eval_seeds"] * len(cfg["eval_games"])
    evaluation = -(-agents // workers) * (
        cfg["eval_updates"] * per_update + setup)
    return (meta + evaluation) / 3600


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--out", default=None,
                        help="output directory (default runs/atari_leap_<preset>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-seeds", type=int,
                        help="evaluation agents per game and initialization "
                             "(seeds seed+1, seed+2, ...; curves over seeds; "
                             "preset: tiny 1, small 2, paper 10 as Figure 4)")
    parser.add_argument("--curve-bins", type=int, default=10,
                        help="points of each evaluation curve (default 10)")
    for key in ("meta_steps", "meta_batch", "envs", "updates", "eval_updates"):
        parser.add_argument("--" + key.replace("_", "-"), type=int)
    parser.add_argument("--strategy", choices=("one", "multiworker"),
                        default="one",
                        help="multiworker: this process is one worker of a "
                        "MultiWorkerMirroredStrategy job (TF_CONFIG; "
                        "experiments/launch_multiworker.py), which shares the "
                        "meta-batch's games and the evaluation agents")
    args = parser.parse_args(argv)
    # A multi-worker strategy must exist before any other TensorFlow op.
    strategy = (tf.distribute.MultiWorkerMirroredStrategy()
                if args.strategy == "multiworker" else None)
    cfg = dict(PRESETS[args.preset])
    for key in ("meta_steps", "meta_batch", "envs", "updates", "eval_updates",
                "eval_seeds"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    out = pathlib.Path(args.out or f"runs/atari_leap_{args.preset}")
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} exists and is not empty: give another --out "
                 "(this script never overwrites files it did not write).")
    out.mkdir(parents=True, exist_ok=True)
    pool = rl.atari.pretraining_pool() if cfg["pool"] == "all" else cfg["pool"]
    for game in pool + cfg["eval_games"]:
        rl.game_id(game)  # an unknown game fails before any training

    (out / "curves.csv").write_text(
        "game,init,seed,update,env,episode_return\n")
    run_start = time.perf_counter()
    tasks = [lambda seed, g=g: make_agent(g, cfg, seed) for g in pool]
    keras.utils.set_random_seed(args.seed)
    encoder = rl.nets.mnih_encoder((84, 84, 3))
    leap = rl.RLLeap(encoder, tasks, updates=cfg["updates"],
                     meta_batch_size=cfg["meta_batch"], metric="energy",
                     seed=args.seed, strategy=strategy)
    leap.compile(keras.optimizers.SGD(cfg["meta_lr"]))
    history = []
    for step in range(cfg["meta_steps"]):  # meta_step: per-game logs
        start = time.perf_counter()
        logs = leap.meta_step()
        seconds = time.perf_counter() - start
        row = {"meta_step": step, "seconds": seconds, "tasks": [
            {"game": pool[log["task"]], "loss": float(log["loss"]),
             "path_length": log["path_length"],
             "mean_return": log["mean_return"]} for log in logs]}
        history.append(row)
        print(json.dumps(row), flush=True)
    encoder.save_weights(out / "encoder.weights.h5")

    meta_seconds = time.perf_counter() - run_start
    eval_start = time.perf_counter()
    # Every (game, initialization, seed) agent is a job; worker w of W runs
    # jobs w, w + W, ... and the results are summed over the workers (each
    # job's row is zero on the workers that did not run it).
    jobs = [(game, name, k) for game in cfg["eval_games"]
            for name in ("leap", "random") for k in range(cfg["eval_seeds"])]
    table = np.zeros((len(jobs), 2 + args.curve_bins))
    for j in range(leap.worker, len(jobs), leap.workers):
        game, name, k = jobs[j]
        episodes = evaluate(game, cfg, encoder if name == "leap" else None,
                            args.seed + 1 + k)
        last = [e.episode_return for e in episodes[-100:]]
        edges, curve = binned_curve(episodes, cfg["eval_updates"],
                                    args.curve_bins)
        table[j] = [np.mean(last) if last else np.nan, len(episodes), *curve]
        with open(out / "curves.csv", "a") as f:
            for e in episodes:
                f.write(f"{game},{name},{args.seed + 1 + k},"
                        f"{e.update},{e.env},{e.episode_return}\n")
        print(game, name, "seed", args.seed + 1 + k, "mean return",
              table[j, 0], flush=True)
    table = np.asarray(
        rl.meta_model.all_reduce_sum(leap.strategy, [table])[0])
    edges = np.linspace(0, cfg["eval_updates"], args.curve_bins + 1)[1:]
    evaluation = {}
    for (game, name, k), row in zip(jobs, table):
        entry = evaluation.setdefault(game, {}).setdefault(name, {
            "mean_return": [], "episodes": [], "normalized": [], "curves": [],
            "curve_updates": edges.tolist()})
        entry["mean_return"].append(float(row[0]))
        entry["episodes"].append(int(row[1]))
        entry["normalized"].append(rl.atari.normalized_score(game, row[0]))
        entry["curves"].append(row[2:].tolist())
    eval_seconds = time.perf_counter() - eval_start
    plot(evaluation, cfg, cfg["eval_seeds"], out / "atari_leap.png")

    # Cost model: a 32-environment agent's measured setup and update.
    setup, per_update = agent_cost(pool[0], 32)
    predictions = {name: predicted_hours(p, per_update, setup)
                   for name, p in PRESETS.items() if p["envs"] == 32}
    predictions_16 = {name: predicted_hours(p, per_update, setup, 16)
                      for name, p in PRESETS.items() if p["envs"] == 32}
    results = {"preset": args.preset, "settings": cfg, "pool": pool,
               "history": history, "evaluation": evaluation,
               "meta_training_seconds": meta_seconds,
               "evaluation_seconds": eval_seconds,
               "load_average": os.getloadavg(),
               "seconds_per_update_32_envs_with_hook": per_update,
               "seconds_per_emulator_frame_with_hook":
                   per_update / (32 * 5 * 4),
               "setup_seconds_per_agent": setup,
               "predicted_hours_one_process": predictions,
               "predicted_hours_16_workers": predictions_16,
               "worker": leap.worker, "workers": leap.workers}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({k: results[k] for k in (
        "seconds_per_update_32_envs_with_hook", "setup_seconds_per_agent",
        "seconds_per_emulator_frame_with_hook", "meta_training_seconds",
        "evaluation_seconds", "predicted_hours_one_process",
        "predicted_hours_16_workers")}, indent=1))


if __name__ == "__main__":
    main()
