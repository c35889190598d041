// Sluice console: polls the admin JSON API and follows the audit tail.
// No libraries; everything is served by Sluice itself.
"use strict";

const TAIL_MAX = 200;     // audit lines kept in the page
const SPARK_SECONDS = 60; // qps history in the sparkline
const RATE_SECONDS = 5;   // qps is averaged over this long

const $ = (id) => document.getElementById(id);

// --- the admin token and the fragment ------------------------------------
// The token comes from a #token=... fragment (then removed from the address
// bar) or the form shown on a 401, and is kept in sessionStorage, for this
// tab only. #where=EXPR (URI-encoded) presets the audit tail's filter.
const TOKEN_KEY = "sluice.admin_token";
(function readFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  if (params.has("where")) $("tail-where").value = params.get("where");
})();

function authHeaders() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: "Bearer " + t } : {};
}

class Unauthorized extends Error {}

function needToken() {
  $("auth").hidden = false;
  setStatus("the admin API needs a token", true);
}

$("auth").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("auth-token").value.trim());
  $("auth-token").value = "";
  $("auth").hidden = true;
  setStatus("");
  refreshAll();
  startTail();
});

async function api(path, opts = {}) {
  const resp = await fetch(path, { ...opts, headers: { ...authHeaders(), ...(opts.headers || {}) }, cache: "no-store" });
  if (resp.status === 401) {
    needToken();
    throw new Unauthorized("401");
  }
  const body = await resp.json().catch(() => null);
  if (!resp.ok) {
    throw new Error((body && body.error) || resp.status + " " + resp.statusText);
  }
  return body;
}

function setStatus(text, bad) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("bad", !!bad);
}

// --- small DOM helpers ----------------------------------------------------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function fillBody(table, rows, empty) {
  const tbody = $(table).tBodies[0];
  const cols = $(table).tHead.rows[0].cells.length;
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: cols }, empty))]));
}

const ms = (us) => (us / 1000).toFixed(us < 10000 ? 2 : 1);
const num = (n) => Number(n).toLocaleString("en-US");

// Runs fn now and every `every` ms, one call at a time.
function poll(fn, every) {
  const tick = async () => {
    try {
      await fn();
    } catch (err) {
      if (!(err instanceof Unauthorized)) setStatus(String(err.message || err), true);
    }
    setTimeout(tick, every);
  };
  tick();
}

// --- servers --------------------------------------------------------------
async function refreshServers() {
  const servers = await api("/v1/servers");
  fillBody("servers", servers.map((s) => {
    const lag = s.lag_seconds < 0 ? "–" : s.lag_seconds.toFixed(1) + " s";
    const drain = s.role === "replica" || s.maintenance
      ? el("button", { class: "small", onclick: () => setMaintenance(s.name, !s.maintenance) }, s.maintenance ? "undrain" : "drain")
      : null;
    return el("tr", { "data-server": s.name },
      el("td", { class: "name role-" + s.role }, s.name),
      el("td", {}, s.address),
      el("td", {}, el("span", { class: "badge role-" + s.role }, s.role)),
      el("td", {}, el("span", { class: "badge state-" + s.state }, s.state), s.read_only ? el("span", { class: "note" }, " read-only") : null),
      el("td", { class: "num" }, lag),
      el("td", { class: "mono" }, s.gtid_position || ""),
      el("td", {}, s.version || ""),
      el("td", { class: "pool" }, ...(s.pool || []).map((p) =>
        el("div", { title: p.waits + " waits, " + p.timeouts + " timeouts" },
          p.user + ": " + p.in_use + "/" + p.open + " in use" + (p.timeouts ? ", " + p.timeouts + " timeouts" : "")))),
      el("td", { class: "error" }, s.last_error || "",
        ...(s.privilege_gaps || []).map((g) => el("div", { class: "privilege-gap" }, g))),
      el("td", {}, drain));
  }), "no servers");
  setStatus("");
}

async function setMaintenance(name, on) {
  if (on && !confirm("Drain " + name + "? It takes no new reads until undrained.")) return;
  try {
    await api("/v1/servers/" + encodeURIComponent(name) + "/maintenance", { method: on ? "POST" : "DELETE" });
    await refreshServers();
  } catch (err) {
    if (!(err instanceof Unauthorized)) setStatus(name + ": " + err.message, true);
  }
}

