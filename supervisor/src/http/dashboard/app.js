// corral's dashboard: the fleet pushed over Server-Sent Events from
// /api/plugins?watch=1, a plugin page with its log followed live, and the
// REST API for what a person does. No framework, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const rows = new Map();          // name -> last ps row
const memory = new Map();        // name -> [[ms, rss]] over the last minutes
const MEMORY_WINDOW_MS = 5 * 60 * 1000;
let current = null;              // the plugin whose page is open
let logStream = null;
let eventStream = null;

function text(el, value) { el.textContent = value; return el; }
function make(tag, cls, value) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (value !== undefined) el.textContent = value;
  return el;
}
function bytes(n) {
  if (n == null) return "-";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
function duration(ms) {
  if (!ms) return "-";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}
// An exit reason as `ps` shows it: {"reason": "signal", "signal": "SIGKILL"}
// is signal(SIGKILL).
function exitText(reason) {
  if (!reason) return "-";
  if (typeof reason === "string") return reason;
  const { reason: kind, ...detail } = reason;
  const values = Object.values(detail);
  return values.length ? `${kind}(${values.join(", ")})` : String(kind);
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = body;
    init.headers["content-type"] = "application/json";
  }
  const answer = await fetch(path, init);
  const raw = await answer.text();
  let value = raw;
  try { value = raw ? JSON.parse(raw) : null; } catch (_) { /* plain text */ }
  return { ok: answer.ok, status: answer.status, value };
}

// The fleet table, row by row, kept in place so nothing flickers.
function renderFleet(list) {
  const body = $("#fleet tbody");
  const seen = new Set();
  const now = Date.now();
  let running = 0;
  for (const row of list) {
    seen.add(row.name);
    rows.set(row.name, row);
    if (row.state === "running") running++;
    const samples = memory.get(row.name) || [];
    samples.push([now, row.rss_bytes]);
    while (samples.length && samples[0][0] < now - MEMORY_WINDOW_MS) samples.shift();
    memory.set(row.name, samples);
    let tr = body.querySelector(`tr[data-plugin="${CSS.escape(row.name)}"]`);
    if (!tr) {
      tr = make("tr");
      tr.dataset.plugin = row.name;
      for (let i = 0; i < 10; i++) tr.appendChild(make("td"));
      const link = make("a", null, row.name);
      link.href = `#plugin/${encodeURIComponent(row.name)}`;
      tr.cells[0].appendChild(link);
      const bar = make("div", "bar");
      bar.appendChild(make("div", "fill"));
      tr.cells[5].appendChild(bar);
      tr.cells[5].appendChild(make("span", "bar-text"));
      for (const verb of ["start", "stop", "restart"]) {
        const button = make("button", "small", verb);
        button.dataset.verb = verb;
        button.addEventListener("click", () => act(row.name, verb));
        tr.cells[9].appendChild(button);
      }
      body.appendChild(tr);
    }
    const state = tr.cells[1];
    state.className = `state state-${row.state}`;
    state.dataset.state = row.state;
    text(state, row.state + (row.waiting_for ? ` (${row.waiting_for})` : ""));
    text(tr.cells[2], row.pid ?? "-");
    text(tr.cells[3], row.restarts);
    text(tr.cells[4], row.state === "running" ? duration(row.uptime_ms) : "-");
    const cap = row.memory_max_bytes;
    const share = cap ? Math.min(100, (100 * row.rss_bytes) / cap) : 0;
    const fill = tr.cells[5].querySelector(".fill");
    fill.style.width = `${share}%`;
    fill.className = share > 90 ? "fill hot" : share > 70 ? "fill warm" : "fill";
    text(tr.cells[5].querySelector(".bar-text"), cap ? `${bytes(row.rss_bytes)} / ${bytes(cap)}` : bytes(row.rss_bytes));
    text(tr.cells[6], `${(row.cpu_ms / 1000).toFixed(1)}s`);
    text(tr.cells[7], row.calls);
    text(tr.cells[8], exitText(row.last_exit));
  }
  for (const tr of [...body.rows]) {
    if (!seen.has(tr.dataset.plugin)) { tr.remove(); rows.delete(tr.dataset.plugin); }
  }
  text($("#summary"), `${running} of ${list.length} running`);
  if (current && rows.has(current)) renderStatus(rows.get(current));
}

