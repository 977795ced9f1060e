// Shared helpers: formatting with human units, text-only DOM building, live event streams.
// Every string that came from a node goes into the page through textContent, never as markup.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

const dash = "—";

export function num(value, digits = 1) {
  return value === null || value === undefined || Number.isNaN(value) ? dash : Number(value).toFixed(digits);
}

export function percent(value) {
  return value === null || value === undefined ? dash : `${Number(value).toFixed(1)} %`;
}

export function mib(value) {
  if (value === null || value === undefined) return dash;
  if (Math.abs(value) >= 1024) return `${(value / 1024).toFixed(2)} GiB`;
  return `${value.toFixed(value >= 100 ? 0 : 1)} MiB`;
}

export function bytes(value) {
  if (value === null || value === undefined) return dash;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Math.abs(value);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${value < 0 ? "-" : ""}${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function rate(value) {
  return value === null || value === undefined ? dash : `${bytes(value)}/s`;
}

export function celsius(value) {
  return value === null || value === undefined ? dash : `${Number(value).toFixed(1)} °C`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return dash;
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function ago(iso) {
  if (!iso) return dash;
  return `${duration((Date.now() - Date.parse(iso)) / 1000)} ago`;
}

export function localTime(iso) {
  return iso ? new Date(iso).toLocaleString() : dash;
}

export const MEMORY_CGROUP_FIX =
  "Container memory reads 0 because the kernel's memory cgroup is off. On Raspberry Pi OS add " +
  "cgroup_enable=memory cgroup_memory=1 to the single line of /boot/firmware/cmdline.txt " +
  "(/boot/cmdline.txt before Bookworm) and reboot.";

// The login ended (logged out elsewhere, expired, a new password): back to the login page, then here.
export function toLogin() {
  location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
}

// An EventSource that reports its state to `onState(connected)` and hands each event's JSON to `onData`.
// The browser gives up on a stream answered with an error status (CLOSED): if that was a 401, log in
// again; otherwise try again a little later, as it does by itself after a dropped connection.
export function follow(url, eventName, onData, onState) {
  let source;
  const open = () => {
    source = new EventSource(url);
    source.addEventListener(eventName, (e) => onData(JSON.parse(e.data)));
    source.addEventListener("open", () => onState(true));
    source.addEventListener("error", () => {
      onState(false);
      if (source.readyState !== EventSource.CLOSED) return;
      fetch(url, { method: "HEAD" }).then((response) => {
        if (response.status === 401) toLogin();
        else setTimeout(open, 3000);
      }, () => setTimeout(open, 3000));
    });
  };
  open();
  return { close: () => source.close() };
}

export function connectionBadge(node, connected) {
  node.textContent = connected ? "live" : "reconnecting…";
  node.classList.toggle("down", !connected);
}

// Sortable table headers: buttons in <th data-key>, aria-sort reflects the order.
export function sortableHeaders(thead, state, onChange) {
  for (const th of thead.querySelectorAll("th[data-key]")) {
    const button = th.querySelector("button");
    button.addEventListener("click", () => {
      const key = th.dataset.key;
      state.dir = state.key === key ? -state.dir : (th.classList.contains("num") ? -1 : 1);
      state.key = key;
      for (const other of thead.querySelectorAll("th[data-key]")) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
      onChange();
    });
  }
}

export function compare(a, b, dir) {
  const missingA = a === null || a === undefined;
  const missingB = b === null || b === undefined;
  if (missingA || missingB) return missingA === missingB ? 0 : missingA ? 1 : -1; // blanks last
  if (typeof a === "string" || typeof b === "string") return dir * String(a).localeCompare(String(b));
  return dir * (a - b);
}
