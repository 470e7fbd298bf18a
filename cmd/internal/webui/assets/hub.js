"use strict";
// The hub dashboard (/ui/): log in with the owner connection string once,
// then the fleet, devices, twins and the live event stream. Field names of
// the API's JSON are read through H: a rename is one line here.
const H = {
  edgeId: e => e.deviceId, online: e => e.online, lastSeen: e => e.lastSeen, backlog: e => e.backlog,
  backlogAt: e => e.backlogAt, messages: e => e.messages, lastMessage: e => e.lastMessage, instances: e => e.instances, duplicate: e => e.duplicateInstance,
  parent: e => e.parent || "", via: e => e.via || "",
  devId: d => d.deviceId, devEdge: d => d.edge, devStatus: d => d.status, devAuth: d => d.authType,
  evSeq: e => e.seq, evDevice: e => e.moduleId ? e.deviceId + "/" + e.moduleId : e.deviceId, evTime: e => e.enqueuedTime,
  evBody: e => e.bodyKind === "json" ? JSON.stringify(e.body) : e.bodyKind === "base64" ? "base64:" + e.body : e.body,
  evProps: e => e.properties || {},
};

const MAX_EVENTS = 200, SPAN = 10 * 60 * 1000;
let events = [], perSecond = new Map(), timers = [], stream = null;

async function start() {
  const s = await fetchJSON("api/session");
  show(s.loggedIn);
}

function show(loggedIn) {
  byId("login").hidden = loggedIn;
  byId("main").hidden = !loggedIn;
  byId("logout").hidden = !loggedIn;
  byId("conn").hidden = !loggedIn;
  timers.forEach(clearInterval); timers = [];
  if (stream) { stream.close(); stream = null; }
  if (!loggedIn) { byId("cs").focus(); return; }
  refreshFleet(); refreshDevices();
  timers.push(setInterval(refreshFleet, 2000), setInterval(refreshDevices, 10000), setInterval(drawPlot, 2000));
  connect();
}

async function login(ev) {
  ev.preventDefault();
  const cs = byId("cs").value.trim();
  byId("login-error").textContent = "";
  try {
    await fetchJSON("login", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({connectionString: cs})});
    byId("cs").value = "";
    show(true);
  } catch (e) { byId("login-error").textContent = e.message; }
}

async function logout() {
  await fetch("logout", {method: "POST", credentials: "same-origin"});
  show(false);
}

async function refreshFleet() {
  try {
    const edges = await fetchJSON("api/fleet");
    const n = c => ({text: c, cls: "num"});
    setChildren(byId("fleet"), edges.length ? table(["edge", "parent", "link", "last seen", n("backlog"), "reported", n("messages"), "last message"],
      edges.map(e => el("tr", {"data-edge": H.edgeId(e)}, el("td", {}, H.edgeId(e)),
        el("td", {class: "parent"}, H.parent(e) ? H.parent(e) + (H.via(e) && H.via(e) !== H.parent(e) ? " (via " + H.via(e) + ")" : "") : "hub"),
        el("td", {}, badge(H.online(e) ? "online" : "offline"), H.instances(e) > 1 || H.duplicate(e) ? el("span", {class: "error", title: "two edges use this identity: see outpost edge check"}, " two instances!") : ""),
        el("td", {}, ago(H.lastSeen(e))), el("td", {class: "num backlog"}, fmtNum(H.backlog(e))), el("td", {class: "muted"}, ago(H.backlogAt(e))),
        el("td", {class: "num"}, fmtNum(H.messages(e))), el("td", {}, ago(H.lastMessage(e))))))
      : el("p", {class: "muted"}, "no edge devices: `outpost device create ID --edge`"));
  } catch (e) { authLost(e); }
}

async function refreshDevices() {
  try {
    const devs = await fetchJSON("api/devices");
    setChildren(byId("devices"), table(["device", "kind", "status", "auth"], devs.map(d => el("tr", {},
      el("td", {}, el("a", {href: "#", "data-device": H.devId(d), onclick: ev => { ev.preventDefault(); showTwin(H.devId(d)); }}, H.devId(d))),
      el("td", {}, H.devEdge(d) ? "edge" : "device"), el("td", {}, H.devStatus(d)), el("td", {}, H.devAuth(d))))));
  } catch (e) { authLost(e); }
}

async function showTwin(id) {
  byId("twin-id").textContent = id;
  try { byId("twin").textContent = JSON.stringify(await fetchJSON("api/twins/" + encodeURIComponent(id)), null, 2); }
  catch (e) { byId("twin").textContent = e.message; }
}

function authLost(e) {
  if (String(e.message).startsWith("401")) show(false);
}

function connect() {
  stream = new EventSource("api/events/stream");
  const conn = byId("conn");
  stream.addEventListener("open", () => { conn.textContent = "live"; conn.className = "badge online"; });
  stream.addEventListener("error", () => { conn.textContent = "disconnected"; conn.className = "badge disconnected"; });
  stream.addEventListener("events", e => addEvents(JSON.parse(e.data)));
}

function addEvents(evs) {
  for (const e of evs) {
    if (events.length && H.evSeq(e) <= H.evSeq(events[0])) continue; // seen (a reconnect starts with recent ones)
    events.unshift(e);
    const sec = Math.floor(Date.parse(H.evTime(e)) / 1000) * 1000;
    if (!firstEvent || sec < firstEvent) firstEvent = Math.max(sec, Date.now() - SPAN);
    perSecond.set(sec, (perSecond.get(sec) || 0) + 1);
  }
  events.length = Math.min(events.length, MAX_EVENTS);
  setChildren(byId("events"), table(["seq", "device", "enqueued", "properties", "body"], events.map(e => el("tr", {"data-seq": H.evSeq(e)},
    el("td", {class: "num"}, H.evSeq(e)), el("td", {}, H.evDevice(e)), el("td", {}, fmtTime(H.evTime(e))),
    el("td", {class: "value muted"}, Object.entries(H.evProps(e)).map(([k, v]) => k + "=" + v).join(" ")),
    el("td", {class: "value body"}, H.evBody(e))))));
}

let firstEvent = 0;

function drawPlot() {
  const now = Date.now(), sp = span(firstEvent, SPAN), bin = Math.max(1000, Math.round(sp / 60000) * 1000), pts = [];
  for (const [t] of perSecond) if (t < now - SPAN) perSecond.delete(t);
  for (let t = Math.floor((now - sp) / bin) * bin; t + bin <= now; t += bin) {
    let n = 0;
    for (let s = t; s < t + bin; s += 1000) n += perSecond.get(s) || 0;
    pts.push([t + bin, n * 1000 / bin]);
  }
  plot(byId("plot-events"), [{name: "events stored per second", points: pts}], sp, [], "events/s");
}

byId("login-form").addEventListener("submit", login);
byId("logout").addEventListener("click", logout);
start().catch(e => { byId("login-error").textContent = "the hub does not answer: " + e.message; byId("login").hidden = false; });