function watchFleet() {
  const source = new EventSource("/api/plugins?watch=1");
  source.addEventListener("ps", (e) => {
    $("#link").dataset.state = "live";
    renderFleet(JSON.parse(e.data));
  });
  source.onerror = () => { $("#link").dataset.state = "lost"; };
}

async function act(name, verb) {
  const out = current === name ? $("#plugin-result") : null;
  if (out) text(out, `${verb}…`);
  const answer = await api("POST", `/api/plugins/${encodeURIComponent(name)}/${verb}`);
  if (out) text(out, answer.ok ? `${verb}: done` : `${verb}: ${answer.value.code}: ${answer.value.message}`);
}

// One plugin's page.
function renderStatus(row) {
  const dl = $("#plugin-status");
  dl.replaceChildren();
  const add = (k, v) => { dl.appendChild(make("dt", null, k)); dl.appendChild(make("dd", null, v)); };
  add("state", row.state);
  add("pid", row.pid ?? "-");
  add("restarts", row.restarts);
  add("uptime", duration(row.uptime_ms));
  add("memory", `${bytes(row.rss_bytes)}${row.memory_max_bytes ? " of " + bytes(row.memory_max_bytes) : ""}`);
  add("cpu", `${(row.cpu_ms / 1000).toFixed(1)}s`);
  add("sandbox", row.sandbox || "none");
  add("last exit", exitText(row.last_exit));
  if (row.status_text) add("status", row.status_text);
  drawMemory(row);
}

function drawMemory(row) {
  const canvas = $("#memory-chart");
  const g = canvas.getContext("2d");
  const samples = memory.get(row.name) || [];
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (samples.length < 2) return;
  const top = Math.max(row.memory_max_bytes || 0, ...samples.map((s) => s[1])) || 1;
  const t0 = Date.now() - MEMORY_WINDOW_MS;
  g.strokeStyle = "#4aa3df";
  g.lineWidth = 2;
  g.beginPath();
  samples.forEach(([t, v], i) => {
    const x = ((t - t0) / MEMORY_WINDOW_MS) * canvas.width;
    const y = canvas.height - (v / top) * (canvas.height - 10);
    if (i) g.lineTo(x, y); else g.moveTo(x, y);
  });
  g.stroke();
  if (row.memory_max_bytes) {
    g.strokeStyle = "#d9534f";
    g.setLineDash([4, 4]);
    g.beginPath();
    g.moveTo(0, 10);
    g.lineTo(canvas.width, 10);
    g.stroke();
    g.setLineDash([]);
  }
}

async function openPlugin(name) {
  current = name;
  $("#fleet-view").hidden = true;
  $("#plugin-view").hidden = false;
  text($("#plugin-name"), name);
  text($("#plugin-result"), "");
  text($("#call-result"), "");
  if (rows.has(name)) renderStatus(rows.get(name));
  const info = await api("GET", `/api/plugins/${encodeURIComponent(name)}`);
  if (info.ok) {
    const select = $("#call-action");
    select.replaceChildren();
    const actions = info.value.actions && info.value.actions.length ? info.value.actions : [{ name: "", description: "" }];
    for (const a of actions) {
      const option = make("option", null, a.name ? `${a.name}${a.description ? " — " + a.description : ""}` : "(type an action below)");
      option.value = a.name;
      select.appendChild(option);
    }
    const bus = $("#plugin-bus");
    bus.replaceChildren();
    for (const k of ["published", "delivered", "dropped", "queued", "denied_publishes", "denied_subscriptions"]) {
      bus.appendChild(make("dt", null, k.replace("_", " ")));
      bus.appendChild(make("dd", null, info.value.bus[k]));
    }
    const history = $("#plugin-history tbody");
    history.replaceChildren();
    for (const h of info.value.history.slice(-20).reverse()) {
      const tr = make("tr");
      tr.appendChild(make("td", null, new Date(h.at_unix_ms).toLocaleTimeString()));
      tr.appendChild(make("td", null, `${h.from} → ${h.to}`));
      tr.appendChild(make("td", null, exitText(h.reason)));
      tr.appendChild(make("td", null, h.note || ""));
      history.appendChild(tr);
    }
  }
  loadConfig(name);
  followLog(name);
}

