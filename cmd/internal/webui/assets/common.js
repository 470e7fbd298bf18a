"use strict";
// Shared by the edge and the hub dashboards: a DOM builder, formatters and
// a small SVG line plot. No framework, nothing from a CDN.

// el builds an element: el("td", {class: "num"}, "42"). Text is always
// text (never parsed as HTML).
function el(tag, attrs, ...children) {
  const ns = ["svg", "polyline", "line", "text", "rect", "path"].includes(tag) ? "http://www.w3.org/2000/svg" : null;
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function byId(id) { return document.getElementById(id); }

function setChildren(node, ...children) { node.replaceChildren(...children.flat().filter(c => c !== undefined && c !== null)); }

function table(head, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, head.map(h => typeof h === "string" ? el("th", {}, h) : el("th", {class: h.cls}, h.text)))),
    el("tbody", {}, rows));
}

function fmtNum(n) { return n === undefined || n === null ? "—" : Number(n).toLocaleString("en"); }

function fmtRate(r) { return r === undefined || r === null || !isFinite(r) ? "—" : r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString("en"); }

function fmtAge(s) {
  if (!s) return "—";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

function fmtTime(t) {
  if (!t) return "—";
  const d = new Date(t);
  if (isNaN(d) || d.getUTCFullYear() < 2000) return "—";
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function ago(t) {
  const d = new Date(t);
  if (!t || isNaN(d) || d.getUTCFullYear() < 2000) return "never";
  return fmtAge(Math.max(0, (Date.now() - d.getTime()) / 1000)) + " ago";
}

function badge(text, cls) { return el("span", {class: "badge " + (cls || text)}, text); }

const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

// plot draws series [{name, points: [[tMs, v], …]}] over the last spanMs
// into svg; bands [[fromMs, toMs], …] are shaded (the link down).
function plot(svg, series, spanMs, bands, unit) {
  const W = 600, H = 170, L = 44, R = 8, T = 8, B = 20;
  const now = Date.now(), t0 = now - spanMs;
  let max = 0;
  for (const s of series) for (const [, v] of s.points) max = Math.max(max, v);
  max = max <= 0 ? 1 : niceCeil(max);
  const x = t => L + (W - L - R) * (t - t0) / spanMs;
  const y = v => T + (H - T - B) * (1 - v / max);
  const kids = [];
  for (const [a, b] of bands || []) {
    const xa = Math.max(L, x(a)), xb = Math.min(W - R, x(b));
    if (xb > xa) kids.push(el("rect", {class: "down", x: xa, y: T, width: xb - xa, height: H - T - B}));
  }
  for (let i = 0; i <= 4; i++) {
    const v = max * i / 4;
    kids.push(el("line", {class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v)}));
    kids.push(el("text", {x: L - 4, y: y(v) + 3, "text-anchor": "end"}, fmtRate(v)));
  }
  const step = [10, 15, 30, 60, 120, 300, 600].map(v => v * 1000).find(v => spanMs / v <= 6) || 600000;
  for (let d = 0; d <= spanMs; d += step) {
    const label = d === 0 ? "now" : d < 60000 ? "-" + d / 1000 + " s" : "-" + d / 60000 + " min";
    kids.push(el("text", {x: x(now - d), y: H - 6, "text-anchor": d === 0 ? "end" : "middle"}, label));
  }
  series.forEach((s, i) => {
    const pts = s.points.filter(([t]) => t >= t0).map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
    if (pts) kids.push(el("polyline", {class: "line", points: pts, stroke: colors[i % colors.length]}));
  });
  kids.push(el("text", {x: L + 4, y: T + 10}, unit || ""));
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  setChildren(svg, kids);
  const legend = svg.nextElementSibling;
  if (legend && legend.classList.contains("legend")) {
    setChildren(legend, series.map((s, i) => {
      const sw = el("i"); sw.style.background = colors[i % colors.length];
      return el("span", {}, sw, s.name);
    }));
  }
}

// span is the time a plot covers: from its first point (at least a
// minute) up to max.
function span(firstT, max) {
  return Math.min(max, Math.max(60000, Date.now() - (firstT || Date.now())));
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

async function fetchJSON(url, init) {
  const r = await fetch(url, Object.assign({credentials: "same-origin"}, init || {}));
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
  if (!r.ok) throw new Error(r.status + ": " + (body && body.message ? body.message : text));
  return body;
}
