// The queue, live and by keyboard.
//
// The page tells its socket which view it shows ({"view": its query string}); a socket
// notice ({"id", "kind", "status", "actor", "priority"}) then carries that one row rendered
// under this view ("html", for "view"; an empty <template> when it does not match), which
// the server renders once per view however many pages show it (reviews/live_rows.py). A
// notice without it (the view changed meanwhile, a render failed) makes us ask the row view
// for the same. We insert, replace or remove the row;
// the server decides what matches, this script only places rows by their data-key (a
// string that sorts as the page's sort does). While the pointer or the focus is in the
// table, nothing moves: changes wait behind an "n updates" button and land when the reader
// leaves the table. On every (re)connect, and once a minute (priorities follow deadlines),
// the whole list is re-rendered. live.js keeps the socket itself alive.
(function () {
  "use strict";

  var root = document.getElementById("queue");
  if (!root) return;
  var ZERO = "00000000-0000-0000-0000-000000000000";
  var REFRESH_MS = 60000;
  var statusLine = document.getElementById("queue-status");

  var pointerIn = false;
  var focusIn = false;
  var waiting = new Map(); // escalation id -> {row: Element|null, notice}
  var refreshWaiting = false;
  var latest = new Map(); // escalation id -> number of its newest row request
  var refreshing = 0; // whole-list re-renders on their way
  var noticedMeanwhile = new Map(); // escalation id -> notice, heard during a re-render

  function table() { return document.getElementById("queue-table"); }
  function body() { var t = table(); return t && t.querySelector("[data-queue-rows] tbody"); }
  function rowOf(id) { return document.getElementById("escalation-" + id); }
  function rows() { var b = body(); return b ? Array.prototype.slice.call(b.querySelectorAll("tr[data-row]")) : []; }
  function held() { return pointerIn || focusIn; }

  var sayTimer = null;
  function say(text) {
    statusLine.textContent = "";
    window.clearTimeout(sayTimer);
    window.setTimeout(function () { statusLine.textContent = text; }, 30);
    sayTimer = window.setTimeout(function () { statusLine.textContent = ""; }, 8000);
  }

  // ------------------------------------------------------------ whole-list refresh

  // Re-renders and the filter form's requests share one lane (hx-sync on #queue, replace):
  // the newer aborts the older, so a late re-render never undoes a filter change.
  function refresh() {
    if (held()) { refreshWaiting = true; return; }
    refreshWaiting = false;
    waiting.clear();
    var form = root.querySelector(".queue-filters");
    if (form && form.classList.contains("htmx-request")) return; // its answer is fresh anyway
    refreshing += 1;
    // Settled either way: answered, or aborted by a newer request in the lane (htmx rejects
    // with no reason then; left unhandled, that would be an "undefined" page error).
    function settled() {
      refreshing -= 1;
      // Notices that came while it was on its way may predate what it rendered: ask again.
      var again = Array.from(noticedMeanwhile.values());
      noticedMeanwhile.clear();
      again.forEach(fetchRow);
    }
    htmx.ajax("GET", location.pathname + location.search, { source: root, target: "#queue-table", swap: "outerHTML" })
      .then(settled, settled);
  }

  window.setInterval(function () {
    if (document.visibilityState === "visible" && document.body.dataset.live === "live") refresh();
  }, REFRESH_MS);

  // ------------------------------------------------------------ the view, told to the socket

  var socket = null;
  function view() { return location.search.replace(/^\?/, ""); }
  function tell() { if (socket) socket.send(JSON.stringify({ view: view() })); }

  root.addEventListener("htmx:wsOpen", function (event) {
    if (event.detail && event.detail.socketWrapper) socket = event.detail.socketWrapper;
    tell();
    refresh();
  });
  document.addEventListener("htmx:pushedIntoHistory", tell);
  window.addEventListener("popstate", tell);

  // ------------------------------------------------------------ one row

  root.addEventListener("htmx:wsBeforeMessage", function (event) {
    var notice;
    try { notice = JSON.parse(event.detail.message); } catch (e) { return; }
    if (!notice || !notice.id || !notice.kind) return;
    if (typeof notice.html === "string" && notice.view === view()) pushed(notice);
    else fetchRow(notice);
  });

  function ticket(notice) {
    if (refreshing) noticedMeanwhile.set(notice.id, notice);
    var n = (latest.get(notice.id) || 0) + 1;
    latest.set(notice.id, n);
    return n;
  }

  function pushed(notice) {
    land(notice, ticket(notice), location.search, notice.html);
  }

  function fetchRow(notice) {
    var n = ticket(notice);
    var search = location.search;
    var url = root.dataset.rowUrl.replace(ZERO, encodeURIComponent(notice.id)) + search;
    fetch(url, { headers: { "HX-Request": "true" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("row " + response.status);
        return response.text();
      })
      .then(function (html) { land(notice, n, search, html); })
      .catch(function () { refresh(); });
  }

  function land(notice, n, search, html) {
    var id = notice.id;
    if (latest.get(id) !== n) return; // a newer answer for this row is on its way
    if (location.search !== search) return; // the filters changed: the list was re-rendered
    var doc = new DOMParser().parseFromString(html, "text/html");
    updateCounts(doc);
    var template = doc.getElementById("live-row");
    var row = template && template.content.querySelector("tr[data-row]");
    received(id, row ? document.importNode(row, true) : null, notice);
  }

  function updateCounts(doc) {
    var t = table();
    if (!t) return;
    doc.querySelectorAll("#live-counts [data-count]").forEach(function (item) {
      var count = t.querySelector('.queue-tab [data-count="' + item.dataset.count + '"]');
      if (count) count.textContent = item.textContent;
    });
  }

  function received(id, row, notice) {
    var current = rowOf(id);
    if (row && current && current.dataset.key === row.dataset.key) {
      replaceInPlace(current, row); // same place: nothing moves, even under the pointer
      return;
    }
    if (!held()) { apply(id, row, notice); return; }
    waiting.set(id, { row: row, notice: notice });
    if (current && !row) markLeaving(current, notice);
    showWaiting();
  }

  function replaceInPlace(current, row) {
    var hadFocus = current.contains(document.activeElement);
    current.replaceWith(row);
    flash(row, "is-changed");
    if (hadFocus) row.querySelector(".row-title").focus({ preventScroll: true });
  }

  function markLeaving(current, notice) {
    current.classList.add("is-leaving");
    var cell = current.querySelector("[data-claim-cell]");
    if (!cell || cell.querySelector(".leaving-note")) return;
    var note = document.createElement("span");
    note.className = "leaving-note small";
    note.textContent = notice.status + (notice.actor ? " by " + notice.actor : "");
    cell.appendChild(note);
  }

  function apply(id, row, notice) {
    var current = rowOf(id);
    if (current) current.remove();
    if (current && !row) say("Left the list: " + notice.status + (notice.actor ? " by " + notice.actor : "") + ".");
    if (row && !body()) { highlight.add(id); refresh(); return; } // the empty state: re-render
    if (row) place(row, !current);
    if (!rows().length) refresh(); // the last row left: the empty state
  }

  // A first row arrives through a re-render of the whole list: highlight it there. Rows
  // still highlighted as new when a re-render lands stay highlighted.
  var highlight = new Set();
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target.id !== "queue-table") return;
    event.detail.target.querySelectorAll("tr.is-new").forEach(function (row) { highlight.add(row.dataset.id); });
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target.id !== "queue-table") return;
    highlight.forEach(function (id) { var row = rowOf(id); if (row) flash(row, "is-new"); });
    highlight.clear();
  });

  function place(row, isNew) {
    var tbody = body();
    if (!tbody) return;
    var t = table();
    var key = row.dataset.key;
    var list = rows();
    // A row of an earlier page (on a later page) or of a later page (when there is one) is
    // not this page's: the counts moved, the rows stay.
    if (t.hasAttribute("data-paged") && list.length && key < list[0].dataset.key) return;
    var before = null;
    for (var i = 0; i < list.length; i++) {
      if (list[i].dataset.key > key) { before = list[i]; break; }
    }
    if (!before && t.hasAttribute("data-more")) return;
    tbody.insertBefore(row, before);
    htmx.process(row);
    flash(row, isNew ? "is-new" : "is-changed");
    if (isNew) say("New escalation: " + row.querySelector(".row-title").textContent + ".");
  }

  function flash(row, name) {
    row.classList.add(name);
    window.setTimeout(function () { row.classList.remove(name); }, 6000);
  }

  // ------------------------------------------------------------ holding still

  function showWaiting() {
    var t = table();
    var box = t && t.querySelector("[data-queue-updates]");
    if (!box) return;
    var n = waiting.size;
    box.hidden = n === 0 && !refreshWaiting;
    box.querySelector("[data-queue-update-count]").textContent =
      n ? n + (n === 1 ? " update" : " updates") : "Updates";
  }

  function release() {
    if (held()) return;
    var pending = Array.from(waiting.entries());
    waiting.clear();
    pending.forEach(function (entry) { apply(entry[0], entry[1].row, entry[1].notice); });
    if (refreshWaiting) refresh();
    showWaiting();
  }

  function inRows(node) { return !!(node && node.closest && node.closest("[data-queue-rows]")); }

  document.addEventListener("pointerover", function (event) {
    var inside = inRows(event.target);
    if (inside === pointerIn) return;
    pointerIn = inside;
    if (!inside) release();
  });
  document.addEventListener("pointerout", function (event) {
    if (!event.relatedTarget && pointerIn) { pointerIn = false; release(); } // left the window
  });
  document.addEventListener("focusin", function (event) { focusIn = inRows(event.target); });
  document.addEventListener("focusout", function (event) {
    focusIn = inRows(event.relatedTarget);
    if (!focusIn) window.setTimeout(release, 0);
  });

  root.addEventListener("click", function (event) {
    if (!event.target.closest("[data-queue-apply]")) return;
    pointerIn = focusIn = false;
    release();
  });

  // ------------------------------------------------------------ claiming

  function claim(form) {
    var row = form.closest("tr[data-row]");
    var title = row ? row.querySelector(".row-title").textContent : "the escalation";
    var button = form.querySelector("button");
    if (button.disabled) return; // already on its way
    button.disabled = true;
    function done() { button.disabled = false; }
    // A row pushed over the socket carries no CSRF token: send the page's (base.html).
    var token = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["x-csrftoken"];
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { "HX-Request": "true", "X-CSRFToken": token || "" },
      credentials: "same-origin",
    }).then(function (response) {
      if (response.ok) {
        say("Claimed: " + title + ". It is yours for now.");
        if (row) fetchRow({ id: row.dataset.id, kind: "claimed", status: "claimed" });
        return;
      }
      return response.text().then(function (html) {
        var notice = new DOMParser().parseFromString(html, "text/html").querySelector(".notice");
        say(notice ? notice.textContent.trim() : "Could not claim it (" + response.status + ").");
      });
    }).catch(function () { say("Could not claim it: the connection to Handoff was lost. Try again."); })
      .then(done, done);
  }

  root.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-claim]");
    if (!form) return;
    event.preventDefault();
    claim(form);
  });

  // ------------------------------------------------------------ keyboard

  function move(step) {
    var list = rows();
    if (!list.length) return;
    var current = document.activeElement && document.activeElement.closest("tr[data-row]");
    var index = list.indexOf(current);
    var next = list[index < 0 ? (step > 0 ? 0 : list.length - 1) : Math.min(list.length - 1, Math.max(0, index + step))];
    var link = next.querySelector(".row-title");
    link.focus();
    next.scrollIntoView({ block: "nearest" });
  }

  function claimSelected() {
    var current = document.activeElement && document.activeElement.closest("tr[data-row]");
    if (!current) { say("Select an escalation first: j and k move through the list."); return; }
    var form = current.querySelector("form[data-claim]");
    if (form) { claim(form); return; }
    var claimer = current.querySelector(".claimer");
    say(claimer ? "Already claimed by " + claimer.textContent.trim() + "." : "This escalation is closed.");
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target.closest && target.closest("input, select, textarea, [contenteditable], dialog")) return;
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "c": claimSelected(); break;
      case "/": document.getElementById("id_q").focus(); break;
      default: return;
    }
    event.preventDefault();
  });

  // ------------------------------------------------------------ filters

  // The escalation page's n / p follow this list: its filters and order, as last seen.
  function remember() {
    var query = new URLSearchParams(location.search);
    query.delete("after");
    try { sessionStorage.setItem("handoff.queue", query.toString()); } catch (e) { /* private mode */ }
  }
  remember();
  document.addEventListener("htmx:pushedIntoHistory", remember);
  window.addEventListener("popstate", remember);

  // ------------------------------------------------------------ a machine's first look

  // "machine looking (n s left)" counts down each second from the n the server rendered (the
  // browser's clock from the moment the row arrived: no skew with the server's). At 0 it
  // stays there until the look's end reaches the page (the row turns ordinary, live).
  function countLooks() {
    var now = Date.now();
    root.querySelectorAll("[data-look-left]").forEach(function (el) {
      if (!el.dataset.lookEnd) el.dataset.lookEnd = String(now + 1000 * Number(el.dataset.lookLeft));
      el.textContent = String(Math.max(0, Math.round((Number(el.dataset.lookEnd) - now) / 1000)));
    });
  }
  window.setInterval(countLooks, 1000);

  // Empty fields and the default sort stay out of the URL that the filter form pushes
  // (bookmarkable, short).
  document.addEventListener("htmx:configRequest", function (event) {
    var form = event.detail.elt;
    if (!form.matches(".queue-filters") || !event.detail.formData) return;
    var data = event.detail.formData;
    Array.from(data.keys()).forEach(function (key) {
      if (data.getAll(key).every(function (v) { return v === ""; })) data.delete(key);
    });
    if (data.get("sort") === form.dataset.defaultSort) data.delete("sort");
  });
})();