// The config form, generated from the manifest's config_schema: one field a
// key, typed; secrets are password fields that say they are set, and are
// sent only when typed into.
let configShown = null;

function groupOf(name) {
  const m = /^(.*)\.(0|[1-9][0-9]*)$/.exec(name);
  return m ? m[1] : name;
}

async function loadConfig(name) {
  const fields = $("#config-fields");
  fields.replaceChildren();
  text($("#config-result"), "");
  const answer = await api("GET", `/api/plugins/${encodeURIComponent(groupOf(name))}/config`);
  if (!answer.ok) { text($("#config-result"), JSON.stringify(answer.value)); return; }
  renderConfig(answer.value);
}

function renderConfig(config) {
  configShown = config;
  const fields = $("#config-fields");
  fields.replaceChildren();
  text($("#config-file"), config.overrides_file);
  const schema = config.schema || {};
  const keys = Object.keys(schema).length ? Object.keys(schema) : Object.keys(config.values || {});
  if (!keys.length) fields.appendChild(make("p", "help", "This plugin takes no config."));
  for (const key of keys) {
    const entry = schema[key] || { type: typeof config.values[key] === "string" ? "string" : "table" };
    const value = (config.values || {})[key];
    const field = make("div", "field");
    const label = make("label", null, key);
    label.htmlFor = `config-${key}`;
    if (entry.required) label.appendChild(make("span", "required", " *"));
    field.appendChild(label);
    let input;
    if (entry.type === "boolean") {
      input = make("input");
      input.type = "checkbox";
      input.checked = value === true;
    } else if (entry.type === "array" || entry.type === "table") {
      input = make("textarea");
      input.rows = 2;
      input.value = value === undefined || value === null ? "" : JSON.stringify(value);
    } else {
      input = make("input");
      input.type = entry.secret ? "password" : (entry.type === "integer" || entry.type === "number") ? "number" : "text";
      if (entry.type === "integer") input.step = "1";
      if (entry.type === "number") input.step = "any";
      if (entry.secret) {
        input.placeholder = value ? "set (type to change)" : "not set";
        input.autocomplete = "new-password";
      }
      else input.value = value === undefined || value === null ? "" : String(value);
    }
    input.id = `config-${key}`;
    input.dataset.key = key;
    input.dataset.type = entry.type;
    input.dataset.secret = entry.secret ? "1" : "";
    input.dataset.initial = input.type === "checkbox" ? String(input.checked) : input.value;
    field.appendChild(input);
    if (entry.description) field.appendChild(make("div", "help", entry.description));
    const from = (config.sources || {})[key];
    if (from) field.appendChild(make("div", "from", `from ${from}`));
    fields.appendChild(field);
  }
}

