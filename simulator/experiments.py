"""Experiments and their deployments: the lifecycle state machine and the A/B numbers.

created -> initializing -> deploying -> running -> analyzing -> completed | failed;
cancelled from any live state (a cancel that arrives before the experiment exists
takes effect when it is created); rolled_back once a failed experiment's
rollback has finished. Both variants run side by side on the same agents (as in the
original controller), so baseline and candidate see the same input and the comparison
is fair. The outcome comes from the measured numbers, never from a script.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.clock import rfc3339
from simulator.cost import Prices, money
from simulator.events import Event
from simulator.scenario import GROUP_PREFIX, Experiment, Pipeline

INIT_SECONDS = 8  # validate, branch, generate configs, create resources: 2 + 1 + 3 + 2 s
ANALYSIS_SECONDS = 10
ROLLBACK_BASE_SECONDS = 2.0
ROLLBACK_SECONDS_PER_AGENT = 0.5
JITTER_PHI = 0.9  # per-tick memory of the reduction's wobble around its drawn mean
JITTER_SD = 0.003
ERROR_BASE = 1e-4  # normal error rate of a healthy pipeline
ERROR_NOISE = 0.08  # relative, clipped at 2.5 sd (see detector.MIN_REL_SD)

# Series per point a pipeline keeps, against what comes in: top-k keeps the heaviest
# series and drops the long tail (fewer series per point); an adaptive filter drops
# points within series (more series per point left).
TEMPLATE_SERIES: dict[str, float] = {
    "baseline": 1.0,
    "topk": 0.8,
    "adaptive_filter": 1.15,
    "hybrid": 0.9,
}
# How much of a cardinality explosion on its agents a pipeline lets through (an
# exponent on the growth): top-k keeps only the heaviest series, a filter passes it on.
TEMPLATE_EXPLOSION: dict[str, float] = {
    "baseline": 1.0,
    "topk": 0.25,
    "adaptive_filter": 1.0,
    "hybrid": 0.6,
}
LIVE = ("initializing", "deploying", "running", "analyzing")
CANCELLABLE = ("created", "initializing", "deploying", "running", "analyzing")


@dataclass
class Effects:
    """What the faults in force do to one experiment at this tick."""

    baseline_factor: float = 1.0
    candidate_factor: float = 1.0
    baseline_cardinality: float = 1.0
    candidate_cardinality: float = 1.0
    error_rate: float | None = None  # the candidate's (what the experiment is judged on)
    baseline_error_rate: float | None = None


@dataclass
class DeploymentRun:
    deployment_id: str
    experiment_id: str
    pipeline_id: str
    variant: str
    started_tick: int
    done_tick: np.ndarray  # per slot, when the agent finishes
    fails: np.ndarray  # per slot, whether it fails
    status: str = "deploying"
    completed: int = 0
    failed: int = 0
    duration_seconds: int = 0

    @property
    def total(self) -> int:
        return int(self.done_tick.size)

    def ids(self) -> dict[str, str]:
        return {
            "deployment_id": self.deployment_id,
            "experiment_id": self.experiment_id,
            "pipeline_id": self.pipeline_id,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.ids(),
            "variant": self.variant,
            "status": self.status,
            "completed": self.completed,
            "total": self.total,
            "failed": self.failed,
            "duration_seconds": self.duration_seconds,
        }


def series_kept(
    baseline: Pipeline, candidate: Pipeline, live: np.ndarray, mps_int: np.ndarray, fleet: Any
) -> tuple[int, tuple[float, float], tuple[float, float]]:
    """For the traffic of these (online) agents: its rate, the series per point each
    pipeline (baseline, candidate) usually passes on, and what it passes on now."""
    source = int(mps_int[live].sum())
    # Series per point of these agents' traffic (weighted by their rates), times what
    # each pipeline keeps of the series it lets through (TEMPLATE_SERIES).
    usual = mps_int[live] * fleet.series_ratio[live]
    ratio = float(usual.sum()) / source if source else 0.0
    usual_b = ratio * TEMPLATE_SERIES.get(baseline.template, 1.0)
    usual_c = ratio * TEMPLATE_SERIES.get(candidate.template, 1.0)
    # An explosion on some of its agents (a fault on a group) reaches it as their mean
    # growth; each pipeline passes it on as much as it keeps series (top-k caps it: that
    # is how an experiment fixes one).
    card = fleet.cardinality
    if not isinstance(card, float):
        card = float((usual * card[live]).sum() / usual.sum()) if usual.sum() else 1.0
    series_b = usual_b * card ** TEMPLATE_EXPLOSION.get(baseline.template, 1.0)
    series_c = usual_c * card ** TEMPLATE_EXPLOSION.get(candidate.template, 1.0)
    return source, (usual_b, usual_c), (series_b, series_c)


@dataclass(frozen=True)
class Promotion:
    """A candidate an experiment promoted: deployed on its agents for good, saving what
    it was measured to save. It outlives its run of the scenario (simulation.loop): the
    fleet goes on running it until the same experiment of a later run is promoted."""

    id: str  # the experiment's id in its run (exp-789, exp-789-run2)
    spec_id: str  # the scenario's experiment
    agents: np.ndarray
    baseline: Pipeline
    candidate: Pipeline
    reduction_b: float  # the baseline pipeline's own reduction on these agents
    reduction: float  # the candidate's, against the baseline's: total_reduction

    def saving(self, mps_int: np.ndarray, online: np.ndarray, fleet: Any) -> tuple[float, float]:
        """mps and series it saves now, on its online agents."""
        agents = self.agents
        source, _, (series_b, series_c) = series_kept(
            self.baseline, self.candidate, agents[online[agents]], mps_int, fleet
        )
        kept_b = source * (1 - self.reduction_b)
        return float(source) * (1 - self.reduction_b) * self.reduction, (
            kept_b * series_b - kept_b * (1 - self.reduction) * series_c
        )


@dataclass
class ExperimentRun:
    spec: Experiment
    baseline: Pipeline
    candidate: Pipeline
    model_rng: np.random.Generator
    deploy_rng: np.random.Generator
    status: str = "pending"  # not yet created
    slots: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    in_use: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    deployments: list[DeploymentRun] = field(default_factory=list)
    phase_until: int = 0
    run_start: float | None = None
    run_end: float | None = None  # when it stopped running (progress freezes there)
    cancel_requested: bool = False  # cancelled while still pending
    next_progress: float = math.inf
    progress_every: float = 30.0
    metrics: dict[str, Any] = field(default_factory=dict)
    reduction_b: float = 0.0
    reduction_c: float = 0.0
    error_base: float = ERROR_BASE
    jitter_b: float = 0.0
    jitter_c: float = 0.0
    above_since: float | None = None
    reduction_sum: float = 0.0
    error_sum: float = 0.0
    loss_sum: float = 0.0  # share of the candidate's points lost to faults, summed
    losing_since: float | None = None
    ticks: int = 0
    cost_saved: float = 0.0
    winner: str | None = None
    final_metrics: dict[str, Any] | None = None
    error: str | None = None
    rollback_initiated: bool = False
    series_per_point: tuple[float, float] = (0.0, 0.0)  # baseline, candidate, this tick
    # "-run2", ... from a scenario's second run on (simulation.loop): a new experiment
    # gets a new id, or a client's store keyed by id would mix the two.
    suffix: str = ""

    @property
    def id(self) -> str:
        return self.spec.id + self.suffix

    @property
    def agents(self) -> np.ndarray:
        """Agents the experiment measures: deployed on both variants."""
        return self.slots[self.in_use]

    def tags(self) -> dict[str, str]:
        return {"experiment_id": self.id}

    def event(self, t: float, name: str, data: dict[str, Any]) -> Event:
        return Event(t, "experiments", name, data, self.tags())

    def public_metrics(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "baseline_mps": m.get("baseline_mps", 0),
            "candidate_mps": m.get("candidate_mps", 0),
            "reduction_rate": m.get("reduction_rate", 0.0),
        }

    def progress(self, t: float) -> float:
        if self.status in ("analyzing", "completed"):
            return 1.0
        if self.run_start is None:
            return 0.0
        if self.run_end is not None:
            t = min(t, self.run_end)
        return round(min(1.0, max(0.0, (t - self.run_start) / self.spec.duration)), 4)

    def updated(self, t: float) -> Event:
        return self.event(
            t,
            "experiment.updated",
            {
                "id": self.id,
                "status": self.status,
                "progress": self.progress(t),
                "metrics": self.public_metrics(),
            },
        )

    def to_dict(self, t: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.spec.name,
            "status": self.status,
            "baseline_pipeline_id": self.baseline.id,
            "candidate_pipeline_id": self.candidate.id,
            "progress": self.progress(t),
            "metrics": {**self.public_metrics(), "error_rate": self.metrics.get("error_rate", 0.0)},
            "start_time": None if self.run_start is None else rfc3339(self.run_start),
            "target_reduction": self.spec.target_reduction,
            "max_error_rate": self.spec.max_error_rate,
            "agent_count": int(self.agents.size),
            "winner": self.winner,
            "final_metrics": self.final_metrics,
            "error": self.error,
            "rollback_initiated": self.rollback_initiated,
        }

    # -- lifecycle, one tick at a time

    def tick(
        self,
        tick: int,
        t: float,
        start: float,
        lab: Lab,
        mps_int: np.ndarray,
        online: np.ndarray,
        effects: Effects,
        prices: Prices,
    ) -> list[Event]:
        spec = self.spec
        out: list[Event] = []
        if self.status == "pending" and t >= start + spec.create_at:
            self.status = "created"
            out.append(
                self.event(
                    t,
                    "experiment.created",
                    {
                        "id": self.id,
                        "name": spec.name,
                        "status": "created",
                        "baseline_pipeline_id": self.baseline.id,
                        "candidate_pipeline_id": self.candidate.id,
                    },
                )
            )
            if self.cancel_requested:
                return out + self.cancel(t)
        if self.status == "created" and t >= start + spec.start_at:
            self.status = "initializing"
            self.phase_until = tick + INIT_SECONDS
            out.append(self.updated(t))
        elif self.status == "initializing" and tick >= self.phase_until:
            out += self._deploy(tick, t, lab)
        elif self.status == "deploying":
            out += self._deploying(tick, t, lab)
            if self.status == "running":
                # Measured from the tick it starts: that tick's metrics.update and
                # cost.update include it (no one-tick gap after experiment.started).
                out += self._running(tick, t, mps_int, online, effects, prices, lab)
        elif self.status == "running":
            out += self._running(tick, t, mps_int, online, effects, prices, lab)
        elif self.status == "analyzing" and tick >= self.phase_until:
            out += self._conclude(t)
        elif self.status == "failed" and self.rollback_initiated and tick >= self.phase_until:
            self.status = "rolled_back"
            for dep in self.deployments:
                if dep.variant == "candidate":
                    dep.status = "rolled_back"
            out.append(self.updated(t))
        return out

    def _deploy(self, tick: int, t: float, lab: Lab) -> list[Event]:
        self.status = "deploying"
        out = [self.updated(t)]
        chosen = lab.choose_agents(self, self.spec.agents)
        if chosen.size == 0:
            among = " among its listed agents" if self.spec.agent_ids is not None else ""
            if self.spec.group is not None:
                among = f" in group '{self.spec.group}'"
            return out + self._fail(
                tick, t, f"No online agent{among} can run pipeline '{self.candidate.id}'"
            )
        self.slots = chosen
        self.in_use = np.ones(chosen.size, dtype=bool)
        # The pipelines' true behaviour on this traffic, drawn as they are deployed: it
        # already shows, agent by agent, in the cost while the rollout goes on.
        self.reduction_b = self._draw_reduction(self.baseline)
        self.reduction_c = self._draw_reduction(self.candidate)
        self.error_base = ERROR_BASE * float(np.exp(0.2 * self.model_rng.standard_normal()))
        dep = self.spec.deployment
        for pipeline, variant in ((self.baseline, "baseline"), (self.candidate, "candidate")):
            n = chosen.size
            seconds = dep.seconds_per_agent * self.deploy_rng.uniform(0.7, 1.3, n)
            done = np.zeros(n)
            for lane in range(min(dep.parallel, n)):
                done[lane :: dep.parallel] = np.cumsum(seconds[lane :: dep.parallel])
            fails = self.deploy_rng.random(n) < dep.failure_probability
            run = DeploymentRun(
                deployment_id=lab.next_deployment_id(),
                experiment_id=self.id,
                pipeline_id=pipeline.id,
                variant=variant,
                started_tick=tick,
                done_tick=tick + np.ceil(done).astype(np.int64),
                fails=fails,
            )
            self.deployments.append(run)
            out.append(
                Event(
                    t,
                    "deployments",
                    "deployment.started",
                    {
                        "deployment_id": run.deployment_id,
                        "pipeline_id": run.pipeline_id,
                        "agent_count": run.total,
                        "variant": variant,
                        "experiment_id": self.id,
                    },
                    run.ids(),
                )
            )
        return out

    def _deploying(self, tick: int, t: float, lab: Lab) -> list[Event]:
        out: list[Event] = []
        for dep in self.deployments:
            if dep.status != "deploying":
                continue
            now = dep.done_tick == tick
            if now.any():
                dep.completed += int((now & ~dep.fails).sum())
                dep.failed += int((now & dep.fails).sum())
                out.append(
                    Event(
                        t,
                        "deployments",
                        "deployment.progress",
                        {
                            "deployment_id": dep.deployment_id,
                            "completed": dep.completed,
                            "total": dep.total,
                            "failed": dep.failed,
                            "experiment_id": self.id,
                            "pipeline_id": dep.pipeline_id,
                        },
                        dep.ids(),
                    )
                )
            if dep.completed + dep.failed == dep.total:
                too_many = dep.failed > self.spec.deployment.max_failed_fraction * dep.total
                dep.status = "failed" if too_many else "active"
                dep.duration_seconds = tick - dep.started_tick
                out.append(
                    Event(
                        t,
                        "deployments",
                        "deployment.completed",
                        {
                            "deployment_id": dep.deployment_id,
                            "status": dep.status,
                            "duration_seconds": dep.duration_seconds,
                            "agent_count": dep.total,
                            "completed": dep.completed,
                            "failed": dep.failed,
                            "experiment_id": self.id,
                            "pipeline_id": dep.pipeline_id,
                        },
                        dep.ids(),
                    )
                )
        if any(d.status == "deploying" for d in self.deployments):
            return out
        broken = [d for d in self.deployments if d.status == "failed"]
        if broken:
            # The worst first: the reason must blame the deployment that failed most.
            broken.sort(key=lambda d: d.failed / max(1, d.total), reverse=True)
            what = "; ".join(f"{d.failed} of {d.total} agents failed ({d.variant})" for d in broken)
            return out + self._fail(tick, t, f"Deployment failed: {what}")
        for dep in self.deployments:
            self.in_use &= ~dep.fails
        # Both variants' successful agent deployments: the reference's deployment_count.
        count = sum(d.completed for d in self.deployments)
        self.status = "running"
        self.run_start = t
        self.progress_every = lab.progress_interval
        self.next_progress = t + self.progress_every
        out.append(
            self.event(
                t,
                "experiment.started",
                {
                    "id": self.id,
                    "status": "running",
                    "start_time": rfc3339(t),
                    "deployment_count": count,
                    "agent_count": int(self.agents.size),
                },
            )
        )
        return out

    def _draw_reduction(self, pipeline: Pipeline) -> float:
        # The pipeline's true reduction on this experiment's traffic: drawn once, so the
        # outcome (does it meet the target?) is a property of the run, not of a tick.
        if pipeline.noise == 0:
            return pipeline.reduction
        value = pipeline.reduction + pipeline.noise * self.model_rng.standard_normal()
        return float(min(0.99, max(0.0, value)))

    def _running(
        self,
        tick: int,
        t: float,
        mps_int: np.ndarray,
        online: np.ndarray,
        effects: Effects,
        prices: Prices,
        lab: Lab,
    ) -> list[Event]:
        rng = self.model_rng
        shocks = np.clip(rng.standard_normal(3), -2.5, 2.5)
        keep = math.sqrt(1 - JITTER_PHI**2) * JITTER_SD
        self.jitter_b = JITTER_PHI * self.jitter_b + keep * float(shocks[0])
        self.jitter_c = JITTER_PHI * self.jitter_c + keep * float(shocks[1])
        agents = self.agents
        live = agents[online[agents]]
        source, usual, (series_b, series_c) = series_kept(
            self.baseline, self.candidate, live, mps_int, lab.fleet
        )
        self.series_per_point = usual  # for the detector: what is usual
        r_b = self.reduction_b + (self.jitter_b if self.baseline.noise else 0.0)
        r_c = self.reduction_c + (self.jitter_c if self.candidate.noise else 0.0)
        base = int(round(source * (1 - min(0.999, max(0.0, r_b))) * effects.baseline_factor))
        cand = int(round(source * (1 - min(0.999, max(0.0, r_c))) * effects.candidate_factor))
        level = self.error_base if effects.error_rate is None else effects.error_rate
        error_rate = level * (1 + ERROR_NOISE * float(shocks[2]))
        # The baseline's own error rate: its usual level with the same noise, or a surge
        # aimed at it. Not what the experiment is judged on (the candidate's is).
        level_b = (
            self.error_base if effects.baseline_error_rate is None else effects.baseline_error_rate
        )
        baseline_error_rate = level_b * (1 + ERROR_NOISE * float(shocks[2]))
        reduction = 1 - cand / base if base > 0 else 0.0
        # Points the candidate lost (a sudden_drop on it) are data loss, not reduction:
        # judged on what the pipeline itself keeps, and counted against it.
        loss = max(0.0, 1.0 - effects.candidate_factor)
        judged = reduction
        if loss > 0 and base > 0:
            judged = 1 - (cand / effects.candidate_factor if effects.candidate_factor else 0) / base
        self.metrics = {
            "baseline_mps": base,
            "candidate_mps": cand,
            "reduction_rate": round(reduction, 4),
            "error_rate": float(f"{error_rate:.3g}"),
            "baseline_error_rate": float(f"{baseline_error_rate:.3g}"),
            "baseline_series": int(round(base * series_b * effects.baseline_cardinality)),
            "candidate_series": int(round(cand * series_c * effects.candidate_cardinality)),
        }
        self.ticks += 1
        self.reduction_sum += judged
        self.error_sum += error_rate
        self.loss_sum += loss
        self.cost_saved += prices.per_second(
            base - cand, self.metrics["baseline_series"] - self.metrics["candidate_series"]
        )
        out: list[Event] = []
        # Either limit exceeded for abort_after fails the run: errors, or lost data.
        self.above_since = _since(self.above_since, error_rate > self.spec.max_error_rate, t)
        self.losing_since = _since(self.losing_since, loss > self.spec.max_data_loss, t)
        if self.above_since is not None and t - self.above_since >= self.spec.abort_after:
            return self._fail(
                tick,
                t,
                f"High error rate detected: {self.metrics['error_rate']} above "
                f"{self.spec.max_error_rate:g} for {int(t - self.above_since)}s",
            )
        if self.losing_since is not None and t - self.losing_since >= self.spec.abort_after:
            return self._fail(
                tick,
                t,
                f"Data loss detected: {loss:.0%} of the candidate's points lost for "
                f"{int(t - self.losing_since)}s (at most {self.spec.max_data_loss:g})",
            )
        assert self.run_start is not None
        if t - self.run_start >= self.spec.duration:
            self.status = "analyzing"
            self.run_end = t
            self.phase_until = tick + ANALYSIS_SECONDS
            out.append(self.updated(t))
        elif t >= self.next_progress:
            self.next_progress += self.progress_every
            out.append(self.updated(t))
        return out

    def _conclude(self, t: float) -> list[Event]:
        mean_reduction = self.reduction_sum / max(1, self.ticks)
        mean_error = self.error_sum / max(1, self.ticks)
        mean_loss = self.loss_sum / max(1, self.ticks)
        won = (
            mean_reduction >= self.spec.target_reduction
            and mean_error <= self.spec.max_error_rate
            and mean_loss <= self.spec.max_data_loss
        )
        self.winner = "candidate" if won else "baseline"
        self.status = "completed"
        self.final_metrics = {
            "total_reduction": round(mean_reduction, 4),
            "cost_saved_usd": money(self.cost_saved),
            "duration_hours": round(self.spec.duration / 3600, 2),
            "data_loss_rate": round(mean_loss, 4),
        }
        for dep in self.deployments:
            if dep.status == "active" and (dep.variant == "candidate") != won:
                dep.status = "stopped"
        return [
            self.event(
                t,
                "experiment.completed",
                {
                    "id": self.id,
                    "status": "completed",
                    "winner": self.winner,
                    "final_metrics": dict(self.final_metrics),
                    "target_reduction": self.spec.target_reduction,
                },
            )
        ]

    def _fail(self, tick: int, t: float, error: str) -> list[Event]:
        if self.status == "running":
            self.run_end = t
        self.status = "failed"
        self.error = error
        self.rollback_initiated = self.spec.rollback and bool(self.deployments)
        if self.rollback_initiated:
            n = max((d.total for d in self.deployments), default=0)
            self.phase_until = tick + math.ceil(
                ROLLBACK_BASE_SECONDS + ROLLBACK_SECONDS_PER_AGENT * n
            )
        else:
            for dep in self.deployments:
                if dep.status in ("active", "deploying"):
                    dep.status = "stopped"
        return [
            self.event(
                t,
                "experiment.failed",
                {
                    "id": self.id,
                    "status": "failed",
                    "error": error,
                    "rollback_initiated": self.rollback_initiated,
                },
            )
        ]

    def cancel(self, t: float) -> list[Event]:
        if self.status == "pending":
            # Accepted now, carried out when the experiment is created.
            self.cancel_requested = True
            return []
        if self.status not in CANCELLABLE:
            return []
        if self.status == "running":
            self.run_end = t
        self.status = "cancelled"
        for dep in self.deployments:
            if dep.status in ("active", "deploying"):
                dep.status = "stopped"
        return [self.updated(t)]

    def rollout_saving(
        self, tick: int, mps_int: np.ndarray, online: np.ndarray, fleet: Any
    ) -> tuple[float, float]:
        """mps and series saved while the candidate is deployed: only on the agents where
        its deployment has completed, so savings ramp up with the rollout."""
        cand = next((d for d in self.deployments if d.variant == "candidate"), None)
        if cand is None or self.slots.size != cand.total:
            return 0.0, 0.0
        done = (cand.done_tick <= tick) & ~cand.fails
        agents = self.slots[done]
        source, _, (series_b, series_c) = series_kept(
            self.baseline, self.candidate, agents[online[agents]], mps_int, fleet
        )
        kept_b, kept_c = source * (1 - self.reduction_b), source * (1 - self.reduction_c)
        return source * max(0.0, self.reduction_c - self.reduction_b), (
            kept_b * series_b - kept_c * series_c
        )

    def promotion(self) -> Promotion | None:
        """Its candidate, once promoted (completed, the candidate the winner)."""
        if self.status != "completed" or self.winner != "candidate":
            return None
        return Promotion(
            self.id,
            self.spec.id,
            self.agents,
            self.baseline,
            self.candidate,
            self.reduction_b,
            (self.final_metrics or {})["total_reduction"],
        )


class Lab:
    """What experiments share: deployment ids, agent choice and reassignment."""

    def __init__(
        self,
        fleet: Any,
        progress_interval: float,
        deployments: int = 0,
        carried: tuple[Promotion, ...] = (),
    ) -> None:
        self.fleet = fleet
        self.progress_interval = progress_interval
        self.runs: list[ExperimentRun] = []
        self._deployments = deployments  # ids handed out before (an earlier run's)
        self._carried = carried  # earlier runs' promotions, still deployed

    def standing(self) -> list[Promotion]:
        """Earlier runs' promoted candidates still deployed: each until this run's same
        experiment is promoted in its place."""
        replaced = {run.spec.id for run in self.runs if run.promotion() is not None}
        return [p for p in self._carried if p.spec_id not in replaced]

    def promotions(self) -> list[Promotion]:
        """Every promoted candidate deployed now (what the next run takes over)."""
        mine = [p for p in (run.promotion() for run in self.runs) if p is not None]
        return self.standing() + mine

    def predecessor(self, run: ExperimentRun) -> Promotion | None:
        """The promotion an earlier run of the same experiment left deployed."""
        return next((p for p in self._carried if p.spec_id == run.spec.id), None)

    @property
    def deployments_issued(self) -> int:
        return self._deployments

    def next_deployment_id(self) -> str:
        self._deployments += 1
        return f"dep-{self._deployments}"

    def busy(self, exclude: ExperimentRun | None = None) -> np.ndarray:
        """Agents already carrying a live experiment or a promoted candidate (other than
        `exclude` and its own earlier promotion)."""
        mask = np.zeros(self.fleet.size, dtype=bool)
        for run in self.runs:
            if run is exclude:
                continue
            if run.status in LIVE or (run.status == "completed" and run.winner == "candidate"):
                mask[run.slots] = True
        for p in self.standing():
            if exclude is None or p.spec_id != exclude.spec.id:
                mask[p.agents] = True
        return mask

    def _capable(self, run: ExperimentRun) -> np.ndarray:
        """Agents that can run both of the run's pipelines (in its group, if it has one)."""
        capable = self.fleet.capable(run.candidate.template) & self.fleet.capable(
            run.baseline.template
        )
        if run.spec.group is not None:
            capable &= self.fleet.mask(GROUP_PREFIX + run.spec.group)
        elif run.spec.agent_ids is not None:
            capable &= self.fleet.mask(run.spec.agent_ids)
        return capable

    def choose_agents(self, run: ExperimentRun, count: int) -> np.ndarray:
        capable = self._capable(run)
        prior = self.predecessor(run)
        again = np.zeros(0, dtype=np.int64)
        if prior is not None:
            # The same experiment in a later run re-tests its earlier promotion's agents
            # in place: the fleet's savings then go on with no step, whether it is
            # promoted in its place or fails and leaves the earlier one running.
            again = prior.agents[capable[prior.agents]][:count]
            capable[again] = False
            count -= again.size
            if count == 0:
                return np.sort(again)
        # Prefer agents no other experiment uses, so savings are never counted twice.
        free = np.flatnonzero(capable & ~self.busy(run))
        pool = free if free.size >= count else np.flatnonzero(capable)
        if pool.size > count:
            pool = run.deploy_rng.choice(pool, size=count, replace=False)
        return np.sort(np.concatenate([again, pool])) if again.size else np.sort(pool)

    def reassign(self, agent: int) -> tuple[int, list[ExperimentRun]]:
        """Move a departing agent's tasks to other agents; returns (tasks, experiments)."""
        tasks = 0
        touched: list[ExperimentRun] = []
        for run in self.runs:
            if run.status not in ("deploying", "running", "analyzing"):
                continue
            where = np.flatnonzero(run.slots == agent)
            if where.size == 0:
                continue
            slot = int(where[0])
            if run.status == "deploying":
                tasks += sum(1 for d in run.deployments if not d.fails[slot])
            elif run.in_use[slot]:
                tasks += len(run.deployments)
            else:
                continue
            capable = self._capable(run)
            capable[run.slots] = False
            free = np.flatnonzero(capable & ~self.busy(run))
            pool = free if free.size else np.flatnonzero(capable)
            if pool.size:
                run.slots[slot] = int(run.deploy_rng.choice(pool))
            touched.append(run)
        return tasks, touched


def _since(since: float | None, over: bool, t: float) -> float | None:
    """When a limit began to be exceeded (kept while it is), None once it is not."""
    if not over:
        return None
    return t if since is None else since
