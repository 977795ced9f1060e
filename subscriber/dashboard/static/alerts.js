// Active alerts (fleet and node pages) and a node's container events, polled from the API.
// Every string that came from a node goes into the page through textContent (el), never as markup.
import { ago, el, localTime, toLogin } from "./common.js";

const POLL_MS = 5000;

async function getJson(url) {
  const response = await fetch(url, { headers: { accept: "application/json" } });
  if (response.status === 404) return null; // alerts off, or no history on this subscriber
  if (response.status === 401) return toLogin();
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function poll(load) {
  const run = () => load().catch(() => {}).finally(() => setTimeout(run, POLL_MS));
  run();
}

function alertItem(alert, withNode) {
  const where = [withNode ? alert.node_id : null, alert.container].filter(Boolean).join(" / ");
  const title = withNode
    ? el("a", { href: `/nodes/${encodeURIComponent(alert.node_id)}`, text: where })
    : el("strong", { text: where || alert.node_id });
  return el("li", { class: "alert", "data-rule": alert.rule },
    title, " ",
    el("span", { class: "badge bad", text: alert.rule.replaceAll("_", " ") }), " ",
    el("span", { text: alert.value }), " ",
    el("span", { class: "muted", text: `since ${localTime(alert.since)} (${ago(alert.since)})` }),
    alert.muted ? el("span", { class: "muted", text: " · muted" }) : "");
}

// Fills <section id="alerts"> with the active alerts (of one node when nodeId is given); hidden when none.
export function followAlerts(section, nodeId = null) {
  const list = section.querySelector("ul");
  poll(async () => {
    const query = nodeId ? `?node=${encodeURIComponent(nodeId)}` : "";
    const alerts = await getJson(`/api/alerts${query}`);
    section.hidden = !alerts || alerts.length === 0;
    list.replaceChildren(...(alerts || []).map((a) => alertItem(a, !nodeId)));
  });
}

function describe(event) {
  if (event.action === "gap") return event.detail || "events may be missing";
  const parts = [];
  if (event.action === "die") {
    parts.push(`exit code ${event.exit_code ?? "?"}`);
    if (event.oom_killed) parts.push("OOM-killed");
    else if (event.stop_requested) parts.push("stopped on request");
  }
  if (event.action === "health_status") parts.push(event.health);
  if (event.count > 1) parts.push(`×${event.count} since ${localTime(event.first_timestamp)}`);
  return parts.join(", ");
}

// Fills <table id="events"> with the node's latest container events, newest first.
export function followEvents(table, nodeId) {
  const body = table.querySelector("tbody");
  poll(async () => {
    const events = await getJson(`/api/nodes/${encodeURIComponent(nodeId)}/events?limit=50`);
    table.closest("section").hidden = !events || events.length === 0;
    body.replaceChildren(...(events || []).map((e) => el("tr", { "data-action": e.action },
      el("td", { text: localTime(e.timestamp) }),
      el("td", { text: e.container_name || "—" }),
      el("td", { class: e.action === "die" && !e.stop_requested && e.exit_code ? "bad" : "", text: e.action }),
      el("td", { text: describe(e) }))));
  });
}
