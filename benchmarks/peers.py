"""tfmeta against the libraries its users would otherwise use, in one run.

    python benchmarks/peers.py [--rounds 3] [--only maml-sine,...] [--contenders tfmeta,jax]

Contenders: tfmeta (``fit`` with its default settings, the way a user runs
it, on a dataset of the in-memory task batch through
``tfmeta.tasks.pipeline.without_autotuning``, as tfmeta's task families
build theirs; ``tfmeta-autotune``: the dataset as is), learn2learn 0.2.0 (``l2l.algorithms.MAML``), higher 0.2.1
(``higher.innerloop_ctx``), both on PyTorch's CPU build, and a JAX reference
(``benchmarks/peers_jax.py``: jit + vmap + lax.scan with optax). The same
net, data shapes, inner steps and meta-batch for all (``WORKLOADS``):

* MAML, second order, Omniglot 5-way 1-shot (the MAML paper's conv net:
  4 x [conv3x3 64, batch norm, ReLU, maxpool], 28x28x1), meta-batch 32,
  1 and 5 inner steps;
* Reptile and FOMAML, the same net, 5-way 5-shot, 5 inner steps,
  meta-batch 5;
* the sine MLP (1-64-64-1, tanh), MAML 5 inner steps and Reptile 32 inner
  steps, meta-batch 10, 10 support and 10 query points.

Every measurement is a fresh process (``--worker``) that builds its
contender, warms it up (tracing, compiling), sizes its timed run to take
about ``TARGET_S`` from the faster of two probe runs, times it, and
reports meta-steps per second and its peak resident memory
(``ru_maxrss``: imports included, which is what a user's process holds).
Rounds interleave the contenders (rotated order); the report gives medians,
the spread over rounds and ratios. Data are random tensors of the
workloads' shapes, built once per process (no data loading is timed).
Writes ``peers.md`` and ``peers.json`` to ``--out``.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONTENDERS = ("tfmeta", "learn2learn", "higher", "jax")

# net: "conv" (Omniglot, `ways`-way `shots`-shot, `query` per class) or
# "mlp" (sine, `support` and `query` points). Meta-steps are run in
# multiples of `unit` (32 for the sine MLP, so that tfmeta's fit may run 32
# per execution), as many as take about TARGET_S.
WORKLOADS = {
    "maml-sine": dict(net="mlp", method="maml", support=10, query=10, steps=5,
                      tasks=10, inner_lr=0.01, unit=32),
    "reptile-sine": dict(net="mlp", method="reptile", support=10, query=10,
                         steps=32, tasks=10, inner_lr=0.01, unit=32),
    "maml-conv-1": dict(net="conv", method="maml", ways=5, shots=1, query=1,
                        steps=1, tasks=32, inner_lr=0.4, unit=1),
    "maml-conv-5": dict(net="conv", method="maml", ways=5, shots=1, query=1,
                        steps=5, tasks=32, inner_lr=0.4, unit=1),
    "reptile-conv": dict(net="conv", method="reptile", ways=5, shots=5,
                         query=5, steps=5, tasks=5, inner_lr=0.1, unit=1),
    "fomaml-conv": dict(net="conv", method="fomaml", ways=5, shots=5, query=5,
                        steps=5, tasks=5, inner_lr=0.1, unit=1),
}
OUTER_LR = 1e-3  # Adam, for every contender and workload
TARGET_S = 3.0


def task_data(w, seed=0):
    """NumPy task batch ``(sx, sy, qx, qy)`` with leading ``[tasks]`` axis;
    images NHWC, labels int32, sine targets ``[n, 1]``."""
    import numpy as np
    rng = np.random.default_rng(seed)
    b = w["tasks"]
    if w["net"] == "conv":
        def split(per_class):
            n = w["ways"] * per_class
            x = rng.normal(size=(b, n, 28, 28, 1)).astype("float32")
            y = np.tile(np.arange(w["ways"], dtype="int32"), (b, per_class))
            return x, y
        return split(w["shots"]) + split(w["query"])
    amp = rng.uniform(0.1, 5.0, size=(b, 1, 1))
    phase = rng.uniform(0, np.pi, size=(b, 1, 1))

    def split(n):
        x = rng.uniform(-5, 5, size=(b, n, 1))
        return x.astype("float32"), (amp * np.sin(x + phase)).astype("float32")
    return split(w["support"]) + split(w["query"])


def classes(w):
    return w["ways"] if w["net"] == "conv" else 0


# ------------------------------------------------------------------ tfmeta
def tfmeta_plain_contender(w):
    """tfmeta without the fast defaults (before issue 23: no XLA, one
    meta-step per execution); not in the default contenders."""
    return tfmeta_contender(w, jit_compile=False, steps_per_execution=1)


def tfmeta_serial_contender(w):
    """tfmeta's defaults with the tasks of a meta-batch one after another
    (``vectorize_tasks=False``: the defaults before the fast path
    vectorized them); not in the default contenders."""
    return tfmeta_contender(w, vectorize_tasks=False)


def tfmeta_autotune_contender(w):
    """tfmeta's defaults on the task dataset as built, with tf.data's
    autotuning on (``tfmeta`` runs it through
    ``tfmeta.tasks.pipeline.without_autotuning``, as tfmeta's own task
    families do: Reptile's ``fit`` calls otherwise end, in 5-13 of 16 calls,
    with a ~300 ms stall after ``on_train_end``, docs/performance.md); not
    in the default contenders."""
    return tfmeta_contender(w, autotune=True)


def tfmeta_contender(w, vectorize_tasks=None, autotune=False,
                     **compile_kwargs):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    import keras
    import tensorflow as tf
    import tfmeta

    keras.utils.set_random_seed(0)
    if w["net"] == "conv":
        layers = [keras.Input((28, 28, 1))]
        for _ in range(4):
            layers += [keras.layers.Conv2D(64, 3, padding="same"),
                       tfmeta.layers.BatchNormalization(),
                       keras.layers.ReLU(), keras.layers.MaxPooling2D(2)]
        learner = keras.Sequential(
            layers + [keras.layers.Flatten(), keras.layers.Dense(w["ways"])])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        learner = tfmeta.tasks.sine.mlp(seed=0)
        loss = "mse"
    cls = {"maml": tfmeta.MAML, "fomaml": tfmeta.FOMAML,
           "reptile": tfmeta.Reptile}[w["method"]]
    meta = cls(learner, inner_optimizer=keras.optimizers.SGD(w["inner_lr"]),
               inner_steps=w["steps"], vectorize_tasks=vectorize_tasks)
    meta.compile(optimizer=keras.optimizers.Adam(OUTER_LR), loss=loss,
                 **compile_kwargs)
    sx, sy, qx, qy = task_data(w)
    data = tf.data.Dataset.from_tensors(
        {"support_x": sx, "support_y": sy, "query_x": qx, "query_y": qy}).repeat()
    if not autotune:  # as tfmeta's own task datasets (tfmeta.tasks)
        data = tfmeta.tasks.pipeline.without_autotuning(data)

    def run(calls):
        meta.fit(data, steps_per_epoch=calls, epochs=1, verbose=0)
    run.settings = lambda: (  # what fit chose and ran
        f"jit_compile={meta.jit_compile}, steps_per_execution="
        f"{meta.train_function.steps_per_execution}, vectorize_tasks="
        f"{meta.vectorize_tasks}")
    return run


# ------------------------------------------------------------------ PyTorch
def torch_net(w):
    import torch
    torch.manual_seed(0)
    if w["net"] == "conv":
        blocks = []
        for i in range(4):
            blocks += [torch.nn.Conv2d(1 if i == 0 else 64, 64, 3, padding=1),
                       torch.nn.BatchNorm2d(64, track_running_stats=False),
                       torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        return torch.nn.Sequential(*blocks, torch.nn.Flatten(),
                                   torch.nn.Linear(64, w["ways"]))
    return torch.nn.Sequential(
        torch.nn.Linear(1, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64),
        torch.nn.Tanh(), torch.nn.Linear(64, 1))


def torch_data(w):
    import torch
    sx, sy, qx, qy = (torch.from_numpy(a) for a in task_data(w))
    if w["net"] == "conv":
        sx, qx = sx.permute(0, 1, 4, 2, 3), qx.permute(0, 1, 4, 2, 3)
        sy, qy = sy.long(), qy.long()
        loss = torch.nn.functional.cross_entropy
    else:
        loss = torch.nn.functional.mse_loss
    return [(sx[i].contiguous(), sy[i], qx[i].contiguous(), qy[i])
            for i in range(w["tasks"])], loss


def import_learn2learn():
    """learn2learn's MAML and utilities without its package ``__init__``,
    which imports its vision datasets and so torchvision: PyPI's torchvision
    is built against CUDA PyTorch and does not load with the CPU build
    (``operator torchvision::nms does not exist``). The algorithm code is
    learn2learn's own, unchanged."""
    import importlib.util
    import types
    if "learn2learn.algorithms.maml" in sys.modules:
        return sys.modules["learn2learn.algorithms.maml"]
    spec = importlib.util.find_spec("learn2learn")
    if spec is None:
        raise ImportError("learn2learn is not installed "
                          "(benchmarks/install_learn2learn.sh)")
    base = pathlib.Path(spec.origin).parent
    for name, path in (("learn2learn", base),
                       ("learn2learn.algorithms", base / "algorithms")):
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module
    import learn2learn.algorithms.maml as maml
    return maml


