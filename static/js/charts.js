// Draws ECharts charts declared in markup:
//   <div data-chart="line|bar|pie|funnel" data-labels=[..] data-values=[..] data-series-name="..">
// or, for several series of a line or bar chart (with a legend):
//   <div data-chart="line|bar" data-labels=[..] data-series='[{"name": "..", "values": [..]}, ..]'>
(function () {
  "use strict";
  function cartesian(kind, labels, node) {
    var many = node.dataset.series ? JSON.parse(node.dataset.series) : null;
    var series = many
      // Several counts per day are drawn straight: a smoothed curve would swing between (and below) the days.
      ? many.map(function (s) { return { type: kind, name: s.name, data: s.values, barMaxWidth: 48 }; })
      : [{ type: kind, name: node.dataset.seriesName || "", data: JSON.parse(node.dataset.values || "[]"), smooth: true,
           areaStyle: kind === "line" ? {} : undefined, barMaxWidth: 48 }];
    return { tooltip: { trigger: "axis" }, legend: many ? { top: 0 } : undefined,
             grid: { left: 40, right: 16, top: many ? 36 : 16, bottom: 28 },
             xAxis: { type: "category", data: labels }, yAxis: { type: "value", minInterval: 1 }, series: series };
  }
  function funnel(labels, values) {
    return { tooltip: { trigger: "item", formatter: "{b}: {c}" },
             series: [{ type: "funnel", sort: "none", left: "10%", width: "80%", top: 8, bottom: 8, gap: 2, min: 0,
                        max: Math.max.apply(null, [1].concat(values)), minSize: "12%",
                        label: { show: true, position: "inside", formatter: "{b}  {c}" },
                        data: labels.map(function (l, i) { return { name: l, value: values[i] }; }) }] };
  }
  function draw(root) {
    if (!window.echarts) return;
    root.querySelectorAll("[data-chart]").forEach(function (node) {
      if (node.dataset.drawn) return;
      node.dataset.drawn = "1";
      var kind = node.dataset.chart;
      var labels = JSON.parse(node.dataset.labels || "[]");
      var values = JSON.parse(node.dataset.values || "[]");
      var chart = echarts.init(node);
      var option = kind === "pie"
        ? { tooltip: { trigger: "item" }, series: [{ type: "pie", radius: ["40%", "70%"],
            data: labels.map(function (l, i) { return { name: l, value: values[i] }; }) }] }
        : kind === "funnel" ? funnel(labels, values) : cartesian(kind, labels, node);
      chart.setOption(option);
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:load", function (e) { draw(e.detail.elt); });
})();
