/* /allocation/ charts (ECharts, vendored): risk contribution by account and by symbol, VaR over
 * time, the correlation heat map, suggested against current limits. The data comes from the page's
 * json_script "allocation-data" (numbers as strings, parsed here for drawing only); labels from
 * "allocation-i18n". No inline script: the CSP allows scripts from this site only. */
(function () {
  "use strict";

  const num = (v) => (v === null || v === undefined ? null : parseFloat(v));
  const style = getComputedStyle(document.documentElement);
  const css = (name, fallback) => (style.getPropertyValue(name) || "").trim() || fallback;

  function chart(id) {
    const el = document.getElementById(id);
    if (!el || !window.echarts) return null;
    return window.echarts.getInstanceByDom(el) || window.echarts.init(el, null, { renderer: "canvas" });
  }

  function bars(id, rows, series) {
    const c = chart(id);
    if (!c) return;
    c.setOption({
      animation: false,
      grid: { left: 110, right: 16, top: 28, bottom: 24 },
      legend: { top: 0, textStyle: { color: css("--muted", "#64748b") } },
      tooltip: { trigger: "axis" },
      xAxis: { type: "value" },
      yAxis: { type: "category", data: rows.map((r) => r.name) },
      series: series.map(([key, name, color]) => ({
        name,
        type: "bar",
        data: rows.map((r) => num(r[key])),
        itemStyle: color ? { color } : undefined,
      })),
    });
  }

  function history(data, T) {
    const c = chart("var-history-chart");
    if (!c) return;
    if (!data.history.length) {
      c.setOption({ title: { text: T.no_history, left: "center", top: "middle", textStyle: { fontSize: 13, color: "#64748b" } } });
      return;
    }
    const days = data.history.map((h) => h.day);
    c.setOption({
      animation: false,
      grid: { left: 72, right: 16, top: 28, bottom: 28 },
      legend: { top: 0 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: days },
      yAxis: { type: "value" },
      series: [
        ["var", T.var],
        ["es", T.es],
        ["param", T.param],
      ].map(([key, name]) => ({ name, type: "line", showSymbol: days.length < 40, data: data.history.map((h) => num(h[key])) })),
    });
  }

  function heatmap(data) {
    const c = chart("correlation-chart");
    const corr = data.correlation;
    if (!c || !corr.symbols.length) return;
    const cells = [];
    corr.matrix.forEach((row, i) => row.forEach((v, j) => cells.push([j, i, num(v)])));
    c.setOption({
      animation: false,
      grid: { left: 90, right: 16, top: 16, bottom: 70 },
      tooltip: { formatter: (p) => `${corr.symbols[p.value[1]]} / ${corr.symbols[p.value[0]]}: ${p.value[2].toFixed(2)}` },
      xAxis: { type: "category", data: corr.symbols, axisLabel: { rotate: 45 } },
      yAxis: { type: "category", data: corr.symbols },
      visualMap: { min: -1, max: 1, calculable: true, orient: "horizontal", left: "center", bottom: 0, inRange: { color: ["#2563eb", "#f8fafc", "#dc2626"] } },
      series: [{ type: "heatmap", data: cells, label: { show: corr.symbols.length <= 12, formatter: (p) => p.value[2].toFixed(2) } }],
    });
  }

  function draw() {
    const source = document.getElementById("allocation-data");
    const strings = document.getElementById("allocation-i18n");
    if (!source || !strings || !window.echarts) return;
    const data = JSON.parse(source.textContent);
    const T = JSON.parse(strings.textContent);
    bars("contrib-account-chart", data.by_account, [
      ["contribution", T.contribution, css("--accent", "#2563eb")],
      ["standalone", T.standalone, "#94a3b8"],
    ]);
    bars("contrib-symbol-chart", data.by_symbol, [["contribution", T.contribution, css("--accent", "#2563eb")]]);
    history(data, T);
    heatmap(data);
    bars("limits-chart", data.limits, [
      ["position", T.position, "#94a3b8"],
      ["now", T.limit_now, "#f59e0b"],
      ["suggested", T.suggested, css("--accent", "#2563eb")],
    ]);
  }

  window.addEventListener("resize", () =>
    document.querySelectorAll(".chart").forEach((el) => {
      const c = window.echarts && window.echarts.getInstanceByDom(el);
      if (c) c.resize();
    })
  );
  document.addEventListener("DOMContentLoaded", draw);
})();
