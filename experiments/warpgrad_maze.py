"""Warp-RNN on Miconi et al.'s maze (WarpGrad section 4.3, appendix I,
Figures 4 and 11): RNN, HyperRNN, T-Nets-RNN and Warp-RNN A2C agents.

The 11 x 11 maze (``tfmeta/Maze-v0``); a task is a random goal, drawn anew
for every 200-step episode; the agent is teleported each time it reaches the
goal (reward 10). Every agent is appendix I's advantage actor-critic: a
basic ``tanh`` RNN (hidden 100) read by linear policy and value heads,
trained by Adam (lr 1e-3) on batches of 30 whole episodes (30 environments,
``unroll`` = the episode length), one continual stream, nothing reset
between tasks. A2C settings of the WarpGrad code (docs/rl.md): gamma 0.9,
entropy cost 0.03, value cost 0.1, no reward clipping, gradient norm clipped
to 4. The agents differ only in the RNN cell and who trains its weights:

* ``RNN``: ``keras.layers.SimpleRNNCell`` (Wang et al., 2016), plain A2C;
* ``HyperRNN``: ``tfmeta.layers.WarpRNNCell`` (eq. 20; meta-LSTM of
  ``meta_units``), every weight trained by every A2C update (the paper's
  control for the meta-LSTM's capacity);
* ``T-Nets-RNN``: ``tfmeta.layers.TNetsRNNCell`` (``T_h``, ``T_x``,
  ``T_b``), the T's meta-learned as the Warp-RNN's warp is;
* ``Warp-RNN``: ``WarpRNNCell`` with ``tfmeta.rl.RLWarpGrad``: the A2C
  updates W, V, b and the heads only; the warp parameters (meta-LSTM and
  projection) take an Adam step (lr ``warp_lr``) on the mean eq. 12
  gradient of the last 30 task updates, every 30th update (Algorithm 3).

The agents are trained round-robin, ``chunk`` updates each at a time, so a
run cut short still compares them at the same number of episodes.
``results.csv`` gets a row per agent and chunk (mean return of that chunk's
episodes) as it goes; ``results.md`` and ``warpgrad_maze.png`` (mean
cumulative return per episode against episodes, mean over seeds) are
rewritten after every round.

After every chunk, ``state.pkl`` (written to a temporary file, then
renamed) holds each agent's whole state: ``A2C.get_state()`` (its
parameters, warp parameters included, Adam state, update counter,
observations, recurrent state, episodes and environments) and the warp
optimizer's variables, with the rows so far. ``--resume`` continues a run
that was cut (killed) from there, with the same command otherwise: it ends
with the same ``results.csv`` as an uninterrupted run (but for the
``seconds`` column, wall time).

Presets (``--preset``; ``--updates``, ``--seeds`` override):

* ``tiny``: 8 units, 2 environments, 20-step episodes, 4 updates with a warp
  update every 2nd: a check that everything runs (seconds). Its returns
  mean nothing.
* ``small``: the paper's agent and batch (100 units, 30 x 200-step
  episodes), 900 updates (27 000 episodes) per agent, one seed: sized for
  under an hour on 2 CPU cores from the measured cost per update (0.4-0.9 s
  for each agent on the shared machine; docs/rl.md).
* ``paper``: 6 667 updates (200 000 episodes; Figure 11 plots the first
  100 000) per agent, 10 seeds (the paper's runs). Not run.

    python experiments/warpgrad_maze.py --preset tiny --out runs/warpgrad_maze_tiny
    python experiments/warpgrad_maze.py --out runs/warpgrad_maze_tiny --resume
"""

import argparse
import csv
import io
import os
import pathlib
import pickle
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tfmeta import rl  # noqa: E402

AGENTS = rl.MAZE_AGENTS   # RNN, HyperRNN, T-Nets-RNN, Warp-RNN
META = rl.warpgrad.MAZE_META_AGENTS   # warp parameters meta-learned

