/* skyctl console: swaps in the server-rendered fragments each update and feeds
   the charts (uPlot). No build step, no framework: served as is. */
"use strict";
(function () {
  const KEEP = 300; // traffic points kept per service (5 minutes at one a second)
  const COLORS = ["#2e8b57", "#3b6fd8", "#d33c3c", "#f0a020", "#7a4fc2", "#19a2a2", "#a8761c"];
  const main = document.getElementById("main");
  const conn = document.getElementById("conn");
  const updated = document.getElementById("updated");
  let names = null;
  const costCharts = {};
  const traffic = {}; // name -> {ids: [...], t: [], ys: {id: []}, chart}

  function width(el) {
    const section = el.closest("section") || document.body;
    return Math.max(320, Math.floor((section.clientWidth - 60) / 2));
  }

  function costChart(name, series) {
    const el = document.getElementById("cost-" + name);
    if (!el) return;
    if (costCharts[name]) { costCharts[name].setData(series); return; }
    costCharts[name] = new uPlot({
      width: width(el), height: 200,
      series: [{}, { label: "accrued $", stroke: "#d33c3c", width: 2 },
               { label: "on-demand $", stroke: "#3b6fd8", width: 2, dash: [6, 4] }],
      axes: [{}, { size: 70 }],
    }, series, el);
  }

  function trafficChart(name, at, rates) {
    const el = document.getElementById("traffic-" + name);
    if (!el) return;
    let tr = traffic[name];
    const ids = Object.keys(rates).sort((a, b) => a - b);
    if (!tr || tr.ids.join() !== ids.join()) {
      const old = tr;
      tr = { ids: ids, t: old ? old.t.slice() : [], ys: {}, chart: null };
      for (const id of ids) {
        tr.ys[id] = old && old.ys[id] ? old.ys[id].slice() : tr.t.map(() => null);
      }
      if (old && old.chart) old.chart.destroy();
      el.textContent = "";
      traffic[name] = tr;
    }
    tr.t.push(at);
    for (const id of ids) tr.ys[id].push(rates[id]);
    if (tr.t.length > KEEP) { tr.t.shift(); for (const id of ids) tr.ys[id].shift(); }
    const data = [tr.t, ...ids.map((id) => tr.ys[id])];
    if (tr.chart) { tr.chart.setData(data); return; }
    tr.chart = new uPlot({
      width: width(el), height: 200,
      series: [{}, ...ids.map((id, i) => ({ label: "#" + id, stroke: COLORS[i % COLORS.length], width: 2 }))],
      axes: [{}, { size: 50 }],
    }, data, el);
  }

  function apply(u) {
    if (names === null || names.join() !== u.names.join()) {
      if (names !== null) {
        main.innerHTML = u.main;
        for (const k of Object.keys(costCharts)) { costCharts[k].destroy(); delete costCharts[k]; }
        for (const k of Object.keys(traffic)) { if (traffic[k].chart) traffic[k].chart.destroy(); delete traffic[k]; }
      }
      names = u.names;
    } else {
      for (const [id, html] of Object.entries(u.parts)) {
        const el = document.getElementById(id);
        if (el) {
          const open = el.querySelector("details.events");
          el.innerHTML = html;
          const now = el.querySelector("details.events");
          if (open && now && !open.open) now.open = false;
        }
      }
    }
    for (const [name, c] of Object.entries(u.charts)) {
      costChart(name, c.cost);
      trafficChart(name, u.at, c.rates);
    }
    updated.textContent = u.clock;
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }

  apply(JSON.parse(document.getElementById("initial").textContent));
  const source = new EventSource("events");
  source.onopen = () => { conn.textContent = "live"; conn.classList.remove("down"); };
  source.onerror = () => { conn.textContent = "reconnecting"; conn.classList.add("down"); };
  source.onmessage = (e) => apply(JSON.parse(e.data));
})();
