// guard's live view: one EventSource, frames of docs/LIVE.md, plain DOM and uPlot.
// No framework and no build step; the CSP forbids inline script, so everything is here.
(function () {
  "use strict";
  var BAND_CLASS = ["band0", "band1", "band2"];
  var COLORS = { blue: "#2563eb", orange: "#f59e0b", red: "#dc2626", grey: "#9ca3af" };
  var OUTCOME_SERIES = [
    ["admitted", "#059669"], ["over_capacity", COLORS.orange], ["over_rate", "#a855f7"],
    ["blocked", "#374151"], ["bad_request", COLORS.grey], ["errors", COLORS.red],
  ];
  var MAX_CELLS = 200; // equalizer cells drawn per row; larger ceilings are scaled
  var state = {
    hello: null, frame: null, frames: [], lastSeq: 0, dups: 0, gaps: 0, hellos: 0,
    lastTickAt: 0, charts: {}, scope: "site",
  };

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmtSeconds(s) {
    if (s === null || s === undefined) return "–";
    return s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(s < 10 ? 2 : 1) + " s";
  }
  function sum(values) { return values.reduce(function (a, b) { return a + b; }, 0); }

  // -- connection ------------------------------------------------------------------------
  function setConn(s) { var c = $("conn"); c.dataset.state = s; c.textContent = s; }

  function connect() {
    var es = new EventSource("live/stream");
    es.addEventListener("hello", function (ev) { onHello(JSON.parse(ev.data)); });
    es.addEventListener("tick", function (ev) { onTick(JSON.parse(ev.data)); });
    es.onerror = function () { setConn("stale"); };
    setInterval(function () {
      var tick = state.hello ? state.hello.tick : 1;
      if (state.lastTickAt && Date.now() - state.lastTickAt > 3000 * tick + 1000) setConn("stale");
    }, 500);
  }

  function onHello(h) {
    var changed = !state.hello || state.hello.config.sha256 !== h.config.sha256;
    state.hello = h;
    state.hellos += 1;
    $("sha").textContent = h.config.sha256.slice(0, 12);
    $("sha").dataset.sha = h.config.sha256;
    $("workers").textContent = h.workers;
    var bands = h.bands;
    var labels = ["0–" + bands[0] + " s", bands[0] + "–" + bands[1] + " s", bands[1] + " s+"];
    document.querySelectorAll(".band-label").forEach(function (e) {
      e.textContent = labels[+e.dataset.band];
    });
    fillScopes(h);
    if (changed) $("eq").textContent = ""; // rows rebuilt for the new config
  }

  function fillScopes(h) {
    var select = $("hitmap-scope");
    var names = ["site"].concat(h.rules.map(function (r) { return "rule:" + r.name; }),
      h.backends.map(function (b) { return "backend:" + b.name; }));
    select.textContent = "";
    names.forEach(function (n) { var o = el("option", null, n); o.value = n; select.appendChild(o); });
    select.value = names.indexOf(state.scope) >= 0 ? state.scope : "site";
    state.scope = select.value;
  }

  function onTick(f) {
    if (f.seq <= state.lastSeq) { state.dups += 1; return; }
    if (state.lastSeq && f.seq !== state.lastSeq + 1) state.gaps += f.seq - state.lastSeq - 1;
    state.lastSeq = f.seq;
    state.frame = f;
    state.frames.push(f);
    var keep = state.hello ? Math.max(10, Math.round(state.hello.history / state.hello.tick)) : 300;
    if (state.frames.length > keep) state.frames.splice(0, state.frames.length - keep);
    state.lastTickAt = Date.now();
    setConn("live");
    render(f);
  }

  // -- panels -----------------------------------------------------------------------------
  function render(f) {
    $("clock").textContent = new Date(f.t * 1000).toLocaleTimeString();
    $("clock").dataset.t = f.t;
    $("reloads").textContent = f.reloads.success + " ok / " + f.reloads.failure + " failed";
    if (f.sha && state.hello) $("sha").dataset.frameSha = f.sha;
    renderKpis(f);
    renderEqualizer(f);
    renderTable("oldest", f.oldest, function (o) {
      return [[fmtSeconds(o[0]), "age-" + band(o[0])], [o[1]], [o[2] || "–"], [o[3] + " " + o[4]], [o[5]]];
    });
    renderTable("slow", f.slow, function (s) {
      return [[fmtSeconds(s[0]), "age-" + band(s[0])], [s[1]], [s[2]], [String(s[3])], [s[4] + " " + s[5]]];
    });
    renderEvents(f.events || []);
    renderRooms(f);
    updateCharts();
  }

  function band(age) {
    var b = state.hello ? state.hello.bands : [3, 8];
    return age < b[0] ? 0 : age < b[1] ? 1 : 2;
  }

  function perSecond(n, f) { return f.dt > 0 ? n / f.dt : n; }

  function outcomes(f) {
    var out = {};
    f.rules.forEach(function (r) {
      Object.keys(r.out).forEach(function (k) { out[k] = (out[k] || 0) + r.out[k]; });
    });
    out.errors = sum(f.backends.map(function (b) { return sum(Object.values(b.err)); }));
    return out;
  }

  function renderKpis(f) {
    var out = outcomes(f);
    var refused = (out.over_capacity || 0) + (out.over_rate || 0) + (out.blocked || 0);
    $("kpi-active").textContent = f.site.active + (f.site.max ? " / " + f.site.max : "");
    $("kpi-admitted").textContent = perSecond(out.admitted || 0, f).toFixed(0);
    $("kpi-admitted").dataset.value = out.admitted || 0;
    $("kpi-refused").textContent = perSecond(refused, f).toFixed(0);
    $("kpi-refused").dataset.value = refused;
    $("kpi-errors").textContent = perSecond(out.errors, f).toFixed(1);
    var recent = state.frames.slice(-Math.max(1, Math.round(10 / (state.hello ? state.hello.tick : 1))));
    $("kpi-p99").textContent = fmtSeconds(quantile(mergeCells(recent, "site"), 0.99));
    var up = f.backends.filter(function (b) { return b.up; }).length;
    $("kpi-up").textContent = up + " / " + f.backends.length;
    var rc = f.refused_clients || { tick: 0, "1m": 0 };
    $("kpi-shoppers").textContent = rc.tick + " / " + rc["1m"];
    $("kpi-shoppers").dataset.minute = rc["1m"];
  }

  function renderEqualizer(f) {
    var box = $("eq");
    f.backends.forEach(function (b) { eqRow(box, "backend", b); });
    f.rules.forEach(function (r) { if (r.max !== null || r.active > 0) eqRow(box, "rule", r); });
  }

  function eqRow(box, kind, s) {
    var id = "eq-" + kind + "-" + s.name;
    var row = document.getElementById(id);
    if (!row) {
      row = el("div", "eq-row");
      row.id = id;
      row.dataset.scope = kind;
      row.dataset.name = s.name;
      var name = el("div", "name");
      name.appendChild(el("span", "kind", kind));
      name.appendChild(document.createTextNode(s.name));
      row.appendChild(name);
      row.appendChild(el("div", "cells"));
      row.appendChild(el("div", "count"));
      box.appendChild(row);
    }
    row.dataset.active = s.active;
    row.dataset.max = s.max === null ? "" : s.max;
    row.dataset.ages = s.ages.join(",");
    if (s.up !== undefined) row.dataset.up = s.up;
    var total = Math.max(s.max || 0, s.active);
    var scale = total > MAX_CELLS ? MAX_CELLS / total : 1;
    var want = Math.round(total * scale);
    var cells = row.children[1];
    while (cells.children.length < want) cells.appendChild(el("span", "cell"));
    while (cells.children.length > want) cells.removeChild(cells.lastChild);
    // Oldest first: red cells, then orange, then blue, then idle.
    var counts = [s.ages[2], s.ages[1], s.ages[0]].map(function (n) { return Math.round(n * scale); });
    var classes = ["band2", "band1", "band0"];
    var i = 0;
    counts.forEach(function (n, k) {
      for (var j = 0; j < n && i < want; j++, i++) cells.children[i].className = "cell " + classes[k];
    });
    for (; i < want; i++) cells.children[i].className = "cell";
    row.children[2].textContent = s.active + (s.max !== null ? " / " + s.max : "");
  }

  function renderTable(id, rows, cols) {
    var body = $(id).tBodies[0];
    body.textContent = "";
    rows.forEach(function (r) {
      var tr = el("tr");
      cols(r).forEach(function (c) { tr.appendChild(el("td", c[1] || null, c[0])); });
      body.appendChild(tr);
    });
  }

  function renderEvents(events) {
    var list = $("events");
    events.forEach(function (e) {
      var li = el("li", e.subject + " " + e.detail,
        new Date(e.t * 1000).toLocaleTimeString() + " " + e.kind + " " + e.subject + " " + e.detail);
      li.dataset.kind = e.kind;
      list.insertBefore(li, list.firstChild);
    });
    while (list.children.length > 50) list.removeChild(list.lastChild);
  }

  // The waiting rooms (frame.rooms: /status's numbers per room, admitted during the tick).
  function renderRooms(f) {
    var rooms = f.rooms || [];
    $("rooms").hidden = rooms.length === 0;
    $("kpi-waiting-tile").hidden = rooms.length === 0;
    $("kpi-waiting").textContent = f.waiting_shoppers || 0;
    $("kpi-waiting").dataset.value = f.waiting_shoppers || 0;
    var body = $("rooms-body");
    body.textContent = "";
    rooms.forEach(function (r) {
      var tr = el("tr");
      tr.dataset.room = r.name;
      tr.dataset.state = r.state;
      tr.dataset.waiting = r.waiting;
      tr.dataset.waitingEstimated = r.waiting_estimated;
      tr.dataset.admitRate = r.admit_rate;
      tr.dataset.eta = r.eta_seconds === null ? "" : r.eta_seconds;
      tr.dataset.passes = r.passes_in_flight;
      [r.name + (r.dry_run ? " (dry run)" : ""), r.state,
        Math.round(r.waiting_estimated) + " (" + r.waiting + " places)",
        r.admit_rate.toFixed(1), perSecond(r.admitted, f).toFixed(1),
        r.eta_seconds === null ? "–" : fmtSeconds(r.eta_seconds), String(r.passes_in_flight),
      ].forEach(function (text, i) { tr.appendChild(el("td", i === 1 ? "room-" + r.state : null, text)); });
      body.appendChild(tr);
    });
  }

  // -- cells --------------------------------------------------------------------------------
  function scopeOf(f, scope) {
    if (scope === "site") return f.site;
    var parts = scope.split(":");
    var list = parts[0] === "rule" ? f.rules : f.backends;
    for (var i = 0; i < list.length; i++) if (list[i].name === parts[1]) return list[i];
    return null;
  }

  // {bucket: {hits, errors}} over `frames` for a scope ("site", "rule:x", "backend:y")
  function mergeCells(frames, scope) {
    var out = {};
    frames.forEach(function (f) {
      var s = scopeOf(f, scope);
      if (!s) return;
      s.hit.forEach(function (c) {
        var o = out[c[0]] || (out[c[0]] = { hits: 0, errors: 0 });
        o.hits += c[1];
        o.errors += c[2];
      });
    });
    return out;
  }

  function quantile(cells, q) {
    var keys = Object.keys(cells).map(Number).sort(function (a, b) { return a - b; });
    var total = sum(keys.map(function (k) { return cells[k].hits; }));
    if (!total || !state.hello) return null;
    var seen = 0;
    for (var i = 0; i < keys.length; i++) {
      seen += cells[keys[i]].hits;
      if (seen >= q * total) return state.hello.buckets[keys[i]];
    }
    return null;
  }

  // -- charts -------------------------------------------------------------------------------
  function chartWidth(id) { return Math.max(300, $(id).clientWidth - 10); }

  function makeChart(id, series, opts) {
    if (typeof uPlot === "undefined") return null;
    var o = Object.assign({
      width: chartWidth(id), height: 200, series: [{}].concat(series),
      scales: { x: { time: true } }, legend: { show: true, live: false }, cursor: { show: false },
    }, opts || {});
    return new uPlot(o, [[]].concat(series.map(function () { return []; })), $(id));
  }

  function bandSeries(label, color) {
    return { label: label, stroke: color, fill: color + "99", width: 1, points: { show: false } };
  }

  function ensureCharts() {
    var c = state.charts;
    if (!c.active) {
      c.active = makeChart("chart-active", [
        bandSeries("all", COLORS.blue), bandSeries("≥ band 1", COLORS.orange),
        bandSeries("≥ band 2", COLORS.red),
        { label: "max", stroke: "#111827", dash: [4, 4], width: 1, points: { show: false } },
      ]);
    }
    if (!c.outcomes) {
      c.outcomes = makeChart("chart-outcomes", OUTCOME_SERIES.map(function (s) {
        return { label: s[0], stroke: s[1], width: 1.5, points: { show: false } };
      }));
    }
    if (!c.hitmap) c.hitmap = makeHitmap();
  }

  function updateCharts() {
    ensureCharts();
    var c = state.charts;
    var frames = state.frames;
    var xs = frames.map(function (f) { return f.t; });
    if (c.active) {
      c.active.setData([xs,
        frames.map(function (f) { return sum(f.site.ages); }),
        frames.map(function (f) { return f.site.ages[1] + f.site.ages[2]; }),
        frames.map(function (f) { return f.site.ages[2]; }),
        frames.map(function (f) { return f.site.max; })]);
    }
    if (c.outcomes) {
      var per = frames.map(outcomes);
      c.outcomes.setData([xs].concat(OUTCOME_SERIES.map(function (s) {
        return per.map(function (o, i) { return perSecond(o[s[0]] || 0, frames[i]); });
      })));
    }
    if (c.hitmap) c.hitmap.setData([xs, xs.map(function () { return null; })]);
  }

  function makeHitmap() {
    if (typeof uPlot === "undefined") return null;
    return new uPlot({
      width: chartWidth("chart-hitmap"), height: 300,
      series: [{}, { label: "completions", stroke: "transparent", points: { show: false } }],
      scales: { x: { time: true }, y: { distr: 3, range: [0.001, 80] } },
      axes: [{}, {
        size: 64,
        splits: function () { return [0.001, 0.01, 0.1, 1, 10]; },
        values: function (u, vals) { return vals.map(fmtSeconds); },
      }],
      legend: { show: false }, cursor: { show: false },
      hooks: { draw: [drawHitmap] },
    }, [[], []], $("chart-hitmap"));
  }

  // One rectangle per (tick, bucket) with hits: blue by density, orange→red with errors;
  // dashed guide lines at the two age bands (3 s and 8 s by default).
  function drawHitmap(u) {
    var h = state.hello;
    if (!h) return;
    var ctx = u.ctx;
    var painted = 0;
    var peak = 1;
    state.frames.forEach(function (f) {
      var s = scopeOf(f, state.scope);
      if (s) s.hit.forEach(function (c) { peak = Math.max(peak, c[1]); });
    });
    ctx.save();
    state.frames.forEach(function (f) {
      var s = scopeOf(f, state.scope);
      if (!s) return;
      var x1 = u.valToPos(f.t, "x", true);
      var x0 = u.valToPos(f.t - (f.dt || h.tick), "x", true);
      s.hit.forEach(function (c) {
        var lo = c[0] === 0 ? 0.001 : h.buckets[c[0] - 1];
        var hi = h.buckets[c[0]] === null ? 80 : h.buckets[c[0]];
        var y0 = u.valToPos(Math.max(lo, 0.001), "y", true);
        var y1 = u.valToPos(Math.min(hi, 80), "y", true);
        var alpha = 0.25 + 0.75 * Math.log(1 + c[1]) / Math.log(1 + peak);
        ctx.fillStyle = c[2] > 0 ? (c[2] * 2 >= c[1] ? COLORS.red : COLORS.orange) : COLORS.blue;
        ctx.globalAlpha = alpha;
        ctx.fillRect(x0, y1, Math.max(1, x1 - x0 - 1), Math.max(1, y0 - y1));
        painted += 1;
      });
    });
    ctx.globalAlpha = 1;
    ctx.setLineDash([6, 4]);
    h.bands.forEach(function (b, i) {
      var y = u.valToPos(b, "y", true);
      ctx.strokeStyle = i === 0 ? COLORS.orange : COLORS.red;
      ctx.beginPath();
      ctx.moveTo(u.bbox.left, y);
      ctx.lineTo(u.bbox.left + u.bbox.width, y);
      ctx.stroke();
    });
    ctx.restore();
    state.hitmapRects = painted;
  }

  // -- for tests and the curious ----------------------------------------------------------------
  window.guardLive = {
    get hello() { return state.hello; },
    get frame() { return state.frame; },
    get frames() { return state.frames.slice(); },
    get stats() {
      return { lastSeq: state.lastSeq, dups: state.dups, gaps: state.gaps, hellos: state.hellos,
        hitmapRects: state.hitmapRects || 0 };
    },
    cells: function (scope) { return mergeCells(state.frames, scope || "site"); },
    setScope: function (scope) { state.scope = scope; $("hitmap-scope").value = scope; updateCharts(); },
  };

  document.addEventListener("DOMContentLoaded", function () {
    $("hitmap-scope").addEventListener("change", function (e) {
      state.scope = e.target.value;
      updateCharts();
    });
    window.addEventListener("resize", function () {
      Object.keys(state.charts).forEach(function (k) {
        var c = state.charts[k];
        if (c) c.setSize({ width: chartWidth(c.root.parentNode.id), height: c.height });
      });
    });
    connect();
  });
})();
