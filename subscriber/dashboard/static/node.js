// One node: live facts and containers (/api/nodes/{id}/live), charts from the tiers (/series).
import {
  celsius, compare, connectionBadge, duration, el, follow, localTime, mib, MEMORY_CGROUP_FIX, num, percent,
  rate, sortableHeaders, toLogin,
} from "./common.js";
import { followAlerts, followEvents } from "./alerts.js";

const nodeId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
const api = `/api/nodes/${encodeURIComponent(nodeId)}`;
const RANGES = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000, "1y": 31536000 };
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf"];
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const pct1 = (v) => (v === null || v === undefined ? "—" : `${v.toFixed(1)} %`);

// Each chart: one request (scope, fields, stats) and how its columns become lines.
const CHARTS = [
  { id: "cpu", title: "CPU", fields: ["cpu_percent"], stats: ["avg", "max"], fmt: pct1, range: [0, 100],
    line: (c) => ({ label: c.stat === "avg" ? "average" : "peak", dash: c.stat === "max" ? [4, 4] : undefined }) },
  { id: "cores", title: "CPU per core", scope: "cores", fields: ["cpu"], fmt: pct1, range: [0, 100],
    line: (c) => ({ label: `core ${c.label}` }) },
  { id: "load", title: "Load average", fields: ["load_1", "load_5", "load_15"], fmt: (v) => num(v, 2),
    line: (c) => ({ label: c.field.replace("load_", "") + " min" }) },
  { id: "memory", title: "Memory and swap used", fields: ["memory_used_mb", "swap_used_mb", "memory_total_mb"],
    fmt: mib, line: (c) => ({ label: { memory_used_mb: "memory", swap_used_mb: "swap", memory_total_mb: "RAM size" }[c.field],
      dash: c.field === "memory_total_mb" ? [2, 4] : undefined }) },
  { id: "disk", title: "Root filesystem used", fields: ["disk_percent"], fmt: pct1, range: [0, 100],
    line: () => ({ label: "disk" }) },
  { id: "network", title: "Network (physical interfaces)", fields: ["network_recv_rate", "network_sent_rate"],
    fmt: rate, line: (c) => ({ label: c.field === "network_recv_rate" ? "receive" : "transmit" }) },
  { id: "temperature", title: "Temperature · under-voltage", fields: ["temperature_c", "under_voltage"],
    stats: ["avg", "max"], fmt: celsius, build: temperatureLines },
  { id: "agent", title: "The agent's own cost", fields: ["agent_rss_mb", "agent_cpu_percent"], fmt: mib,
    build: agentLines },
  { id: "lost", title: "Cycles lost in delivery", fields: ["cycles_lost"], fmt: (v) => num(v, 0), bars: true,
    line: () => ({ label: "cycles lost" }) },
  { id: "ccpu", title: "Containers · CPU (100 % = one core)", scope: "containers", fields: ["cpu_percent"], fmt: pct1,
    line: (c) => ({ label: c.label }) },
  { id: "cmem", title: "Containers · memory", scope: "containers", fields: ["memory_usage_mb"], fmt: mib,
    line: (c) => ({ label: c.label }) },
];

function temperatureLines(table) {
  const col = (f, s) => table.series.find((c) => c.field === f && c.stat === s);
  const temp = col("temperature_c", "avg");
  const uv = col("under_voltage", "max");
  const marks = temp.values.map((v, i) => (uv.values[i] > 0 ? (v ?? 0) : null));
  return [
    { label: "temperature", values: temp.values },
    { label: "under-voltage", values: marks, stroke: css("--bad"), points: true },
  ];
}

function agentLines(table) {
  const col = (f) => table.series.find((c) => c.field === f);
  return [
    { label: "resident memory", values: col("agent_rss_mb").values },
    { label: "CPU", values: col("agent_cpu_percent").values, scale: "%", fmt: pct1 },
  ];
}

let range = RANGES[new URLSearchParams(location.hash.slice(1)).get("range")] ? new URLSearchParams(location.hash.slice(1)).get("range") : "1h";
const charts = new Map(); // id -> { plot, box }
let generation = 0;

