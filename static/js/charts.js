// Draws ECharts charts declared in markup: <div data-chart="line|bar|pie" data-labels=[..] data-values=[..]>.
(function () {
  "use strict";
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
        : { tooltip: { trigger: "axis" }, grid: { left: 40, right: 16, top: 16, bottom: 28 },
            xAxis: { type: "category", data: labels }, yAxis: { type: "value", minInterval: 1 },
            series: [{ type: kind, name: node.dataset.seriesName || "", data: values, smooth: true, areaStyle: kind === "line" ? {} : undefined }] };
      chart.setOption(option);
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:load", function (e) { draw(e.detail.elt); });
})();