def learn2learn_contender(w):
    import torch
    maml_lib = import_learn2learn()
    model = torch_net(w)
    maml = maml_lib.MAML(model, lr=w["inner_lr"],
                         first_order=w["method"] != "maml")
    opt = torch.optim.Adam(maml.parameters(), lr=OUTER_LR)
    tasks, loss_fn = torch_data(w)

    def meta_step():
        opt.zero_grad()
        reptile = [torch.zeros_like(p) for p in maml.parameters()]
        for sx, sy, qx, qy in tasks:
            learner = maml.clone()
            for _ in range(w["steps"]):
                learner.adapt(loss_fn(learner(sx), sy))
            if w["method"] == "reptile":
                with torch.no_grad():
                    for r, p, q in zip(reptile, maml.parameters(),
                                       learner.parameters()):
                        r += (p - q) / len(tasks)
            else:
                (loss_fn(learner(qx), qy) / len(tasks)).backward()
        if w["method"] == "reptile":
            for p, r in zip(maml.parameters(), reptile):
                p.grad = r
        opt.step()

    def run(calls):
        for _ in range(calls):
            meta_step()
    return run


def higher_contender(w):
    import higher
    import torch
    model = torch_net(w)
    opt = torch.optim.Adam(model.parameters(), lr=OUTER_LR)
    inner = torch.optim.SGD(model.parameters(), lr=w["inner_lr"])
    tasks, loss_fn = torch_data(w)
    second = w["method"] == "maml"

    def meta_step():
        opt.zero_grad()
        grads = [torch.zeros_like(p) for p in model.parameters()]
        for sx, sy, qx, qy in tasks:
            with higher.innerloop_ctx(model, inner, copy_initial_weights=False,
                                      track_higher_grads=second) as (fmodel, diffopt):
                for _ in range(w["steps"]):
                    diffopt.step(loss_fn(fmodel(sx), sy))
                if second:
                    (loss_fn(fmodel(qx), qy) / len(tasks)).backward()
                    continue
                fast = list(fmodel.parameters())
                if w["method"] == "fomaml":
                    step = torch.autograd.grad(loss_fn(fmodel(qx), qy), fast)
                else:  # reptile
                    step = [p.detach() - q.detach()
                            for p, q in zip(model.parameters(), fast)]
                for g, s in zip(grads, step):
                    g += s / len(tasks)
        if not second:
            for p, g in zip(model.parameters(), grads):
                p.grad = g
        opt.step()

    def run(calls):
        for _ in range(calls):
            meta_step()
    return run


