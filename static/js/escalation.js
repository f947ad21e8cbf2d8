// The escalation page: who else is viewing it (presence over the page's websocket), a
// claim that lapses while the page is open, args editors that must hold a JSON object,
// and Ctrl+Enter to post a comment. Everything here only adds to forms that work without it.
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

  function settled() { armLapse(); showChoice(); }
  document.addEventListener("DOMContentLoaded", settled);
  document.addEventListener("htmx:afterSettle", settled);
})();