// --- live figures: qps from successive /v1/stats ---------------------------
// qps is the growth of commands_total over the last RATE_SECONDS of the
// server's clock; the sparkline is placed by the page's clock (the same,
// unless the page runs in a test's virtual time).
const samples = []; // {at: server ms, commands}
const rates = [];   // {t: page ms, qps}

async function refreshStats() {
  const st = await api("/v1/stats");
  const at = Date.parse(st.at);
  const commands = st.proxy.commands_total;
  $("sessions-count").textContent = num(st.proxy.sessions);
  $("commands-total").textContent = num(commands);
  const last = samples[samples.length - 1];
  if (last && at === last.at) return;
  if (last && (at < last.at || commands < last.commands)) samples.length = 0; // Sluice restarted
  samples.push({ at, commands });
  while (samples.length > 2 && samples[1].at <= at - RATE_SECONDS * 1000) samples.shift();
  const first = samples[0];
  if (samples.length > 1) {
    const qps = (commands - first.commands) / ((at - first.at) / 1000);
    const now = Date.now();
    rates.push({ t: now, qps });
    while (rates.length && rates[0].t < now - SPARK_SECONDS * 1000) rates.shift();
    $("qps").textContent = qps < 10 ? qps.toFixed(1) : num(Math.round(qps));
    $("qps").dataset.qps = qps.toFixed(3);
    drawSpark(now);
  }
}

function drawSpark(now) {
  const max = Math.max(1, ...rates.map((r) => r.qps));
  const w = 120, h = 30;
  const pts = rates.map((r) => {
    const x = w - ((now - r.t) / (SPARK_SECONDS * 1000)) * w;
    const y = h - 1 - (r.qps / max) * (h - 2);
    return x.toFixed(1) + "," + y.toFixed(1);
  });
  $("qps-line").setAttribute("points", pts.join(" "));
  $("qps-spark").setAttribute("aria-label", "queries per second, last 60 s, peak " + max.toFixed(1));
}

// --- top digests and sessions ---------------------------------------------
async function refreshDigests() {
  const digests = await api("/v1/digests?limit=10&sort=total");
  fillBody("digests", (digests || []).map((d) => el("tr", { "data-digest": d.digest },
    el("td", { class: "mono fingerprint", title: d.digest }, d.fingerprint),
    el("td", { class: "num" }, num(d.count)),
    el("td", { class: "num" }, ms(d.total_us)),
    el("td", { class: "num" }, ms(d.avg_us)),
    el("td", { class: "num" }, ms(d.p99_us)),
    el("td", { class: "num" }, ms(d.max_us)),
    el("td", { class: "num" }, num(d.rows)),
    el("td", { class: d.errors ? "num error" : "num" }, num(d.errors)))), "no statements yet");
}

async function refreshSessions() {
  const sessions = await api("/v1/sessions");
  fillBody("sessions", (sessions || []).map((s) => el("tr", {},
    el("td", { class: "num" }, s.id),
    el("td", {}, s.user),
    el("td", {}, s.client),
    el("td", {}, s.db || ""),
    el("td", { class: "num" }, num(s.statements)),
    el("td", {}, s.in_transaction ? "yes" : ""),
    el("td", {}, (s.backends || []).join(", ")),
    el("td", {}, s.pinned || ""))), "no sessions");
}

function refreshAll() {
  return Promise.allSettled([refreshServers(), refreshStats(), refreshDigests(), refreshSessions()]);
}

// --- audit tail: server-sent events read with fetch -----------------------
// EventSource cannot send the Authorization header, so the stream is read
// with fetch() and parsed here ("data: JSON\n\n"; "event: error").
let tailAbort = null;
let tailPaused = false;
let tailSkipped = 0;

function tailStatus(text, bad) {
  const s = $("tail-status");
  s.textContent = text;
  s.classList.toggle("bad", !!bad);
}

function startTail(since = "1m") {
  if (tailAbort) tailAbort.abort();
  const ctl = new AbortController();
  tailAbort = ctl;
  const where = $("tail-where").value.trim();
  const url = "/v1/audit/tail?since=" + encodeURIComponent(since) + (where ? "&where=" + encodeURIComponent(where) : "");
  tailStatus("connecting…");
  followTail(url, ctl.signal).then((outcome) => {
    if (ctl.signal.aborted || outcome === "stop") return;
    // The stream ended or broke: resume from where it stopped.
    const dropped = Date.now();
    setTimeout(() => {
      if (tailAbort === ctl) startTail(Math.ceil((Date.now() - dropped) / 1000) + 1 + "s");
    }, 3000);
  });
}

