// The flagged backlog from the keyboard: j/k move, f marks the selected one fine and moves on
// to the next, x selects it for the bulk action, Enter opens it. A row's Fine button sends
// only its own id (the button's name/value); the bulk button sends the ticked boxes.
(function () {
  "use strict";

  var current = 0;

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("[data-flagged-row]")); }

  function select(index) {
    var all = rows();
    if (!all.length) return;
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach(function (row, i) { row.classList.toggle("is-selected", i === current); row.setAttribute("aria-selected", String(i === current)); });
    all[current].focus({ preventScroll: false });
  }

  function typing(target) {
    return !!(target.closest && target.closest("input[type=text], input[type=search], select, textarea, [contenteditable]"));
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented || typing(event.target)) return;
    if (document.querySelector("dialog[open]")) return;
    var all = rows();
    if (!all.length) return;
    var row = all[current];
    if (event.key === "j" || event.key === "ArrowDown") { select(current + 1); event.preventDefault(); }
    else if (event.key === "k" || event.key === "ArrowUp") { select(current - 1); event.preventDefault(); }
    else if (event.key === "f") { row.querySelector("[data-fine]").click(); event.preventDefault(); }
    else if (event.key === "x") { var box = row.querySelector("input[type=checkbox]"); box.checked = !box.checked; event.preventDefault(); }
    else if (event.key === "Enter" && event.target.closest("[data-flagged-row]")) { row.querySelector("a.row-title").click(); event.preventDefault(); }
  });

  // After a swap the row that took the marked one's place is selected: straight on to the next.
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "flagged-backlog") select(current);
  });

  if (rows().length) select(0);
})();
