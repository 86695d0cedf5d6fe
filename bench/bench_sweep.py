"""rxllm.sweep at dataset scale: 10,000 rows through the local engine and through Ray.

The emulator runs in its own process (so its CPU is not the client's). Each
engine runs the same sweep (prompts x the four providers, ``--rows`` rows in
all) into a fresh SQLite store, checks that every row finished and was stored,
then runs it again to check that the rerun sends nothing (resume). Reported per
engine: wall time, rows/s, client CPU per row (the driver's, plus on Ray the
worker processes'), peak memory (driver + workers, sampled) and the resume time.

Not a test: run it by hand::

    .venv/bin/python bench/bench_sweep.py                      # 10,000 rows, both engines
    .venv/bin/python bench/bench_sweep.py --rows 2000 --engines local --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_providers import KEY, MODELS, EmulatorHandle

import rxllm
from rxllm.sweeps import sweep

PROVIDERS = ("anthropic", "openai", "gemini", "grok")
DIALECT = {"anthropic": "anthropic", "openai": "openai", "gemini": "gemini", "grok": "xai"}


def _ray_workers() -> list[psutil.Process]:
    """Ray's worker processes (``ray::IDLE``, ``ray::_work``...), not its daemons."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        name = process.info["name"] or ""
        cmdline = " ".join(process.info["cmdline"] or [])
        if name.startswith("ray::") or cmdline.startswith("ray::"):
            found.append(process)
    return found


def _cpu(processes: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for process in processes:
        try:
            times = process.cpu_times()
            out[process.pid] = times.user + times.system
        except psutil.Error:
            continue
    return out


class _PeakMemory:
    """Samples the RSS of this process plus Ray's workers, four times a second."""

    def __init__(self, ray: bool) -> None:
        self.ray = ray
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        total = psutil.Process().memory_info().rss
        if self.ray:
            for process in _ray_workers():
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def __enter__(self) -> _PeakMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _models(urls: dict[str, str], providers: list[str]) -> list[rxllm.BoundModel]:
    return [
        rxllm.model(f"{p}:{MODELS[p]}", api_key=KEY, base_url=urls[DIALECT[p]]) for p in providers
    ]


async def _run(
    engine: str, urls: dict[str, str], args: argparse.Namespace, db: str
) -> dict[str, Any]:
    providers = list(args.providers)
    prompts = [f"Bench prompt {i}: what is a stream?" for i in range(args.rows // len(providers))]
    models = _models(urls, providers)
    options: dict[str, Any] = {
        "db": db,
        "engine": engine,
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
        "progress": False,
    }
    if engine == "ray":
        keys = {f"{p.upper()}_API_KEY": KEY for p in ("anthropic", "openai", "gemini", "xai")}
        options |= {"workers": args.workers, "ray_options": {"runtime_env": {"env_vars": keys}}}
    workers_before = _cpu(_ray_workers()) if engine == "ray" else {}
    cpu_before = time.process_time()
    with _PeakMemory(engine == "ray") as memory:
        started = time.perf_counter()
        result = await sweep(prompts, models, **options)
        wall = time.perf_counter() - started
    driver_cpu = time.process_time() - cpu_before
    worker_cpu = 0.0
    if engine == "ray":
        after = _cpu(_ray_workers())
        worker_cpu = sum(cpu - workers_before.get(pid, 0.0) for pid, cpu in after.items())
    rows = len(result.rows)
    assert result.complete, result
    assert rows == len(prompts) * len(providers), result
    failed = len(result.failed)
    resumed_at = time.perf_counter()
    again = await sweep(prompts, models, **{**options, "engine": "local"})
    resume = time.perf_counter() - resumed_at
    assert again.ran == 0, again
    assert again.skipped == rows, again
    for bound in models:
        await bound.provider.aclose()
    return {
        "engine": engine if engine == "local" else f"ray ({args.workers} workers)",
        "rows": rows,
        "failed": failed,
        "wall_s": round(wall, 2),
        "rows_per_s": round(rows / wall, 1),
        "client_cpu_ms_per_row": round(1000 * (driver_cpu + worker_cpu) / rows, 3),
        "driver_cpu_s": round(driver_cpu, 2),
        "worker_cpu_s": round(worker_cpu, 2),
        "peak_rss_mb": round(memory.peak / 2**20, 1),
        "resume_s": round(resume, 2),
        "concurrency_per_provider": args.concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--providers", nargs="+", default=list(PROVIDERS))
    parser.add_argument("--engines", nargs="+", default=["local", "ray"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--words", type=int, default=40, help="the emulator's reply length")
    parser.add_argument("--max-tokens", type=int, default=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "host": socket.gethostname(),
        "load_average_before": os.getloadavg(),
        "runs": [],
    }
    if "ray" in args.engines:  # before anything else: Ray forks its daemons
        import ray

        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    with EmulatorHandle("process", args.words) as emu, tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines:
            row = asyncio.run(_run(engine, emu.urls, args, os.path.join(tmp, f"{engine}.sqlite")))
            row["emulator_requests"] = emu.requests()
            print(json.dumps(row), flush=True)
            report["runs"].append(row)
    print("\n| engine | rows | rows/s | client CPU ms/row | peak RSS MB | resume s |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in report["runs"]:
        print(
            f"| {row['engine']} | {row['rows']:,} | {row['rows_per_s']:,} | "
            f"{row['client_cpu_ms_per_row']} | {row['peak_rss_mb']} | {row['resume_s']} |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)


if __name__ == "__main__":
    main()
