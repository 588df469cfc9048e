"""tfmeta benchmark suite: one command, a markdown table and a PNG.

    make bench                      # installs the [bench] extra (torch), runs this
    python benchmarks/run.py --quick

Workloads: the Leap Omniglot net (4 x [conv3x3 64, BN, ReLU, maxpool],
28x28x1, batch 20, 20-way) and the Reptile sine MLP (1-64-64-1, batch 10).
Contenders run alternately in one process, repeated; we report medians and
ratios, since timings on these machines vary by up to +-25 % between runs:

* task steps per second of the plain SGD inner loop: tfmeta's compiled loop,
  our own eager TensorFlow loop, PyTorch's standard loop (``nn.Module`` +
  ``optim.SGD`` + ``backward()``) and a functional PyTorch loop
  (``torch.func.functional_call``, channels-last), and the fraction of the
  machine's peak (FLOPs of a step / measured peak of a large matmul);
* meta-steps per second of Leap, Reptile, FOMAML and MAML, and the overhead of
  each method over the plain inner loop on the same task (one task per
  meta-step, so that concurrent tasks hide nothing);
* MAML's second-order meta-step against PyTorch's ``create_graph=True``;
* batched tasks for small nets (``vectorize_tasks``) against one after
  another, with and without XLA;
* the fixed cost of a meta-step around its tasks, in microseconds (2-step
  tasks, where it dominates);
* peak memory of each contender (a fresh process each).

PyTorch is optional (the ``[bench]`` extra); without it those rows are skipped.
``OMP_WAIT_POLICY=PASSIVE`` is set before PyTorch loads, so that its OpenMP
threads do not spin while TensorFlow runs; the table says so.
"""

import argparse
import collections
import datetime
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfmeta  # noqa: E402
from tfmeta import inner_loop, inner_optimizers  # noqa: E402

try:
    if os.environ.get("TFMETA_BENCH_NO_TORCH"):  # memory runs of TF contenders
        raise ImportError
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
except ImportError:  # the [bench] extra is not installed
    torch = None

LR = 0.1


