// The insights page: draw each figure from the JSON beside it (json_script) with the
// plotly.js served from the installed plotly package. Redrawn after an htmx swap (filters).
(function () {
  "use strict";

  var CONFIG = { displayModeBar: false, responsive: true };

  function draw(root) {
    if (!window.Plotly) return;
    root.querySelectorAll("[data-figure]").forEach(function (elt) {
      var source = document.getElementById(elt.dataset.figure);
      if (!source || elt.dataset.drawn) return;
      var figure = JSON.parse(source.textContent);
      // A responsive plot takes its container's size: give the container the figure's height.
      elt.style.height = (figure.layout.height || 320) + "px";
      elt.dataset.drawn = "1";
      window.Plotly.newPlot(elt, figure.data, figure.layout, CONFIG);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (event) { draw(event.target); });
})();