# ------------------------------------------------------------------ worker
def worker(contender, workload):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads
    w = WORKLOADS[workload]
    if contender == "jax":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import peers_jax
        run = peers_jax.contender(w, task_data(w), OUTER_LR)
    else:
        run = globals()[f"{contender.replace('-', '_')}_contender"](w)
    unit = w["unit"]
    start = time.perf_counter()
    run(unit)  # warm-up: tracing, compiling, allocation
    warm = time.perf_counter() - start
    start = time.perf_counter()
    run(unit)  # the rate, to size the timed run
    probe = time.perf_counter() - start
    if probe < TARGET_S:  # the faster of two probes: a one-off stall of a
        # call (tfmeta's fit: tf.data's autotuning, docs/performance.md)
        # must not make the timed run short
        start = time.perf_counter()
        run(unit)
        probe = min(probe, time.perf_counter() - start)
    calls, seconds = unit, probe
    if probe < TARGET_S:  # else the probe is the measurement
        calls = unit * max(1, round(TARGET_S / probe))
        start = time.perf_counter()
        run(calls)
        seconds = time.perf_counter() - start
    print(json.dumps({
        "per_s": calls / seconds, "warmup_s": warm,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "calls": calls, "settings": run.settings() if hasattr(run, "settings")
        else ""}))


