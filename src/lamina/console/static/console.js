// The console's own script: the Monitor tab's charts (uPlot) and live log tail (SSE).
// Everything else is server-rendered HTML and htmx attributes.
"use strict";

(function () {
  function drawCharts(root) {
    var source = root.getAttribute("data-source");
    fetch(source, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        root.querySelectorAll(".chart").forEach(function (figure) {
          var key = figure.getAttribute("data-series");
          var series = data.series[key] || { timestamps: [], values: [] };
          var caption = figure.querySelector(".points");
          caption.setAttribute("data-points", String(series.values.length));
          caption.textContent = series.values.length
            ? series.values.length + " points · last "
              + Math.round(series.values[series.values.length - 1] * 100) / 100
              + " " + figure.getAttribute("data-unit")
            : "No data in this period.";
          var plot = figure.querySelector(".plot");
          plot.innerHTML = "";
          if (!window.uPlot || !series.values.length) { return; }
          var width = Math.max(260, figure.clientWidth - 24);
          new window.uPlot({
            width: width, height: 170,
            legend: { show: false },
            // The whole period on the x axis, zero at the bottom: a lone point stays in place.
            scales: {
              x: { time: true, range: function () { return [data.start, data.end]; } },
              y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.15)]; } }
            },
            series: [{}, { label: key, stroke: "#0b63c5", fill: "rgba(11,99,197,0.12)",
                           width: 2, points: { show: true, size: 6 } }],
            axes: [{}, { size: 50 }]
          }, [series.timestamps, series.values], plot);
        });
        var cost = data.cost || {};
        var usd = document.getElementById("cost-usd");
        if (usd) {
          usd.textContent = "$" + (cost.usd || 0).toFixed(6);
          document.getElementById("cost-requests").textContent = String(cost.requests || 0);
          document.getElementById("cost-gbs").textContent = String(cost.gb_seconds || 0);
        }
      })
      .catch(function () { /* the next refresh tries again */ });
  }

  function tail(pre) {
    if (!window.EventSource) { pre.textContent = "This browser cannot follow logs live."; return; }
    var stream = new EventSource(pre.getAttribute("data-source"));
    stream.onmessage = function (event) {
      var line = JSON.parse(event.data);
      var stamp = new Date(line.timestamp).toISOString().slice(11, 23);
      pre.appendChild(document.createTextNode(stamp + "  " + line.message.replace(/\n$/, "") + "\n"));
      while (pre.childNodes.length > 2000) { pre.removeChild(pre.firstChild); }
      pre.scrollTop = pre.scrollHeight;
    };
    stream.addEventListener("problem", function (event) {
      var problem = JSON.parse(event.data);
      pre.appendChild(document.createTextNode(problem.code + ": " + problem.message + "\n"));
      stream.close();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var charts = document.getElementById("charts");
    if (charts) {
      drawCharts(charts);
      setInterval(function () { drawCharts(charts); }, 10000);
    }
    var pre = document.getElementById("tail");
    if (pre) { tail(pre); }
  });
})();
