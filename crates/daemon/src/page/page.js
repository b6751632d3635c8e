// braid's status page: draws the mesh as this node sees it from GET /status (the document
// of docs/status-json.md), again every REFRESH_MS. Plain JS, no external resources; every
// value from the document goes in as text (textContent, SVG attributes), never as markup.
"use strict";

const REFRESH_MS = 1500;
const SVG = "http://www.w3.org/2000/svg";
// Previous byte counters per link, for throughput: name -> {rx, tx, at (ms)}.
const previous = new Map();
const rates = new Map();
// Answers read from /status since the page loaded (shown as the footer's data-polls).
let polls = 0;

function el(name, attrs, text) {
  const e = name.startsWith("svg:") ? document.createElementNS(SVG, name.slice(4)) : document.createElement(name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function ms(v) { return v === null || v === undefined ? "–" : v.toFixed(1) + " ms"; }
function pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + " %"; }
function bits(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1e9) return (v / 1e9).toFixed(2) + " Gb/s";
  if (v >= 1e6) return (v / 1e6).toFixed(1) + " Mb/s";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + " kb/s";
  return v.toFixed(0) + " b/s";
}
function ago(now, t) { return t === null || t === undefined ? "never" : Math.max(0, now - t) + " s ago"; }

// The link's RTT and loss where braid measures them: a bonded link's best live path.
function linkRtt(link) {
  const paths = (link.bond && link.bond.paths) || [];
  const rtts = paths.filter(p => p.state === "up" && p.rtt_ms !== null).map(p => p.rtt_ms);
  return rtts.length ? Math.min(...rtts) : null;
}
function linkLoss(link) {
  const paths = ((link.bond && link.bond.paths) || []).filter(p => p.state === "up" && p.loss_samples > 0);
  return paths.length ? Math.min(...paths.map(p => p.loss)) : null;
}

function updateRates(doc, nowMs) {
  for (const l of doc.links) {
    const p = previous.get(l.name);
    if (p && nowMs > p.at) {
      const s = (nowMs - p.at) / 1000;
      rates.set(l.name, { rx: Math.max(0, l.rx_bytes - p.rx) * 8 / s, tx: Math.max(0, l.tx_bytes - p.tx) * 8 / s });
    }
    previous.set(l.name, { rx: l.rx_bytes, tx: l.tx_bytes, at: nowMs });
  }
}

// Which family's default route leaves over this link ("IPv4 exit", ...).
function exitsOver(doc, link) {
  const exits = (doc.routing && doc.routing.exits) || {};
  return Object.entries(exits)
    .filter(([, e]) => e && e.link === link.name)
    .map(([family]) => (family === "ip6" ? "IPv6" : "IPv4") + " exit");
}

function renderSummary(doc) {
  const node = doc.node;
  document.getElementById("title").textContent = "braid: " + (node.name || node.public_key.slice(0, 8));
  const s = document.getElementById("summary");
  s.replaceChildren();
  const r = doc.routing;
  const reg = doc.registry || {};
  const exits = r.exits || {};
  const exitText = f => {
    const e = exits[f];
    if (!e) return "none";
    return (e.peer || e.dev) + (e.via ? " via " + e.via : "");
  };
  const parts = [
    "backend " + node.backend,
    "up " + node.uptime_seconds + " s",
    "routing " + r.mode + (r.healthy ? " (healthy)" : " (NOT healthy)"),
    "registry " + (reg.signed_version ? "v" + reg.signed_version : (node.registry_version || "–")),
    "IPv4 exit " + exitText("ip4"),
    "IPv6 exit " + exitText("ip6"),
  ];
  for (const p of parts) s.appendChild(el("span", {}, p));
  const problems = (r.problems || []).concat(node.last_error ? [node.last_error] : []);
  const banner = document.getElementById("problem");
  banner.hidden = problems.length === 0;
  banner.textContent = problems.join("; ");
}