function chartBox(def) {
  let entry = charts.get(def.id);
  if (!entry) {
    const box = el("div", { class: "chart", "data-chart": def.id });
    box.append(el("h2", { text: def.title }), el("div", { class: "plot" }));
    document.querySelector("#charts").append(box);
    entry = { box, plot: null };
    charts.set(def.id, entry);
  }
  return entry;
}

function linesOf(def, table) {
  if (def.build) return def.build(table);
  return table.series.map((c) => ({ ...def.line(c), values: c.values }));
}

function draw(def, table) {
  const entry = chartBox(def);
  const target = entry.box.querySelector(".plot");
  entry.plot?.destroy();
  entry.plot = null;
  target.replaceChildren();
  const lines = linesOf(def, table);
  const hasData = lines.some((l) => l.values.some((v) => v !== null));
  entry.box.dataset.source = table.source;
  entry.box.dataset.points = String(table.timestamps.length);
  entry.box.dataset.state = hasData ? "drawn" : "empty";
  if (!hasData) {
    target.append(el("div", { class: "empty", text: "No data in this range" }));
    return;
  }
  const fg = css("--muted");
  const grid = css("--grid");
  const axis = (scale, fmt, side) => ({
    scale, side, stroke: fg, grid: { stroke: grid, show: side !== 1 }, ticks: { stroke: grid }, size: 84,
    values: (u, ticks) => ticks.map((v) => fmt(v)),
    incrs: def.bars ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10000, 100000] : undefined,
  });
  const scales = { x: { time: true }, y: def.range ? { range: def.range } : { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } };
  const axes = [{ stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid } }, axis("y", def.fmt, 3)];
  if (lines.some((l) => l.scale === "%")) {
    scales["%"] = { range: (u, min, max) => [0, Math.max(1, max * 1.1)] };
    axes.push(axis("%", pct1, 1));
  }
  const series = [{ value: (u, v) => (v === null ? "—" : new Date(v * 1000).toLocaleString()) }];
  lines.forEach((l, i) => {
    const color = l.stroke || PALETTE[i % PALETTE.length];
    series.push({
      label: l.label, stroke: color, width: 1.5, dash: l.dash, scale: l.scale || "y", spanGaps: false,
      value: (u, v) => (l.fmt || def.fmt)(v),
      points: l.points ? { show: true, size: 7, fill: color, stroke: color } : { show: false },
      paths: l.points ? () => null : def.bars ? uPlot.paths.bars({ size: [0.8, 40, 2] }) : undefined,
      fill: def.bars ? `${color}88` : undefined,
    });
  });
  const data = [table.timestamps, ...lines.map((l) => l.values)];
  entry.plot = new uPlot({
    width: Math.max(280, entry.box.clientWidth - 18), height: 220, series, axes, scales,
    cursor: { sync: { key: "otto-node" }, focus: { prox: 16 } },
    legend: { live: true },
  }, data, target);
}

async function loadChart(def, gen) {
  const end = new Date();
  const start = new Date(end.getTime() - RANGES[range] * 1000);
  const box = chartBox(def).box;
  const width = box.clientWidth || 600;
  const query = new URLSearchParams({
    scope: def.scope || "node", fields: def.fields.join(","), stats: (def.stats || ["avg"]).join(","),
    start: start.toISOString(), end: end.toISOString(), points: String(Math.min(1500, Math.max(10, width))),
  });
  const response = await fetch(`${api}/series?${query}`);
  if (response.status === 401) return toLogin();
  if (gen !== generation) return;
  if (!response.ok) {
    box.dataset.state = "error";
    box.querySelector(".plot").replaceChildren(el("div", { class: "empty", text: `Cannot load: HTTP ${response.status}` }));
    return;
  }
  draw(def, await response.json());
}

async function loadCharts() {
  generation += 1;
  const gen = generation;
  document.querySelector("#charts").dataset.range = range;
  document.querySelector("#charts").dataset.loading = "true";
  await Promise.all(CHARTS.map((def) => loadChart(def, gen).catch(() => {})));
  if (gen === generation) document.querySelector("#charts").dataset.loading = "false";
}

