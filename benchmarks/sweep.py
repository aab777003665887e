"""Sweep throughput: ``ballast sweep`` (Dask ``LocalCluster``, one single-threaded worker process
per core) over the crash corpus (``ballast.scenarios.CORPUS``: the real replays, the index replays
and every synthetic family with drawn parameters), three controllers per path (dynamic,
static_calm, static_conservative; no static caps), 300 accounts, full paths.

Reports three-controller runs per second of wall time, the wall time including the cluster's start
(the issue's 10,000-run target is 600 s of that), the CPU time of this process and its workers
(user + system), and the CPU time the rest of the machine used meanwhile (other users' load, from
``psutil.cpu_times``): a quiet-machine figure is only honest when that is small.

``python -m benchmarks --only sweep`` runs 64 seeds per source (832 three-controller runs, about a
minute); ``--sweep-seeds 770`` is the issue's full check (13 sources x 770 = 10,010 runs).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from ballast.scenarios import CORPUS
from ballast.sweep import SweepSpec, run_sweep

SEEDS = 64
ACCOUNTS = 300
CHUNK = 128
TARGET_RUNS, TARGET_SEC = 10_000, 600.0


def _busy(t: Any) -> float:
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


class _TreeCpu:
    """CPU seconds (user + system) of this process and every descendant, sampled every ``every``
    seconds by a thread (a Dask worker's time counts even if it is never reaped by this process)."""

    def __init__(self, every: float = 0.5) -> None:
        self.me = psutil.Process()
        self.seen: dict[int, float] = {}
        self.every = every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        for pr in self.me.children(recursive=True):
            try:
                t = pr.cpu_times()
                self.seen[pr.pid] = max(self.seen.get(pr.pid, 0.0), t.user + t.system)
            except psutil.Error:
                pass

    def _loop(self) -> None:
        while not self.stop.wait(self.every):
            self._sample()

    def __enter__(self) -> _TreeCpu:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def total(self) -> float:
        t = self.me.cpu_times()
        return t.user + t.system + sum(self.seen.values())


def run(seeds: int = SEEDS, accounts: int = ACCOUNTS, chunk: int = CHUNK, workers: int | None = None,
        out: Path | None = None) -> dict[str, Any]:
    """Run the corpus sweep into a fresh folder; timing, CPU and load figures."""
    spec = SweepSpec(scenarios=CORPUS, seeds=seeds, accounts=accounts, caps=(), chunk=chunk).validate()
    tmp = Path(tempfile.mkdtemp(prefix="ballast-bench-sweep-")) if out is None else out
    if (tmp / "sweep.sqlite").exists():
        raise FileExistsError(f"{tmp / 'sweep.sqlite'} exists: a benchmark needs an empty folder")
    n_workers = workers or os.cpu_count() or 1
    load0 = os.getloadavg()
    tree = _TreeCpu()
    cpu0 = tree.total()
    sys0, me0 = psutil.cpu_times(), os.times()
    t0 = time.monotonic()
    try:
        with tree:
            timing = run_sweep(spec, tmp, workers=n_workers, progress=True)
    finally:
        wall = time.monotonic() - t0
        sys1, me1 = psutil.cpu_times(), os.times()
        if out is None:
            shutil.rmtree(tmp, ignore_errors=True)
    reaped = (me1.user - me0.user) + (me1.system - me0.system) + (me1.children_user - me0.children_user) \
        + (me1.children_system - me0.children_system)
    # Workers sampled while alive (the last sample can be up to 0.5 s old) or reaped: the larger.
    ours = max(reaped, tree.total() - cpu0)
    machine = _busy(sys1) - _busy(sys0)
    three = timing["runs"] / 3
    return {"sources": len(CORPUS), "seeds_per_source": seeds, "accounts": accounts, "chunk": chunk,
            "workers": n_workers, "three_controller_runs": three, "simulator_runs": timing["runs"],
            "wall_sec": wall, "sweep_wall_sec": timing["wall_sec"], "three_controller_runs_per_sec": three / wall,
            "cpu_sec": ours, "cpu_sec_reaped_children": reaped, "cpu_sec_others": max(0.0, machine - ours),
            "three_controller_runs_per_cpu_sec": three / ours if ours > 0 else float("nan"),
            "loadavg_1m_start": load0[0], "loadavg_1m_end": os.getloadavg()[0],
            "projected_10k_sec": TARGET_RUNS / (three / wall)}


def summary(r: dict[str, Any]) -> dict[str, Any]:
    return dict(r) | {"target": f"{TARGET_RUNS:,} three-controller runs in <= {TARGET_SEC:.0f} s",
                      "target_met_at_this_rate": r["projected_10k_sec"] <= TARGET_SEC}


def tables(r: dict[str, Any]) -> str:
    head = f"{'measure':<58}{'value':>14}  unit"
    rows = [
        ("corpus sources x seeds", f"{r['sources']} x {r['seeds_per_source']}", "paths"),
        ("three-controller runs (300 accounts, full paths)", f"{r['three_controller_runs']:,.0f}", "runs"),
        ("wall time, cluster start included", f"{r['wall_sec']:,.1f}", "s"),
        ("throughput", f"{r['three_controller_runs_per_sec']:,.1f}", "three-controller runs/s"),
        ("CPU time of the sweep (user + system, workers included)", f"{r['cpu_sec']:,.1f}", "s"),
        ("throughput per CPU second", f"{r['three_controller_runs_per_cpu_sec']:,.2f}", "runs per CPU s"),
        ("CPU time used by other processes meanwhile", f"{r['cpu_sec_others']:,.1f}", "s"),
        ("load average (1 min) at start / end", f"{r['loadavg_1m_start']:.2f} / {r['loadavg_1m_end']:.2f}", ""),
        (f"{TARGET_RUNS:,} runs at this rate", f"{r['projected_10k_sec']:,.0f}", f"s (target <= {TARGET_SEC:.0f} s)"),
    ]
    lines = [f"SWEEP: ballast sweep over the crash corpus on a Dask LocalCluster of {r['workers']} single-threaded "
             f"workers, chunk {r['chunk']} seeds per task", "", head, "-" * len(head)]
    lines += [f"{a:<58}{b:>14}  {c}" for a, b, c in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    res = run()
    print(tables(res))
