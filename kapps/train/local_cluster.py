"""A cluster of training processes on this machine, for trying multi-worker training before renting machines.

    python -m kapps.train.local_cluster --workers 2 -- python recipes/lenet5.py --strategy multi-worker

starts the command once per worker (the `--` may be left out: everything from the command's first word on is the
command's), each with the `TF_CONFIG` that tells `tf.distribute.MultiWorkerMirroredStrategy` its cluster and its
place in it: every worker at `127.0.0.1` on a free port, worker 0 the chief. On real machines
the same recipe runs with `TF_CONFIG` set by the cluster (see the README's "More than one machine"); this is a
convenience over that protocol, not a scheduler.

Each worker's output is streamed line by line with a `[worker N]` prefix, its stdout to stdout and its stderr to
stderr. If a worker fails (a non-zero exit status or a signal), the others are stopped, since a collective step
would wait for the missing worker until its timeout, and the launcher exits with status 1 naming the worker; when
every worker succeeds it exits with 0. Each worker gets a temporary folder (`TMPDIR`) of its own, where non-chief
workers keep the files they write while training, removed when the cluster ends however it ends.

The workers share this machine's cores: each gets `--threads` intra-op threads (by default the usable CPUs divided
among the workers), through TensorFlow's `TF_NUM_INTRAOP_THREADS` and `TF_NUM_INTEROP_THREADS`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass

from kapps.cli import Command
from kapps.errors import OptionError

import click

HOST = "127.0.0.1"
# How long a worker may take to exit after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 10.0


def free_ports(count: int, *, host: str = HOST) -> list[int]:
    """`count` distinct TCP ports that nothing listens on at `host` now.

    The sockets that found them are held open together, so no two are the same port, and closed just before
    return; a port could in principle be taken by another program before the worker binds it.
    """
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]


def tf_config(addresses: Sequence[str], index: int) -> dict:
    """The `TF_CONFIG` of worker `index` of a cluster of workers at `addresses` ("host:port"); worker 0 is the
    chief, as MultiWorkerMirroredStrategy takes it when the cluster names no "chief" task."""
    return {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}}


def default_threads(workers: int) -> int:
    """Intra-op threads per worker: the CPUs this process may use, shared evenly, at least one."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, usable // workers)


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen
    readers: list[threading.Thread]


def run_cluster(command: Sequence[str], *, workers: int, threads: int | None = None, echo=click.echo) -> int:
    """Run `command` as `workers` workers of one cluster on this machine and wait for them.

    Args:
        command: the program and its arguments, run once per worker (with `TF_CONFIG` set).
        workers: how many workers.
        threads: intra-op threads per worker (`default_threads` when None).
        echo: where the launcher's own lines go (`click.echo`, `err=True` for stderr).

    Returns:
        0 if every worker exited with status 0, else 1 (after stopping the workers still running).

    Raises:
        OptionError: no command, fewer than one worker or thread, or a program that cannot be started.
    """
    if not command:
        raise OptionError("Give the command each worker runs, e.g. python recipes/lenet5.py --strategy multi-worker.")
    if workers < 1:
        raise OptionError(f"--workers must be at least 1, not {workers}.")
    threads = default_threads(workers) if threads is None else threads
    if threads < 1:
        raise OptionError(f"--threads must be at least 1, not {threads}.")
    program = shutil.which(command[0])
    if program is None:
        raise OptionError(f"The command {command[0]!r} was not found.")
    addresses = [f"{HOST}:{port}" for port in free_ports(workers)]
    scratch = tempfile.mkdtemp(prefix="kapps-cluster-")
    lock = threading.Lock()
    running: list[_Worker] = []
    start = time.perf_counter()
    main_thread = threading.current_thread() is threading.main_thread()
    # A launcher stopped with SIGTERM stops its workers too (they run in sessions of their own, out of reach of
    # a signal to the launcher's process group).
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        echo(f"local cluster: {workers} workers at {', '.join(addresses)}, {threads} threads each; worker 0 is chief")
        for index in range(workers):
            folder = os.path.join(scratch, f"worker-{index}")
            os.mkdir(folder)
            env = {
                **os.environ,
                "TF_CONFIG": json.dumps(tf_config(addresses, index)),
                "TMPDIR": folder,
                "PYTHONUNBUFFERED": "1",
                "TF_NUM_INTRAOP_THREADS": str(threads),
                "TF_NUM_INTEROP_THREADS": str(min(2, threads)),
            }
            process = subprocess.Popen(
                [program, *command[1:]],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopping it stops what it started
            )
            prefix = f"[worker {index}] "
            readers = [
                threading.Thread(target=_relay, args=(process.stdout, sys.stdout, prefix, lock), daemon=True),
                threading.Thread(target=_relay, args=(process.stderr, sys.stderr, prefix, lock), daemon=True),
            ]
            for reader in readers:
                reader.start()
            running.append(_Worker(index, process, readers))
            with lock:
                echo(f"local cluster: worker {index} is process {process.pid}")
        failed = _wait(running)
        _stop(running)
        for worker in running:
            for reader in worker.readers:
                reader.join()
        seconds = time.perf_counter() - start
        if not failed:
            echo(f"local cluster: all {workers} workers finished in {seconds:.1f} s")
            return 0
        first, *others = failed
        also = "".join(f" (and worker {w.index} {_describe(w.process.returncode)})" for w in others)
        echo(
            f"error: worker {first.index} {_describe(first.process.returncode)}{also} after {seconds:.1f} s; "
            "the other workers were stopped.",
            err=True,
        )
        return 1
    except BaseException:
        _stop(running)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def _relay(stream, out, prefix: str, lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with lock:
            out.write(prefix + line + "\n")
            out.flush()
    stream.close()


def _wait(workers: list[_Worker]) -> list[_Worker]:
    """Wait until every worker succeeded (no worker) or some failed (the workers found failed at that moment,
    one killed by a signal first: a worker that lost its peer in a collective step fails too, but later)."""
    while True:
        codes = [worker.process.poll() for worker in workers]
        failed = [worker for worker, code in zip(workers, codes, strict=True) if code not in (None, 0)]
        if failed:
            return sorted(failed, key=lambda w: w.process.returncode >= 0)
        if all(code == 0 for code in codes):
            return []
        time.sleep(0.1)


def _stop(workers: list[_Worker]) -> None:
    """SIGTERM to the process group of every worker still running, SIGKILL to those left after a grace period."""
    alive = [w for w in workers if w.process.poll() is None]
    for worker in alive:
        _signal_group(worker.process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for worker in alive:
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(worker.process, signal.SIGKILL)
            worker.process.wait()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with suppress(ProcessLookupError):  # the group ended already
        os.killpg(process.pid, sig)


def _describe(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


@click.command(
    name="local_cluster",
    cls=Command,
    # Everything from the command's first word on is the command's, options included (-- may come before it).
    context_settings={"show_default": True, "help_option_names": ["-h", "--help"], "allow_interspersed_args": False},
    help="Run COMMAND as WORKERS workers of one multi-worker cluster on this machine.",
)
@click.option("--workers", type=int, default=2, help="Number of worker processes.")
@click.option("--threads", type=int, default=None, help="Intra-op threads per worker [default: CPUs / workers].")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def main(workers: int, threads: int | None, debug: bool, command: tuple[str, ...]) -> None:
    code = run_cluster(command, workers=workers, threads=threads)
    sys.exit(code)


if __name__ == "__main__":
    main()
