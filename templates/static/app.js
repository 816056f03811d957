/* Phoenix simulator page: connects to /ws by itself and shows the fleet, experiments,
 * deployments, alerts and cost live, with a bounded event log and (for an admin token)
 * the simulation controls.
 *
 * Flow: get a token (a pasted one from sessionStorage, else a viewer token from
 * POST /api/token on loopback) -> open /ws -> load the HTTP snapshots -> subscribe with
 * `since` = the snapshots' last event id, so nothing between the snapshot and the
 * subscription is lost -> apply events. Reconnects with the reference's backoff:
 * delay = min(1000 * 2^attempts, 30000) ms.
 *
 * Data from the server is only ever put in the page with textContent / createElement:
 * never as HTML.
 */
(function () {
  "use strict";

  const CHANNELS = ["experiments", "metrics", "agents", "deployments", "alerts", "cost-flow"];
  const LOG_MAX = 200;
  const HISTORY_MAX = 1500; // chart points kept per experiment
  const TREND_MAX = 720; // points kept per fleet / cost chart (and asked of the server's history)
  const MARKERS_MAX = 200; // markers kept for the fleet and cost charts
  const MARKERS_SHOWN = 8; // of which the list under them shows the latest
  const MAX_STEP = 3600; // simulated seconds per `step` (the server's bound)
  const RECENT_MAX = 6; // joins/leaves, finished deployments, resolved alerts shown
  const DEDUPE_MAX = 5000;
  const POLL_MS = 3000;
  // Tests may shorten the timers (set before the script runs); nothing else reads this.
  const TUNE = window.__phoenixTest && typeof window.__phoenixTest === "object" ? window.__phoenixTest : {};
  const PING_MS = Number(TUNE.pingMs) || 20000;
  const REQUEST_TIMEOUT_MS = Number(TUNE.requestTimeoutMs) || 10000;
  const TOKEN_REFRESH_MS = 60000; // fetch a new page token this long before it expires
  const MAX_RESYNCS = 3; // full reloads in a row after `recovered: false`
  const TOKEN_KEY = "phoenix.token";
  const DONE_DEPLOYMENT = new Set(["active", "completed", "failed", "rolled_back", "cancelled"]);
  const CLOSE_MEANING = {
    1000: "normal closure",
    1001: "server going away",
    1006: "connection lost",
    1008: "policy violation",
    1009: "message too big",
    1011: "server error",
    1012: "server restarting",
    1013: "slow consumer, try again later",
    4000: "closed by the page",
    4001: "unauthorized",
    4029: "rate limited",
  };

  const body = document.body;
  const PAGE_TOKEN = body.dataset.pageToken === "true";
  const $ = (id) => document.getElementById(id);

  // --- small DOM helpers (text only) -------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // The status words the stylesheet colours: only these ever become a class.
  const BADGE_CLASSES = new Set([
    "running", "active", "healthy", "completed", "deploying", "initializing", "analyzing",
    "created", "warning", "degraded", "failed", "rolled_back", "critical", "cancelled",
    "offline", "info", "unhealthy",
  ]);

  function badge(text) {
    const b = el("span", "badge", text);
    if (typeof text === "string" && BADGE_CLASSES.has(text)) b.classList.add(text);
    return b;
  }

  function progressBar(fraction, label, cls) {
    const pct = Math.max(0, Math.min(100, Math.round((Number(fraction) || 0) * 100)));
    const bar = el("div", "bar" + (cls ? " " + cls : ""));
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.setAttribute("aria-label", label);
    const fill = el("span");
    fill.style.width = pct + "%";
    bar.append(fill);
    return bar;
  }

  function fillList(list, items, emptyText) {
    if (!items.length) {
      list.replaceChildren(el("li", "empty", emptyText));
    } else {
      list.replaceChildren(...items);
    }
  }

  // --- formatting ----------------------------------------------------------------------

  const usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });

  function num(n) {
    if (typeof n !== "number" || !isFinite(n)) return "—";
    const a = Math.abs(n);
    if (a >= 1e9) return (n / 1e9).toFixed(2) + "G";
    if (a >= 1e6) return (n / 1e6).toFixed(2) + "M";
    if (a >= 1e4) return (n / 1e3).toFixed(1) + "k";
    if (a >= 100 || Number.isInteger(n)) return String(Math.round(n));
    if (a < 0.01) return n.toExponential(2);
    return n.toPrecision(3);
  }
  // Axis ticks: as short as they can be ("1.5M", "500k", "$364").
  function short(n) {
    if (typeof n !== "number" || !isFinite(n)) return "";
    const a = Math.abs(n);
    const cut = (v) => String(Number(v.toPrecision(3)));
    if (a >= 1e9) return cut(n / 1e9) + "G";
    if (a >= 1e6) return cut(n / 1e6) + "M";
    if (a >= 1e3) return cut(n / 1e3) + "k";
    return cut(n);
  }
  const money = (n) => (typeof n === "number" && isFinite(n) ? usd.format(n) : "—");
  const pct = (r) => (typeof r === "number" && isFinite(r) ? (r * 100).toFixed(1) + "%" : "—");

  function parseTime(iso) {
    const t = Date.parse(iso);
    return isNaN(t) ? null : t;
  }
  function clock(ms) {
    return ms === null ? "—" : new Date(ms).toISOString().slice(11, 19);
  }
  function stamp(ms) {
    return ms === null ? "—" : new Date(ms).toISOString().slice(0, 19).replace("T", " ") + "Z";
  }
  function seqOf(id) {
    const m = typeof id === "string" && /^evt-(\d+)$/.exec(id);
    return m ? Number(m[1]) : 0;
  }

  // --- state ---------------------------------------------------------------------------

  const state = {
    experiments: new Map(),
    history: new Map(), // experiment id -> {t: [], b: [], c: []}
    agents: new Map(),
    global: null, // metrics.update global part
    fleetChanges: [],
    deployments: new Map(),
    deploymentsDone: [],
    alerts: new Map(),
    resolved: [],
    anomalies: [],
    cost: null,
    sim: null, // GET /api/sim
    simTime: null, // ms
    fleetTrend: null, // series(3): total mps, series, active agents
    costTrend: null, // series(3): baseline, optimized, savings per hour
    markers: [], // on the fleet and cost charts, sorted by time
  };

  function resetState() {
    state.experiments.clear();
    state.history.clear();
    state.agents.clear();
    state.global = null;
    state.fleetChanges = [];
    state.deployments.clear();
    state.deploymentsDone = [];
    state.alerts.clear();
    state.resolved = [];
    state.anomalies = [];
    state.cost = null;
    latestSeq.global = latestSeq.cost = 0;
    chartDirty = true;
  }

  // The server's history and a replay may overlap: an older update must not replace the
  // latest one (ids increase for the life of the server, across restarts too).
  const latestSeq = { global: 0, cost: 0 };
  function newest(msg, what) {
    const seq = seqOf(msg.id);
    if (seq && seq < latestSeq[what]) return false;
    latestSeq[what] = seq;
    return true;
  }

  function pushRecent(list, item, max) {
    list.unshift(item);
    if (list.length > (max || RECENT_MAX)) list.length = max || RECENT_MAX;
  }

  function noteTime(iso, force) {
    const t = parseTime(iso);
    if (t === null) return;
    if (force || state.simTime === null || t > state.simTime) {
      state.simTime = t;
      touch("clock");
    }
  }

  function experiment(id) {
    let exp = state.experiments.get(id);
    if (!exp) {
      exp = { id: id, name: id, status: "created" };
      state.experiments.set(id, exp);
      touch("expList");
    }
    return exp;
  }

  function addPoint(id, iso, metrics) {
    const t = parseTime(iso);
    if (t === null || !metrics) return;
    const b = metrics.baseline_mps;
    const c = metrics.candidate_mps;
    // Nothing measured yet (created, deploying): no point, rather than a dive to zero.
    if (!(b > 0) && !(c > 0)) return;
    let h = state.history.get(id);
    if (!h) {
      h = { t: [], b: [], c: [] };
      state.history.set(id, h);
    }
    const x = t / 1000;
    // Kept sorted: usually appended, but the server's history comes after the snapshot.
    let i = h.t.length;
    while (i > 0 && h.t[i - 1] > x) i--;
    if (i > 0 && h.t[i - 1] === x) {
      h.b[i - 1] = typeof b === "number" ? b : null;
      h.c[i - 1] = typeof c === "number" ? c : null;
    } else {
      h.t.splice(i, 0, x);
      h.b.splice(i, 0, typeof b === "number" ? b : null);
      h.c.splice(i, 0, typeof c === "number" ? c : null);
      if (h.t.length > HISTORY_MAX) {
        h.t.shift();
        h.b.shift();
        h.c.shift();
      }
    }
    if (id === chartExp) chartDirty = true;
  }

  // The server's filter rule: an item naming another experiment is out, one without the
  // key passes. The HTTP snapshots are unfiltered, the events are not.
  function inFilter(item) {
    return !filterExp || !item || typeof item.experiment_id !== "string" || item.experiment_id === filterExp;
  }

  // A snapshot the token may not read is null: that part of the state stays empty.
  function applySnapshot(raw) {
    resetState();
    const snap = {
      experiments: raw.experiments || {},
      agents: raw.agents || {},
      deployments: raw.deployments || {},
      alerts: raw.alerts || {},
    };
    for (const e of snap.experiments.experiments || []) {
      if (!e || typeof e.id !== "string") continue;
      state.experiments.set(e.id, Object.assign({}, e));
      addPoint(e.id, snap.experiments.as_of, e.metrics);
    }
    for (const a of snap.agents.agents || []) {
      if (!a || typeof a.agent_id !== "string") continue;
      state.agents.set(a.agent_id, Object.assign({}, a));
      if (a.status === "offline") state.fleetChanges.push({ kind: "leave", at: a.last_seen, data: a });
    }
    state.fleetChanges.sort((x, y) => (parseTime(y.at) || 0) - (parseTime(x.at) || 0));
    state.fleetChanges.length = Math.min(state.fleetChanges.length, RECENT_MAX);
    for (const d of snap.deployments.deployments || []) {
      if (!d || typeof d.deployment_id !== "string" || !inFilter(d)) continue;
      if (DONE_DEPLOYMENT.has(d.status)) state.deploymentsDone.push(d);
      else state.deployments.set(d.deployment_id, Object.assign({}, d));
    }
    state.deploymentsDone = state.deploymentsDone.slice(-RECENT_MAX).reverse();
    for (const a of snap.alerts.alerts || []) {
      if (!a || typeof a.alert_id !== "string" || !inFilter(a)) continue;
      if (a.status === "resolved" || a.resolved_at) pushRecent(state.resolved, a);
      else state.alerts.set(a.alert_id, Object.assign({}, a));
    }
    touch("all");
  }

  // One event -> state. Unknown events only reach the log.
  function apply(msg) {
    const d = msg.data && typeof msg.data === "object" ? msg.data : {};
    switch (msg.event) {
      case "experiment.created":
      case "experiment.started":
      case "experiment.updated":
      case "experiment.completed":
      case "experiment.failed": {
        if (typeof d.id !== "string") return;
        const exp = experiment(d.id);
        const before = exp.name;
        Object.assign(exp, d);
        if (d.metrics) addPoint(d.id, msg.timestamp, d.metrics);
        if (msg.event === "experiment.completed") exp.progress = 1;
        if (exp.name !== before || msg.event === "experiment.created") touch("expList");
        touch("experiments", "cost");
        return;
      }
      case "metrics.update": {
        if (d.global && newest(msg, "global")) state.global = d.global;
        fleetPoint(msg);
        const exps = d.experiments && typeof d.experiments === "object" ? d.experiments : {};
        for (const id of Object.keys(exps)) {
          const exp = experiment(id);
          exp.metrics = Object.assign({}, exp.metrics, exps[id]);
          addPoint(id, d.timestamp || msg.timestamp, exps[id]);
        }
        touch("fleet", "experiments");
        return;
      }
      case "metrics.anomaly":
        if (!inFilter(d) || state.anomalies.some((a) => a.id === msg.id)) return;
        pushRecent(state.anomalies, Object.assign({ at: msg.timestamp, id: msg.id }, d));
        eventMarker(msg);
        touch("alerts");
        return;
      case "agent.connected":
        if (typeof d.agent_id !== "string") return;
        state.agents.set(d.agent_id, Object.assign({ status: "healthy" }, state.agents.get(d.agent_id), d, { status: "healthy" }));
        pushRecent(state.fleetChanges, { kind: "join", at: msg.timestamp, data: d });
        touch("fleet");
        return;
      case "agent.heartbeat": {
        if (typeof d.agent_id !== "string") return;
        const agent = state.agents.get(d.agent_id);
        if (agent) Object.assign(agent, d);
        else state.agents.set(d.agent_id, Object.assign({}, d));
        touch("fleet");
        return;
      }
      case "agent.disconnected":
        if (typeof d.agent_id !== "string") return;
        state.agents.set(d.agent_id, Object.assign({}, state.agents.get(d.agent_id), d, { status: "offline" }));
        pushRecent(state.fleetChanges, { kind: "leave", at: msg.timestamp, data: d });
        touch("fleet");
        return;
      case "deployment.started": {
        if (typeof d.deployment_id !== "string") return;
        // Merge: a started that arrives after progress (replay overlap, reorder) must
        // not put the counts back to zero.
        const known = state.deployments.get(d.deployment_id);
        state.deployments.set(
          d.deployment_id,
          Object.assign({ status: "deploying", completed: 0, failed: 0, total: d.agent_count }, known, d, known && {
            completed: known.completed,
            failed: known.failed,
            status: known.status || "deploying",
          })
        );
        eventMarker(msg);
        touch("deployments");
        return;
      }
      case "deployment.progress": {
        if (typeof d.deployment_id !== "string") return;
        const dep = state.deployments.get(d.deployment_id);
        if (dep) Object.assign(dep, d);
        else state.deployments.set(d.deployment_id, Object.assign({ status: "deploying" }, d));
        touch("deployments");
        return;
      }
      case "deployment.completed": {
        if (typeof d.deployment_id !== "string") return;
        const dep = Object.assign({}, state.deployments.get(d.deployment_id), d);
        state.deployments.delete(d.deployment_id);
        pushRecent(state.deploymentsDone, dep);
        touch("deployments");
        return;
      }
      case "alert.triggered":
        if (typeof d.alert_id !== "string") return;
        state.alerts.set(d.alert_id, Object.assign({ triggered_at: msg.timestamp }, d));
        eventMarker(msg);
        touch("alerts");
        return;
      case "alert.resolved": {
        if (typeof d.alert_id !== "string") return;
        const alert = Object.assign({}, state.alerts.get(d.alert_id), d);
        state.alerts.delete(d.alert_id);
        pushRecent(state.resolved, alert);
        touch("alerts");
        return;
      }
      case "cost.update":
        if (newest(msg, "cost")) state.cost = d;
        costPoint(msg);
        touch("cost");
        return;
      default:
        return;
    }
  }

  // --- rendering (batched once per frame) --------------------------------------------------

  // At most RENDER_MS apart: a firehose scenario sends thousands of events a second and
  // the page must keep reading them (or the server drops it as a slow consumer); the DOM
  // only needs to change a few times a second. rAF skips the work in a hidden tab.
  const RENDER_MS = 250;
  const dirty = new Set();
  let renderQueued = false;
  let chartDirty = false;
  let lastRender = 0;

  function touch() {
    for (const part of arguments) dirty.add(part);
    if (!renderQueued) {
      renderQueued = true;
      const wait = Math.max(0, lastRender + RENDER_MS - performance.now());
      setTimeout(() => requestAnimationFrame(render), wait);
    }
  }

  function render() {
    renderQueued = false;
    lastRender = performance.now();
    const all = dirty.has("all");
    if (all || dirty.has("clock")) renderClock();
    if (all || dirty.has("sim")) renderSim();
    if (all || dirty.has("fleet")) renderFleet();
    if (all || dirty.has("expList")) renderExperimentChoices();
    if (all || dirty.has("experiments")) {
      renderExperiments();
      pickChartExperiment();
    }
    if (all || dirty.has("deployments")) renderDeployments();
    if (all || dirty.has("alerts")) renderAlerts();
    if (all || dirty.has("cost") || dirty.has("experiments")) renderCost();
    if (all || dirty.has("log")) flushLog();
    if (all || dirty.has("timeline") || dirty.has("clock") || dirty.has("sim")) renderTimeline();
    if (all || dirty.has("markers")) renderMarkers();
    dirty.clear();
    if (chartDirty) renderChart();
    if (trendsDirty) renderTrends();
  }

  function renderClock() {
    $("sim-time").textContent = stamp(state.simTime);
    if (state.simTime !== null) $("sim-time").setAttribute("datetime", new Date(state.simTime).toISOString());
  }

  let faultsKey = "";
  function renderSim() {
    const s = state.sim;
    const mode = $("sim-mode");
    mode.hidden = !s;
    if (!s) return;
    mode.textContent = s.finished ? "finished" : s.paused ? "paused" : "×" + s.speed;
    // The speed box shows the speed in force (set here, by another admin or by --speed),
    // except while someone is typing a new one into it.
    const speedInput = $("speed-input");
    if (document.activeElement !== speedInput && typeof s.speed === "number") {
      speedInput.value = String(s.speed);
    }
    $("scenario-name").textContent = s.scenario || "";
    const parts = [
      "Scenario " + (s.scenario || "?"),
      "seed " + (s.seed === null || s.seed === undefined ? "—" : s.seed),
      "speed ×" + s.speed,
      s.finished ? "finished" : s.paused ? "paused" : "running",
    ];
    if (s.pause_at) parts.push("pausing at " + clock(parseTime(s.pause_at)));
    if (s.lag_seconds > 0.5) parts.push("lagging " + s.lag_seconds + " s");
    $("sim-summary").textContent = parts.join(" · ");
    // Delivery faults in force now (GET /api/sim lists them while they last).
    const faults = Array.isArray(s.faults) ? s.faults : [];
    // A live region: rebuilt only when the list changes, not at every poll.
    const key = JSON.stringify(faults);
    if (key === faultsKey) return;
    faultsKey = key;
    const list = $("sim-faults");
    list.replaceChildren();
    for (const f of faults) {
      const params = Object.entries(f.params || {})
        .filter(([, v]) => v !== null && v !== undefined)
        .map(([k, v]) => k + "=" + v)
        .join(", ");
      const until = f.ends ? " until " + String(f.ends).slice(11, 19) : "";
      const item = el("li", null, faultLabel(f.fault, f.target) + until + (params ? " · " + params : ""));
      item.prepend(badge("fault"), " ");
      list.append(item);
    }
    $("sim-faults-box").hidden = faults.length === 0;
  }

  function renderFleet() {
    let active = 0;
    let healthy = 0;
    for (const a of state.agents.values()) {
      if (a.status !== "offline") active++;
      if (a.status === "healthy") healthy++;
    }
    const g = state.global || {};
    $("fleet-active").textContent =
      typeof g.active_agents === "number" ? String(g.active_agents) : state.agents.size ? String(active) : "—";
    $("fleet-healthy").textContent = state.agents.size ? String(healthy) : "—";
    $("fleet-mps").textContent = num(g.total_mps);
    $("fleet-series").textContent = num(g.total_series);
    const items = state.fleetChanges.map((c) => {
      const d = c.data;
      const li = el("li");
      li.append(el("span", "muted", clock(parseTime(c.at)) + " "));
      if (c.kind === "join") {
        li.append(el("span", null, "+ " + (d.hostname || d.agent_id) + " joined" + (d.version ? " (v" + d.version + ")" : "")));
      } else {
        const known = state.agents.get(d.agent_id);
        let text = "− " + (d.hostname || (known && known.hostname) || d.agent_id) + " left";
        if (typeof d.tasks_reassigned === "number") text += " · " + d.tasks_reassigned + " tasks reassigned";
        li.append(el("span", null, text));
      }
      return li;
    });
    fillList($("fleet-changes"), items, "No changes yet.");
  }

  function visibleExperiments() {
    const all = Array.from(state.experiments.values());
    return filterExp ? all.filter((e) => e.id === filterExp) : all;
  }

  function renderExperiments() {
    const items = visibleExperiments().map((e) => {
      const li = el("li");
      li.dataset.experimentId = e.id;
      const head = el("div", "row-head");
      head.append(el("strong", "exp-name", e.name), el("span", "meta", e.id), badge(e.status));
      li.append(head);
      const done = e.status === "completed";
      const bad = e.status === "failed" || e.status === "rolled_back" || e.status === "cancelled";
      li.append(progressBar(e.progress, "Progress of " + e.name, done ? "done" : bad ? "bad" : ""));
      const m = e.metrics || {};
      li.append(
        el(
          "p",
          "meta",
          Math.round((Number(e.progress) || 0) * 100) + "% · baseline " + num(m.baseline_mps) +
            " mps · candidate " + num(m.candidate_mps) + " mps · reduction " + pct(m.reduction_rate)
        )
      );
      if (e.winner) {
        const f = e.final_metrics || {};
        const parts = ["Winner: " + e.winner];
        if (typeof f.total_reduction === "number") parts.push("reduction " + pct(f.total_reduction));
        if (typeof f.cost_saved_usd === "number") parts.push("saved " + money(f.cost_saved_usd));
        if (typeof f.duration_hours === "number") parts.push(f.duration_hours + " h");
        li.append(el("p", "outcome " + (e.winner === "candidate" ? "win" : "lose"), parts.join(" · ")));
      }
      if (e.error) {
        li.append(
          el("p", "outcome lose", "Failed: " + e.error + (e.rollback_initiated ? " · rollback initiated" : ""))
        );
      }
      return li;
    });
    fillList($("experiments"), items, filterExp ? "No experiment " + filterExp + " yet." : "No experiments yet.");
    $("exp-filter-note").textContent = filterExp ? "(filtered to " + filterExp + ")" : "";
  }

  // The <select>s and the datalist only change when the set of experiments does, so a
  // user who is choosing is not interrupted by every update.
  let choicesKey = "";
  function renderExperimentChoices() {
    const exps = Array.from(state.experiments.values());
    const key = JSON.stringify(exps.map((e) => [e.id, e.name]));
    if (key !== choicesKey) {
      choicesKey = key;
      refill($("chart-exp"), "(no experiment)", exps, chartExp);
      refill($("exp-filter"), "All experiments", exps, filterExp);
      const targets = [el("option")];
      targets[0].value = "global";
      for (const e of exps) {
        const o = el("option");
        o.value = e.id;
        targets.push(o);
      }
      $("fault-targets").replaceChildren(...targets);
    }
    pickChartExperiment();
  }

  function refill(select, emptyLabel, exps, selected) {
    const options = [new Option(emptyLabel, "")];
    for (const e of exps) options.push(new Option(e.name === e.id ? e.id : e.id + ": " + e.name, e.id));
    if (selected && !exps.some((e) => e.id === selected)) options.push(new Option(selected, selected));
    select.replaceChildren(...options);
    select.value = selected || "";
  }

  function renderDeployments() {
    const items = Array.from(state.deployments.values()).map((d) => {
      const li = el("li");
      const head = el("div", "row-head");
      head.append(el("strong", null, d.deployment_id), badge(d.variant || "?"), badge(d.status || "deploying"));
      li.append(head);
      const total = Number(d.total || d.agent_count) || 0;
      const doneCount = (Number(d.completed) || 0) + (Number(d.failed) || 0);
      li.append(progressBar(total ? doneCount / total : 0, "Deployment " + d.deployment_id));
      const where = [d.pipeline_id, d.experiment_id].filter(Boolean).join(" · ");
      li.append(
        el("p", "meta", (d.completed || 0) + "/" + (total || "?") + " agents · " + (d.failed || 0) + " failed" + (where ? " · " + where : ""))
      );
      return li;
    });
    fillList($("deployments"), items, "No deployment in progress.");
    const done = state.deploymentsDone.map((d) => {
      const li = el("li");
      li.append(badge(d.status || "done"));
      let text = " " + d.deployment_id;
      if (d.variant) text += " (" + d.variant + ")";
      if (typeof d.duration_seconds === "number") text += " in " + d.duration_seconds + " s";
      if (typeof d.agent_count === "number") text += " · " + d.agent_count + " agents";
      li.append(el("span", null, text));
      return li;
    });
    fillList($("deployments-done"), done, "None yet.");
  }

  function renderAlerts() {
    const firing = Array.from(state.alerts.values()).map((a) => {
      const li = el("li");
      const head = el("div", "row-head");
      head.append(el("strong", null, a.name || a.alert_id), badge(a.severity || "warning"));
      li.append(head);
      const parts = [];
      if (a.experiment_id) parts.push(a.experiment_id);
      if (a.condition) parts.push(a.condition);
      if (a.current_value !== undefined) parts.push("value " + num(a.current_value));
      if (a.triggered_at) parts.push("since " + clock(parseTime(a.triggered_at)));
      li.append(el("p", "meta", parts.join(" · ")));
      return li;
    });
    fillList($("alerts-firing"), firing, "No alert firing.");
    const anomalies = state.anomalies.map((a) => {
      const li = el("li");
      li.append(badge(a.severity || "warning"));
      const det = a.details || {};
      let text = " " + clock(parseTime(a.at)) + " " + (a.experiment_id || "") + " " + (a.type || "anomaly");
      if (det.metric) text += ": " + det.metric + " " + num(det.actual_value);
      if (Array.isArray(det.expected_range) && det.expected_range.length === 2) {
        text += " (expected " + num(det.expected_range[0]) + "–" + num(det.expected_range[1]) + ")";
      }
      li.append(el("span", null, text));
      return li;
    });
    fillList($("anomalies"), anomalies, "None detected.");
    const resolved = state.resolved.map((a) => {
      let text = (a.name || a.alert_id) + " resolved";
      if (typeof a.duration_minutes === "number") text += " after " + a.duration_minutes + " min";
      if (a.resolved_at) text += " at " + clock(parseTime(a.resolved_at));
      return el("li", null, text);
    });
    fillList($("alerts-resolved"), resolved, "None yet.");
  }

  function renderCost() {
    const c = state.cost || {};
    $("cost-now").textContent = money(c.optimized_cost_per_hour);
    $("cost-baseline").textContent = money(c.baseline_cost_per_hour);
    let savings = money(c.savings_per_hour);
    if (typeof c.savings_per_hour === "number" && c.baseline_cost_per_hour > 0) {
      savings += " (" + pct(c.savings_per_hour / c.baseline_cost_per_hour) + ")";
    }
    $("cost-savings").textContent = savings;
    let saved = 0;
    let any = false;
    for (const e of state.experiments.values()) {
      const v = e.final_metrics && e.final_metrics.cost_saved_usd;
      if (typeof v === "number") {
        saved += v;
        any = true;
      }
    }
    $("cost-saved").textContent = any ? money(saved) : "—";
    const opts = Array.isArray(c.active_optimizations) ? c.active_optimizations : [];
    $("cost-contrib").replaceChildren(
      ...opts.map((o) => el("li", null, (o.experiment_id || "?") + " saves " + money(o.contribution_usd) + "/h"))
    );
  }

  // --- chart (uPlot) -------------------------------------------------------------------------

  let chart = null;
  let chartExp = ""; // experiment on the chart
  let chartChosen = false; // the user picked one: stop following the live experiment

  function pickChartExperiment() {
    let want = chartExp;
    if (filterExp) want = filterExp;
    else if (!chartChosen || !state.experiments.has(want)) {
      const exps = Array.from(state.experiments.values());
      const live = exps.find((e) => ["running", "deploying", "initializing", "analyzing"].includes(e.status));
      want = live ? live.id : exps.length ? exps[exps.length - 1].id : "";
      if (chartChosen && chartExp && !state.experiments.has(chartExp)) chartChosen = false;
    }
    if (want !== chartExp) {
      chartExp = want;
      chartDirty = true;
    }
    if ($("chart-exp").value !== chartExp) $("chart-exp").value = chartExp;
  }

  function chartWidth() {
    return Math.max(200, $("chart").clientWidth || 300);
  }

  function makeChart() {
    if (!window.uPlot) {
      $("chart-note").textContent = "The chart library did not load (run `make setup`, which installs uPlot).";
      return null;
    }
    const axisValues = (u, splits) => splits.map(num);
    const value = (u, v) => (v === null || v === undefined ? "—" : num(v) + " mps");
    return new window.uPlot(
      {
        width: chartWidth(),
        height: 240,
        tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        // At least a minute on the x axis, so one point does not make sub-second ticks.
        scales: { x: { time: true, range: (u, min, max) => (max - min < 60 ? [max - 60, max] : [min, max]) }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
        series: [
          {},
          { label: "Baseline", stroke: "#6e7781", width: 2, value: value },
          { label: "Candidate", stroke: "#1f6feb", width: 2, fill: "rgba(31,111,235,0.08)", value: value },
        ],
        axes: [{ space: 70, values: (u, splits) => splits.map((ts) => clock(ts * 1000)) }, { values: axisValues, size: 56 }],
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
      },
      [[], [], []],
      $("chart")
    );
  }

  function renderChart() {
    chartDirty = false;
    if (!chart) chart = makeChart();
    if (!chart) return;
    const h = state.history.get(chartExp);
    chart.setData(h ? [h.t.slice(), h.b.slice(), h.c.slice()] : [[], [], []]);
    const exp = state.experiments.get(chartExp);
    $("chart").setAttribute(
      "aria-label",
      exp ? "Baseline and candidate metrics per second of " + exp.name : "No experiment to chart"
    );
  }

  if (window.ResizeObserver) {
    new ResizeObserver(() => {
      if (chart) chart.setSize({ width: chartWidth(), height: 240 });
    }).observe($("chart"));
  }

  $("chart-exp").addEventListener("change", (ev) => {
    chartExp = ev.target.value;
    chartChosen = chartExp !== "";
    chartDirty = true;
    touch("chart");
  });

  // --- fleet and cost over time, with markers ----------------------------------------------

  // A bounded series of points sorted by time, each from one event: the server's history and
  // the live stream overlap (and a fault may deliver twice), so an event id counts once.
  function series(n) {
    return { t: [], cols: Array.from({ length: n }, () => []), seqs: [], seen: new Set() };
  }

  function seriesAdd(s, seq, x, values) {
    if (x === null || (seq && s.seen.has(seq))) return;
    let i = s.t.length;
    while (i > 0 && s.t[i - 1] > x) i--; // nearly always appended: scan from the end
    if (i > 0 && s.t[i - 1] === x) {
      // The same simulated second twice: the later event wins.
      if (seq < s.seqs[i - 1]) return;
      s.seen.delete(s.seqs[i - 1]);
      s.seqs[i - 1] = seq;
      s.cols.forEach((col, k) => (col[i - 1] = values[k]));
    } else {
      s.t.splice(i, 0, x);
      s.seqs.splice(i, 0, seq);
      s.cols.forEach((col, k) => col.splice(i, 0, values[k]));
      while (s.t.length > TREND_MAX) {
        s.t.shift();
        s.seen.delete(s.seqs.shift());
        s.cols.forEach((col) => col.shift());
      }
    }
    if (seq) s.seen.add(seq);
    trendsDirty = true;
  }

  const numOrNull = (v) => (typeof v === "number" && isFinite(v) ? v : null);

  function secondsOf(iso) {
    const t = parseTime(iso);
    return t === null ? null : t / 1000;
  }

  function fleetPoint(msg) {
    const d = msg.data || {};
    const g = d.global;
    if (!g || typeof g !== "object") return;
    const values = [numOrNull(g.total_mps), numOrNull(g.total_series), numOrNull(g.active_agents)];
    seriesAdd(state.fleetTrend, seqOf(msg.id), secondsOf(d.timestamp || msg.timestamp), values);
  }

  function costPoint(msg) {
    const d = msg.data || {};
    const values = [
      numOrNull(d.baseline_cost_per_hour),
      numOrNull(d.optimized_cost_per_hour),
      numOrNull(d.savings_per_hour),
    ];
    seriesAdd(state.costTrend, seqOf(msg.id), secondsOf(d.timestamp || msg.timestamp), values);
  }

  // Markers of one kind less than MARKER_MERGE seconds apart are one marker (two deployments
  // that start together, a fault both scheduled and listed by GET /api/sim).
  const MARKER_MERGE = 2;
  const MARKER_KINDS = {
    fault: { glyph: "F", name: "Fault" },
    alert: { glyph: "A", name: "Alert" },
    anomaly: { glyph: "!", name: "Anomaly" },
    deployment: { glyph: "D", name: "Deployment" },
  };

  function addMarker(kind, x, key, label, until) {
    if (x === null || !MARKER_KINDS[kind]) return;
    const list = state.markers;
    if (list.some((m) => m.keys.has(key))) return;
    let m = list.find((o) => o.kind === kind && Math.abs(o.t - x) <= MARKER_MERGE);
    if (m) {
      m.keys.add(key);
      if (!m.labels.includes(label)) m.labels.push(label);
      if (until) m.until = Math.max(m.until || 0, until);
    } else {
      m = { t: x, kind: kind, labels: [label], keys: new Set([key]), until: until || null };
      let i = list.length;
      while (i > 0 && list[i - 1].t > x) i--;
      list.splice(i, 0, m);
      if (list.length > MARKERS_MAX) list.shift();
    }
    trendsDirty = true;
    touch("markers");
  }

  // A fault's target as a presenter reads it: a list of agents by its first few.
  function targetLabel(target) {
    if (!Array.isArray(target)) return String(target);
    const shown = target.slice(0, 3).join(", ");
    return target.length > 3 ? target.length + " agents (" + shown + ", ...)" : shown;
  }

  function faultLabel(what, target) {
    return String(what) + (target && target !== "global" ? " on " + targetLabel(target) : "");
  }

  // A marker from an event (live, or from the server's history).
  function eventMarker(msg) {
    const d = msg.data && typeof msg.data === "object" ? msg.data : {};
    const x = secondsOf(msg.timestamp);
    const key = "evt:" + msg.id;
    switch (msg.event) {
      case "metrics.anomaly":
        addMarker(
          "anomaly", x, key,
          (d.type || "anomaly") + (d.experiment_id ? " on " + d.experiment_id : "") + (d.severity ? " (" + d.severity + ")" : "")
        );
        return;
      case "alert.triggered":
        addMarker("alert", x, key, (d.name || d.alert_id) + (d.severity ? " (" + d.severity + ")" : "") + " fired");
        return;
      case "deployment.started":
        addMarker(
          "deployment", x, key,
          (d.deployment_id || "deployment") + " " + (d.variant || "") + " started" + (d.experiment_id ? " for " + d.experiment_id : "")
        );
        return;
      default:
        return;
    }
  }

  // Faults: the scenario's (from the timeline, once they have happened) and the delivery
  // faults GET /api/sim lists while they last (injected ones too).
  function simFaultMarkers(s) {
    for (const f of Array.isArray(s && s.faults) ? s.faults : []) {
      if (!f || !f.started) continue;
      addMarker("fault", secondsOf(f.started), "sim:" + f.id, faultLabel(f.fault), f.ends ? secondsOf(f.ends) : null);
    }
  }

  function resetTrends() {
    state.fleetTrend = series(3);
    state.costTrend = series(3);
    state.markers = [];
    trendsDirty = true;
    touch("markers");
  }

  // The recent past from the server (GET /api/sim/history), so that the charts do not start
  // empty. One request per channel; a channel the token may not read, or a server without
  // the route, just leaves that part empty.
  const PAST = [
    ["metrics", "metrics.update,metrics.anomaly", TREND_MAX + 40],
    ["cost-flow", "cost.update", TREND_MAX],
    ["alerts", "alert.triggered", 100],
    ["deployments", "deployment.started", 100],
  ];

  async function loadPast() {
    const past = {};
    await Promise.all(
      PAST.map(async ([channel, names, limit]) => {
        if (conn.forbidden.has(channel)) return;
        try {
          const q = "channel=" + encodeURIComponent(channel) + "&events=" + encodeURIComponent(names) + "&limit=" + limit;
          const resp = await api("GET", "/api/sim/history?" + q);
          if (resp && Array.isArray(resp.events)) past[channel] = resp.events;
        } catch (e) {
          /* no past for this channel: the chart starts from now */
        }
      })
    );
    return past;
  }

  function applyPast(past, sim) {
    resetTrends();
    const ok = (e) => e && typeof e === "object" && parseTime(e.timestamp) !== null;
    const now = sim ? parseTime(sim.simulated_time) : null;
    // The server's history spans restarts: ids go on, simulated time starts over. Keep this
    // run's part: walk back from the latest while the time does not go up (nor lies ahead
    // of the simulation, which a run that has sent nothing yet would leave).
    let boundary = 0;
    const runs = {};
    for (const channel of ["metrics", "cost-flow"]) {
      const events = (past[channel] || []).filter(ok);
      let i = events.length;
      let later = Infinity;
      while (i > 0) {
        const t = parseTime(events[i - 1].timestamp);
        if (t > later || (now !== null && t > now + 60000)) break;
        later = t;
        i--;
      }
      if (i > 0) boundary = Math.max(boundary, seqOf(events[i - 1].id));
      runs[channel] = events.slice(i);
    }
    const mine = (e) => ok(e) && seqOf(e.id) > boundary && (now === null || parseTime(e.timestamp) <= now + 60000);
    for (const msg of runs.metrics.filter(mine)) {
      const d = msg.data || {};
      if (msg.event === "metrics.update") {
        fleetPoint(msg);
        // The stats and the experiment chart get their past too.
        if (d.global && typeof d.global === "object" && newest(msg, "global")) state.global = d.global;
        const exps = d.experiments && typeof d.experiments === "object" ? d.experiments : {};
        for (const id of Object.keys(exps)) addPoint(id, d.timestamp || msg.timestamp, exps[id]);
      } else if (msg.event === "metrics.anomaly" && inFilter(d)) {
        pushRecent(state.anomalies, Object.assign({ at: msg.timestamp, id: msg.id }, d));
        eventMarker(msg);
      }
    }
    for (const msg of runs["cost-flow"].filter(mine)) {
      costPoint(msg);
      if (msg.data && typeof msg.data === "object" && newest(msg, "cost")) state.cost = msg.data;
    }
    touch("fleet", "cost", "alerts");
    for (const channel of ["alerts", "deployments"]) {
      for (const msg of (past[channel] || []).filter(mine)) if (inFilter(msg.data)) eventMarker(msg);
    }
    simFaultMarkers(sim);
    timelineMarkers();
  }

  // --- the charts -------------------------------------------------------------------------

  let trendsDirty = false;
  const trendCharts = {}; // id -> uPlot

  function cssColor(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  const MARKER_COLORS = {};
  function markerColor(kind) {
    if (!MARKER_COLORS[kind]) MARKER_COLORS[kind] = cssColor("--mk-" + kind, "#57606a");
    return MARKER_COLORS[kind];
  }

  // The x range: from the first point to the latest point or marker, at least a minute.
  function trendRange(s) {
    return (u, min, max) => {
      let hi = max;
      const last = state.markers.length ? state.markers[state.markers.length - 1].t : null;
      if (last !== null && (hi === null || last > hi) && (s.t.length === 0 || last >= s.t[0])) hi = last;
      let lo = min === null ? hi : min;
      if (hi === null) {
        hi = state.simTime !== null ? state.simTime / 1000 : Date.now() / 1000;
        lo = hi;
      }
      return hi - lo < 60 ? [hi - 60, hi] : [lo, hi];
    };
  }

  // Fault bands behind the series; dashed lines and lettered glyphs on top. Glyphs that
  // would overlap go down a lane (three at most); past that only the line is drawn.
  function markerHooks(node) {
    const inRange = (u) => {
      const lo = u.scales.x.min;
      const hi = u.scales.x.max;
      return state.markers.filter((m) => m.t >= lo && m.t <= hi);
    };
    const bands = (u) => {
      const { left, top, width, height } = u.bbox;
      const lo = u.scales.x.min;
      const hi = u.scales.x.max;
      const ctx = u.ctx;
      ctx.save();
      for (const m of state.markers) {
        if (!m.until || m.until < lo || m.t > hi) continue;
        const x0 = u.valToPos(Math.max(m.t, lo), "x", true);
        const x1 = u.valToPos(Math.min(m.until, hi), "x", true);
        ctx.globalAlpha = 0.08;
        ctx.fillStyle = markerColor(m.kind);
        ctx.fillRect(Math.max(left, x0), top, Math.max(1, Math.min(left + width, x1) - Math.max(left, x0)), height);
      }
      ctx.restore();
    };
    const lines = (u) => {
      const { left, top, width, height } = u.bbox;
      const r = window.uPlot.pxRatio || 1;
      const size = Math.round(15 * r);
      const gap = Math.round(2 * r);
      const lanes = [-Infinity, -Infinity, -Infinity];
      const ctx = u.ctx;
      const shown = inRange(u);
      ctx.save();
      ctx.font = "700 " + Math.round(10 * r) + "px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      for (const m of shown) {
        const color = markerColor(m.kind);
        const x = Math.round(u.valToPos(m.t, "x", true)) + 0.5;
        ctx.globalAlpha = 0.85;
        ctx.strokeStyle = color;
        ctx.lineWidth = Math.max(1, Math.round(1.25 * r));
        ctx.setLineDash([4 * r, 3 * r]);
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
        const gx = Math.min(left + width - size / 2, Math.max(left + size / 2, x));
        const lane = lanes.findIndex((right) => right + gap <= gx - size / 2);
        if (lane < 0) continue;
        lanes[lane] = gx + size / 2;
        const gy = top + gap + lane * (size + gap);
        ctx.globalAlpha = 1;
        ctx.setLineDash([]);
        ctx.fillStyle = color;
        ctx.fillRect(gx - size / 2, gy, size, size);
        ctx.fillStyle = "#ffffff";
        ctx.fillText(MARKER_KINDS[m.kind].glyph, gx, gy + size / 2 + 0.5 * r);
      }
      ctx.restore();
      node.dataset.markers = String(shown.length);
    };
    return { drawClear: [bands], draw: [lines] };
  }

  const TREND_HEIGHT = 200;

  function trendWidth(node) {
    return Math.max(200, node.clientWidth || 300);
  }

  function makeTrend(node, s, series, axes, scales) {
    if (!window.uPlot) return null;
    return new window.uPlot(
      {
        width: trendWidth(node),
        height: TREND_HEIGHT,
        tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        scales: Object.assign({ x: { time: true, range: trendRange(s) } }, scales),
        series: [{}].concat(series),
        axes: [{ space: 70, values: (u, splits) => splits.map((ts) => clock(ts * 1000)) }].concat(axes),
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
        hooks: markerHooks(node),
      },
      [[]].concat(series.map(() => [])),
      node
    );
  }

  // Headroom above the data for the marker glyphs.
  const headroom = (u, min, max) => [0, Math.max(1, (max || 0) * 1.3)];

  function makeFleetChart() {
    const node = $("fleet-chart");
    const value = (unit) => (u, v) => (v === null || v === undefined ? "—" : num(v) + unit);
    return makeTrend(
      node,
      state.fleetTrend,
      [
        { label: "Total mps", stroke: cssColor("--fleet-mps", "#1f6feb"), width: 2, scale: "n", value: value(" mps") },
        { label: "Series", stroke: cssColor("--fleet-series", "#8250df"), width: 2, scale: "n", value: value("") },
        {
          label: "Active agents", stroke: cssColor("--fleet-agents", "#57606a"), width: 1.5, dash: [6, 3],
          scale: "agents", value: value(""),
        },
      ],
      [
        { scale: "n", values: (u, splits) => splits.map(short), size: 50 },
        { scale: "agents", side: 1, values: (u, splits) => splits.map(short), size: 44, grid: { show: false } },
      ],
      // Agents on a scale of their own, drawn lower than the mps line (which is about as
      // high on its scale) so that the two never lie on top of each other.
      { n: { range: headroom }, agents: { range: (u, min, max) => [0, Math.max(1, (max || 0) * 2)] } }
    );
  }

  function makeCostChart() {
    const node = $("cost-chart");
    const value = (u, v) => (v === null || v === undefined ? "—" : money(v) + "/h");
    const dollars = (u, splits) => splits.map((v) => "$" + short(v));
    return makeTrend(
      node,
      state.costTrend,
      [
        { label: "Baseline", stroke: cssColor("--baseline", "#6e7781"), width: 2, scale: "usd", value: value },
        { label: "Optimized", stroke: cssColor("--candidate", "#1f6feb"), width: 2, scale: "usd", value: value },
        {
          label: "Savings", stroke: cssColor("--ok", "#1a7f37"), width: 2, fill: "rgba(26,127,55,0.10)",
          scale: "usd", value: value,
        },
      ],
      [{ scale: "usd", values: dollars, size: 56 }],
      { usd: { range: headroom } }
    );
  }

  function span(seconds) {
    const sec = Math.max(0, Math.round(seconds));
    const h = Math.floor(sec / 3600);
    const m = Math.floor((sec % 3600) / 60);
    const s = sec % 60;
    if (h) return h + "h" + (m ? " " + m + "m" : "");
    if (m) return m + "m" + (s ? " " + s + "s" : "");
    return s + "s";
  }

  function renderTrend(id, make, s, describe) {
    const node = $(id);
    if (!trendCharts[id]) trendCharts[id] = make();
    const chart = trendCharts[id];
    if (!chart) {
      node.textContent = "The chart library did not load (run `make setup`, which installs uPlot).";
      return;
    }
    chart.setData([s.t.slice()].concat(s.cols.map((c) => c.slice())));
    const n = s.t.length;
    node.dataset.points = String(n);
    // For tests and tools: how much the chart holds, in RFC 3339 like the events.
    node.dataset.first = n ? rfc3339(s.t[0] * 1000) : "";
    node.dataset.last = n ? rfc3339(s.t[n - 1] * 1000) : "";
    const kinds = {};
    for (const m of state.markers) if (n && m.t >= s.t[0]) kinds[m.kind] = (kinds[m.kind] || 0) + 1;
    const marks = Object.keys(kinds).map((k) => kinds[k] + " " + MARKER_KINDS[k].name.toLowerCase() + (kinds[k] > 1 ? "s" : ""));
    node.setAttribute(
      "aria-label",
      n
        ? describe(n - 1) + ", " + clock(s.t[0] * 1000) + " to " + clock(s.t[n - 1] * 1000) +
            (marks.length ? "; marked: " + marks.join(", ") : "")
        : "No data yet"
    );
  }

  function renderTrends() {
    trendsDirty = false;
    const f = state.fleetTrend;
    const c = state.costTrend;
    renderTrend("fleet-chart", makeFleetChart, f, (i) =>
      "Fleet over simulated time: now " + num(f.cols[0][i]) + " mps, " + num(f.cols[1][i]) + " series, " +
        num(f.cols[2][i]) + " active agents"
    );
    renderTrend("cost-chart", makeCostChart, c, (i) =>
      "Cost per hour over simulated time: now baseline " + money(c.cols[0][i]) + ", optimized " + money(c.cols[1][i]) +
        ", savings " + money(c.cols[2][i])
    );
  }

  function renderMarkers() {
    const latest = state.markers.slice(-MARKERS_SHOWN).reverse();
    const items = latest.map((m) => {
      const li = el("li");
      li.dataset.kind = m.kind;
      const glyph = el("span", "mk mk-" + m.kind, MARKER_KINDS[m.kind].glyph);
      glyph.setAttribute("aria-hidden", "true");
      const shown = m.labels.slice(0, 3).join("; ") + (m.labels.length > 3 ? "; and " + (m.labels.length - 3) + " more" : "");
      const kind = el("span", "sr-only", MARKER_KINDS[m.kind].name + ": ");
      li.append(glyph, el("span", "muted", clock(m.t * 1000) + " "), kind, el("span", null, shown));
      return li;
    });
    fillList($("chart-markers"), items, "Nothing yet.");
  }

  for (const id of ["fleet-chart", "cost-chart"]) {
    if (!window.ResizeObserver) break;
    const node = $(id);
    new ResizeObserver(() => {
      if (trendCharts[id]) trendCharts[id].setSize({ width: trendWidth(node), height: TREND_HEIGHT });
    }).observe(node);
  }

  // --- the scenario's timeline -----------------------------------------------------------

  const timeline = {
    scenario: null,
    items: [], // GET /api/sim/timeline's, each with `t` (ms)
    loaded: 0, // Date.now() of the last answer
    failed: false, // the last request failed
    loading: false,
    nextT: null, // the next item's time when last drawn
    refreshedFor: null, // the passed item a refresh was asked for (once each)
    listKey: "",
    nextKey: null,
    whenNodes: [],
  };
  let jumping = false; // a jump is under way: its buttons wait

  async function fetchTimeline() {
    try {
      return await api("GET", "/api/sim/timeline");
    } catch (e) {
      return null;
    }
  }

  async function loadTimeline() {
    if (timeline.loading) return;
    timeline.loading = true;
    try {
      applyTimeline(await fetchTimeline());
    } finally {
      timeline.loading = false;
    }
  }

  function applyTimeline(tl) {
    timeline.loaded = Date.now();
    timeline.failed = !tl || !Array.isArray(tl.items); // asked again at the next poll
    if (timeline.failed) return;
    timeline.scenario = typeof tl.scenario === "string" ? tl.scenario : null;
    timeline.items = tl.items
      .filter((i) => i && typeof i === "object" && parseTime(i.at) !== null)
      .map((i) => Object.assign({}, i, { t: parseTime(i.at) }));
    timeline.listKey = "";
    timelineMarkers();
    touch("timeline");
  }

  function itemDone(item) {
    return item.done === true || (state.simTime !== null && item.t <= state.simTime);
  }

  function nextItem() {
    return timeline.items.find((i) => !itemDone(i)) || null;
  }

  function timelineMarkers() {
    for (const i of timeline.items) {
      if (i.kind !== "fault" || !itemDone(i)) continue;
      const x = i.t / 1000;
      const key = "tl:" + i.at + ":" + i.what + ":" + (i.target || "");
      addMarker("fault", x, key, faultLabel(i.what, i.target), i.duration_seconds ? x + i.duration_seconds : null);
    }
  }

  function itemLabel(i, done) {
    if (i.kind === "fault") {
      return "Fault " + faultLabel(i.what, i.target) + (i.duration_seconds ? " for " + span(i.duration_seconds) : "");
    }
    const verbs = {
      "experiment.created": "created",
      "experiment.started": done ? "started" : "starts",
    };
    const who = i.id || "An experiment";
    return who + " " + (verbs[i.what] || String(i.what)) + (i.name && i.name !== i.id ? ": " + i.name : "");
  }

  function timelineEmpty(text) {
    if (!timeline.loaded) return "Loading…";
    return timeline.failed && !timeline.items.length ? "The timeline did not load: asking again." : text;
  }

  function untilText(item) {
    return state.simTime === null ? "" : "in " + span((item.t - state.simTime) / 1000);
  }

  function renderTimeline() {
    const items = timeline.items;
    const next = nextItem();
    const s = state.sim || {};
    // The simulation passed the item that was next: ask the server what is next now
    // (it may also have started the scenario over).
    const passed = timeline.nextT !== null && state.simTime !== null && state.simTime >= timeline.nextT;
    if (passed && timeline.refreshedFor !== timeline.nextT) {
      timeline.refreshedFor = timeline.nextT;
      loadTimeline();
    }
    timeline.nextT = next ? next.t : null;
    $("tl-scenario").textContent = timeline.scenario ? "(" + timeline.scenario + ")" : "";

    // The list: rebuilt when what is done changes; the "in …" texts in place.
    const key = timeline.loaded + ":" + timeline.failed + ":" + items.map((i) => (itemDone(i) ? 1 : 0)).join("");
    const list = $("timeline");
    if (key !== timeline.listKey) {
      // Markers for the faults done, only when that changes: added at every render, one
      // the marker cap had evicted would come back (and redraw the charts) each time.
      timelineMarkers();
      timeline.listKey = key;
      timeline.whenNodes = [];
      let nextLi = null;
      const lis = items.map((i) => {
        const done = itemDone(i);
        const li = el("li", done ? "done" : i === next ? "next" : "later");
        li.dataset.at = i.at;
        const when = el("time", "tl-time", clock(i.t));
        when.setAttribute("datetime", i.at);
        const status = el("span", "sr-only", done ? "done: " : i === next ? "next: " : "");
        const kindName = i.kind === "fault" ? "fault" : "experiment";
        const kind = el("span", "tl-kind kind-" + kindName, kindName);
        li.append(when, " ", status, kind, " ", el("span", "tl-what", itemLabel(i, done)));
        if (!done) {
          const rel = el("span", "tl-when muted", untilText(i));
          timeline.whenNodes.push([rel, i]);
          li.append(" ", rel);
        }
        if (i === next) {
          li.setAttribute("aria-current", "step");
          nextLi = li;
        }
        return li;
      });
      fillList(list, lis, timelineEmpty("Nothing is scheduled in this run."));
      // Keep the next item in view inside the list (never scrolls the page).
      if (nextLi) list.scrollTop = Math.max(0, nextLi.offsetTop - list.offsetTop - 2 * nextLi.offsetHeight);
    } else {
      for (const [node, i] of timeline.whenNodes) node.textContent = untilText(i);
    }

    // The next item, for a presenter: what, when, and how long that is on the wall clock.
    const nextKey = next ? next.at + "|" + itemLabel(next, false) : timelineEmpty("");
    if (nextKey !== timeline.nextKey) {
      timeline.nextKey = nextKey;
      $("tl-next").textContent = next
        ? clock(next.t) + " · " + itemLabel(next, false)
        : timelineEmpty("Nothing more is scheduled in this run.");
    }
    $("tl-next-box").dataset.at = next ? next.at : "";
    let eta = "";
    if (next && state.simTime !== null) {
      const ahead = Math.max(0, (next.t - state.simTime) / 1000);
      eta = "In " + span(ahead) + " of simulated time";
      if (s.finished) eta += " · the run has finished";
      else if (s.paused) eta += " · paused now";
      else if (typeof s.speed === "number" && s.speed > 0) {
        const wall = ahead / s.speed;
        eta += " · " + (wall < 1 ? "under a second" : "about " + span(wall)) + " of wall time at ×" + s.speed;
      }
    }
    if (s.pause_at) eta += (eta ? " · " : "") + "pausing at " + clock(parseTime(s.pause_at));
    $("tl-eta").textContent = eta;

    const admin = isAdmin();
    $("jump-controls").disabled = !admin;
    $("jump-note").textContent = admin ? "" : "(admin token needed)";
    $("btn-pause-next").disabled = !next || jumping;
    $("btn-step-next").disabled = !next || jumping;
  }

  // A status line: what the controls beside it did, or why not.
  function statusIn(id) {
    return (text, isError) => {
      const s = $(id);
      s.textContent = text;
      s.classList.toggle("error", !!isError);
    };
  }
  const jumpStatus = statusIn("jump-status");

  function rfc3339(ms) {
    return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  // Stop one simulated second before the next item: the server pauses exactly there.
  $("btn-pause-next").addEventListener("click", async () => {
    const next = nextItem();
    if (!next) return;
    const at = next.t - 1000;
    const what = itemLabel(next, false);
    await control(
      { action: "pause", at: rfc3339(at) },
      (s) =>
        s.paused && !s.pause_at
          ? "Paused at " + clock(parseTime(s.simulated_time)) + ", before " + what + "."
          : s.paused
            ? "Paused now; after Resume it stops at " + clock(at) + ", 1 s before " + what + "."
            : "Will pause at " + clock(at) + ", 1 s before " + what + ".",
      undefined,
      jumpStatus
    );
  });

  // Step (in slices of at most MAX_STEP) from the server's time to the next item's.
  $("btn-step-next").addEventListener("click", async () => {
    const next = nextItem();
    if (!next || !isAdmin()) return;
    jumping = true;
    touch("timeline");
    try {
      let now = parseTime((await api("GET", "/api/sim")).simulated_time);
      for (let n = 0; now !== null && now < next.t && n < 48; n++) {
        const seconds = Math.min(MAX_STEP, (next.t - now) / 1000);
        const resp = await control({ action: "step", seconds: seconds }, () => "Stepping…", undefined, jumpStatus);
        if (!resp) return;
        now = parseTime(resp.simulated_time);
      }
      jumpStatus(
        now !== null && now >= next.t
          ? "Stepped to " + clock(now) + ": " + itemLabel(next, true) + "."
          : "Stepped to " + clock(now) + "; the next item is further than 48 steps of an hour.",
        false
      );
    } catch (e) {
      jumpStatus("Refused" + (e.status ? " (" + e.status + ")" : "") + ": " + e.message, true);
    } finally {
      jumping = false;
      touch("timeline");
    }
  });

  // --- the event log -----------------------------------------------------------------------

  let pendingLog = [];

  function summary(msg) {
    const d = msg.data && typeof msg.data === "object" ? msg.data : {};
    switch (msg.event) {
      case "experiment.created":
        return d.id + " created: " + d.name;
      case "experiment.started":
        return d.id + " " + d.status + (d.deployment_count !== undefined ? " · " + d.deployment_count + " deployments" : "");
      case "experiment.updated": {
        const m = d.metrics || {};
        return d.id + " " + d.status + " " + Math.round((Number(d.progress) || 0) * 100) + "% · reduction " + pct(m.reduction_rate);
      }
      case "experiment.completed":
        return d.id + " completed · winner " + d.winner;
      case "experiment.failed":
        return d.id + " failed: " + d.error + (d.rollback_initiated ? " · rollback" : "");
      case "metrics.update": {
        const g = d.global || {};
        return num(g.total_mps) + " mps · " + num(g.total_series) + " series · " + g.active_agents + " agents";
      }
      case "metrics.anomaly":
        return (d.experiment_id || "") + " " + d.type + " (" + d.severity + ")";
      case "agent.connected":
        return d.agent_id + " (" + d.hostname + ") v" + d.version;
      case "agent.heartbeat": {
        const m = d.metrics || {};
        return d.agent_id + " " + d.status + " · cpu " + m.cpu_percent + "% · " + num(m.metrics_per_second) + " mps";
      }
      case "agent.disconnected":
        return d.agent_id + " · " + d.tasks_reassigned + " tasks reassigned";
      case "deployment.started":
        return d.deployment_id + " " + d.variant + " " + d.pipeline_id + " → " + d.agent_count + " agents";
      case "deployment.progress":
        return d.deployment_id + " " + d.completed + "/" + d.total + " · " + d.failed + " failed";
      case "deployment.completed":
        return d.deployment_id + " " + d.status + " in " + d.duration_seconds + " s";
      case "alert.triggered":
        return d.name + " (" + d.severity + ") " + d.condition + " = " + num(d.current_value);
      case "alert.resolved":
        return d.alert_id + " resolved after " + d.duration_minutes + " min";
      case "cost.update":
        return money(d.optimized_cost_per_hour) + "/h · saving " + money(d.savings_per_hour) + "/h";
      default: {
        const text = JSON.stringify(d);
        return text.length > 200 ? text.slice(0, 200) + "…" : text;
      }
    }
  }

  // `text` may be a function: summaries are only built for lines that reach the screen.
  function logLine(kind, time, channel, event, text) {
    pendingLog.push({ kind: kind, time: time, channel: channel, event: event, text: text });
    if (pendingLog.length > 2 * LOG_MAX) pendingLog.splice(0, pendingLog.length - LOG_MAX);
    touch("log");
  }

  function logSystem(text, isError) {
    logLine(isError ? "err" : "sys", state.simTime, isError ? "error" : "page", "", text);
  }

  function flushLog() {
    if (!pendingLog.length) return;
    const log = $("log");
    const frag = document.createDocumentFragment();
    const first = Math.max(0, pendingLog.length - LOG_MAX);
    for (let i = pendingLog.length - 1; i >= first; i--) {
      const p = pendingLog[i];
      const text = typeof p.text === "function" ? p.text() : p.text;
      const li = el("li", p.kind === "event" ? null : p.kind);
      const time = clock(typeof p.time === "string" ? parseTime(p.time) : p.time);
      li.append(el("span", "t", time), el("span", "ch", p.channel), el("span", "ev", p.event), el("span", "sum", text));
      frag.append(li);
    }
    pendingLog = [];
    log.prepend(frag);
    while (log.childElementCount > LOG_MAX) log.lastElementChild.remove();
  }

  $("log-clear").addEventListener("click", () => {
    pendingLog = [];
    $("log").replaceChildren();
  });

  // --- tokens ------------------------------------------------------------------------------

  const auth = {
    auto: null, // {token, until}: the viewer token from POST /api/token
    autoRefused: !PAGE_TOKEN,
    pasted: null,
    rejected: null, // the pasted token the server refused as expired: not used again
    refreshTimer: null,
  };
  try {
    auth.pasted = sessionStorage.getItem(TOKEN_KEY);
  } catch (e) {
    auth.pasted = null;
  }

  function claimsOf(token) {
    // For the page's own display only (role, expiry): the server verifies the signature.
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
      return claims && typeof claims === "object" ? claims : null;
    } catch (e) {
      return null;
    }
  }

  // The channels a token may read (its `channels` claim), or null for all of them.
  function allowedChannels(token) {
    const c = token ? claimsOf(token) : null;
    return c && Array.isArray(c.channels) ? new Set(c.channels.map(String)) : null;
  }

  function pastedUsable() {
    if (!auth.pasted || auth.pasted === auth.rejected) return false;
    const c = claimsOf(auth.pasted);
    return !(c && typeof c.exp === "number" && c.exp * 1000 < Date.now());
  }

  function isAdmin() {
    if (!pastedUsable()) return false;
    const c = claimsOf(auth.pasted);
    return !!c && c.role === "admin";
  }

  class NeedToken extends Error {}

  async function getToken() {
    if (pastedUsable()) return auth.pasted;
    if (auth.auto && auth.auto.until > Date.now() + 30000) return auth.auto.token;
    auth.auto = null;
    if (auth.autoRefused) throw new NeedToken("no token");
    return fetchAutoToken();
  }

  async function fetchAutoToken() {
    const res = await fetch("/api/token", { method: "POST", cache: "no-store" });
    if (res.status === 403) {
      auth.autoRefused = true;
      throw new NeedToken("the server only gives tokens to pages on loopback");
    }
    if (!res.ok) throw new Error("POST /api/token: HTTP " + res.status);
    const json = await res.json();
    const ms = Number(json.expires_in) * 1000;
    auth.auto = { token: json.token, until: Date.now() + ms };
    // Fetch the next one a minute before this one expires.
    clearTimeout(auth.refreshTimer);
    auth.refreshTimer = setTimeout(refreshAutoToken, Math.max(1000, ms - TOKEN_REFRESH_MS));
    return json.token;
  }

  // A new page token before the old one expires; a socket on the old one moves quietly.
  async function refreshAutoToken() {
    const old = auth.auto && auth.auto.token;
    try {
      await fetchAutoToken();
    } catch (e) {
      if (!(e instanceof NeedToken)) auth.refreshTimer = setTimeout(refreshAutoToken, 10000);
      return;
    }
    if (old && conn.ws && conn.token === old) {
      logSystem("Renewed the page's viewer token: reconnecting with it.");
      reopen("token renewed");
    }
  }

  async function api(method, path, payload) {
    const token = await getToken();
    const init = { method: method, cache: "no-store", headers: { Authorization: "Bearer " + token } };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const res = await fetch(path, init);
    let json = null;
    try {
      json = await res.json();
    } catch (e) {
      json = null;
    }
    if (!res.ok) {
      const err = new Error((json && json.error) || "HTTP " + res.status);
      err.status = res.status;
      err.reason = json && json.details && json.details.reason;
      if (res.status === 401 && token !== auth.pasted) auth.auto = null;
      throw err;
    }
    return json;
  }

  let tokenProblem = false; // an error about the token stays up until the user acts

  function renderTokenStatus(message, isError) {
    const status = $("token-status");
    if (message === undefined && tokenProblem) message = status.textContent;
    else tokenProblem = !!isError;
    status.classList.toggle("error", tokenProblem);
    if (message) {
      status.textContent = message;
    } else if (auth.pasted) {
      const c = claimsOf(auth.pasted) || {};
      const until = typeof c.exp === "number" ? " until " + new Date(c.exp * 1000).toLocaleTimeString() : "";
      status.textContent = pastedUsable()
        ? "Using the pasted " + (c.role || "viewer") + " token" + until + "."
        : auth.pasted === auth.rejected
          ? "The server refused the pasted token as expired: paste a new one" +
            (auth.autoRefused ? "." : " (using this server's viewer token meanwhile).")
          : "The pasted token has expired: paste a new one.";
    } else {
      status.textContent = auth.autoRefused
        ? "No token yet: paste one (phoenix token --role admin) to connect."
        : "Using a viewer token from this server.";
    }
    const admin = isAdmin();
    $("admin-controls").disabled = !admin;
    touch("timeline"); // the jump controls too
    $("admin-note").textContent = admin
      ? ""
      : auth.pasted && pastedUsable()
        ? "(the pasted token is not an admin token)"
        : "(admin token needed)";
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token-input").value.trim();
    if (value.split(".").length !== 3) {
      renderTokenStatus("That does not look like a JWT (three dot-separated parts).", true);
      return;
    }
    auth.pasted = value;
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch (e) {
      /* private mode: keep it for this page only */
    }
    $("token-input").value = "";
    auth.rejected = null;
    tokenProblem = false;
    renderTokenStatus();
    reopen("new token"); // move the live socket to the new token
  });

  $("token-forget").addEventListener("click", () => {
    const was = auth.pasted;
    auth.pasted = null;
    auth.rejected = null;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* nothing stored */
    }
    tokenProblem = false;
    renderTokenStatus();
    // A socket on the forgotten token moves to the page's own token (or closes).
    if (was && conn.token === was) reopen("token forgotten");
  });

  // --- the connection ----------------------------------------------------------------------

  const conn = {
    ws: null,
    token: null,
    attempts: 0,
    timer: null,
    ready: false, // snapshot loaded and subscribed
    nextId: 1,
    pending: new Map(), // message id -> {resolve, reject, timer}
    subscribed: new Set(),
    forbidden: new Set(), // channels this connection's token may not read
    lastError: null,
    syncGen: 0,
    resyncs: 0, // full reloads in a row after `recovered: false`
    skipReplay: false, // after a 1013: a catch-up replay would overflow the queue again
  };
  // Dedupe: replays overlap the snapshot and a server may deliver twice (duplicate fault).
  // Each channel has its own floor (the last event id its snapshot already contains).
  const floors = {}; // channel -> seq at or below which events are already in the state
  const recentSeqs = new Set();
  const lastSeq = {}; // channel -> highest event seq seen, for `since` on re-subscribe
  const slowCloses = []; // times of recent 1013 closes
  const autoUnchecked = new Set(); // switches unchecked because the token may not read them
  let filterExp = "";

  function setConn(kind, text) {
    const node = $("conn");
    node.dataset.state = kind;
    $("conn-text").textContent = text;
    $("reconnect-now").hidden = !(kind === "reconnecting" || kind === "closed");
    $("token-link").hidden = kind !== "need-token";
  }

  function closeText(code, reason) {
    const meaning = CLOSE_MEANING[code];
    return "Closed " + code + (meaning ? " (" + meaning + ")" : "") + (reason ? ": " + reason : "");
  }

  function connectNow() {
    conn.attempts = 0;
    connect();
  }

  // Disable (and uncheck) the switches of channels the token may not read; give them back
  // when a token that may read them comes.
  function updateSwitches() {
    for (const ch of CHANNELS) {
      const box = $("ch-" + ch);
      const no = conn.forbidden.has(ch);
      if (no && box.checked) {
        box.checked = false;
        autoUnchecked.add(ch);
      } else if (!no && autoUnchecked.has(ch)) {
        box.checked = true;
        autoUnchecked.delete(ch);
      }
      box.disabled = no;
      box.parentElement.title = no ? "This token may not read " + ch : "";
    }
  }

  async function connect() {
    clearTimeout(conn.timer);
    conn.timer = null;
    if (conn.ws) return;
    setConn(conn.attempts ? "reconnecting" : "connecting", conn.attempts ? "Reconnecting…" : "Connecting…");
    let token;
    try {
      token = await getToken();
    } catch (e) {
      if (e instanceof NeedToken) {
        setConn("need-token", "Not connected: a token is needed");
        renderTokenStatus();
        return;
      }
      scheduleReconnect("Server unreachable");
      return;
    }
    if (conn.ws) return;
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws?token=" + encodeURIComponent(token));
    conn.ws = ws;
    conn.token = token;
    conn.ready = false;
    conn.lastError = null;
    conn.resyncs = 0;
    conn.subscribed.clear();
    const allowed = allowedChannels(token);
    conn.forbidden = new Set(allowed ? CHANNELS.filter((c) => !allowed.has(c)) : []);
    updateSwitches();
    ws.onopen = () => {
      if (conn.ws === ws) sync(false);
    };
    ws.onmessage = (ev) => {
      if (conn.ws === ws) onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (conn.ws === ws) onClosed(ev, token);
    };
  }

  // Forget the current socket (its requests fail); its close event is ignored from now.
  function dropSocket() {
    conn.ws = null;
    conn.ready = false;
    conn.syncGen++;
    conn.subscribed.clear();
    for (const p of conn.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error("connection closed"));
    }
    conn.pending.clear();
  }

  // Give up on a socket now (dead, or its sync failed) without waiting for a close
  // handshake that may never come, and reconnect.
  function abandon(ws, code, why) {
    if (conn.ws !== ws) return;
    const token = conn.token;
    try {
      ws.close(4000, why.slice(0, 100));
    } catch (e) {
      /* already closing */
    }
    onClosed({ code: code, reason: why }, token);
  }

  // Move to another token (pasted, forgotten, renewed): close the live socket quietly and
  // connect again at once.
  function reopen(why) {
    const ws = conn.ws;
    if (ws) {
      dropSocket();
      try {
        ws.close(1000, why);
      } catch (e) {
        /* already closing */
      }
    }
    connectNow();
  }

  // The page's own token reaching its expiry is expected (a tab asleep past the renewal).
  function expectedExpiry(token, err) {
    const why = err && err.details && err.details.reason;
    return why === "expired" && token !== auth.pasted && !!auth.auto && auth.auto.token === token &&
      auth.auto.until <= Date.now() + 5000;
  }

  function onClosed(ev, token) {
    const err = conn.lastError;
    dropSocket();
    const reason = ev.reason || (err && err.message) || "";
    const expected = ev.code === 4001 && expectedExpiry(token, err);
    logSystem(
      closeText(ev.code, reason) + (expected ? " (the page's token expired; getting a new one)" : ""),
      ev.code !== 1000 && ev.code !== 1001 && !expected
    );
    conn.skipReplay = ev.code === 1013;
    if (ev.code === 1013) noteSlowConsumer();
    if (ev.code === 4001) {
      const why = err && err.details && err.details.reason;
      if (token === auth.pasted && why === "expired") {
        // Refused as expired (a storm, or a clock ahead of ours): retrying it is futile.
        auth.rejected = token;
        renderTokenStatus(
          "The server refused the pasted token as expired: paste a new one" +
            (auth.autoRefused ? "." : " (using this server's viewer token meanwhile)."),
          true
        );
      } else if (token === auth.pasted) {
        auth.pasted = null;
        try {
          sessionStorage.removeItem(TOKEN_KEY);
        } catch (e) {
          /* nothing stored */
        }
        renderTokenStatus("The server refused the pasted token (" + (why || "unauthorized") + ").", true);
      } else {
        auth.auto = null; // expired or from a restarted server: fetch a fresh one
      }
    }
    scheduleReconnect(closeText(ev.code, reason));
  }

  // Closed twice within a minute as a slow consumer: the agents channel (heartbeats, most of
  // the traffic) goes, or the page never keeps up.
  function noteSlowConsumer() {
    const now = Date.now();
    slowCloses.push(now);
    while (slowCloses.length && slowCloses[0] < now - 60000) slowCloses.shift();
    const box = $("ch-agents");
    if (slowCloses.length >= 2 && box.checked) {
      box.checked = false;
      slowCloses.length = 0;
      logSystem(
        "Closed twice within a minute as a slow consumer: stopped the agents channel (heartbeats are most of the traffic). Check it again to resume.",
        true
      );
    }
  }

  function scheduleReconnect(why) {
    clearTimeout(conn.timer);
    const delay = Math.min(1000 * Math.pow(2, conn.attempts), 30000);
    setConn(
      "reconnecting",
      why + " · reconnecting in " + Math.round(delay / 1000) + " s (attempt " + (conn.attempts + 1) + ")"
    );
    conn.timer = setTimeout(() => {
      conn.attempts++;
      connect();
    }, delay);
  }

  $("reconnect-now").addEventListener("click", () => {
    if (!conn.ws) connect();
  });

  function send(obj) {
    if (conn.ws && conn.ws.readyState === WebSocket.OPEN) conn.ws.send(JSON.stringify(obj));
  }

  function request(obj) {
    const id = "page-" + conn.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        conn.pending.delete(id);
        const err = new Error("no answer to " + obj.type);
        err.timeout = true;
        reject(err);
      }, REQUEST_TIMEOUT_MS);
      conn.pending.set(id, { resolve: resolve, reject: reject, timer: timer });
      send(Object.assign({ id: id }, obj));
    });
  }

  function settle(msg, ok) {
    const p = msg.id && conn.pending.get(msg.id);
    if (!p) return false;
    conn.pending.delete(msg.id);
    clearTimeout(p.timer);
    if (ok) p.resolve(msg);
    else {
      const err = new Error((msg.error && msg.error.message) || "error");
      err.code = msg.error && msg.error.code;
      err.details = (msg.error && msg.error.details) || {};
      err.reason = err.details.reason;
      p.reject(err);
    }
    return true;
  }

  function filters() {
    return filterExp ? { experiment_id: filterExp } : {};
  }

  function wantedChannels() {
    return CHANNELS.filter((ch) => $("ch-" + ch).checked && !conn.forbidden.has(ch));
  }

  // A channel the server says the token may not read: off, and the connection stays.
  function forbid(channel) {
    if (CHANNELS.includes(channel)) conn.forbidden.add(channel);
    conn.subscribed.delete(channel);
    updateSwitches();
    logSystem("This token may not read the " + channel + " channel: switched it off.");
  }

  // `recovered: false`: the server's history no longer reaches back; reload everything
  // (at most MAX_RESYNCS times in a row).
  function notRecovered() {
    if (conn.resyncs < MAX_RESYNCS) {
      conn.resyncs++;
      logSystem("The server's history no longer reaches back: reloading the state.");
      sync(true);
    } else {
      logSystem("The server's history no longer reaches back and reloading did not help: some updates may be missing.", true);
    }
  }

  // The snapshot of one channel, or null when the token may not read it.
  async function snapshot(channel) {
    if (conn.forbidden.has(channel)) return null;
    try {
      return await api("GET", "/api/v1/" + channel);
    } catch (e) {
      if (e.status === 403 && e.reason === "forbidden_channel") {
        conn.forbidden.add(channel);
        return null;
      }
      throw e;
    }
  }

  // Snapshot, then subscribe from the snapshot's last event id. With `resubscribe`, stop
  // the live stream first so that no event older than the snapshot lands on top of it.
  async function sync(resubscribe) {
    const ws = conn.ws;
    const gen = ++conn.syncGen;
    conn.ready = false;
    try {
      if (resubscribe && conn.subscribed.size) {
        await request({ type: "unsubscribe", channels: Array.from(conn.subscribed) });
        conn.subscribed.clear();
      }
      const [experiments, agents, deployments, alerts, sim, past, plan] = await Promise.all([
        snapshot("experiments"),
        snapshot("agents"),
        snapshot("deployments"),
        snapshot("alerts"),
        api("GET", "/api/sim"),
        loadPast(),
        fetchTimeline(),
      ]);
      if (gen !== conn.syncGen || conn.ws !== ws) return;
      updateSwitches();
      const loaded = { experiments: experiments, agents: agents, deployments: deployments, alerts: alerts };
      const seqs = Object.values(loaded)
        .filter(Boolean)
        .map((s) => seqOf(s.last_event_id));
      // Channels without a snapshot of their own start from the oldest one loaded.
      const base = seqs.length ? Math.min(...seqs) : seqOf(sim && sim.last_event_id);
      recentSeqs.clear();
      for (const ch of CHANNELS) {
        floors[ch] = loaded[ch] ? seqOf(loaded[ch].last_event_id) : base;
        lastSeq[ch] = floors[ch];
      }
      applySnapshot(loaded);
      applySim(sim, true);
      applyTimeline(plan);
      applyPast(past, sim);
      const channels = wantedChannels();
      if (channels.length) {
        const msg = { type: "subscribe", channels: channels, filters: filters() };
        const since = channels.filter((c) => floors[c] > 0).map((c) => [c, "evt-" + floors[c]]);
        if (since.length && !conn.skipReplay) msg.since = Object.fromEntries(since);
        if (conn.skipReplay) logSystem("Too many events to catch up on (closed as a slow consumer): continuing from now.");
        const resp = await request(msg);
        if (gen !== conn.syncGen || conn.ws !== ws) return;
        channels.forEach((c) => conn.subscribed.add(c));
        if (resp.recovered === false) {
          notRecovered();
          return;
        }
      }
      conn.ready = true;
      conn.attempts = 0;
      conn.resyncs = 0;
      conn.skipReplay = false; // one skipped catch-up is enough
      setConn("connected", "Connected" + (filterExp ? " · filtered to " + filterExp : ""));
      reconcile();
    } catch (e) {
      if (gen !== conn.syncGen || conn.ws !== ws) return;
      const channel = e.details && e.details.channel;
      if (e.reason === "forbidden_channel" && CHANNELS.includes(channel) && !conn.forbidden.has(channel)) {
        // Not a reason to drop the connection: leave that channel out and try again.
        forbid(channel);
        sync(resubscribe);
        return;
      }
      logSystem("Loading the state failed: " + e.message, true);
      // Start over on a fresh connection (with a fresh token if this one was refused).
      abandon(ws, 4000, "sync failed");
    }
  }

  // Make the server's subscriptions match the checkboxes.
  async function reconcile() {
    if (!conn.ready) return;
    const ws = conn.ws;
    const want = new Set(wantedChannels());
    const drop = Array.from(conn.subscribed).filter((c) => !want.has(c));
    const add = Array.from(want).filter((c) => !conn.subscribed.has(c));
    try {
      if (drop.length) {
        drop.forEach((c) => conn.subscribed.delete(c));
        await request({ type: "unsubscribe", channels: drop });
      }
      if (add.length) {
        add.forEach((c) => conn.subscribed.add(c));
        // Pick up where each channel left off (if the server's history still has it).
        const since = {};
        for (const c of add) if (lastSeq[c] > 0) since[c] = "evt-" + lastSeq[c];
        const msg = { type: "subscribe", channels: add, filters: filters() };
        if (Object.keys(since).length) msg.since = since;
        const resp = await request(msg);
        if (resp.recovered === false && conn.ws === ws && conn.ready) notRecovered();
      }
    } catch (e) {
      if (conn.ws !== ws) return;
      const channel = e.details && e.details.channel;
      if (e.reason === "forbidden_channel" && CHANNELS.includes(channel) && !conn.forbidden.has(channel)) {
        add.forEach((c) => conn.subscribed.delete(c));
        forbid(channel);
        reconcile();
        return;
      }
      logSystem("Changing subscriptions failed: " + e.message, true);
    }
  }

  function onFrame(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    switch (msg.type) {
      case "event":
        onEvent(msg);
        return;
      case "response": {
        settle(msg, true);
        if (msg.subscribed) logSystem("Subscribed: " + msg.subscribed.join(", ") + (filterExp ? " (experiment " + filterExp + ")" : ""));
        if (msg.unsubscribed) logSystem("Unsubscribed: " + msg.unsubscribed.join(", "));
        return;
      }
      case "pong":
        // A keepalive only: its timestamp is the schedule's time, which may run ahead of
        // the last event when the simulation lags, so the clock does not take it.
        settle(msg, true);
        return;
      case "error": {
        const err = msg.error || {};
        conn.lastError = err;
        settle(msg, false);
        const quiet = err.code === "UNAUTHORIZED" && expectedExpiry(conn.token, err);
        logSystem((err.code || "ERROR") + ": " + (err.message || ""), !quiet);
        return;
      }
      default:
        return;
    }
  }

  function onEvent(msg) {
    const seq = seqOf(msg.id);
    if (seq) {
      if (seq <= (floors[msg.channel] || 0) || recentSeqs.has(seq)) return;
      recentSeqs.add(seq);
      if (recentSeqs.size > DEDUPE_MAX) recentSeqs.delete(recentSeqs.values().next().value);
      if (seq > (lastSeq[msg.channel] || 0)) lastSeq[msg.channel] = seq;
    }
    noteTime(msg.timestamp);
    apply(msg);
    logLine("event", msg.timestamp, String(msg.channel), String(msg.event), () => summary(msg));
  }

  // --- simulation state and controls -----------------------------------------------------------

  function applySim(s, force) {
    if (!s || typeof s !== "object") return;
    const prev = state.sim;
    state.sim = s;
    simFaultMarkers(s);
    touch("sim");
    if (force) {
      noteTime(s.simulated_time, true);
      return;
    }
    // Someone restarted the simulation (another page, the CLI): load the new state.
    // Within one run the source's time never goes back.
    const t = parseTime(s.simulated_time);
    const before = prev ? parseTime(prev.simulated_time) : null;
    const restarted =
      prev && (prev.scenario !== s.scenario || prev.seed !== s.seed || (t !== null && before !== null && t < before));
    if (restarted && conn.ready) {
      logSystem("The simulation was restarted: reloading the state.");
      sync(true);
      return;
    }
    noteTime(s.simulated_time);
  }

  async function poll() {
    if (!conn.ready) return;
    try {
      applySim(await api("GET", "/api/sim"));
    } catch (e) {
      /* the socket's close tells the story */
      return;
    }
    // Nothing left to come (a scenario may start over), or another scenario: ask again.
    const other = state.sim && timeline.scenario !== null && state.sim.scenario !== timeline.scenario;
    if (other || timeline.failed || (!nextItem() && Date.now() - timeline.loaded > 15000)) loadTimeline();
  }
  setInterval(poll, POLL_MS);
  // Keepalive; no pong within the request timeout means a dead connection: drop it.
  setInterval(() => {
    const ws = conn.ws;
    if (!conn.ready || !ws) return;
    request({ type: "ping" }).catch((e) => {
      if (!e.timeout || conn.ws !== ws) return;
      logSystem("No answer to a ping within " + REQUEST_TIMEOUT_MS / 1000 + " s: reconnecting.", true);
      abandon(ws, 1006, "no answer to ping");
    });
  }, PING_MS);

  async function control(payload, done, path, status) {
    const say = status || statusIn("control-status");
    if (!isAdmin()) {
      say("Paste an admin token first.", true);
      return;
    }
    try {
      const resp = await api("POST", path || "/api/sim", payload);
      if (!path) applySim(resp, true);
      say(done(resp), false);
      return resp;
    } catch (e) {
      say("Refused" + (e.status ? " (" + e.status + ")" : "") + ": " + e.message, true);
      return null;
    }
  }

  $("btn-pause").addEventListener("click", () => control({ action: "pause" }, () => "Paused."));
  $("btn-resume").addEventListener("click", () => control({ action: "resume" }, () => "Running."));
  $("btn-step").addEventListener("click", () => control({ action: "step", seconds: 10 }, () => "Stepped 10 simulated seconds."));
  $("speed-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const speed = Number($("speed-input").value);
    control({ action: "speed", speed: speed }, (s) => "Speed ×" + s.speed + ".");
  });
  $("restart-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const payload = { action: "restart", scenario: $("restart-scenario").value.trim() };
    const seed = $("restart-seed").value.trim();
    if (seed !== "") payload.seed = Number(seed);
    const resp = await control(payload, (s) => "Restarted " + s.scenario + " (seed " + s.seed + ").");
    if (resp && conn.ready) sync(true);
  });
  $("fault-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const type = $("fault-type").value;
    const delivery = $("fault-type").selectedOptions[0].parentElement.label === "Delivery";
    const payload = { type: type };
    const target = $("fault-target").value.trim();
    const duration = $("fault-duration").value.trim();
    // "agent-a, agent-b": a list of agents (the server checks each one).
    if (target && !delivery) {
      payload.target = target.includes(",") ? target.split(",").map((a) => a.trim()).filter(Boolean) : target;
    }
    if (duration) payload.duration = duration;
    control(payload, () => "Fault injected: " + faultLabel(type, payload.target) + ".", "/api/sim/faults");
  });

  // --- channel switches and the experiment filter -----------------------------------------------

  const switches = $("channel-switches");
  for (const ch of CHANNELS) {
    const label = el("label");
    const box = el("input");
    box.type = "checkbox";
    box.id = "ch-" + ch;
    box.checked = true;
    box.addEventListener("change", reconcile);
    label.append(box, document.createTextNode(ch));
    switches.append(label);
  }

  $("exp-filter").addEventListener("change", (ev) => {
    filterExp = ev.target.value;
    touch("experiments");
    pickChartExperiment();
    // New filters apply to every channel: reload the state and subscribe with them.
    if (conn.ready) sync(true);
  });

  // --- start ---------------------------------------------------------------------------------

  resetTrends();
  renderTokenStatus();
  touch("all");
  connect();
})();
