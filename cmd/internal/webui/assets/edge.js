"use strict";
// The edge dashboard: GET /events/stream (Server-Sent Events) feeds it.
// Everything read from the API's JSON goes through S below: a renamed
// field is one line here.
const S = {
  deviceId: s => s.deviceId,
  uplink: s => s.uplink,                      // null when standalone
  linkState: s => s.uplink ? s.uplink.state : "standalone",
  linkText: s => s.link,
  since: u => u.since,
  lastError: u => u.lastError,
  sent: u => u.messagesSent,
  queues: s => s.queues || [],
  qName: q => q.name,
  qDepth: q => q.depth,
  qBytes: q => q.bytes,
  qOldest: q => q.oldestAgeSeconds,
  qIn: q => q.appended,
  qOut: q => q.acked,
  qExpired: q => q.expired,
  qDropped: q => q.dropped,
  qRejected: q => q.rejected,
  qNoSpace: q => q.noSpace,
  refusedBy: s => (s.broker && s.broker.refusedByReason) || {},
  connRefusedBy: s => (s.broker && s.broker.connectionsRefusedByReason) || {},
  clients: s => s.broker ? s.broker.connections : 0,
  downstream: s => s.downstream,              // null without --downstream
  children: d => d.children || [],
  childId: c => c.id, childBacklog: c => c.backlog, childMessages: c => c.messages, childSeen: c => c.lastSeen, childBelow: c => c.below || [],
  modules: s => s.modules || {},
  mStatus: m => m.runtimeStatus,
  mRestarts: m => m.restartCount,
  mExit: m => m.exitCode,
  mDesc: m => m.statusDescription,
  mStarted: m => m.lastStartTimeUtc,
  mImage: m => m.settings ? m.settings.image : "",
  clientList: r => r.clients || [],           // GET /clients
  cId: c => c.clientId,
  cListener: c => c.listener,
  cRemote: c => c.remoteAddr,
  cProtocol: c => c.protocol,
  cSince: c => c.connectedSince,
  cSubs: c => c.subscriptions,
  cInflight: c => c.inflight,
  cReceived: c => c.received,
  cDelivered: c => c.delivered,
};

const SPAN = 10 * 60 * 1000; // plots: the last 10 minutes
let samples = [], operator = false, prev = null, rates = {}, clientsAt = 0;
const CLIENTS_EVERY = 3000; // the clients card reloads at most this often (ms)

function onHistory(h) {
  samples = h.samples || [];
  operator = !!h.operator;
  byId("who").textContent = operator ? "operator" : "read-only: run `outpost edge dashboard --data DIR` to log in";
  if (!operator) setChildren(byId("twins"), el("p", {class: "muted"},
    "Twins, module logs and restarts need the operator login: run ", el("code", {}, "outpost edge dashboard --data DIR"),
    " and open the URL it prints."));
  if (!operator) setChildren(byId("client-list"), el("p", {class: "muted"}, "The list of connected clients needs the operator login."));
  drawLinkHistory(h.links || []);
  drawPlots();
}

function onStatus(ev) {
  const st = ev.status;
  samples.push(ev.sample);
  while (samples.length && samples[0].t < Date.now() - SPAN - 60000) samples.shift();
  computeRates(st, ev.sample.t);
  byId("device").textContent = S.deviceId(st);
  const ls = S.linkState(st);
  const b = byId("link-state");
  b.textContent = ls; b.className = "badge " + ls;
  byId("clients").textContent = fmtNum(S.clients(st)) + " clients connected";
  drawLink(st);
  drawLinkHistory(ev.links || []);
  byId("upstream-depth").textContent = ev.sample.upstream;
  drawQueues(st);
  drawChildren(st);
  drawModules(st);
  drawPlots();
  if (operator && Date.now() - clientsAt >= CLIENTS_EVERY) loadClients();
}

// loadClients fills the clients card from GET /clients (operator only).
async function loadClients() {
  clientsAt = Date.now();
  try {
    const cs = S.clientList(await fetchJSON("/clients"));
    const n = c => ({text: c, cls: "num"});
    setChildren(byId("client-list"), cs.length ? table(["client id", "listener", "remote address", "protocol", "connected",
      n("subscriptions"), n("in flight"), n("received"), n("delivered")],
      cs.map(c => el("tr", {"data-client": S.cId(c)}, el("td", {}, S.cId(c)), el("td", {}, S.cListener(c)), el("td", {}, S.cRemote(c)),
        el("td", {}, S.cProtocol(c)), el("td", {}, ago(S.cSince(c))), el("td", {class: "num"}, fmtNum(S.cSubs(c))),
        el("td", {class: "num"}, fmtNum(S.cInflight(c))), el("td", {class: "num"}, fmtNum(S.cReceived(c))),
        el("td", {class: "num"}, fmtNum(S.cDelivered(c))))))
      : el("p", {class: "muted"}, "no MQTT clients connected"));
  } catch (e) { setChildren(byId("client-list"), el("p", {class: "error"}, "clients: " + e.message)); }
}