PRESETS = {
    "tiny": dict(units=8, meta_units=8, envs=2, episode_length=20,
                 updates=4, interval=2, seeds=1),
    "small": dict(units=100, meta_units=100, envs=30, episode_length=200,
                  updates=900, interval=30, seeds=1),
    "paper": dict(units=100, meta_units=100, envs=30, episode_length=200,
                  updates=200_000 // 30 + 1, interval=30, seeds=10),
}
COMMON = dict(lr=1e-3, warp_lr=1e-3, **rl.warpgrad.MAZE_A2C)
FIELDS = ["agent", "seed", "updates", "episodes", "mean_return", "seconds"]
STATE = "state.pkl"

# WarpGrad section 4.3 / Figure 4 (text): mean cumulative return per episode.
PAPER = ("baselines (RNN, HyperRNN, T-Nets-RNN, Hebbian): at most ~125 "
         "after 100 000 episodes (~150 after 200 000); Warp-RNN: ~160 "
         "after 60 000 episodes; T-Nets-RNN below the RNN")


def make_agent(kind, cfg, seed):
    """``(a2c, warp)``: the agent ``kind`` (``tfmeta.rl.maze_agent``) and,
    for the meta-learned ones, its ``RLWarpGrad`` (else ``None``)."""
    if kind not in AGENTS:
        raise ValueError(f"unknown agent {kind!r}; one of {AGENTS}.")
    keras.utils.set_random_seed(seed)   # the same W, V, b draws per seed
    a2c = rl.maze_agent(kind, units=cfg["units"], meta_units=cfg["meta_units"],
                        envs=cfg["envs"], episode_length=cfg["episode_length"],
                        optimizer=keras.optimizers.Adam(cfg["lr"]), seed=seed)
    warp = None
    if kind in META:
        warp = rl.RLWarpGrad(a2c, interval=cfg["interval"])
        warp.compile(keras.optimizers.Adam(cfg["warp_lr"]))
    return a2c, warp


def agent_state(a2c, warp):
    """One agent's whole state: the A2C's and the warp optimizer's."""
    return {"a2c": a2c.get_state(),
            "warp_optimizer": None if warp is None else
            [v.numpy() for v in warp.optimizer.variables]}


def restore_agent(a2c, warp, state):
    """``agent_state``'s state back into a freshly made agent."""
    envs = a2c.envs
    a2c.set_state(state["a2c"])
    envs.close()
    if warp is not None:
        warp.optimizer.build(warp.meta_variables)
        variables = warp.optimizer.variables
        saved = state["warp_optimizer"]
        if len(saved) != len(variables):
            raise ValueError("the saved warp optimizer does not fit.")
        for variable, value in zip(variables, saved):
            variable.assign(value)


def atomic_write(path, data):
    """``data`` (bytes) to ``path`` through a temporary file: a kill leaves
    the previous file whole."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def csv_bytes(rows):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def train_chunk(a2c, warp, updates):
    """``updates`` A2C updates (``updates / interval`` meta-steps for a
    meta-learned agent); returns the mean return of their episodes."""
    first = len(a2c.episodes)
    if warp is None:
        a2c.train(updates)
    else:
        for _ in range(updates // warp.interval):
            warp.meta_step()
    returns = [e.episode_return for e in a2c.episodes[first:]]
    return float(np.mean(returns)) if returns else float("nan")


def curves(rows):
    """{agent: (episodes, mean return over seeds)} from the csv rows."""
    out = {}
    for kind in AGENTS:
        mine = [r for r in rows if r["agent"] == kind]
        episodes = sorted({r["episodes"] for r in mine})
        means = [np.mean([r["mean_return"] for r in mine
                          if r["episodes"] == e]) for e in episodes]
        if episodes:
            out[kind] = (episodes, means)
    return out


def write_report(out, cfg, rows, seconds, command):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    data = curves(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, (episodes, means) in data.items():
        ax.plot(episodes, means, label=kind)
    ax.set_xlabel("episodes")
    ax.set_ylabel("mean cumulative return per episode")
    ax.set_title("Maze 11x11 (WarpGrad Fig. 4/11 set-up)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "warpgrad_maze.png", dpi=100)
    plt.close(fig)
    lines = [
        "# Warp-RNN on the maze (WarpGrad appendix I)", "",
        f"Command: `{command}`", "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in cfg.items()), "",
        "Mean return per episode of each chunk (mean over seeds); the last "
        "column is the mean of the last quarter of the run's chunks.", "",
        "| agent | episodes | first chunk | last chunk | last quarter | "
        "seconds |", "|---|---:|---:|---:|---:|---:|"]
    for kind, (episodes, means) in data.items():
        tail = means[-max(1, len(means) // 4):]
        lines.append(
            f"| {kind} | {episodes[-1]} | {means[0]:.1f} | {means[-1]:.1f} "
            f"| {np.mean(tail):.1f} | {seconds.get(kind, 0):.0f} |")
    lines += ["", f"Paper (section 4.3, Figures 4 and 11): {PAPER}.", ""]
    (out / "results.md").write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--out", default=None,
                        help="output directory (default runs/warpgrad_maze_<preset>)")
    parser.add_argument("--updates", type=int, help="A2C updates per agent")
    parser.add_argument("--seeds", type=int, help="runs per agent")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seed of the first run (runs use first-seed, "
                        "first-seed + 1, ...)")
    parser.add_argument("--agents", nargs="+", choices=AGENTS,
                        default=list(AGENTS))
    parser.add_argument("--resume", action="store_true",
                        help="continue the run that --out holds from its "
                        "state.pkl (the same options otherwise)")
    args = parser.parse_args(argv)
    cfg = dict(PRESETS[args.preset], **COMMON)
    for key in ("updates", "seeds"):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                parser.error(f"--{key} must be >= 1, got {value}.")
            cfg[key] = value
    if cfg["updates"] % cfg["interval"]:
        parser.error(f"--updates must be a multiple of the warp interval "
                     f"{cfg['interval']}, got {cfg['updates']}.")
    out = pathlib.Path(args.out or f"runs/warpgrad_maze_{args.preset}")
    run = {"cfg": cfg, "agents": list(args.agents),
           "first_seed": args.first_seed}
    saved = None
    if args.resume:
        if not (out / STATE).is_file():
            sys.exit(f"--resume: {out} holds no {STATE} (no run of this "
                     "script to continue); nothing was changed.")
        try:
            saved = pickle.loads((out / STATE).read_bytes())
        except Exception as err:  # noqa: BLE001 - unpickling errors vary
            sys.exit(f"--resume: {out / STATE} is unreadable ({err}); "
                     "nothing was changed.")
        if saved["run"] != run:
            sys.exit(f"--resume: {out} holds a run with other settings "
                     f"({saved['run']}); use its options, or another --out. "
                     "Nothing was changed.")
    elif out.exists() and any(out.iterdir()):
        sys.exit(f"{out} exists and is not empty: give another --out "
                 "(this script never overwrites files it did not write), "
                 "or --resume to continue a run of this script there.")
    out.mkdir(parents=True, exist_ok=True)
    command = "python experiments/warpgrad_maze.py " + " ".join(
        sys.argv[1:] if argv is None else argv)

    rows, seconds = [], {}
    if saved is not None:   # the rows of the saved chunks only
        rows, seconds = list(saved["rows"]), dict(saved["seconds"])
    atomic_write(out / "results.csv", csv_bytes(rows))
    with open(out / "results.csv", "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS,
                                lineterminator="\n")
        for seed in range(args.first_seed, args.first_seed + cfg["seeds"]):
            if saved is not None and seed < saved["seed"]:
                continue    # finished before the cut
            agents = {kind: make_agent(kind, cfg, seed)
                      for kind in args.agents}
            if saved is not None and seed == saved["seed"]:
                for kind, (a2c, warp) in agents.items():
                    restore_agent(a2c, warp, saved["agents"][kind])
            for done in range(0, cfg["updates"], cfg["interval"]):
                for kind, (a2c, warp) in agents.items():
                    if int(a2c.updates.numpy()) > done:
                        continue    # this chunk was saved before the cut
                    start = time.perf_counter()
                    mean = train_chunk(a2c, warp, cfg["interval"])
                    took = time.perf_counter() - start
                    seconds[kind] = seconds.get(kind, 0.0) + took
                    row = {"agent": kind, "seed": seed,
                           "updates": int(a2c.updates.numpy()),
                           "episodes": len(a2c.episodes),
                           "mean_return": mean, "seconds": round(took, 2)}
                    rows.append(row)
                    writer.writerow(row)
                    handle.flush()
                    atomic_write(out / STATE, pickle.dumps({
                        "run": run, "seed": seed, "rows": rows,
                        "seconds": seconds,
                        "agents": {k: agent_state(*agent)
                                   for k, agent in agents.items()}}))
                    print(row, flush=True)
                write_report(out, cfg, rows, seconds, command)
            for a2c, _ in agents.values():
                a2c.envs.close()
    write_report(out, cfg, rows, seconds, command)
    return rows


if __name__ == "__main__":
    main()
