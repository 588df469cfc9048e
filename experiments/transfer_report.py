"""Tables, CSV and figures shared by the meta-transfer experiments
(``transfer_cos_sin.py``, ``transfer_pendulum.py``): one row per run
(``encoder``, ``sigma``, ``seed``, ``query_mse``, timings)."""

import csv

import numpy as np

from tfmeta.transfer import ENCODERS, GRADIENT_ENCODERS


def stats(rows, encoder, sigma, key="query_mse", column="sigma"):
    """``(mean, std, n)`` of ``key`` over the runs of ``encoder`` whose
    ``column`` is ``sigma`` (``None`` if there are none)."""
    values = [r[key] for r in rows
              if r["encoder"] == encoder and r[column] == sigma]
    return (np.mean(values), np.std(values), len(values)) if values else None


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def table(rows, encoders, paper=None, paper_sigmas=(), key="query_mse",
          column="sigma", digits=2):
    """Markdown lines: an encoder per row, a value of ``column`` (sigma)
    per column, ``mean ± std`` over seeds, the paper's value in brackets
    where it has one."""
    sigmas = sorted({r[column] for r in rows})
    lines = ["| encoder | " + " | ".join(f"{column} {s:g}" for s in sigmas)
             + " |", "|---|" + "---|" * len(sigmas)]
    for e in encoders:
        cells = []
        for s in sigmas:
            st = stats(rows, e, s, key, column)
            cell = "" if st is None else \
                f"{st[0]:.{digits}f} ± {st[1]:.{digits}f}"
            if paper and e in paper and s in paper_sigmas:
                m, sd = paper[e][list(paper_sigmas).index(s)]
                cell += f" [{m:.{digits}f} ± {sd:.{digits}f}]"
            cells.append(cell)
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return lines


def cost_table(rows, encoders):
    lines = ["| encoder | ms / meta-step |", "|---|---|"]
    for e in encoders:
        ms = [r["ms_per_meta_step"] for r in rows if r["encoder"] == e]
        if ms:
            lines.append(f"| {e} | {np.median(ms):.1f} |")
    return lines


def below(rows, sigma, encoders, baselines, key="query_mse"):
    """Claim lines: at ``sigma``, each of ``encoders`` has a lower mean
    than each of ``baselines`` (a name, or ``(label, value)``)."""
    lines = []
    for g in encoders:
        a = stats(rows, g, sigma, key)
        for base in baselines:
            if isinstance(base, tuple):
                label, b = base
            else:
                st = stats(rows, base, sigma, key)
                label, b = base, (None if st is None else st[0])
            if a is None or b is None:
                continue
            ok = a[0] < b
            lines.append(f"- sigma {sigma:g}: {g} {a[0]:.3f} "
                         f"{'<' if ok else '>='} {label} {b:.3f}: "
                         f"{'holds' if ok else 'DOES NOT hold'}")
    return lines


def plot_vs_sigma(rows, encoders, path, key="query_mse", ylabel="query MSE"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sigmas = sorted({r["sigma"] for r in rows})
    fig, ax = plt.subplots(figsize=(6, 4))
    for e in encoders:
        pts = [(s, stats(rows, e, s, key)) for s in sigmas
               if stats(rows, e, s, key)]
        if not pts:
            continue
        ax.errorbar([p[0] for p in pts], [p[1][0] for p in pts],
                    yerr=[p[1][1] for p in pts], marker="o", capsize=3,
                    label=e, ls="-" if e in GRADIENT_ENCODERS else "--")
    ax.set_xlabel("support noise sigma")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parser(doc, presets):
    """The arguments every meta-transfer experiment takes: ``--preset``,
    ``--out``, ``--encoders``, ``--meta-steps``, ``--seeds``."""
    import argparse

    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--preset", choices=sorted(presets), default="tiny")
    p.add_argument("--out", default=None,
                   help="output directory (default runs/<experiment>_<preset>)")
    p.add_argument("--encoders", default=",".join(ENCODERS))
    p.add_argument("--meta-steps", type=int, default=None)
    p.add_argument("--seeds", default=None, help="e.g. 0,1,2")
    return p


def config(p, args, presets, experiment):
    """The preset of ``args`` with the common arguments applied (checked:
    ``p.error`` on bad values)."""
    cfg = dict(presets[args.preset])
    if args.meta_steps is not None:
        if args.meta_steps < 1:
            p.error("--meta-steps must be positive")
        cfg["meta_steps"] = args.meta_steps
    if args.seeds is not None:
        cfg["seeds"] = [int(s) for s in args.seeds.split(",")]
    encoders = args.encoders.split(",")
    unknown = set(encoders) - set(ENCODERS)
    if unknown:
        p.error(f"unknown encoder(s) {sorted(unknown)}; choose from "
                f"{', '.join(ENCODERS)}")
    cfg["encoders"] = encoders
    cfg["out"] = args.out or f"runs/{experiment}_{args.preset}"
    cfg["preset"] = args.preset
    return cfg