function computeRates(st, t) {
  const now = {};
  for (const q of S.queues(st)) now[S.qName(q)] = {in: S.qIn(q), out: S.qOut(q), t};
  if (prev) {
    for (const [n, c] of Object.entries(now)) {
      const p = prev[n];
      if (!p || c.t <= p.t) continue;
      const dt = (c.t - p.t) / 1000;
      rates[n] = {in: Math.max(0, c.in - p.in) / dt, out: Math.max(0, c.out - p.out) / dt};
    }
  }
  prev = now;
}

function drawLink(st) {
  const u = S.uplink(st);
  if (!u) { setChildren(byId("link"), el("p", {}, S.linkText(st))); return; }
  setChildren(byId("link"), table(["state", "since", "messages sent", "last error"], [el("tr", {},
    el("td", {}, badge(u.state)), el("td", {}, fmtTime(S.since(u)), el("div", {class: "muted"}, ago(S.since(u)))),
    el("td", {class: "num"}, fmtNum(S.sent(u))), el("td", {class: "error"}, S.lastError(u) || ""))]));
}

function drawLinkHistory(links) {
  const rows = links.slice().reverse().slice(0, 12).map(l => el("tr", {},
    el("td", {}, badge(l.state)), el("td", {}, fmtTime(l.since)), el("td", {class: "muted"}, l.error || "")));
  setChildren(byId("link-history"), rows.length ? el("tbody", {}, rows) : el("tbody", {}, el("tr", {}, el("td", {class: "muted"}, "standalone: no link"))));
}

function drawQueues(st) {
  const qs = S.queues(st); // idle $upstream lanes left out by the edge, as in GET /status
  const n = c => ({text: c, cls: "num"});
  setChildren(byId("queues"), table(["queue", n("depth"), n("bytes"), n("oldest"), n("in/s"), n("out/s"), n("expired"), n("dropped"), n("rejected"), n("no space")],
    qs.map(q => {
      const r = rates[S.qName(q)] || {};
      return el("tr", {"data-queue": S.qName(q)}, el("td", {}, S.qName(q)), el("td", {class: "num depth"}, fmtNum(S.qDepth(q))),
        el("td", {class: "num"}, fmtNum(S.qBytes(q))), el("td", {class: "num"}, fmtAge(S.qOldest(q))),
        el("td", {class: "num"}, fmtRate(r.in)), el("td", {class: "num"}, fmtRate(r.out)),
        el("td", {class: "num"}, fmtNum(S.qExpired(q))), el("td", {class: "num"}, fmtNum(S.qDropped(q))),
        el("td", {class: "num"}, fmtNum(S.qRejected(q))), el("td", {class: "num"}, fmtNum(S.qNoSpace(q))));
    })));
  const refused = Object.entries(S.refusedBy(st)).filter(([, v]) => v > 0).map(([k, v]) => ["publish", k, v])
    .concat(Object.entries(S.connRefusedBy(st)).filter(([, v]) => v > 0).map(([k, v]) => ["connection", k, v]));
  setChildren(byId("refusals"), refused.length ? table(["refused", "reason", {text: "count", cls: "num"}],
    refused.map(([what, k, v]) => el("tr", {}, el("td", {}, what), el("td", {}, k), el("td", {class: "num"}, fmtNum(v))))) : el("p", {class: "muted"}, "none"));
}

// drawChildren shows the child edges (nested edges) and their backlogs,
// with the edges each reported below it.
function drawChildren(st) {
  const d = S.downstream(st);
  byId("children-box").hidden = !d;
  if (!d) return;
  const n = c => ({text: c, cls: "num"});
  const cs = S.children(d);
  setChildren(byId("children"), cs.length ? table(["edge", n("backlog"), n("messages"), "last seen", "below"],
    cs.map(c => el("tr", {"data-child": S.childId(c)}, el("td", {}, S.childId(c)), el("td", {class: "num backlog"}, fmtNum(S.childBacklog(c))),
      el("td", {class: "num"}, fmtNum(S.childMessages(c))), el("td", {}, ago(S.childSeen(c))),
      el("td", {class: "muted"}, S.childBelow(c).map(b => b.edge).join(", ")))))
    : el("p", {class: "muted"}, "no child edge has connected since this edge started"));
}

