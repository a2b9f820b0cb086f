// Operator dashboard: polls GET /admin/dashboard/data with an ADMIN bearer token and draws the
// figures as tiles and inline SVG charts over the last N samples. No libraries, no CDN.
// The token comes from the URL fragment (#token=..., removed from the address bar at once), from
// this tab's sessionStorage, or from the sign-in form.
"use strict";

(function () {
  const DATA_URL = "/admin/dashboard/data";
  const TOKEN_KEY = "mk.dashboard.token";
  const STATUSES = ["PENDING_PAYMENT", "PAID", "PAYMENT_FAILED", "CANCELLED", "SHIPPED", "DELIVERED"];
  const params = new URLSearchParams(location.search);
  const MAX_SAMPLES = clampInt(params.get("samples"), 60, 2, 1000);
  let refreshMs = clampInt(params.get("refresh"), 5, 1, 3600) * 1000;
  const samples = [];  // {t: ms, data: the endpoint's JSON, derived: per-interval figures or null}
  let timer = null;

  const $ = (id) => document.getElementById(id);

  function clampInt(raw, dflt, lo, hi) {
    const n = parseInt(raw, 10);
    return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : dflt;
  }

  // ------------------------------------------------------------------ token

  function takeToken() {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function showLogin(message) {
    $("login").hidden = false;
    $("logout").hidden = true;
    if (message) showError(message);
  }

  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    try {
      const r = await fetch("/api/auth/login", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({email: form.email.value, password: form.password.value}),
      });
      const body = await r.json();
      if (!r.ok) return showError(problemText(r.status, body));
      if (body.role !== "ADMIN") return showError("This account is " + body.role + "; the dashboard needs an ADMIN.");
      sessionStorage.setItem(TOKEN_KEY, body.token);
      form.password.value = "";
      $("login").hidden = true;
      start();
    } catch (e) {
      showError("Sign-in failed: " + e);
    }
  });

  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(timer);
    showLogin("Token forgotten.");
  });

  // ------------------------------------------------------------------ polling

  function showError(text) {
    const el = $("error");
    el.textContent = text;
    el.hidden = !text;
  }

  function problemText(status, body) {
    const code = body && body.code ? body.code + ": " : "";
    const detail = body && (body.detail || body.title) ? body.detail || body.title : "request failed";
    return "HTTP " + status + " " + code + detail;
  }

  async function poll() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return showLogin();
    let r, body;
    try {
      r = await fetch(DATA_URL, {headers: {"Authorization": "Bearer " + token}, cache: "no-store"});
      body = await r.json();
    } catch (e) {
      document.body.dataset.state = "error";
      showError("Cannot reach the server: " + e);
      timer = setTimeout(poll, refreshMs);
      return;
    }
    if (r.status === 401 || r.status === 403) {
      document.body.dataset.state = "error";
      document.body.dataset.httpStatus = String(r.status);
      sessionStorage.removeItem(TOKEN_KEY);
      return showLogin(problemText(r.status, body));
    }
    if (!r.ok) {
      document.body.dataset.state = "error";
      showError(problemText(r.status, body));
    } else {
      showError("");
      addSample(body);
      render();
      document.body.dataset.state = "ready";
    }
    timer = setTimeout(poll, refreshMs);
  }

  function start() {
    $("logout").hidden = false;
    clearTimeout(timer);
    poll();
  }

  // ------------------------------------------------------------------ figures

  // Like PromQL's histogram_quantile: linear interpolation inside the bucket holding the rank.
  // `le` are the upper bounds (null = +Inf), `counts` cumulative counts; null without observations.
  function quantile(q, le, counts) {
    const total = counts[counts.length - 1];
    if (!total) return null;
    const rank = q * total;
    let i = counts.findIndex((c) => c >= rank);
    if (le[i] === null) return le[i - 1];  // in the +Inf bucket: the highest finite bound
    const lower = i === 0 ? 0 : le[i - 1];
    const below = i === 0 ? 0 : counts[i - 1];
    const inBucket = counts[i] - below;
    return inBucket > 0 ? lower + (le[i] - lower) * (rank - below) / inBucket : le[i];
  }

  function ratio(a, b) { return b > 0 ? a / b : null; }

  function derive(prev, cur) {
    const a = prev.data.checkout, b = cur.data.checkout;
    // Another worker answered, or it restarted: its counters are not comparable with the last ones.
    if ((b.scope === "process" && a.pid !== b.pid) || b.checkouts < a.checkouts) return null;
    const d = b.checkouts - a.checkouts;
    const counts = b.latency.counts.map((c, i) => c - a.latency.counts[i]);
    return {
      checkouts: d,
      conflictRate: ratio(b.conflicts - a.conflicts, b.decided - a.decided),
      retriesPerCheckout: ratio(b.retries - a.retries, d),
      p50: ms(quantile(0.50, b.latency.le, counts)),
      p95: ms(quantile(0.95, b.latency.le, counts)),
      p99: ms(quantile(0.99, b.latency.le, counts)),
    };
  }

  function ms(seconds) { return seconds === null ? null : seconds * 1000; }

  function addSample(data) {
    const cur = {t: Date.now(), data: data, derived: null};
    if (samples.length) cur.derived = derive(samples[samples.length - 1], cur);
    samples.push(cur);
    while (samples.length > MAX_SAMPLES) samples.shift();
    if (data.refreshSeconds && !params.get("refresh")) refreshMs = data.refreshSeconds * 1000;
  }

  function fmt(v, digits, unit) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    return v.toFixed(digits) + (unit || "");
  }

  function setFigure(id, value, text) {
    const el = $(id);
    el.dataset.value = value === null || value === undefined ? "" : String(value);
    el.textContent = text;
  }

  // The node this server's primary pool is on and its standbys (app.replication_state, docs/runbook.md
  // "Failover"): an alarm when a primary has no synchronous standby streaming.
  function renderReplication(r) {
    if (!r) return;
    setFigure("db-node", r.node, r.node);
    setFigure("db-role", r.role, r.role + (r.replayDelaySeconds === null ? "" : ", replayed " + fmt(r.replayDelaySeconds, 1, " s") + " ago"));
    const sync = (r.standbys || []).filter((s) => s.syncState === "sync" && s.state === "streaming");
    const text = (r.standbys || []).map((s) => s.name + " " + (s.state || "?") + "/" + (s.syncState || "?")
      + (s.lagBytes === null || s.lagBytes === undefined ? "" : ", " + s.lagBytes + " B behind")).join("; ");
    setFigure("db-standbys", sync.length, r.role === "primary" ? (text || "no standby") : "");
    $("tile-replication").classList.toggle("alarm", r.role === "primary" && r.synchronousStandbyNames !== "" && sync.length === 0);
  }

  function render() {
    const last = samples[samples.length - 1].data;
    const c = last.checkout, db = last.database;
    const rate = ratio(c.conflicts, c.decided);  // over the checkouts the server decided, like the verdict
    setFigure("conflict-rate", rate, fmt(rate === null ? null : rate * 100, 1, " %"));
    const rpc = ratio(c.retries, c.checkouts);
    setFigure("retries-per-checkout", rpc, fmt(rpc, 2));
    for (const [q, id] of [[0.50, "latency-p50"], [0.95, "latency-p95"], [0.99, "latency-p99"]]) {
      const v = ms(quantile(q, c.latency.le, c.latency.counts));
      setFigure(id, v, fmt(v, 1, " ms"));
    }
    setFigure("checkouts-total", c.checkouts, String(c.checkouts));
    $("checkout-scope").textContent = c.scope === "process"
      ? "worker pid " + c.pid + " only (per-process counters)" : "all workers";
    setFigure("negative-stock", db.negativeStock, String(db.negativeStock));
    $("negative-stock-products").textContent = db.negativeStock
      ? "below 0: " + db.negativeStockProducts.join(", ") : "products below 0";
    $("tile-negative").classList.toggle("alarm", db.negativeStock > 0);
    setFigure("unpaid-past-hold", db.unpaidPastHold, String(db.unpaidPastHold));
    $("hold-window").textContent = "unpaid for more than " + db.holdMinutes + " min";
    $("tile-unpaid").classList.toggle("alarm", db.unpaidPastHold > 0);

    renderOrders(db);
    renderVerdict(db.verdict);
    renderReplication(last.replication);

    const pts = (f) => samples.map((s) => (s.derived ? f(s.derived) : null));
    lineChart($("chart-conflict-rate"), [{name: "409 share %", color: "var(--c3)", values: pts((d) => d.conflictRate === null ? null : d.conflictRate * 100)}]);
    lineChart($("chart-retries"), [{name: "retries/checkout", color: "var(--c2)", values: pts((d) => d.retriesPerCheckout)}]);
    lineChart($("chart-latency"), [
      {name: "P50", color: "var(--c1)", values: pts((d) => d.p50)},
      {name: "P95", color: "var(--c2)", values: pts((d) => d.p95)},
      {name: "P99", color: "var(--c3)", values: pts((d) => d.p99)},
    ]);
    lineChart($("chart-db"), [
      {name: "negative stock", color: "var(--c3)", values: samples.map((s) => s.data.database.negativeStock)},
      {name: "unpaid past hold", color: "var(--c2)", values: samples.map((s) => s.data.database.unpaidPastHold)},
    ]);

    setFigure("samples", samples.length, String(samples.length));
    $("max-samples").textContent = String(MAX_SAMPLES);
    $("refresh").textContent = String(refreshMs / 1000);
    $("status-line").textContent = "updated " + new Date(samples[samples.length - 1].t).toLocaleTimeString();
  }

  function renderOrders(db) {
    const all = db.ordersByStatus, hour = db.ordersLastHour || {};
    const names = STATUSES.concat(Object.keys(all).filter((s) => !STATUSES.includes(s)).sort());
    const tbody = $("orders-table").tBodies[0];
    tbody.replaceChildren();
    let total = 0, totalHour = 0;
    for (const s of names) {
      const n = all[s] || 0, h = hour[s] || 0;
      total += n; totalHour += h;
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = s;
      const td = document.createElement("td");
      td.id = "orders-" + s; td.dataset.value = String(n); td.textContent = String(n);
      const tdh = document.createElement("td");
      tdh.id = "orders-last-hour-" + s; tdh.dataset.value = String(h); tdh.textContent = String(h);
      tr.append(th, td, tdh);
      tbody.append(tr);
    }
    setFigure("orders-total", total, String(total));
    setFigure("orders-last-hour-total", totalHour, String(totalHour));
    barChart($("chart-orders"), names.map((s) => ({label: s, value: all[s] || 0})));
  }

  // The checklist's verdict as api.deploy_verdict('1 hour') gave it (targets, values, statuses):
  // the page judges nothing itself, so it cannot disagree with `report --since 1h --check`.
  const WARN_OP = {">": "<=", "<": ">="};

  function inUnit(v, unit) {
    if (v === null || v === undefined) return "–";
    return unit === "ratio" ? (v * 100).toFixed(2) + " %" : v.toFixed(3) + " s";
  }

  function renderVerdict(v) {
    const section = $("verdict");
    if (!v) { section.hidden = true; return; }
    section.hidden = false;
    section.dataset.status = v.status;
    setFigure("verdict-status", v.status, v.status);
    setFigure("verdict-checkouts", v.decidedCheckouts, String(v.decidedCheckouts));
    setFigure("verdict-min-checkouts", v.minCheckouts, String(v.minCheckouts));
    const tbody = $("verdict-table").tBodies[0];
    tbody.replaceChildren();
    for (const c of v.checks) {
      const tr = document.createElement("tr");
      tr.id = "verdict-" + c.name;
      const th = document.createElement("th");
      th.textContent = c.title;
      const cell = (suffix, value, text, cls) => {
        const td = document.createElement("td");
        td.id = "verdict-" + c.name + "-" + suffix;
        td.dataset.value = value === null || value === undefined ? "" : String(value);
        td.textContent = text;
        if (cls) td.className = cls;
        return td;
      };
      tr.append(th,
        cell("value", c.value, inUnit(c.value, c.unit)),
        cell("threshold", c.threshold, c.op + " " + inUnit(c.threshold, c.unit)),
        cell("warn-at", c.warnAt, WARN_OP[c.op] + " " + inUnit(c.warnAt, c.unit)),
        cell("status", c.status, c.status, "status"),
        cell("reason", c.reason, c.reason || "", "text"));
      tbody.append(tr);
    }
  }

  // ------------------------------------------------------------------ SVG charts

  const SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function axisLabel(v) {
    return Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toPrecision(2);
  }

  // series: [{name, color, values: [number|null] aligned with samples}]; nulls leave gaps.
  function lineChart(box, series) {
    const W = 600, H = 150, L = 40, R = 8, T = 16, B = 14;
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img"});
    const all = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
    const top = niceMax(Math.max(0, ...all));
    const n = Math.max(MAX_SAMPLES, 2);
    const x = (i, len) => L + (W - L - R) * (n - len + i) / (n - 1);
    const y = (v) => T + (H - T - B) * (1 - v / top);
    for (const f of [0, 0.5, 1]) {
      svg.append(el("line", {x1: L, x2: W - R, y1: y(top * f), y2: y(top * f), stroke: "var(--grid)"}));
      svg.append(el("text", {x: L - 4, y: y(top * f) + 3, "text-anchor": "end"}, axisLabel(top * f)));
    }
    series.forEach((s, k) => {
      let d = "", pen = false;
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) { pen = false; return; }
        d += (pen ? "L" : "M") + x(i, s.values.length).toFixed(1) + "," + y(v).toFixed(1);
        pen = true;
      });
      if (d) svg.append(el("path", {d: d, fill: "none", stroke: s.color, "stroke-width": 2, "vector-effect": "non-scaling-stroke"}));
      const lastIdx = s.values.length - 1;
      if (lastIdx >= 0 && s.values[lastIdx] !== null && s.values[lastIdx] !== undefined) {
        svg.append(el("circle", {cx: x(lastIdx, s.values.length), cy: y(s.values[lastIdx]), r: 2.5, fill: s.color}));
      }
      svg.append(el("rect", {x: L + 6 + k * 120, y: 4, width: 10, height: 3, fill: s.color}));
      svg.append(el("text", {x: L + 20 + k * 120, y: 9}, s.name));
    });
    if (!all.length) svg.append(el("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, "no checkouts in the sampled intervals yet"));
    box.replaceChildren(svg);
  }

  function barChart(box, bars) {
    const W = 600, H = 170, L = 8, R = 8, T = 14, B = 28;
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, role: "img"});
    const top = niceMax(Math.max(0, ...bars.map((b) => b.value)));
    const slot = (W - L - R) / Math.max(bars.length, 1);
    bars.forEach((b, i) => {
      const h = (H - T - B) * b.value / top;
      const x0 = L + i * slot + slot * 0.15;
      svg.append(el("rect", {x: x0, y: H - B - h, width: slot * 0.7, height: Math.max(h, 0.5), fill: "var(--c1)", rx: 2}));
      svg.append(el("text", {x: x0 + slot * 0.35, y: H - B - h - 3, "text-anchor": "middle"}, String(b.value)));
      svg.append(el("text", {x: x0 + slot * 0.35, y: H - 10, "text-anchor": "middle"}, b.label.replace(/_/g, " ").toLowerCase()));
    });
    box.replaceChildren(svg);
  }

  // ------------------------------------------------------------------ go

  if (takeToken()) start(); else showLogin();
})();