// The fields changed since the form was drawn, typed as the schema says;
// an error names the field.
function configChanges() {
  const changes = {};
  for (const input of document.querySelectorAll("#config-fields [data-key]")) {
    const now = input.type === "checkbox" ? String(input.checked) : input.value;
    if (now === input.dataset.initial) continue;
    const key = input.dataset.key;
    const type = input.dataset.type;
    if (type === "boolean") changes[key] = input.checked;
    else if (now === "") changes[key] = null;
    else if (type === "integer" || type === "number") {
      const n = Number(now);
      if (!Number.isFinite(n) || (type === "integer" && !Number.isInteger(n))) throw new Error(`${key}: ${type === "integer" ? "a whole number" : "a number"}, not ${now}`);
      changes[key] = n;
    } else if (type === "array" || type === "table") {
      try { changes[key] = JSON.parse(now); } catch (e) { throw new Error(`${key}: not JSON (${e.message})`); }
    } else changes[key] = now;
  }
  return changes;
}

async function applyConfig(event) {
  event.preventDefault();
  if (!current) return;
  let changes;
  try { changes = configChanges(); } catch (e) { text($("#config-result"), e.message); return; }
  if (!Object.keys(changes).length) { text($("#config-result"), "nothing changed"); return; }
  const answer = await api("PUT", `/api/plugins/${encodeURIComponent(groupOf(current))}/config`, JSON.stringify(changes));
  if (!answer.ok) {
    const v = answer.value;
    text($("#config-result"), v && v.message ? v.message : JSON.stringify(v));
    return;
  }
  renderConfig(answer.value);
  const report = answer.value.report || {};
  const hooks = (report.failed_hooks || []).map((h) => `${h.plugin}: ${h.error}`);
  text($("#config-result"), hooks.length ? `applied, but a reload hook failed: ${hooks.join("; ")}` : "applied");
}

function followLog(name) {
  if (logStream) logStream.close();
  const pre = $("#plugin-log");
  pre.textContent = "";
  logStream = new EventSource(`/api/plugins/${encodeURIComponent(name)}/logs?follow=1&lines=200`);
  logStream.addEventListener("line", (e) => {
    pre.textContent += e.data + "\n";
    const lines = pre.textContent.split("\n");
    if (lines.length > 1000) pre.textContent = lines.slice(-1000).join("\n");
    pre.scrollTop = pre.scrollHeight;
  });
}

function closePlugin() {
  current = null;
  if (logStream) { logStream.close(); logStream = null; }
  $("#plugin-view").hidden = true;
  $("#fleet-view").hidden = false;
}

function route() {
  const hash = decodeURIComponent(location.hash.slice(1));
  if (hash.startsWith("plugin/")) openPlugin(hash.slice("plugin/".length));
  else closePlugin();
}

function watchEvents(pattern) {
  if (eventStream) eventStream.close();
  const pre = $("#events");
  pre.textContent = "";
  const query = pattern.split(/\s+/).filter(Boolean).map((p) => `pattern=${encodeURIComponent(p)}`).join("&");
  eventStream = new EventSource(`/api/events?${query}`);
  eventStream.addEventListener("event", (e) => {
    const ev = JSON.parse(e.data);
    pre.textContent += `${ev.seq} ${ev.topic} [${ev.source}] ${JSON.stringify(ev.payload)}\n`;
    const lines = pre.textContent.split("\n");
    if (lines.length > 500) pre.textContent = lines.slice(-500).join("\n");
    pre.scrollTop = pre.scrollHeight;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("#plugin-view .actions button")) {
    button.addEventListener("click", () => current && act(current, button.dataset.verb));
  }
  $("#back").addEventListener("click", (e) => { e.preventDefault(); location.hash = ""; });
  $("#call-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const action = $("#call-action").value;
    const answer = await api("POST", `/api/plugins/${encodeURIComponent(current)}/call/${encodeURIComponent(action)}`, $("#call-payload").value);
    text($("#call-result"), JSON.stringify(answer.value, null, 2));
  });
  $("#events-form").addEventListener("submit", (e) => { e.preventDefault(); watchEvents($("#events-pattern").value); });
  $("#config-form").addEventListener("submit", applyConfig);
  window.addEventListener("hashchange", route);
  watchFleet();
  watchEvents(">");
  route();
});