function drawModules(st) {
  const mods = Object.entries(S.modules(st)).sort(([a], [b]) => a.localeCompare(b));
  if (!mods.length) { setChildren(byId("modules"), el("p", {class: "muted"}, "no modules deployed")); return; }
  setChildren(byId("modules"), table(["module", "status", {text: "restarts", cls: "num"}, {text: "exit", cls: "num"}, "started", "description", ""],
    mods.map(([name, m]) => el("tr", {"data-module": name}, el("td", {}, name), el("td", {}, badge(S.mStatus(m))),
      el("td", {class: "num"}, fmtNum(S.mRestarts(m))), el("td", {class: "num"}, S.mExit(m)), el("td", {}, ago(S.mStarted(m))),
      el("td", {class: "muted"}, S.mDesc(m) || ""),
      el("td", {}, operator ? [el("button", {class: "log", onclick: () => showLogs(name)}, "log"), " ",
        el("button", {class: "restart", onclick: () => restart(name)}, "restart")] : "")))));
}

async function showLogs(name) {
  byId("log-box").hidden = false;
  byId("log-module").textContent = name;
  try {
    const r = await fetch("/modules/" + encodeURIComponent(name) + "/logs?tail=100", {credentials: "same-origin"});
    const text = await r.text();
    let msg = text;
    try { msg = JSON.parse(text).message || text; } catch (e) { /* not the {code,message} envelope: show it as it is */ }
    byId("logs").textContent = r.ok ? text || "(no output yet)" : r.status + ": " + msg;
  } catch (e) { byId("logs").textContent = "the edge does not answer: " + e; }
}

async function restart(name) {
  try {
    await fetchJSON("/modules/" + encodeURIComponent(name) + "/restart", {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"});
  } catch (e) { alert("restart " + name + ": " + e.message); }
}

// drawTwins shows each twin's fields with the replica that wrote them and
// when (the CRDT's registers): leaf devices and modules open, the system
// twins ($edgeAgent, $edgeHub) folded. Pending: written here while the hub
// has not acknowledged it yet (an offline change).
function drawTwins(twins) {
  if (!twins.length) { setChildren(byId("twins"), el("p", {class: "muted"}, "no twins yet")); return; }
  const open = {};
  for (const d of byId("twins").querySelectorAll("details[data-twin]")) open[d.dataset.twin] = d.open;
  const sorted = twins.slice().sort((a, b) => (a.id.includes("/$") - b.id.includes("/$")) || a.id.localeCompare(b.id));
  setChildren(byId("twins"), sorted.map(t => {
    const fields = t.fields || [];
    const pending = fields.filter(f => f.pending).length;
    const isOpen = t.id in open ? open[t.id] : !t.id.includes("/$");
    return el("details", {"data-twin": t.id, open: isOpen},
      el("summary", {}, el("strong", {}, t.id), " ", el("span", {class: "muted"}, fields.length + " fields"),
        pending ? [" ", badge(pending + " pending", "pending")] : ""),
      fields.length ? table(["section", "field", "value", "written by", "at", ""], fields.map(f => el("tr", {"data-path": f.section + "." + f.path},
        el("td", {}, f.section), el("td", {}, f.path),
        el("td", {class: "value"}, f.deleted ? el("span", {class: "muted"}, "(removed)") : JSON.stringify(f.value)),
        el("td", {class: "muted"}, f.origin.startsWith("hub.") ? "hub" : f.origin), el("td", {}, fmtTime(f.time)),
        el("td", {}, f.pending ? badge("pending", "pending") : ""))))
        : el("p", {class: "muted"}, "no fields"));
  }));
}

function drawPlots() {
  const pts = f => samples.map(s => [s.t, f(s)]);
  const bands = [];
  let from = null;
  for (const s of samples) {
    const down = s.link !== "online" && s.link !== "standalone";
    if (down && from === null) from = s.t;
    if (!down && from !== null) { bands.push([from, s.t]); from = null; }
  }
  if (from !== null) bands.push([from, Date.now()]);
  const sp = span(samples.length ? samples[0].t : 0, SPAN);
  plot(byId("plot-depth"), [{name: "all queues", points: pts(s => s.depth)}, {name: "$upstream", points: pts(s => s.upstream)}], sp, bands, "messages");
  const rate = (f) => {
    const out = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i], dt = (b.t - a.t) / 1000;
      if (dt > 0) out.push([b.t, Math.max(0, f(b) - f(a)) / dt]);
    }
    return out;
  };
  plot(byId("plot-rate"), [{name: "in (accepted)", points: rate(s => s.received)}, {name: "out (hub stored)", points: rate(s => s.sent)}], sp, bands, "msg/s");
}

function connect() {
  const es = new EventSource("/events/stream");
  const conn = byId("conn");
  es.addEventListener("open", () => { conn.textContent = "live"; conn.className = "badge online"; });
  es.addEventListener("error", () => { conn.textContent = "disconnected"; conn.className = "badge disconnected"; });
  es.addEventListener("history", e => onHistory(JSON.parse(e.data)));
  es.addEventListener("status", e => onStatus(JSON.parse(e.data)));
  es.addEventListener("twins", e => drawTwins(JSON.parse(e.data)));
}

connect();