# ------------------------------------------------------------------ models
def conv_net_tf(seed=0):
    """The Leap Omniglot network (appendix F), with tfmeta's BN."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((28, 28, 1))]
    for _ in range(4):
        layers += [keras.layers.Conv2D(64, 3, padding="same"),
                   tfmeta.layers.BatchNormalization(),
                   keras.layers.ReLU(), keras.layers.MaxPooling2D(2)]
    layers += [keras.layers.Flatten(), keras.layers.Dense(20)]
    return keras.Sequential(layers)


def conv_net_torch():
    blocks = []
    for i in range(4):
        blocks += [torch.nn.Conv2d(1 if i == 0 else 64, 64, 3, padding=1),
                   torch.nn.BatchNorm2d(64, momentum=1.0), torch.nn.ReLU(),
                   torch.nn.MaxPool2d(2)]
    return torch.nn.Sequential(*blocks, torch.nn.Flatten(), torch.nn.Linear(64, 20))


def mlp_tf(seed=0):
    return tfmeta.tasks.sine.mlp(seed=seed)


def mlp_torch():
    return torch.nn.Sequential(torch.nn.Linear(1, 64), torch.nn.Tanh(),
                               torch.nn.Linear(64, 64), torch.nn.Tanh(),
                               torch.nn.Linear(64, 1))


def conv_flops_per_step(batch=20):
    """Multiply-adds x 2 of forward + backward (~3x forward) of one step."""
    flops, size, channels = 0, 28, 1
    for _ in range(4):
        flops += size * size * 64 * channels * 9 * 2
        size, channels = size // 2, 64
    flops += 64 * 20 * 2
    return 3 * flops * batch


def mlp_flops_per_step(batch=10):
    return 3 * 2 * batch * (1 * 64 + 64 * 64 + 64 * 1)


# --------------------------------------------------------------- workloads
class Workload:
    def __init__(self, name, tf_model, torch_model, x_shape, classes, batch,
                 support, flops):
        self.name, self.batch, self.support, self.flops = name, batch, support, flops
        self.tf_model, self.torch_model = tf_model, torch_model
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(support,) + x_shape).astype("float32")
        if classes:
            self.y = rng.integers(0, classes, size=(support,)).astype("int64")
            self.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        else:
            self.y = rng.normal(size=(support, 1)).astype("float32")
            self.loss = keras.losses.MeanSquaredError()
        self.classes = classes

    def batches(self, steps, seed=0):
        rng = np.random.default_rng(seed)
        return [rng.choice(self.support, self.batch, replace=False)
                for _ in range(steps)]


def tfmeta_loop(w, steps, hook=None, init_state=None, jit_compile=False):
    """tfmeta's compiled SGD inner loop on ``w``; with ``hook``, also a
    per-step hook whose state starts as ``init_state(params)`` (its result
    is fetched, so the hook's work cannot be pruned); ``jit_compile``: the
    whole loop as one XLA computation."""
    model = w.tf_model()
    params = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    nontrainable = [tf.convert_to_tensor(v) for v in model.non_trainable_variables]
    sgd = inner_optimizers.from_keras(keras.optimizers.SGD(LR))
    x, y = tf.constant(w.x), tf.constant(w.y)
    seed = tf.constant([0, 1], tf.int64)

    @tf.function(jit_compile=jit_compile)
    def run():
        state = init_state(params) if hook else ()
        result = inner_loop.adapt(model, w.loss, sgd, params, nontrainable, x, y,
                                  steps, batch_size=w.batch, seed=seed,
                                  hook=hook, hook_state=state)
        return result.loss_after + tf.add_n(
            [tf.zeros([])] + [tf.reduce_sum(t)
                              for t in tf.nest.flatten(result.hook_state)])

    call = lambda: float(run())  # noqa: E731
    call.function = run   # for profile_sine.py's graph inspection
    return call


def eager_loop(w, steps):
    model = w.tf_model()
    opt = keras.optimizers.SGD(LR)
    opt.build(model.trainable_variables)
    index = w.batches(steps)

    def run():
        for i in index:
            with tf.GradientTape() as tape:
                loss = w.loss(w.y[i], model(w.x[i], training=True))
            opt.apply(tape.gradient(loss, model.trainable_variables),
                      model.trainable_variables)
        return float(loss)

    return run


def _torch_data(w, channels_last=False):
    x = torch.from_numpy(w.x)
    if x.ndim == 4:  # NHWC -> NCHW
        x = x.permute(0, 3, 1, 2).contiguous()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(w.y)
    loss = torch.nn.functional.cross_entropy if w.classes else \
        torch.nn.functional.mse_loss
    return x, y, loss


def torch_standard_loop(w, steps):
    model = w.torch_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, y, loss_fn = _torch_data(w)
    index = [torch.from_numpy(i) for i in w.batches(steps)]

    def run():
        for i in index:
            opt.zero_grad()
            loss = loss_fn(model(x[i]), y[i])
            loss.backward()
            opt.step()
        return float(loss)

    return run


def torch_functional_loop(w, steps):
    model = w.torch_model()
    if w.x.ndim == 4:
        model = model.to(memory_format=torch.channels_last)
    x, y, loss_fn = _torch_data(w, channels_last=True)
    index = [torch.from_numpy(i) for i in w.batches(steps)]
    names = [n for n, _ in model.named_parameters()]
    init = [p.detach().clone().requires_grad_() for p in model.parameters()]
    buffers = dict(model.named_buffers())

    def run():
        params = init
        for i in index:
            out = torch.func.functional_call(model, ({**dict(zip(names, params)),
                                                      **buffers},), (x[i],))
            loss = loss_fn(out, y[i])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                params = [(p - LR * g).requires_grad_() for p, g in zip(params, grads)]
        return float(loss)

    return run


def torch_maml_step(w, steps):
    """Second-order MAML meta-gradient of one task, create_graph=True."""
    model = w.torch_model()
    x, y, loss_fn = _torch_data(w)
    names = [n for n, _ in model.named_parameters()]
    init = [p.detach().clone().requires_grad_() for p in model.parameters()]
    buffers = dict(model.named_buffers())
    index = [torch.from_numpy(i) for i in w.batches(steps + 1)]

    def f(params, i):
        out = torch.func.functional_call(model, ({**dict(zip(names, params)),
                                                  **buffers},), (x[i],))
        return loss_fn(out, y[i])

    def run():
        params = init
        for i in index[:-1]:
            grads = torch.autograd.grad(f(params, i), params, create_graph=True)
            params = [p - LR * g for p, g in zip(params, grads)]
        meta = torch.autograd.grad(f(params, index[-1]), init)
        return float(meta[0].sum())

    return run


def task_batch(w, tasks):
    x = np.stack([w.x] * tasks)
    y = np.stack([w.y] * tasks)
    return {"support_x": x, "support_y": y, "query_x": x[:, :w.batch],
            "query_y": y[:, :w.batch]}


def meta_step(cls, w, steps, tasks, jit_compile=False, **kwargs):
    """One compiled ``train_step`` on tensors (what ``fit`` runs per batch,
    without its Python loop and data conversion); ``jit_compile=True``
    compiles it with XLA, as ``compile(jit_compile=True)`` does in ``fit``."""
    meta = cls(w.tf_model(), inner_optimizer=keras.optimizers.SGD(LR),
               inner_steps=steps, inner_batch_size=w.batch, **kwargs)
    meta.compile(optimizer=keras.optimizers.SGD(0.01), loss=w.loss)
    data = {k: tf.constant(v) for k, v in task_batch(w, tasks).items()}
    step = tf.function(meta.train_step, jit_compile=jit_compile)
    return lambda: float(step(data)["loss"])


class NoMetaGradient(tfmeta.MetaLearner):
    """The meta-step machinery around the plain inner loop (task slicing,
    query loss, metrics, the outer optimizer's apply) with a zero
    meta-gradient: separates what a method adds from what every meta-step
    costs."""

    def task_meta_gradient(self, params, nontrainable, task, seed):
        result = self.adapt_task(params, nontrainable, task, seed)
        loss, pred = self.query_loss(result.params, result.nontrainable, task)
        return ([tf.zeros_like(p) for p in params],
                {"loss": loss, "support_loss": result.loss_after}, pred)


# ------------------------------------------------------------------ timing
def race(contenders, rounds):
    """Median seconds of each contender, run alternately ``rounds`` times."""
    for run in contenders.values():
        run()  # warm-up: tracing, allocation
    times = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def graph_ops(run, pattern):
    """Op types (with counts) of the nodes whose names match ``pattern`` in
    the graphs TensorFlow ran for the first call of ``run``, after
    Grappler's rewrites (run metadata holds the post-optimization graphs of
    functions instantiated while it is on). Loop-body nodes run once per
    iteration, so their count is the ops per step."""
    from tensorflow.python.eager import context
    context.enable_run_metadata()
    try:
        run()
        metadata = context.export_run_metadata()
    finally:
        context.disable_run_metadata()
    counts = collections.Counter()
    for function in metadata.function_graphs:
        for node in function.post_optimization_graph.node:
            if re.search(pattern, node.name):
                counts[node.op] += 1
    return counts


def save_markdown(out, filename, lines):
    """Writes ``lines`` to ``ROOT / out / filename`` and prints them."""
    text = "\n".join(lines) + "\n"
    out = ROOT / out
    out.mkdir(parents=True, exist_ok=True)
    (out / filename).write_text(text)
    print(text)


def peak_gflops(size=2048, repeats=10, rounds=3):
    """Best float32 matmul rate of ``rounds`` timings of ``repeats`` products
    (the operand is an argument, not a captured constant, and the last result
    is fetched, so nothing is folded or left running)."""
    a = tf.random.normal([size, size])
    mm = tf.function(lambda a: tf.matmul(a, a))
    mm(a).numpy()
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            out = mm(a)
        out.numpy()
        best = max(best, 2 * size ** 3 * repeats
                   / (time.perf_counter() - start) / 1e9)
    return best


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def measure_memory(workload, contender, steps):
    """Run in the fresh process of ``max_rss_mb``: resident memory (MiB)
    after importing and building, and its peak while the loop runs twice
    (sampled every millisecond; ``ru_maxrss`` cannot tell, since importing
    TensorFlow already sets a higher mark than any of these loops)."""
    import threading
    w = WORKLOADS[workload]()
    run = globals()[contender](w, steps)
    before, samples, done = _rss_mb(), [], threading.Event()

    def sample():
        while not done.is_set():
            samples.append(_rss_mb())
            time.sleep(0.001)

    thread = threading.Thread(target=sample)
    thread.start()
    run()
    run()
    done.set()
    thread.join()
    return before, max(samples + [_rss_mb()])


def max_rss_mb(workload, contender, steps):
    """Peak resident memory (MiB) of a fresh process running one contender,
    and what running the loop added to the memory held after importing and
    building it. PyTorch is imported only for its own contenders."""
    code = ("import sys; sys.argv=['x']; import benchmarks.run as b; "
            f"print(*b.measure_memory('{workload}', '{contender}', {steps}))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if not contender.startswith("torch"):
        env["TFMETA_BENCH_NO_TORCH"] = "1"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True,
                         capture_output=True, env=env)
    if out.returncode:
        return float("nan"), float("nan")
    before, peak = (float(v) for v in out.stdout.split()[-2:])
    return peak, peak - before


WORKLOADS = {
    "omniglot-conv": lambda: Workload("omniglot-conv", conv_net_tf,
                                      conv_net_torch if torch else None,
                                      (28, 28, 1), 20, 20, 300, conv_flops_per_step()),
    "sine-mlp": lambda: Workload("sine-mlp", mlp_tf, mlp_torch if torch else None,
                                 (1,), 0, 10, 10, mlp_flops_per_step()),
}


def time_all(rows, peak, rounds, conv_steps, mlp_steps):
    """The timed figures (contenders alternate within each race)."""
    for wname, steps in (("omniglot-conv", conv_steps), ("sine-mlp", mlp_steps)):
        w = WORKLOADS[wname]()
        loops = {"tfmeta compiled": tfmeta_loop(w, steps),
                 "TF eager": eager_loop(w, steps)}
        if torch:
            loops["PyTorch standard"] = torch_standard_loop(w, steps)
            loops["PyTorch functional"] = torch_functional_loop(w, steps)
        times = race(loops, rounds)
        for name, seconds in times.items():
            rate = steps / seconds
            rows.append({"workload": wname, "figure": "inner loop, task steps/s",
                         "contender": name, "value": rate,
                         "vs tfmeta": times["tfmeta compiled"] / seconds,
                         "% of peak": 100 * w.flops * rate / (peak * 1e9)})
            print(f"{wname:14s} {name:20s} {rate:9.1f} steps/s", flush=True)

        # One task per meta-step: the tasks of a larger meta-batch may run
        # concurrently (tf.while_loop), which would hide a method's cost.
        base = "plain loop (inner_loop.adapt)"
        meta_steps = {base: tfmeta_loop(w, steps),
                      "meta-step, no meta-gradient": meta_step(
                          NoMetaGradient, w, steps, 1)}
        for cls in (tfmeta.Reptile, tfmeta.Leap, tfmeta.FOMAML):
            meta_steps[cls.__name__] = meta_step(cls, w, steps, 1)
        times = race(meta_steps, rounds)
        for name, seconds in times.items():
            over = 100 * (seconds / times[base] - 1)
            rows.append({"workload": wname,
                         "figure": f"meta-step (1 task x {steps} steps), /s",
                         "contender": name, "value": 1 / seconds,
                         "vs tfmeta": None, "overhead %": over})
            print(f"{wname:14s} {name:28s} {1 / seconds:9.2f} meta-steps/s "
                  f"({over:+.1f} %)", flush=True)

    w = WORKLOADS["sine-mlp"]()
    batched = {"one task after another": meta_step(tfmeta.Reptile, w, 32, 10),
               "vectorize_tasks": meta_step(tfmeta.Reptile, w, 32, 10,
                                            vectorize_tasks=True),
               "one after another, XLA": meta_step(
                   tfmeta.Reptile, w, 32, 10, jit_compile=True),
               "vectorize_tasks, XLA": meta_step(
                   tfmeta.Reptile, w, 32, 10, jit_compile=True,
                   vectorize_tasks=True)}
    times = race(batched, rounds)
    for name, seconds in times.items():
        rows.append({"workload": "sine-mlp",
                     "figure": "Reptile meta-step, 10 tasks x 32 steps, /s",
                     "contender": name, "value": 1 / seconds,
                     "vs tfmeta": times["one task after another"] / seconds})
        print(f"sine-mlp       {name:26s} {1 / seconds:9.2f} meta-steps/s", flush=True)

    # The fixed cost of a meta-step around its tasks (task slicing, seeds,
    # query loss, metrics, the finiteness check and the outer optimizer): on
    # 2-step sine tasks it dominates, so it can be read in microseconds,
    # which the overheads above cannot at the conv net's noise.
    calls = mlp_steps  # calls per round: 200 (50 with --quick)
    fixed = {"plain loop (inner_loop.adapt)": tfmeta_loop(w, 2),
             "meta-step, no meta-gradient": meta_step(NoMetaGradient, w, 2, 1),
             "Reptile": meta_step(tfmeta.Reptile, w, 2, 1)}
    times = race({name: (lambda run=run: [run() for _ in range(calls)])
                  for name, run in fixed.items()}, rounds)
    base = times["plain loop (inner_loop.adapt)"]
    for name, seconds in times.items():
        rows.append({"workload": "sine-mlp",
                     "figure": "call (1 task x 2 steps), µs; fixed cost "
                               "= minus the plain loop",
                     "contender": name, "value": 1e6 * seconds / calls,
                     "vs tfmeta": None,
                     "fixed µs": 1e6 * (seconds - base) / calls})
        print(f"sine-mlp       {name:28s} {1e6 * seconds / calls:9.1f} µs per "
              f"call ({1e6 * (seconds - base) / calls:+.1f} µs)", flush=True)

    # MAML last: its fit graphs run without a Grappler pass
    # (tfmeta.maml.SECOND_ORDER_GRAPH_OPTIONS; until issue 22 it was turned
    # off for the whole process, which changed every later contender).
    for wname in ("omniglot-conv", "sine-mlp"):
        w = WORKLOADS[wname]()
        maml_steps = 5
        second = {"tfmeta MAML": meta_step(tfmeta.MAML, w, maml_steps, 1)}
        if torch:
            second["PyTorch create_graph"] = torch_maml_step(w, maml_steps)
        times = race(second, rounds)
        for name, seconds in times.items():
            rows.append({"workload": wname,
                         "figure": f"MAML meta-step (1 task x {maml_steps} steps), /s",
                         "contender": name, "value": 1 / seconds,
                         "vs tfmeta": times["tfmeta MAML"] / seconds})
            print(f"{wname:14s} {name:20s} {1 / seconds:9.2f} MAML steps/s", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer steps and rounds (a smoke run)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--only-memory", action="store_true",
                        help="only the peak-memory table (not timing-sensitive)")
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    conv_steps, mlp_steps = (10, 50) if args.quick else (50, 200)
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    rows, notes = [], []
    peak = peak_gflops()
    print(f"machine peak (2048^2 float32 matmul): {peak:.1f} GFLOP/s", flush=True)

    if not args.only_memory:
        time_all(rows, peak, rounds, conv_steps, mlp_steps)

    memory = {}
    if not args.no_memory:
        for wname in WORKLOADS:
            for contender in ("tfmeta_loop", "eager_loop") + (
                    ("torch_standard_loop", "torch_functional_loop") if torch else ()):
                resident, added = max_rss_mb(wname, contender, 5)
                memory[f"{wname} {contender}"] = (resident, added)
                print(f"peak RSS {wname} {contender}: {resident:.0f} MiB "
                      f"(the loop added {added:.0f} MiB)", flush=True)

    write_report(out, rows, memory, peak, args, notes)


def write_report(out, rows, memory, peak, args, notes):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stamp = datetime.datetime.now().strftime("%Y-%m-%d")
    header = [
        f"Benchmarks of {stamp}: `python benchmarks/run.py"
        f"{' --quick' if args.quick else ''}` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, TensorFlow {tf.__version__}, Keras {keras.__version__}"
        + (f", PyTorch {torch.__version__}" if torch else ", PyTorch not installed")
        + f"; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}. Medians of "
        f"{2 if args.quick else args.rounds} alternating rounds after a warm-up. "
        f"Machine peak (best 2048x2048 float32 matmul): {peak:.1f} GFLOP/s.", "",
        "| workload | figure | contender | value | tfmeta's time / its time | % of peak | overhead over plain loop |",
        "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if r.get("vs tfmeta") is None else f"{r['vs tfmeta']:.2f}"
        pct = "" if r.get("% of peak") is None else f"{r['% of peak']:.1f}"
        over = "" if r.get("overhead %") is None else f"{r['overhead %']:+.1f} %"
        if r.get("fixed µs") is not None:
            over = f"{r['fixed µs']:+.0f} µs"
        header.append(f"| {r['workload']} | {r['figure']} | {r['contender']} | "
                      f"{r['value']:.2f} | {ratio} | {pct} | {over} |")
    if memory:
        header += ["", "| resident memory (fresh process, 2 x 5 steps, sampled "
                   "every ms) | peak of the process, MiB | added by running "
                   "the loop, MiB |", "|---|---|---|"]
        header += [f"| {k} | {resident:.0f} | {added:.0f} |"
                   for k, (resident, added) in memory.items()]
    header += notes
    text = "\n".join(header) + "\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(
        {"rows": rows, "memory": memory, "peak_gflops": peak}, indent=2))
    loops = [r for r in rows if r["figure"].startswith("inner loop")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, wname in zip(axes, ("omniglot-conv", "sine-mlp")):
        sel = [r for r in loops if r["workload"] == wname]
        ax.barh([r["contender"] for r in sel], [r["value"] for r in sel])
        ax.set_title(f"{wname}: task steps/s (higher is better)")
    fig.tight_layout()
    fig.savefig(out / "inner_loop.png", dpi=100)
    print(f"\n{text}\nwrote {out / 'results.md'} and {out / 'inner_loop.png'}")


if __name__ == "__main__":
    main()