def measure(contender, workload, timeout=None):
    # (PyTorch's OpenMP threads must not spin while other processes run,
    # as in run.py)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               OMP_WAIT_POLICY="PASSIVE")
    try:
        out = subprocess.run(
            [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker",
             contender, workload], text=True, capture_output=True, env=env,
            timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout} s"}
    if out.returncode:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail)}
    return json.loads(out.stdout.strip().splitlines()[-1])


def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow-rounds", type=int, default=1,
                        help="rounds of JAX on the conv net (minutes per "
                        "meta-step: XLA's CPU convolutions)")
    parser.add_argument("--only", help="comma-separated workloads")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help="of " + ", ".join(
                            CONTENDERS + ("tfmeta-plain", "tfmeta-serial",
                                         "tfmeta-autotune")))
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds per measurement (process) at most")
    parser.add_argument("--worker", nargs=2, metavar=("CONTENDER", "WORKLOAD"))
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.worker:
        return worker(*args.worker)
    workloads = args.only.split(",") if args.only else list(WORKLOADS)
    contenders = args.contenders.split(",")
    results = {wl: {c: [] for c in contenders} for wl in workloads}
    loads, started = [load()], datetime.datetime.now(datetime.timezone.utc)
    for r in range(args.rounds):
        for wl in workloads:
            k = r % len(contenders)
            for c in contenders[k:] + contenders[:k]:
                if (c == "jax" and WORKLOADS[wl]["net"] == "conv"
                        and r >= args.slow_rounds):
                    continue
                res = measure(c, wl, args.timeout)
                results[wl][c].append(res)
                loads.append(load())
                print(f"round {r + 1} {wl:13s} {c:12s} " + (
                    f"{res['per_s']:9.2f} meta-steps/s, peak "
                    f"{res['peak_rss_mib']:.0f} MiB {res['settings']}"
                    if "per_s" in res else f"FAILED: {res['error']}"),
                    flush=True)
    write_report(pathlib.Path(ROOT / args.out), results, loads, started, args)


def summary(runs):
    rates = [r["per_s"] for r in runs if "per_s" in r]
    if not rates:
        return None
    return {"median": statistics.median(rates), "min": min(rates),
            "max": max(rates), "rss": statistics.median(
                r["peak_rss_mib"] for r in runs if "per_s" in r),
            "settings": runs[0].get("settings", "")}


def write_report(out, results, loads, started, args):
    out.mkdir(parents=True, exist_ok=True)
    versions = []
    from importlib.metadata import version
    for names in (("tensorflow-cpu", "tensorflow"), ("keras",), ("torch",),
                  ("learn2learn",), ("higher",), ("jax",), ("optax",)):
        for name in names:
            try:
                versions.append(f"{name} {version(name)}")
                break
            except Exception:  # noqa: BLE001 - not installed
                pass
        else:
            versions.append(f"{names[-1]} not installed")
    lines = [
        f"`python benchmarks/peers.py {' '.join(args.argv)}`, started "
        f"{started:%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores; {', '.join(versions)}. Load average "
        f"(1 min) during the run: {min(loads, key=float)}-"
        f"{max(loads, key=float)}. Medians of "
        f"{args.rounds} rounds (JAX on the conv net: {args.slow_rounds}; a "
        "fresh process each, contenders interleaved); "
        "spread = min-max over rounds; ratio = tfmeta's rate / the peer's.",
        "", "| workload | contender | meta-steps/s (median) | spread | "
        "tfmeta ratio | peak RSS, MiB |", "|---|---|---|---|---|---|"]
    table = {}
    for wl, by in results.items():
        table[wl] = {c: summary(runs) for c, runs in by.items()}
        ours = table[wl].get("tfmeta")
        for c, s in table[wl].items():
            if s is None:
                err = next(r["error"] for r in by[c])
                lines.append(f"| {wl} | {c} | failed: {err[:160]} | | | |")
                continue
            ratio = f"{ours['median'] / s['median']:.2f}x" if ours else ""
            note = f" ({s['settings']})" if s["settings"] else ""
            lines.append(
                f"| {wl} | {c}{note} | {s['median']:.2f} | "
                f"{s['min']:.2f}-{s['max']:.2f} | {ratio} | {s['rss']:.0f} |")
    text = "\n".join(lines) + "\n"
    (out / "peers.md").write_text(text)
    (out / "peers.json").write_text(json.dumps(
        {"results": results, "summary": table, "loads": loads,
         "workloads": WORKLOADS}, indent=1))
    print("\n" + text + f"\nwrote {out / 'peers.md'}")


if __name__ == "__main__":
    main()
