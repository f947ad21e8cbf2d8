// The escalation page: who else is viewing it (presence over the page's websocket), a
// claim that lapses while the page is open, args editors that must hold a JSON object,
// Ctrl+Enter to post a comment, and what the reviewer typed kept across re-renders.
// Everything here only adds to forms that work without it.
(function () {
  "use strict";

  var PING_MS = 25000;   // "still here", to everyone else on the page (reviews/consumers.py)
  // A viewer not heard from for this long has gone (its process died without a goodbye).
  // Generous: browsers run a background tab's timers as rarely as once a minute.
  var STALE_MS = 150000;

  // ------------------------------------------------------------ presence

  var viewers = new Map();  // socket id -> {user, seen}
  var socket = null;

  function renderPresence() {
    var box = document.querySelector("[data-presence]");
    if (!box) return;
    var now = Date.now();
    viewers.forEach(function (viewer, id) {
      if (now - viewer.seen > STALE_MS) viewers.delete(id);
    });
    var users = Array.from(new Set(Array.from(viewers.values(), function (v) { return v.user; }))).sort();
    var items = users.map(function (user) {
      var item = document.createElement("li");
      item.className = "presence-person";
      item.title = user + " has this escalation open";
      var avatar = document.createElement("span");
      avatar.className = "avatar";
      avatar.setAttribute("aria-hidden", "true");
      avatar.textContent = user.charAt(0).toUpperCase();
      var name = document.createElement("span");
      name.className = "presence-name";
      name.textContent = user;
      item.append(avatar, name);
      return item;
    });
    box.querySelector(".presence-list").replaceChildren.apply(box.querySelector(".presence-list"), items);
    box.dataset.count = String(users.length);
    box.hidden = false;
  }

  function onPresence(message) {
    if (message.presence === "leave") viewers.delete(message.id);
    else viewers.set(message.id, { user: String(message.user), seen: Date.now() });
    renderPresence();
  }

  document.addEventListener("htmx:wsOpen", function (event) {
    if (!event.target.querySelector("[data-presence]")) return;
    socket = event.detail.socketWrapper;
    viewers.clear();  // everyone there answers our join afresh
    renderPresence();
  });

  document.addEventListener("htmx:wsClose", function (event) {
    if (!event.target.querySelector("[data-presence]")) return;
    socket = null;
    viewers.clear();
    document.querySelector("[data-presence]").hidden = true;
  });

  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    var text = String(event.detail.message);
    if (text.indexOf('{"presence"') !== 0) return;
    try {
      onPresence(JSON.parse(text));
    } catch (error) {
      // not ours to show
    }
  });

  setInterval(function () {
    if (socket) socket.send("ping");
    renderPresence();
  }, PING_MS);

  // ------------------------------------------------------------ a claim that lapses

  var lapseTimer = null;

  function liveRefresh() {
    var sync = document.querySelector("[data-live-sync]");
    if (sync && window.htmx) window.htmx.trigger(sync, "live-refresh");
  }

  // When the lease shown ends (nobody renewed it), re-render: it must not look claimed.
  function armLapse() {
    clearTimeout(lapseTimer);
    var marker = document.querySelector("[data-claim-lapses]");
    if (!marker) return;
    var wait = Date.parse(marker.dataset.claimLapses) - Date.now();
    if (isNaN(wait)) return;
    lapseTimer = setTimeout(liveRefresh, Math.max(0, wait) + 1500);
  }

  // ------------------------------------------------------------ args editors

  function jsonProblem(textarea) {
    var raw = textarea.value.trim();
    if (!raw) return "";  // empty: the agent's own args
    var label = textarea.dataset.jsonObject || "args";
    var value;
    try {
      value = JSON.parse(raw);
    } catch (error) {
      return label + " is not valid JSON: " + error.message;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return label + " must be a JSON object {…}, not " +
        (value === null ? "null" : Array.isArray(value) ? "an array" : "a " + typeof value) + ".";
    }
    return "";
  }

  // Show the problem (or none) at the field; server errors for the old text go away.
  function showJsonProblem(textarea) {
    var problem = jsonProblem(textarea);
    var sibling = textarea.nextElementSibling;
    while (sibling && sibling.classList.contains("field-error")) {
      var next = sibling.nextElementSibling;
      sibling.remove();
      sibling = next;
    }
    if (problem) {
      var error = document.createElement("p");
      error.className = "field-error";
      error.setAttribute("role", "alert");
      error.textContent = problem;
      textarea.after(error);
      textarea.setAttribute("aria-invalid", "true");
    } else {
      textarea.removeAttribute("aria-invalid");
    }
    return problem;
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("textarea[data-json-object]")) {
      showJsonProblem(event.target);
    }
  });

  // Before a decision leaves: the chosen option's args must parse. Capture phase, so
  // neither htmx nor the browser sends a form that would only come back refused.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var chosen = form.querySelector && form.querySelector("input[name=option]:checked");
    if (!chosen) return;
    var textarea = form.querySelector("textarea[name='args-" + CSS.escape(chosen.value) + "']");
    if (!textarea || !showJsonProblem(textarea)) return;
    event.preventDefault();
    event.stopPropagation();
    textarea.focus();
    textarea.scrollIntoView({ block: "center" });
  }, true);

  // ------------------------------------------------------------ comments

  document.addEventListener("keydown", function (event) {
    var field = event.target;
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    if (!field.closest || !field.closest("#comment-form")) return;
    event.preventDefault();
    field.closest("form").requestSubmit();
  });

  // ------------------------------------------------------------ the phone's action bar

  // The bar's Decide submits the decision form (form="decide-form"); it names the choice.
  function showChoice() {
    var slot = document.querySelector("[data-action-choice]");
    if (!slot) return;
    var chosen = document.querySelector("#decide-form input[name=option]:checked");
    var label = chosen && chosen.closest(".choice-head").querySelector(".choice-label");
    slot.textContent = label ? label.textContent : "Pick an option";
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("#decide-form input[name=option]")) showChoice();
  });

  // ------------------------------------------------------------ history and timeline: tabs

  function selectTab(tab, focus) {
    var list = tab.closest("[role=tablist]");
    list.querySelectorAll("[role=tab]").forEach(function (other) {
      var on = other === tab;
      other.setAttribute("aria-selected", String(on));
      other.tabIndex = on ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !on;
    });
    if (focus) tab.focus();
  }

  function setUpTabs() {
    var list = document.querySelector("[data-tabs] [role=tablist]");
    if (!list || !list.hidden) return;
    list.hidden = false;
    selectTab(list.querySelector("[aria-selected=true]"), false);
  }

  document.addEventListener("click", function (event) {
    var tab = event.target.closest && event.target.closest("[data-tabs] [role=tab]");
    if (tab) selectTab(tab, false);
  });

  document.addEventListener("keydown", function (event) {
    var tab = event.target.closest && event.target.closest("[data-tabs] [role=tab]");
    if (!tab || (event.key !== "ArrowRight" && event.key !== "ArrowLeft")) return;
    var tabs = Array.prototype.slice.call(tab.parentElement.querySelectorAll("[role=tab]"));
    var next = tabs[(tabs.indexOf(tab) + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    selectTab(next, true);
    event.preventDefault();
  });

  function showTab(panelId) {
    var tab = document.querySelector('[data-tabs] [role=tab][aria-controls="' + panelId + '"]');
    if (tab && !tab.closest("[role=tablist]").hidden) selectTab(tab, false);
  }

  // ------------------------------------------------------------ a long history

  // Search and outcome filter: matching steps show (their folded runs open), others hide.
  function filterHistory() {
    var box = document.querySelector("[data-history]");
    if (!box) return;
    var q = box.querySelector("[data-history-q]").value.trim().toLowerCase();
    var outcome = box.querySelector("[data-history-outcome]").value;
    var active = q !== "" || outcome !== "";
    var matches = 0;
    box.querySelectorAll("[data-step]").forEach(function (step) {
      var hit = (!outcome || step.dataset.outcome === outcome) &&
        (!q || step.textContent.toLowerCase().indexOf(q) >= 0);
      step.hidden = active && !hit;
      if (hit) matches += 1;
    });
    box.querySelectorAll("[data-step-run]").forEach(function (run) {
      var any = run.querySelector("[data-step]:not([hidden])");
      if (active) {
        if (!("wasOpen" in run.dataset)) run.dataset.wasOpen = run.open ? "1" : "";
        run.open = !!any;
        run.parentElement.hidden = !any;
      } else {
        if ("wasOpen" in run.dataset) { run.open = run.dataset.wasOpen === "1"; delete run.dataset.wasOpen; }
        run.parentElement.hidden = false;
      }
    });
    box.querySelector("[data-history-count]").textContent = active
      ? matches + (matches === 1 ? " step matches" : " steps match") : "";
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("[data-history-q]")) filterHistory();
  });
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("[data-history-outcome]")) filterHistory();
  });

  function jumpToLast() {
    var last = document.getElementById("last-steps");
    if (!last) return;
    showTab("history");
    last.scrollIntoView({ block: "start" });
    last.focus({ preventScroll: true });
  }

  document.addEventListener("click", function (event) {
    if (!event.target.closest || !event.target.closest("[data-jump-last]")) return;
    event.preventDefault();
    jumpToLast();
  });

  // ------------------------------------------------------------ the keyboard

  function queueQuery() {
    try { return sessionStorage.getItem("handoff.queue") || ""; } catch (e) { return ""; }
  }

  function go(direction) {
    var page = document.querySelector(".escalation-page");
    if (!page) return;
    var query = queueQuery();
    location.assign(page.dataset[direction + "Url"] + (query ? "?" + query : ""));
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("[data-queue-step]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    go(link.dataset.queueStep);
  });

  function say(text) {
    var slot = document.querySelector("[data-key-status]");
    if (!slot) return;
    slot.textContent = "";
    setTimeout(function () { slot.textContent = text; }, 30);
    clearTimeout(say.timer);
    say.timer = setTimeout(function () { slot.textContent = ""; }, 7000);
  }

  function chosenRow() {
    var chosen = document.querySelector("#decide-form input[name=option]:checked");
    return chosen && chosen.closest(".choice");
  }

  function pick(n) {
    var radios = document.querySelectorAll("#decide-form input[name=option]");
    var radio = radios[n - 1];
    if (!radio) { say("There is no option " + n + "."); return; }
    radio.checked = true;
    radio.dispatchEvent(new Event("change", { bubbles: true }));
    radio.focus({ preventScroll: true });
    radio.closest(".choice").scrollIntoView({ block: "nearest" });
    say("Option " + n + ": " + radio.closest(".choice-head").querySelector(".choice-label").textContent + ".");
  }

  function focusField(field, what) {
    if (!field) { say("Nothing to " + what + " here."); return; }
    field.scrollIntoView({ block: "center" });
    field.focus();
  }

  function decide() {
    var form = document.getElementById("decide-form");
    if (!form) { say("This escalation is closed: press n for the next one."); return; }
    var row = chosenRow();
    if (!row) { say("Pick an option first (1, 2, …)."); return; }
    var tick = row.querySelector(".confirm-box input[type=checkbox]");
    if (tick && !tick.checked) {
      focusField(tick, "confirm");
      say("This option cannot be undone: tick the box (space), then press d again.");
      return;
    }
    form.requestSubmit(form.querySelector("[data-decide]"));
  }

  function claim() {
    var button = document.querySelector("#claim-box [data-claim-button]");
    if (button) { button.click(); return; }
    say(document.querySelector("#decide-form") ? "It is already claimed." : "This escalation is closed.");
  }

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key === "Escape" && target.matches && target.matches("textarea, input")) { target.blur(); return; }
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (!document.querySelector(".escalation-page")) return;
    if (target.closest && target.closest("input:not([type=radio]):not([type=checkbox]), select, textarea, [contenteditable], dialog[open]")) return;
    var key = event.key;
    if (/^[1-9]$/.test(key)) pick(Number(key));
    else if (key === "e") { var row = chosenRow(); focusField(row && row.querySelector("textarea"), "edit"); }
    else if (key === "i") focusField(document.querySelector("#decide-form textarea[name=instruction]"), "write");
    else if (key === "d") decide();
    else if (key === "c") claim();
    else if (key === "n") go("next");
    else if (key === "p") go("previous");
    else if (key === "h") { showTab("history"); focusField(document.getElementById("tab-history"), "show"); }
    else if (key === "t") { showTab("team"); focusField(document.getElementById("tab-team"), "show"); }
    else return;
    event.preventDefault();
  });

  // After a decision, the next escalation is one key (or Enter) away.
  document.addEventListener("htmx:afterSwap", function (event) {
    var panel = event.detail.target;
    if (panel.id !== "decision-panel" || !panel.querySelector(".decided")) return;
    var next = panel.querySelector("[data-queue-step=next]");
    if (next) next.focus({ preventScroll: true });
  });

  // ------------------------------------------------------------ what the reviewer has open or typed

  // Parts of this page are re-rendered under the reviewer: a live update swaps in the claim
  // box, the approvals, the whole panel once closed and a recorded flag review; a lost claim
  // swaps the claim box; their own writes swap the panel or the claim box. What they have
  // open or typed there is carried into the new render, field by field (by id); only the form
  // they sent is the server's to re-render. Text left with no field (decided meanwhile,
  // someone else's claim or question) goes to the panel's not-sent box (#unsent), to copy,
  // with what happened as the new render says it (its template[data-unsent-why]).

  var FIELDS = "input:not([type=hidden]), textarea, select";
  var answer = { own: null, refused: false };  // the response being swapped in
  var pending = null;                           // its in-band target's state, until afterSwap
  var unsent = [];                              // its text with no field left for it
  var why = [];                                 // what happened, in the words of its new parts

  function key(field) {
    if (field.id) return "#" + CSS.escape(field.id);
    if (!field.form || !field.form.id || !field.name) return "";
    return "#" + CSS.escape(field.form.id) + " [name='" + CSS.escape(field.name) + "']" +
      (field.type === "radio" ? "[value='" + CSS.escape(field.value) + "']" : "");
  }

  function changed(field) {
    if (field.readOnly) return false;  // a not-sent box's copy
    if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
    if (field.tagName === "SELECT") {
      return Array.prototype.some.call(field.options, function (o) { return o.selected !== o.defaultSelected; });
    }
    // A field a refused write gave back holds their text too, though it is its default.
    return field.value !== field.defaultValue || field.getAttribute("aria-invalid") === "true";
  }

  function textOf(root, selector) {
    var found = root && root.querySelector(selector);
    return found ? found.textContent.replace(/\s+/g, " ").trim() : "";
  }

  function snapshot(root) {
    var active = document.activeElement;
    var fields = Array.prototype.filter.call(root.querySelectorAll(FIELDS), changed).map(function (field) {
      var text = field.tagName === "TEXTAREA" || field.type === "text";
      var what = textOf(field.closest("details"), "summary") || textOf(field.closest("fieldset"), "legend");
      var label = field.labels && field.labels[0] ? field.labels[0].textContent.replace(/\s+/g, " ").trim() : "";
      return {
        field: field, key: key(field), text: text, focused: field === active,
        selection: field === active && text ? [field.selectionStart, field.selectionEnd] : null,
        where: what && label && what.indexOf(label) !== 0 ? what + ": " + label : what || label
      };
    });
    // An open <details> is known by the first field in it, in the new render too.
    var open = Array.prototype.map.call(root.querySelectorAll("details[open]"), function (details) {
      var field = !(answer.own && details.contains(answer.own)) && details.querySelector(FIELDS);
      return field ? key(field) : "";
    });
    return { fields: fields, open: open };
  }

  function carry(state, newRoot) {
    state.open.forEach(function (selector) {
      var twin = selector && newRoot.querySelector(selector);
      for (var d = twin && twin.closest("details"); d; d = d.parentElement && d.parentElement.closest("details")) d.open = true;
    });
    state.fields.forEach(function (kept) {
      var twin = kept.key && newRoot.querySelector(kept.key);
      if (twin && !(answer.own && answer.own.contains(kept.field))) {
        if (kept.field.type === "checkbox" || kept.field.type === "radio") twin.checked = kept.field.checked;
        else twin.value = kept.field.value;
        if (kept.selection && twin === document.activeElement) twin.setSelectionRange(kept.selection[0], kept.selection[1]);
      } else if (!twin && kept.text && kept.field.value.trim() && (!answer.own || answer.refused)) {
        if (!unsent.length) setTimeout(showUnsent, 0);  // once the whole response is in
        unsent.push(kept);
        var said = newRoot.querySelector("template[data-unsent-why]");
        said = said ? said.content.textContent.trim() : "";
        if (said && why.indexOf(said) < 0) why.push(said);
        // A refusal's notice that says the same ("Your claim has passed to bob."): the box says it, once.
        var notice = newRoot.querySelector(".notice");
        if (said && notice && notice.textContent.trim() === said) notice.remove();
      }
    });
  }

  function showUnsent() {
    var items = unsent, said = why, slot = document.getElementById("unsent");
    unsent = [];
    why = [];
    if (!slot) return;
    var box = slot.querySelector("template[data-box]").content.firstElementChild.cloneNode(true);
    if (said.length) box.querySelector("[data-why]").textContent = said.join(" ");
    var focus = null;
    items.forEach(function (item) {
      var copy = slot.querySelector("template[data-copy]").content.firstElementChild.cloneNode(true);
      var text = copy.querySelector("textarea");
      copy.querySelector("[data-where]").textContent = item.where;
      text.value = item.field.value;
      text.rows = Math.min(6, text.value.split("\n").length + 1);
      box.querySelector("[data-copies]").append(copy);
      if (item.focused) focus = text;
    });
    slot.append(box);
    if (focus) {  // they were typing in a field that is gone: its copy takes the focus
      box.scrollIntoView({ block: "center" });  // clear of the phone's action bar
      focus.focus({ preventScroll: true });
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-unsent-dismiss]");
    if (!button) return;
    button.closest(".unsent").remove();
    // The keyboard goes on from the panel's heading, not from the top of the page.
    var heading = document.getElementById("decision-heading");
    if (heading) heading.focus({ preventScroll: true });
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail, elt = detail.requestConfig && detail.requestConfig.elt;
    answer = { own: (elt && elt.closest && elt.closest("form")) || null, refused: detail.xhr.status >= 400 };
    pending = detail.shouldSwap && detail.target ? { target: detail.target, state: snapshot(detail.target) } : null;
  });

  document.addEventListener("htmx:afterSwap", function () {
    var target = pending && pending.target;
    var newRoot = target && (target.isConnected ? target : target.id && document.getElementById(target.id));
    if (newRoot) carry(pending.state, newRoot);
    pending = null;
  });

  // An out-of-band part is carried straight into its new render (unless live.js keeps the
  // closed panel as it is).
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    if (event.detail.shouldSwap) carry(snapshot(event.detail.target), event.detail.fragment);
  });

  function settled() { armLapse(); showChoice(); setUpTabs(); }
  document.addEventListener("DOMContentLoaded", settled);
  document.addEventListener("htmx:afterSettle", settled);
})();