function rangeButtons() {
  const group = document.querySelector("#ranges");
  for (const name of Object.keys(RANGES)) {
    const button = el("button", { type: "button", "aria-pressed": String(name === range), text: name });
    button.addEventListener("click", () => {
      range = name;
      history.replaceState(null, "", `#range=${name}`);
      for (const b of group.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.textContent === name));
      loadCharts();
    });
    group.append(button);
  }
}

// ---- live facts and containers ----

const containerSort = { key: "container_name", dir: 1 };
let latest = null;
let previousBatch = null; // { t, byName } for rates between consecutive batches
const rates = new Map(); // name -> { network_rx_rate, ... }

function updateRates(batch) {
  const t = Date.parse(batch.timestamp) / 1000;
  const byName = new Map(batch.containers.map((c) => [c.container_name, c]));
  if (previousBatch && t > previousBatch.t) {
    const dt = t - previousBatch.t;
    for (const c of batch.containers) {
      const before = previousBatch.byName.get(c.container_name);
      if (!before) continue;
      const r = (f) => (c[f] >= before[f] ? (c[f] - before[f]) / dt : c[f] / dt);
      rates.set(c.container_name, {
        network_rx_rate: r("network_rx_bytes"), network_tx_rate: r("network_tx_bytes"),
        block_read_rate: r("block_read_bytes"), block_write_rate: r("block_write_bytes"),
      });
    }
  }
  if (!previousBatch || t > previousBatch.t) previousBatch = { t, byName };
}

async function seedRates() {
  const end = new Date();
  const query = new URLSearchParams({
    scope: "containers", fields: "network_rx_rate,network_tx_rate,block_read_rate,block_write_rate",
    start: new Date(end.getTime() - 180_000).toISOString(), end: end.toISOString(), points: "60",
  });
  const response = await fetch(`${api}/series?${query}`);
  if (!response.ok) return;
  const table = await response.json();
  for (const c of table.series) {
    const last = [...c.values].reverse().find((v) => v !== null);
    if (last === undefined || rates.get(c.label)?.[c.field] !== undefined) continue;
    rates.set(c.label, { ...(rates.get(c.label) || {}), [c.field]: last });
  }
  renderContainers();
}

function renderFacts(detail) {
  document.querySelector("#node-id").textContent = detail.node_id;
  document.title = `otto-metrics · ${detail.node_id}`;
  const since = detail.node_status?.timestamp && detail.status === "online" ? detail.node_status.timestamp : detail.last_seen;
  document.querySelector("#status").replaceChildren(
    el("span", { class: `badge st-${detail.status}`, "data-status": detail.status, text: detail.status }),
    el("span", { class: "muted", text: since ? ` since ${localTime(since)}` : "" }),
  );
  const m = detail.metrics;
  const facts = [];
  if (m) {
    facts.push(["CPU", `${percent(m.cpu_percent)} of ${m.cpu_count} cores`],
      ["memory", `${mib(m.memory_used_mb)} of ${mib(m.memory_total_mb)}`],
      ["disk", m.disk_total_gb === null ? "—" : `${num(m.disk_used_gb)} of ${num(m.disk_total_gb)} GiB`],
      ["temperature", celsius(m.temperature_c)],
      ["power", m.under_voltage === null ? "—" : m.under_voltage ? "UNDER-VOLTAGE" : "ok"],
      ["uptime", duration(m.uptime_seconds)], ["arch", m.agent.arch], ["agent", m.agent.version],
      ["agent cost", `${mib(m.agent.rss_mb)} · ${percent(m.agent.cpu_percent)}`],
      ["outbox", `${m.agent.buffered} queued · ${m.agent.dropped} dropped`],
      ["every", `${m.interval_seconds} s`]);
  }
  facts.push(["last seen", localTime(detail.last_seen)]);
  if (detail.clock_skew_seconds !== null && Math.abs(detail.clock_skew_seconds) > 5) {
    facts.push(["clock skew", `${detail.clock_skew_seconds.toFixed(0)} s`]);
  }
  document.querySelector("#facts").replaceChildren(...facts.map(([k, v]) => el("li", {}, el("span", { text: k }), v)));
  const notice = document.querySelector("#cgroup-notice");
  notice.hidden = !(m && m.memory_cgroup_enabled === false);
  notice.textContent = MEMORY_CGROUP_FIX;
  const error = document.querySelector("#containers-error");
  error.hidden = !detail.containers?.error;
  error.textContent = detail.containers?.error ? `Containers: ${detail.containers.error}` : "";
}

