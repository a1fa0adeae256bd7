/* skyctl sim report: draws the charts from the data embedded in the page (uPlot). */
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("sim-data").textContent);
  const COLORS = ["#d33c3c", "#3b6fd8", "#2e8b57", "#f0a020", "#7a4fc2", "#19a2a2", "#a8761c"];
  const hours = { label: "hours", value: (u, v) => v == null ? "-" : v.toFixed(2) };
  const policies = Object.keys(data);
  if (!policies.length) return;
  const costEl = document.getElementById("sim-cost");
  const w = Math.max(480, costEl.clientWidth || 900);
  // every policy's timeline has its own times: join them on the union of times
  const times = [...new Set(policies.flatMap((p) => data[p].cost[0]))].sort((a, b) => a - b);
  const at = (p) => {
    const [t, c] = data[p].cost; const out = []; let j = 0, last = null;
    for (const x of times) { while (j < t.length && t[j] <= x) { last = c[j]; j++; } out.push(last); }
    return out;
  };
  const first = data[policies[0]];
  const od = times.map((x) => first.hours ? first.ondemand_cost * x / first.hours : null);
  new uPlot({
    width: w, height: 260, scales: { x: { time: false } },
    series: [hours, ...policies.map((p, i) => ({ label: p, stroke: COLORS[i % COLORS.length], width: 2 })),
             { label: "on-demand only", stroke: "#555", dash: [6, 4], width: 1 }],
    axes: [{ label: "hours" }, { size: 70 }],
  }, [times, ...policies.map(at), od], costEl);
  const holder = document.getElementById("sim-ready");
  for (const p of policies) {
    const fig = document.createElement("figure");
    const cap = document.createElement("figcaption");
    cap.textContent = p + ": ready replicas";
    const el = document.createElement("div");
    fig.append(cap, el); holder.append(fig);
    new uPlot({
      width: Math.floor(w / 2) - 20, height: 200, scales: { x: { time: false } },
      series: [hours, { label: "spot", stroke: "#2e8b57", width: 2, paths: uPlot.paths.stepped({ align: 1 }) },
               { label: "on-demand", stroke: "#3b6fd8", width: 2, paths: uPlot.paths.stepped({ align: 1 }) },
               { label: "target", stroke: "#555", dash: [4, 4], width: 1, paths: uPlot.paths.stepped({ align: 1 }) }],
      axes: [{ label: "hours" }, { size: 40 }],
    }, data[p].ready, el);
  }
  document.body.dataset.drawn = String(policies.length);
})();
