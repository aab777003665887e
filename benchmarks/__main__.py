"""``python -m benchmarks`` (``make bench``): gas, stress-lab throughput and scaling, mirror
throughput, sweep throughput (the vectorized simulator on Dask). Prints the tables with units and the machine they ran on, and writes
``out/bench.json``. Figures to compare, not timed tests: nothing here fails on a missed target.

Options: ``--quick`` skips the 5,000-account lab run; ``--only gas,lab,mirror,sweep`` runs a subset;
``--sweep-seeds N`` sets the sweep's seeds per corpus source (64; 770 is the issue's 10,000-run
check); ``--out PATH`` moves the JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ballast.toolchain import ROOT, native_binary

PARTS = ("gas", "lab", "mirror", "sweep")


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, tool versions, load, date."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = int(line.split()[1]) / 1024**2
                break
    except OSError:
        pass

    def version(tool: str) -> str:
        try:
            out = subprocess.run([str(native_binary(tool)), "--version"], capture_output=True, text=True, timeout=20)
            return out.stdout.strip().splitlines()[0]
        except Exception:  # noqa: BLE001 - a missing tool is reported, not fatal
            return "unavailable"

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 1,
        "ram_gb": round(ram_gb, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "anvil": version("anvil"),
        "git_commit": commit,
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _header(m: dict[str, Any]) -> str:
    return (f"Ballast benchmarks, {m['date_utc']}, commit {m['git_commit']}\n"
            f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']:.0f} GB RAM, {m['os']}; Python {m['python']}, "
            f"numpy {m['numpy']}, {m['anvil']}; load average at start {m['loadavg_1m_at_start']}\n")


def _clean(o: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, (float, np.floating)):
        f = float(o)
        return f if math.isfinite(f) else None
    return o


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the 5,000-account lab run")
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated subset of " + ",".join(PARTS))
    ap.add_argument("--sweep-seeds", type=int, default=64,
                    help="sweep: seeds per corpus source (13 sources; 770 = the 10,000-run check)")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench.json"), help="JSON output path")
    a = ap.parse_args(argv)
    parts = [p.strip() for p in a.only.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        ap.error(f"--only: unknown part(s) {bad}; allowed {list(PARTS)}")
    os.chdir(ROOT)  # the lab runs its sizes as `python -m benchmarks.lab` from the checkout
    m = machine()
    print(_header(m), flush=True)
    t0 = time.monotonic()
    out: dict[str, Any] = {"machine": m}
    printed: list[str] = []
    if "gas" in parts:
        from benchmarks import gas

        print("running gas ...", file=sys.stderr, flush=True)
        g = gas.run()
        out["gas"] = gas.summary(g)
        printed.append(gas.tables(g))
        print(printed[-1], flush=True)
    if "lab" in parts:
        from benchmarks import lab

        print("running lab ...", file=sys.stderr, flush=True)
        sizes = tuple(n for n in lab.SIZES if not (a.quick and n > 1_000))
        lr = lab.run(sizes)
        out["lab"] = lab.summary(lr)
        printed.append(lab.tables(lr))
        print(printed[-1], flush=True)
    if "mirror" in parts:
        from benchmarks import mirror

        print("running mirror ...", file=sys.stderr, flush=True)
        mr = mirror.run()
        out["mirror"] = mirror.summary(mr)
        printed.append(mirror.tables(mr))
        print(printed[-1], flush=True)
    if "sweep" in parts:
        from benchmarks import sweep

        print("running sweep ...", file=sys.stderr, flush=True)
        sr = sweep.run(seeds=a.sweep_seeds)
        out["sweep"] = sweep.summary(sr)
        printed.append(sweep.tables(sr))
        print(printed[-1], flush=True)
    m["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    out["wall_sec"] = time.monotonic() - t0
    path = Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(out), indent=1))
    print(f"wrote {path} ({out['wall_sec']:.0f} s; load average at end {m['loadavg_1m_at_end']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