function containerValue(c, key) {
  if (key === "uptime") return c.started_at ? Date.now() - Date.parse(c.started_at) : null;
  if (key.endsWith("_rate")) return rates.get(c.container_name)?.[key] ?? null;
  return c[key];
}

function renderContainers() {
  const tbody = document.querySelector("#containers tbody");
  const list = latest?.containers?.containers ?? [];
  document.querySelector("#container-count").textContent = latest?.containers ? `${list.length}` : "";
  const sorted = [...list].sort((a, b) => compare(containerValue(a, containerSort.key), containerValue(b, containerSort.key),
    containerSort.dir) || a.container_name.localeCompare(b.container_name));
  tbody.replaceChildren(...sorted.map((c) => {
    const r = rates.get(c.container_name) || {};
    const health = el("td", { text: c.health ?? "—" });
    if (c.health === "unhealthy") health.className = "bad";
    const state = el("td", { text: c.state });
    if (c.state !== "running") state.className = "warn";
    const tr = el("tr", {},
      el("td", { class: "name", title: c.container_name, text: c.container_name }),
      state, health,
      el("td", { class: "num", text: pct1(c.cpu_percent) }),
      el("td", { class: "num", text: `${mib(c.memory_usage_mb)} / ${mib(c.memory_limit_mb)}` }),
      el("td", { class: "num", text: `${rate(r.network_rx_rate)} / ${rate(r.network_tx_rate)}` }),
      el("td", { class: "num", text: `${rate(r.block_read_rate)} / ${rate(r.block_write_rate)}` }),
      el("td", { class: "num", text: c.pids }),
      el("td", { class: "num", text: c.restart_count }),
      el("td", { class: "name", title: c.image, text: c.image }),
      el("td", { class: "num", text: c.started_at ? duration((Date.now() - Date.parse(c.started_at)) / 1000) : "—" }),
    );
    tr.dataset.container = c.container_name;
    return tr;
  }));
}

function start() {
  followAlerts(document.querySelector("#alerts"), nodeId);
  followEvents(document.querySelector("#events"), nodeId);
  follow(`${api}/live`, "node", (data) => {
    const detail = data.changed[0];
    if (!detail) return;
    latest = detail;
    if (detail.containers) updateRates(detail.containers);
    renderFacts(detail);
    renderContainers();
    document.querySelector("main").dataset.loaded = "true";
  }, (up) => connectionBadge(document.querySelector("#conn"), up));

  sortableHeaders(document.querySelector("#containers thead"), containerSort, renderContainers);
  rangeButtons();
  for (const def of CHARTS) chartBox(def);
  loadCharts();
  seedRates();
  new ResizeObserver(() => {
    for (const { box, plot } of charts.values()) {
      const width = box.clientWidth - 18;
      if (plot && width > 0 && Math.abs(plot.width - width) > 2) plot.setSize({ width: Math.max(280, width), height: 220 });
    }
  }).observe(document.querySelector("#charts"));
  // Short ranges follow the present; long ones barely move in a minute.
  setInterval(() => { if (RANGES[range] <= 86400) loadCharts(); }, 30_000);
}

// A node the subscriber does not know (a typo, or forgotten after the retention) gets a plain answer.
fetch(api).then((response) => {
  if (response.status === 401) return toLogin();
  document.querySelector("#node-id").textContent = nodeId;
  if (response.status === 404) {
    document.querySelector("#conn").textContent = "";
    document.querySelector("main").replaceChildren(el("p", { class: "notice", "data-unknown": "true",
      text: `No node called "${nodeId}" is known to this control plane (yet).` }), el("a", { href: "/", text: "Back to the fleet" }));
    return;
  }
  start();
});
