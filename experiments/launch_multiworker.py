"""Runs a command as the workers of a ``MultiWorkerMirroredStrategy`` job.

Every worker gets its own ``TF_CONFIG`` (TensorFlow's convention: the
cluster's worker addresses and this worker's index); ``{index}`` in the
command is replaced by the worker's index. On one machine (local worker
processes on free ports of localhost, CPU only)::

    python experiments/launch_multiworker.py --workers 2 -- \\
        tfmeta train leap --task sine --strategy multiworker \\
        --run-dir runs/leap_mw{index}

On a cluster, run one worker per machine with the cluster's addresses
(the same list everywhere, this machine's position as ``--index``)::

    python experiments/launch_multiworker.py \\
        --hosts gpu0:2222,gpu1:2222,gpu2:2222,gpu3:2222 --index 0 -- \\
        tfmeta train leap --task omniglot --strategy multiworker ...

The launcher exits with the first non-zero exit status of a worker (after
ending the others), else 0. TensorFlow's multi-worker jobs need all workers:
a worker that dies stops the job, which is restarted as a whole (with
``keras.callbacks.BackupAndRestore`` or ``tfmeta train --resume-from``;
docs/distributed.md).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time


def free_ports(count):
    """``count`` TCP ports of localhost that are free now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("localhost", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(hosts, index):
    """The ``TF_CONFIG`` (a JSON string) of worker ``index`` of ``hosts``
    (``host:port`` strings)."""
    return json.dumps({"cluster": {"worker": list(hosts)},
                       "task": {"type": "worker", "index": int(index)}})


def worker_env(hosts, index, env=None, cpu_only=False):
    """The environment of worker ``index``: ``env`` (default: this
    process's) with its ``TF_CONFIG``; ``cpu_only`` hides the GPUs."""
    env = dict(os.environ if env is None else env)
    env["TF_CONFIG"] = tf_config(hosts, index)
    if cpu_only:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def start(command, workers=None, hosts=None, index=None, env=None,
          cpu_only=True, stdout=None, stderr=None, cwd=None):
    """Starts workers of ``command`` (a list; ``{index}`` replaced by the
    worker's index) on this machine: ``workers`` local processes on free
    ports, or of the cluster ``hosts`` (``host:port`` strings) all workers,
    or worker ``index`` only. Returns ``(hosts, processes)``."""
    if hosts is None:
        hosts = [f"localhost:{p}" for p in free_ports(workers)]
    indices = range(len(hosts)) if index is None else [index]
    processes = []
    for i in indices:
        argv = [a.replace("{index}", str(i)) for a in command]
        processes.append(subprocess.Popen(
            argv, env=worker_env(hosts, i, env, cpu_only), cwd=cwd,
            stdout=stdout, stderr=stderr))
    return hosts, processes


def wait(processes, timeout=None):
    """Waits for all workers (at most ``timeout`` seconds); the first
    failure ends the others. Returns the exit statuses (negative: ended by
    a signal, as the workers this function ends)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in processes]
        failed = any(c not in (None, 0) for c in codes)
        late = deadline is not None and time.monotonic() > deadline
        if all(c is not None for c in codes) or failed or late:
            break
        time.sleep(0.1)
    for p in processes:
        if p.poll() is None:
            p.kill()
            p.wait()
    return [p.returncode for p in processes]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        usage="%(prog)s (--workers N | --hosts H:P,... --index I) "
              "[--gpu] -- COMMAND ...")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--workers", type=int,
                       help="local worker processes on free ports")
    group.add_argument("--hosts", help="the cluster's workers, host:port,...")
    parser.add_argument("--index", type=int,
                        help="with --hosts: this machine's worker")
    parser.add_argument("--gpu", action="store_true",
                        help="local workers: keep the GPUs visible (default: "
                             "CPU only, as local workers would share them)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    if args.hosts:
        hosts = args.hosts.split(",")
        if args.index is None or not 0 <= args.index < len(hosts):
            parser.error(f"--hosts needs --index in 0..{len(hosts) - 1}")
        argv = [a.replace("{index}", str(args.index)) for a in command]
        return subprocess.call(argv, env=worker_env(hosts, args.index))
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    _, processes = start(command, workers=args.workers,
                         cpu_only=not args.gpu)
    try:
        codes = wait(processes)
    except KeyboardInterrupt:
        codes = wait(processes, timeout=0)
    return next((c for c in codes if c not in (None, 0)), 0)


if __name__ == "__main__":
    sys.exit(main())
