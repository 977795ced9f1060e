// The fleet overview: one row per node, kept current by /api/live (server-sent events).
import {
  ago, celsius, compare, connectionBadge, duration, el, follow, mib, MEMORY_CGROUP_FIX, percent, sortableHeaders,
} from "./common.js";
import { followAlerts } from "./alerts.js";

const nodes = new Map(); // node_id -> summary
const rows = new Map(); // node_id -> <tr>
const sort = { key: "node_id", dir: 1 };
const table = document.querySelector("#fleet");
const tbody = table.querySelector("tbody");
const filter = document.querySelector("#filter");
const statusFilter = document.querySelector("#status-filter");
const problemsOnly = document.querySelector("#problems-only");
let pending = false;

const COLUMNS = ["node_id", "status", "cpu_percent", "memory_percent", "disk_percent", "temperature_c", "power",
  "containers", "agent_rss_mb", "cycles_lost_24h", "last_seen"];
const NUMERIC = new Set(["cpu_percent", "memory_percent", "disk_percent", "temperature_c", "containers",
  "agent_rss_mb", "cycles_lost_24h"]);
const STATUS_ORDER = { offline: 0, stale: 1, online: 2 };

function needsAttention(n) {
  return n.status !== "online" || n.under_voltage || n.under_voltage_24h || n.memory_cgroup_enabled === false
    || n.containers_unhealthy > 0 || n.containers_restarting > 0 || n.cycles_lost_24h > 0
    || n.containers_error !== null && n.containers_error !== undefined;
}

function sortValue(n, key) {
  if (key === "status") return STATUS_ORDER[n.status];
  if (key === "power") return (n.under_voltage ? 2 : 0) + (n.under_voltage_24h ? 1 : 0);
  if (key === "last_seen") return n.last_seen ? Date.parse(n.last_seen) : null;
  return n[key];
}

function cellsFor(n) {
  const link = el("a", { href: `/nodes/${encodeURIComponent(n.node_id)}`, text: n.node_id });
  const name = el("td", { class: "name", title: n.node_id }, link);
  if (n.memory_cgroup_enabled === false) {
    name.append(" ", el("span", { class: "warn", title: MEMORY_CGROUP_FIX, text: "memory cgroup off" }));
  }
  const since = n.status_since ? ` · ${duration((Date.now() - Date.parse(n.status_since)) / 1000)}` : "";
  const status = el("td", {}, el("span", { class: `badge st-${n.status}`, text: n.status }),
    el("span", { class: "muted", text: since }));
  const power = el("td");
  if (n.under_voltage === null && !n.under_voltage_24h) power.textContent = "—";
  else if (n.under_voltage) power.append(el("span", { class: "bad", text: "under-voltage now" }));
  else if (n.under_voltage_24h) power.append(el("span", { class: "warn", text: "under-voltage in 24 h" }));
  else power.textContent = "ok";
  const containers = el("td", { class: "num" });
  if (n.containers === null) containers.textContent = "—";
  else {
    containers.append(`${n.containers_running}/${n.containers}`);
    if (n.containers_unhealthy) containers.append(" ", el("span", { class: "bad", text: `${n.containers_unhealthy} unhealthy` }));
    if (n.containers_restarting) containers.append(" ", el("span", { class: "warn", text: `${n.containers_restarting} restarting` }));
    if (n.containers_error) containers.append(" ", el("span", { class: "warn", title: n.containers_error, text: "!" }));
  }
  const lost = el("td", { class: "num hide-narrow", text: n.cycles_lost_24h ?? "—" });
  if (n.cycles_lost_24h > 0) lost.className = "num hide-narrow warn";
  const agent = n.agent_rss_mb === null ? "—" : `${mib(n.agent_rss_mb)} · ${percent(n.agent_cpu_percent)}`;
  return [
    name,
    status,
    el("td", { class: "num", text: percent(n.cpu_percent) }),
    el("td", { class: "num", text: percent(n.memory_percent) }),
    el("td", { class: "num", text: percent(n.disk_percent) }),
    el("td", { class: "num", text: celsius(n.temperature_c) }),
    power,
    containers,
    el("td", { class: "num hide-narrow", text: agent }),
    lost,
    el("td", { class: "hide-narrow", title: n.last_seen ?? "", text: ago(n.last_seen) }),
  ];
}

function row(n) {
  let tr = rows.get(n.node_id);
  if (!tr) {
    tr = el("tr");
    tr.dataset.node = n.node_id;
    rows.set(n.node_id, tr);
  }
  tr.replaceChildren(...cellsFor(n));
  tr.querySelectorAll("td").forEach((td, i) => { td.dataset.col = COLUMNS[i]; });
  return tr;
}

function visible(n) {
  const text = filter.value.trim().toLowerCase();
  if (text && !n.node_id.toLowerCase().includes(text)) return false;
  if (statusFilter.value && n.status !== statusFilter.value) return false;
  return !problemsOnly.checked || needsAttention(n);
}

function render() {
  pending = false;
  const shown = [...nodes.values()].filter(visible);
  shown.sort((a, b) => compare(sortValue(a, sort.key), sortValue(b, sort.key), sort.dir)
    || a.node_id.localeCompare(b.node_id));
  tbody.replaceChildren(...shown.map((n) => rows.get(n.node_id)));
  const all = [...nodes.values()];
  const count = (s) => all.filter((n) => n.status === s).length;
  document.querySelector("#counts").textContent =
    `${all.length} nodes · ${count("online")} online · ${count("stale")} stale · ${count("offline")} offline` +
    (shown.length !== all.length ? ` · ${shown.length} shown` : "");
  document.querySelector("#empty").hidden = all.length > 0;
  const noCgroup = all.filter((n) => n.memory_cgroup_enabled === false).map((n) => n.node_id);
  const notice = document.querySelector("#cgroup-notice");
  notice.hidden = noCgroup.length === 0;
  if (noCgroup.length) {
    notice.replaceChildren(el("strong", { text: `Memory cgroup off on ${noCgroup.length} node(s): ` }),
      noCgroup.slice(0, 10).join(", ") + (noCgroup.length > 10 ? ", …" : ""), el("br"), MEMORY_CGROUP_FIX);
  }
}

function schedule() {
  if (!pending) { pending = true; requestAnimationFrame(render); }
}

follow("/api/live", "nodes", (data) => {
  for (const n of data.changed) { nodes.set(n.node_id, n); row(n); }
  for (const id of data.removed) { nodes.delete(id); rows.delete(id); }
  table.dataset.loaded = "true";
  schedule();
}, (up) => connectionBadge(document.querySelector("#conn"), up));

sortableHeaders(table.querySelector("thead"), sort, schedule);
for (const control of [filter, statusFilter, problemsOnly]) control.addEventListener("input", schedule);
// Relative times ("3 min ago") age without new data.
setInterval(() => { for (const n of nodes.values()) row(n); schedule(); }, 10_000);
followAlerts(document.querySelector("#alerts"));