async function followTail(url, signal) {
  let resp;
  try {
    resp = await fetch(url, { headers: authHeaders(), signal, cache: "no-store" });
  } catch (err) {
    if (!signal.aborted) tailStatus("disconnected: " + err.message + "; retrying", true);
    return "retry";
  }
  if (resp.status === 401) {
    needToken();
    tailStatus("needs the admin token", true);
    return "stop";
  }
  if (!resp.ok) {
    const body = await resp.json().catch(() => null);
    tailStatus((body && body.error) || resp.status + " " + resp.statusText, true);
    return resp.status === 404 || resp.status === 400 ? "stop" : "retry";
  }
  tailStatus(tailPaused ? "paused" : "following");
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value.replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const outcome = tailEvent(block);
        if (outcome === "stop" || outcome === "end") {
          reader.cancel().catch(() => {});
          return outcome === "stop" ? "stop" : "retry";
        }
      }
    }
  } catch (err) {
    if (signal.aborted) return "stop";
    tailStatus("disconnected: " + err.message + "; retrying", true);
    return "retry";
  }
  tailStatus("stream ended; reconnecting", true);
  return "retry";
}

function tailEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return;
  if (event === "error") {
    const msg = data.join("\n");
    tailStatus(msg, true);
    // A where expression that does not compile is a 400 before the
    // stream starts; an error in the stream is retried.
    return "end";
  }
  let rec;
  try {
    rec = JSON.parse(data.join("\n"));
  } catch {
    return;
  }
  if (tailPaused) {
    tailSkipped++;
    tailStatus("paused, " + tailSkipped + " skipped");
    return;
  }
  addTailLine(rec);
}

function addTailLine(r) {
  const ts = r.ts ? new Date(r.ts) : null;
  const time = ts && !isNaN(ts) ? ts.toLocaleTimeString("en-GB", { hour12: false }) + "." + String(ts.getMilliseconds()).padStart(3, "0") : "";
  const who = (r.user || "") + (r.client ? "@" + r.client : "");
  const failed = r.error_code || r.ok === false;
  let text = r.query || r.error || "";
  if (r.type === "quit") text = (r.statements ?? 0) + " statements";
  const li = el("li", { class: "rec type-" + (r.type || "other") + (failed ? " failed" : "") },
    el("span", { class: "ts" }, time),
    el("span", { class: "type" }, r.type || ""),
    el("span", { class: "who" }, who),
    el("span", { class: "server" }, r.server || ""),
    el("span", { class: "num dur" }, r.duration_us !== undefined ? ms(r.duration_us) + " ms" : ""),
    el("span", { class: "text mono" }, text, r.error_code ? el("span", { class: "error" }, " [" + r.error_code + "] " + (r.query ? r.error || "" : "")) : null));
  li.title = JSON.stringify(r);
  const list = $("tail");
  list.prepend(li);
  while (list.childElementCount > TAIL_MAX) list.lastElementChild.remove();
}

// A new filter restarts the stream, showing the last minute's matches.
let appliedWhere = $("tail-where").value.trim();
function applyWhere(force) {
  const where = $("tail-where").value.trim();
  if (where === appliedWhere && !force) return;
  appliedWhere = where;
  $("tail").replaceChildren();
  startTail();
}
$("tail-form").addEventListener("submit", (e) => {
  e.preventDefault();
  applyWhere(true);
});
$("tail-where").addEventListener("change", () => applyWhere(false));
$("tail-pause").addEventListener("click", () => {
  tailPaused = !tailPaused;
  tailSkipped = 0;
  $("tail-pause").textContent = tailPaused ? "Resume" : "Pause";
  tailStatus(tailPaused ? "paused" : "following");
});
$("tail-clear").addEventListener("click", () => $("tail").replaceChildren());

// --- start ----------------------------------------------------------------
poll(refreshStats, 1000);
poll(refreshServers, 2000);
poll(refreshDigests, 3000);
poll(refreshSessions, 3000);
startTail();