function renderMap(doc) {
  const svg = document.getElementById("map");
  svg.replaceChildren();
  const cx = 400, cy = 280, radius = 200;
  const self = doc.node.name || "this node";
  // One position per peer; several links to a peer (IPv4, IPv6) are drawn side by side.
  // Peers with links first, then the registry's other nodes.
  const mesh = doc.mesh || [];
  const peers = [...new Set(doc.links.map(l => l.peer).concat(mesh.map(n => n.name)))];
  const pos = new Map();
  peers.forEach((p, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(peers.length, 1);
    pos.set(p, { x: cx + radius * Math.cos(a), y: cy + radius * Math.sin(a) });
  });
  const linksG = el("svg:g", { class: "links" });
  // Each link's label lines; the labels of all links to one peer are one block, stacked.
  const labels = new Map();
  for (const l of doc.links) {
    const rate = rates.get(l.name) || { rx: null, tx: null };
    const lines = [
      l.name + " " + l.state,
      "RTT " + ms(linkRtt(l)) + "  loss " + pct(linkLoss(l)),
      "in " + bits(rate.rx) + "  out " + bits(rate.tx),
    ];
    const paths = (l.bond && l.bond.paths) || [];
    for (const p of paths) lines.push(p.name + " " + p.state + " " + Math.round(p.share * 100) + " %");
    for (const e of exitsOver(doc, l)) lines.push(e);
    if (l.routes !== undefined && l.routes !== null) lines.push(l.routes + " routes");
    labels.set(l.name, lines);
  }
  const LINE = 14, GAP = 6;
  const byPeer = new Map();
  // Per peer: its links and their label lines in all.
  const blocks = new Map();
  for (const l of doc.links) {
    const b = blocks.get(l.peer) || { links: 0, lines: 0 };
    blocks.set(l.peer, { links: b.links + 1, lines: b.lines + labels.get(l.name).length });
  }
  for (const l of doc.links) {
    const before = byPeer.get(l.peer) || { k: 0, lines: 0 };
    const k = before.k;
    byPeer.set(l.peer, { k: k + 1, lines: before.lines + labels.get(l.name).length });
    const to = pos.get(l.peer);
    // Offset side by side: perpendicular to the line, 14 px per extra link.
    const dx = to.x - cx, dy = to.y - cy, len = Math.hypot(dx, dy) || 1;
    const block = blocks.get(l.peer);
    const off = (k - (block.links - 1) / 2) * 14;
    const ox = (-dy / len) * off, oy = (dx / len) * off;
    const up = l.state === "up";
    const colour = up ? "#1b7f3b" : l.state === "connecting" ? "#a86400" : "#b3261e";
    const g = el("svg:g", { class: "link", "data-link": l.name, "data-peer": l.peer, "data-state": l.state });
    g.appendChild(el("svg:line", {
      x1: cx + ox, y1: cy + oy, x2: to.x + ox, y2: to.y + oy, stroke: colour,
      "stroke-width": up ? 3 : 2, "stroke-dasharray": up ? "" : "6 4",
    }));
    // The peer's block beside its lines, always on the same (clockwise) side: the
    // blocks of neighbouring peers then sit in different sectors of the map instead of
    // meeting between two lines. The block leans away from the lines along the normal.
    const nx = -dy / len, ny = dx / len;
    const height = block.lines * LINE + GAP * (block.links - 1);
    const anchor = Math.abs(nx) < 0.3 ? "middle" : (nx > 0 ? "start" : "end");
    // Clear of the outermost line, and beside a line of text clear of the nodes' circles.
    const clear = (block.links - 1) * 7 + (anchor === "middle" ? 12 : 30);
    const lx = cx + dx * 0.5 + nx * clear, ly = cy + dy * 0.5 + ny * clear;
    const lean = anchor === "middle" ? Math.sign(ny) * (height / 2 + 4) : ny * height / 2;
    const top = ly + lean - height / 2 + LINE * 0.75;
    const lines = labels.get(l.name);
    lines.forEach((t, i) => {
      g.appendChild(el("svg:text", {
        x: lx, y: top + (before.lines + i) * LINE + GAP * k, "text-anchor": anchor,
        fill: i === 0 ? colour : "#1d2330",
      }, t));
    });
    linksG.appendChild(g);
  }
  // How the kernel reaches each other node when not over its own link: "via" a neighbour.
  for (const n of mesh) {
    if (!n.via || n.via === n.name || !pos.has(n.via)) continue;
    const a = pos.get(n.name), b = pos.get(n.via);
    // A curve bowing away from this node.
    const mx = (a.x + b.x) / 2, my = (a.y + b.y) / 2;
    let ux = mx - cx, uy = my - cy;
    if (Math.hypot(ux, uy) < 1) { ux = -(b.y - a.y); uy = b.x - a.x; }
    const k = 260 / (Math.hypot(ux, uy) || 1);
    const g = el("svg:g", { class: "relay", "data-node": n.name, "data-via": n.via });
    g.appendChild(el("svg:path", {
      d: `M ${a.x} ${a.y} Q ${mx + ux * k} ${my + uy * k} ${b.x} ${b.y}`,
      fill: "none", stroke: "#7a8290", "stroke-width": 1.5, "stroke-dasharray": "2 4",
    }));
    linksG.appendChild(g);
  }
  svg.appendChild(linksG);
  const node = (name, p, fill, cls) => {
    const g = el("svg:g", { class: cls, "data-node": name });
    g.appendChild(el("svg:circle", { cx: p.x, cy: p.y, r: 26, fill, stroke: "#1d2330", "stroke-width": 1.5 }));
    g.appendChild(el("svg:text", { x: p.x, y: p.y + 44, "text-anchor": "middle", class: "node-name" }, name));
    svg.appendChild(g);
  };
  node(self, { x: cx, y: cy }, "#3b6fd8", "node self");
  for (const p of peers) {
    const links = doc.links.filter(l => l.peer === p);
    const info = mesh.find(n => n.name === p);
    const reached = links.some(l => l.state === "up") || (info && info.via);
    const fill = reached ? "#cfe8d6" : links.length ? "#f3d2cf" : "#e3e6eb";
    node(p, pos.get(p), fill, "node");
    const notes = [];
    if (info && info.via && info.via !== p) notes.push("via " + info.via);
    if (info && !info.via && doc.routing.exits) notes.push("no route");
    if (info && info.exit_preference !== null && info.exit_preference !== undefined) notes.push("exit node");
    notes.forEach((t, i) => svg.appendChild(el("svg:text", {
      x: pos.get(p).x, y: pos.get(p).y + 58 + i * 14, "text-anchor": "middle", fill: "#4a5260",
    }, t)));
  }
}

