// The dashboard page: one event stream (SSE) carries the circuit's state every second; the tree
// view pages through /api/ls. Read-only: nothing here can change the circuit.

const token = new URLSearchParams(location.search).get("token");
const q = (path, params = {}) => {
  const u = new URL(path, location.href);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, String(v));
  if (token) u.searchParams.set("token", token);
  return u.toString();
};
const $ = (id) => document.getElementById(id);
const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const bytes = (n) => {
  if (!n) return "0";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${u[i]}`;
};
const dur = (s) => {
  s = Math.floor(s);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
};
const rate = (r) => (r >= 1000 ? `${(r / 1000).toFixed(1)}k` : r >= 10 ? r.toFixed(0) : r.toFixed(1));

let selected = null;
let treePath = "/";
let treeOffset = 0;
const PAGE = 200;

function renderServers(st) {
  $("servers").innerHTML = st.servers
    .map((s) => {
      const x = s.stat;
      if (!x) {
        return `<div class="card" data-server="${esc(s.id)}"><div class="id">/${esc(s.id)}</div><div class="url">${esc(s.url)}</div><div class="err">${esc(s.error ?? "waiting for its first answer")}</div></div>`;
      }
      const h = x.host;
      const memUsed = h.memTotal - h.memFree;
      const memPct = h.memTotal ? (100 * memUsed) / h.memTotal : 0;
      const load = h.loadavg.map((l) => l.toFixed(2)).join(" ");
      const loadPct = Math.min(100, (100 * h.loadavg[0]) / Math.max(1, h.cpus));
      return `<div class="card${s.self ? " self" : ""}" data-server="${esc(s.id)}">
<div class="id">/${esc(s.id)}${s.self ? ' <span class="dim">(this daemon)</span>' : ""}</div>
<div class="url">${esc(s.url)} · ${esc(h.hostname)}</div>
<dl class="kv">
<dt>load</dt><dd>${load} <span class="dim">(${h.cpus} cpus)</span></dd></dl>
<div class="meter"><i style="width:${loadPct.toFixed(0)}%"></i></div>
<dl class="kv"><dt>memory</dt><dd>${bytes(memUsed)} / ${bytes(h.memTotal)}</dd></dl>
<div class="meter"><i style="width:${memPct.toFixed(0)}%"></i></div>
<dl class="kv">
<dt>daemon</dt><dd>cpu ${x.process.cpuPercent}% · rss ${bytes(x.process.rssBytes)}</dd>
<dt>uptime</dt><dd>daemon ${dur((Date.now() - Date.parse(x.startedAt)) / 1000)} · host ${dur(h.uptime)}</dd>
<dt>elements</dt><dd>${s.total}</dd>
</dl></div>`;
    })
    .join("");
}

function spark(canvas, a, b) {
  const w = canvas.width;
  const h = canvas.height;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...a, ...b);
  const line = (v, color) => {
    if (v.length < 2) return;
    g.strokeStyle = color;
    g.beginPath();
    v.forEach((y, i) => {
      const px = (i / (v.length - 1)) * (w - 2) + 1;
      const py = h - 1 - (y / max) * (h - 2);
      if (i === 0) g.moveTo(px, py);
      else g.lineTo(px, py);
    });
    g.stroke();
  };
  line(a, "#4fb3ff");
  line(b, "#3ecf8e");
}

function renderChannels(st) {
  const tb = $("channels").tBodies[0];
  tb.innerHTML = st.channels
    .map((c) => {
      const pct = c.cap > 0 ? Math.min(100, (100 * c.len) / c.cap) : c.len > 0 ? 100 : 0;
      return `<tr data-path="${esc(c.path)}"><td class="path" title="${esc(c.path)}">${esc(c.path)}</td>
<td><span class="lenbar"><i style="width:${pct}%"></i></span><span class="len">${c.len}</span> / ${c.cap}${c.closed ? ' <span class="dim">closed</span>' : ""}</td>
<td class="num">${rate(c.sendRate)}</td><td class="num">${rate(c.recvRate)}</td>
<td><canvas width="120" height="22"></canvas></td><td class="num">${c.waiting}</td></tr>`;
    })
    .join("");
  st.channels.forEach((c, i) => {
    spark(tb.rows[i].querySelector("canvas"), c.sendHist, c.recvHist);
  });
  const n = st.totals.channels;
  $("chan-note").textContent =
    n > st.channels.length ? `${st.channels.length} busiest of ${n} (all in the tree)` : `${n}`;
}

function renderProcs(st) {
  const tb = $("procs").tBodies[0];
  tb.innerHTML = st.procs
    .map(
      (p) => `<tr data-path="${esc(p.path)}"${p.path === selected ? ' class="sel"' : ""}>
<td class="path" title="${esc(p.path)}">${esc(p.path)}</td><td class="num">${p.pid}</td><td>${esc(p.phase)}</td>
<td class="num">${p.cpuPercent.toFixed(1)}%</td><td class="num">${bytes(p.rssBytes)}</td><td class="mono" title="${esc(p.cmd)}">${esc(p.cmd)}</td></tr>`,
    )
    .join("");
  $("proc-note").textContent = `${st.totals.procs}`;
  if (selected) {
    const t = st.tails[selected];
    const out = $("output");
    const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    if (t) {
      out.innerHTML = `${esc(t.stdout)}${t.stderr ? `<span class="e">${esc(t.stderr)}</span>` : ""}`;
      $("output-title").textContent = `output of ${selected}`;
    } else {
      $("output-title").textContent = `${selected} is gone`;
    }
    if (atEnd) out.scrollTop = out.scrollHeight;
  }
}

function renderServices(st) {
  const list = st.services ?? [];
  $("services").tBodies[0].innerHTML = list
    .map(
      (s) => `<tr data-path="${esc(s.path)}"><td class="path" title="${esc(s.path)}">${esc(s.path)}</td>
<td class="num">${s.running} / ${s.desired}</td><td class="num">${s.restarts}</td><td>${esc(s.state)}</td></tr>`,
    )
    .join("");
  $("svc-note").textContent = list.length ? `${list.length}` : "none";
}

const seen = new Set();
function renderFeed(st) {
  const ol = $("feed");
  for (const f of st.feed) {
    const k = `${f.server}:${f.seq}`;
    if (seen.has(k)) continue;
    seen.add(k);
    const li = document.createElement("li");
    li.className = f.level;
    li.dataset.event = f.fields.event ?? "";
    li.innerHTML = `<span class="t">${esc(f.at.slice(11, 19))}</span><span class="mono dim">/${esc(f.server)}</span> ${esc(f.msg)}`;
    ol.prepend(li);
  }
  while (ol.children.length > 300) ol.lastElementChild.remove();
}

function render(st) {
  const t0 = performance.now();
  const t = st.totals;
  $("totals").innerHTML =
    `<span><b>${t.servers}</b> servers</span><span><b>${t.elements}</b> elements</span>` +
    `<span><b>${t.channels}</b> channels</span><span><b>${t.procs}</b> processes</span>`;
  $("updated").textContent = `updated ${new Date(st.at).toLocaleTimeString()}`;
  renderServers(st);
  renderChannels(st);
  renderProcs(st);
  renderServices(st);
  renderFeed(st);
  // How long an update took to draw: a person (or a test) can see the page keeps up.
  document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
  document.body.dataset.round = String(st.round);
}

async function loadTree() {
  const r = await fetch(q("api/ls", { path: treePath, offset: treeOffset, limit: PAGE, q: $("filter").value }));
  if (!r.ok) return;
  const { total, items } = await r.json();
  const parts = treePath === "/" ? [] : treePath.split("/").slice(1);
  let acc = "";
  $("crumbs").innerHTML =
    `<a data-go="/">/</a>` +
    parts
      .map((p) => {
        acc += `/${p}`;
        return `<a data-go="${esc(acc)}">${esc(p)}</a>`;
      })
      .join(" / ");
  $("tree").tBodies[0].innerHTML = items
    .map(
      (e) =>
        `<tr ${e.more ? `data-go="${esc(e.path)}"` : `data-path="${esc(e.path)}"`}><td class="path">${esc(e.path.slice(e.path.lastIndexOf("/") + 1))}${e.more ? "/" : ""}</td><td>${esc(e.kind)}</td><td class="mono">${esc(e.state)}</td></tr>`,
    )
    .join("");
  $("page").textContent = total ? `${treeOffset + 1}–${Math.min(total, treeOffset + PAGE)} of ${total}` : "empty";
  $("prev").disabled = treeOffset === 0;
  $("next").disabled = treeOffset + PAGE >= total;
}

function go(path) {
  treePath = path;
  treeOffset = 0;
  void loadTree();
}

$("crumbs").addEventListener("click", (e) => {
  const a = e.target.closest("[data-go]");
  if (a) go(a.dataset.go);
});
$("tree").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-go]");
  if (tr) go(tr.dataset.go);
});
$("prev").addEventListener("click", () => {
  treeOffset = Math.max(0, treeOffset - PAGE);
  void loadTree();
});
$("next").addEventListener("click", () => {
  treeOffset += PAGE;
  void loadTree();
});
$("filter").addEventListener("input", () => {
  treeOffset = 0;
  void loadTree();
});
$("procs").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-path]");
  if (!tr) return;
  selected = tr.dataset.path;
  $("output").textContent = "";
  for (const r of $("procs").tBodies[0].rows) r.classList.toggle("sel", r === tr);
});

let treeTick = 0;
function connect() {
  const es = new EventSource(q("api/events"));
  es.onopen = () => $("dot").classList.add("on");
  es.onerror = () => $("dot").classList.remove("on");
  es.onmessage = (m) => {
    render(JSON.parse(m.data));
    // The tree follows the circuit too, less often: it may be large.
    if (++treeTick % 3 === 1) void loadTree();
  };
}
connect();
