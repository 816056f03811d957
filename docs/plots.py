"""Plot what a scenario's stream shows over time, to look at it as an audience would.

    .venv/bin/python docs/plots.py demo --hours 24 --out docs/demo-24h.png
    .venv/bin/python docs/plots.py demo --hours 0.25 --out docs/demo-15m.png

Runs the scenario headless (the same engine as the server; a scenario with a duration
starts over as `serve` does with simulation.loop) and draws, against simulated time:
the fleet (total points per second, series, active agents), cost (baseline, optimized,
savings), each experiment's two variants, and the agents' health (mean and 95th
percentile CPU and memory from heartbeats, and how many are degraded or unhealthy);
with markers for faults, anomalies, alerts and deployments. Needs matplotlib (a dev
dependency: `pip install -e '.[dev]'`).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.engine import Engine  # noqa: E402
from simulator.scenario import load_scenario  # noqa: E402

MAX_HOURS = 24 * 14
RUN = re.compile(r"-run[0-9]+$")


def run(name: str, hours: float, seed: int | None) -> list[Any]:
    sc = load_scenario(name)
    engine = Engine(sc, seed=seed)
    end = engine.start + hours * 3600
    events = []
    while True:
        events += engine.advance_to(end)
        if engine.end is None or engine.now >= end or engine.end >= end:
            return events
        engine = Engine(sc, seed=seed, start=engine.end + 1, after=engine.continuation())


def plot(name: str, events: list[Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def when(t: float) -> datetime:
        return datetime.fromtimestamp(t, UTC)

    fleet: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    cost: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    exps: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    health: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    marks: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for e in events:
        d = e.data
        if e.name == "metrics.update":
            g = d["global"]
            fleet["total_mps"].append((when(e.time), g["total_mps"]))
            fleet["total_series"].append((when(e.time), g["total_series"]))
            fleet["active_agents"].append((when(e.time), g["active_agents"]))
            for eid, m in d["experiments"].items():
                eid = RUN.sub("", eid)  # one line per experiment of the scenario, every run
                exps[f"{eid} baseline"].append((when(e.time), m["baseline_mps"]))
                exps[f"{eid} candidate"].append((when(e.time), m["candidate_mps"]))
        elif e.name == "cost.update":
            for key in ("baseline_cost_per_hour", "optimized_cost_per_hour", "savings_per_hour"):
                cost[key].append((when(e.time), d[key]))
        elif e.name == "agent.heartbeat":
            m = d["metrics"]
            minute = int(e.time // 60)
            health[minute].append((m["cpu_percent"], m["memory_percent"], d["status"]))
        elif e.name == "metrics.anomaly":
            marks["anomaly"].append((when(e.time), d["type"]))
        elif e.name == "alert.triggered":
            marks["alert"].append((when(e.time), d["name"]))
        elif e.name == "deployment.started":
            marks["deployment"].append((when(e.time), d["variant"]))
        elif e.name in ("experiment.started", "experiment.completed", "experiment.failed"):
            marks["experiment"].append((when(e.time), e.name.split(".")[1]))
    # The scenario's faults, from its own schedule (repeated per run when it loops).
    sc = load_scenario(name)
    if events:
        first, last = events[0].time, events[-1].time
        span = (sc.duration + 1) if sc.duration else math.inf
        runs = 1 if span == math.inf else int((last - first) // span) + 1
        for k in range(runs):
            for f in sc.faults:
                t = first + k * span + f.at
                if t <= last:
                    marks["fault"].append((when(t), f.type))

    fig, axes = plt.subplots(5, 1, figsize=(13, 15), sharex=True)
    fig.suptitle(f"{name}: the stream over simulated time", fontsize=14)
    colors = {
        "fault": "#d62728",
        "anomaly": "#ff7f0e",
        "alert": "#9467bd",
        "deployment": "#2ca02c",
        "experiment": "#7f7f7f",
    }

    # Over hours, a mark per deployment and experiment step is a wall of lines: only
    # what went wrong (faults, anomalies, alerts) is marked then.
    long_run = bool(events) and events[-1].time - events[0].time > 2 * 3600
    shown = {"fault", "anomaly", "alert"} if long_run else set(colors)

    def markers(ax: Any) -> None:
        for kind, items in marks.items():
            if kind not in shown:
                continue
            for i, (x, _) in enumerate(items):
                ax.axvline(x, color=colors[kind], alpha=0.35, lw=1, label=kind if i == 0 else None)

    def series(ax: Any, data: dict[str, list[tuple[datetime, float]]], keys: list[str]) -> None:
        for key in keys:
            if data.get(key):
                xs, ys = zip(*data[key], strict=True)
                ax.plot(xs, ys, label=key, lw=1.2)

    ax = axes[0]
    series(ax, fleet, ["total_mps"])
    ax.set_ylabel("points / s")
    ax2 = ax.twinx()
    series(ax2, fleet, ["total_series"])
    ax2.lines[0].set_color("#8c564b") if ax2.lines else None
    ax2.set_ylabel("series")
    markers(ax)
    ax.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper right", fontsize=8)
    ax.set_title("Fleet: total points per second and series")

    ax = axes[1]
    series(ax, fleet, ["active_agents"])
    ax.set_ylabel("agents")
    ax.set_title("Active agents")
    markers(ax)

    ax = axes[2]
    series(ax, cost, ["baseline_cost_per_hour", "optimized_cost_per_hour", "savings_per_hour"])
    ax.set_ylabel("USD / hour")
    ax.set_title("Cost")
    ax.legend(loc="upper left", fontsize=8)
    markers(ax)

    ax = axes[3]
    series(ax, exps, sorted(exps))
    ax.set_ylabel("points / s")
    ax.set_title("Experiments: baseline and candidate output")
    if exps:
        ax.legend(loc="upper left", fontsize=7, ncol=2)
    markers(ax)

    ax = axes[4]
    minutes = sorted(health)
    xs = [when(m * 60) for m in minutes]

    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))]

    cpu = [[c for c, _, _ in health[m]] for m in minutes]
    mem = [[x for _, x, _ in health[m]] for m in minutes]
    ax.plot(xs, [sum(v) / len(v) for v in cpu], label="CPU mean", lw=1.2)
    ax.plot(xs, [pct(v, 0.95) for v in cpu], label="CPU p95", lw=1, ls="--")
    ax.plot(xs, [sum(v) / len(v) for v in mem], label="memory mean", lw=1.2)
    ax.plot(xs, [pct(v, 0.95) for v in mem], label="memory p95", lw=1, ls="--")
    ax.set_ylabel("%")
    ax3 = ax.twinx()
    for status, color in (("degraded", "#ff7f0e"), ("unhealthy", "#d62728")):
        counts = [sum(1 for *_, s in health[m] if s == status) for m in minutes]
        ax3.bar(xs, counts, width=1 / 1440, color=color, alpha=0.5, label=f"{status} beats/min")
    ax3.set_ylabel("heartbeats / min")
    ax.set_title("Agents' health from heartbeats")
    ax.legend(loc="upper left", fontsize=8)
    ax3.legend(loc="upper right", fontsize=8)
    markers(ax)
    handles, labels = axes[1].get_legend_handles_labels()
    axes[1].legend(handles, labels, loc="lower left", fontsize=8, ncol=6)
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%d %H:%M"))
    fig.autofmt_xdate()
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"{out}: {len(events):,} events")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario")
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if not 0 < args.hours <= MAX_HOURS:
        p.error(f"--hours: more than 0 and at most {MAX_HOURS}")
    plot(args.scenario, run(args.scenario, args.hours, args.seed), Path(args.out))


if __name__ == "__main__":
    main()