function cell(text, cls) { return el("td", cls ? { class: cls } : {}, text); }

function renderTables(doc) {
  const now = Math.floor(Date.now() / 1000);
  const links = document.querySelector("#links tbody");
  links.replaceChildren();
  for (const l of doc.links) {
    const rate = rates.get(l.name) || { rx: null, tx: null };
    const tr = el("tr", { "data-link": l.name });
    const routes = l.routes === undefined || l.routes === null ? "–" : (l.routes > 0 ? l.routes + " (carrying)" : "0");
    [cell(l.name), cell(l.peer), cell(l.state, "state-" + l.state), cell(routes), cell(ms(linkRtt(l))), cell(pct(linkLoss(l))),
      cell(bits(rate.rx)), cell(bits(rate.tx)), cell(ago(now, l.last_rx)), cell(l.endpoint || l.planned_endpoint || "–")].forEach(c => tr.appendChild(c));
    links.appendChild(tr);
  }
  const paths = document.querySelector("#paths tbody");
  paths.replaceChildren();
  for (const l of doc.links) {
    for (const p of (l.bond && l.bond.paths) || []) {
      const tr = el("tr", { "data-path": l.name + "/" + p.name });
      const share = el("td");
      share.appendChild(el("span", { class: "bar" }));
      share.firstChild.style.width = Math.round(p.share * 80) + "px";
      share.appendChild(document.createTextNode(Math.round(p.share * 100) + " %"));
      [cell(l.name), cell(p.name), cell(p.state, "state-" + p.state), cell(ms(p.rtt_ms)), cell(ms(p.send_delay_ms)),
        cell(p.loss_samples > 0 ? pct(p.loss) : "–"), cell(bits(p.capacity_bps !== null ? p.capacity_bps : p.rate_bps)),
        cell(bits(p.sent_bps)), share].forEach(c => tr.appendChild(c));
      paths.appendChild(tr);
    }
  }
  if (!paths.firstChild) {
    const tr = el("tr");
    tr.appendChild(el("td", { colspan: 9 }, "no bonded links"));
    paths.appendChild(tr);
  }
}

async function refresh() {
  const footer = document.getElementById("updated");
  try {
    const answer = await fetch("/status", { cache: "no-store" });
    if (!answer.ok) throw new Error("/status answered " + answer.status);
    const doc = await answer.json();
    updateRates(doc, Date.now());
    renderSummary(doc);
    renderMap(doc);
    renderTables(doc);
    polls += 1;
    footer.textContent = "updated " + new Date().toISOString();
    footer.dataset.ok = "true";
    footer.dataset.polls = String(polls);
  } catch (e) {
    footer.textContent = "cannot read /status: " + e.message + " (showing the last answer)";
    footer.dataset.ok = "false";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
