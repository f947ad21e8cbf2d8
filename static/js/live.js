// Live updates. The server's websocket (htmx ws extension, `ws-connect`) only says *that*
// an escalation changed; every element marked `data-live-sync` inside the socket's element
// then re-fetches itself with its own hx-get (trigger "live-refresh"). On every (re)connect
// we re-fetch too, so whatever changed while the socket was down is caught up.
(function () {
  "use strict";

  // The ws extension reconnects by itself (full-jitter backoff) after these close codes.
  var EXTENSION_RETRIES = [1006, 1011, 1012, 1013];
  // 1000: we closed it (page left); 4401/4403: not signed in / not allowed: do not retry.
  var FINAL = [1000, 4401, 4403];
  var MAX_DELAY_MS = 30000;

  var pending = new WeakMap();
  var retries = new WeakMap();

  function sync(socketElt) {
    clearTimeout(pending.get(socketElt));
    pending.set(socketElt, setTimeout(function () {
      socketElt.querySelectorAll("[data-live-sync]").forEach(function (elt) {
        htmx.trigger(elt, "live-refresh");
      });
    }, 80));
  }

  function indicate(state) {
    var indicator = document.querySelector("[data-live-indicator]");
    if (!indicator) return;
    indicator.hidden = false;
    indicator.dataset.state = state;
    indicator.querySelector(".live-text").textContent =
      state === "live" ? "Live" : state === "offline" ? "Reconnecting…" : "Connecting…";
    document.body.dataset.live = state;
    document.dispatchEvent(new CustomEvent("handoff:live", { detail: { state: state } }));
  }

  document.addEventListener("htmx:wsConnecting", function () { indicate("connecting"); });

  document.addEventListener("htmx:wsOpen", function (event) {
    retries.set(event.target, 0);
    indicate("live");
    sync(event.target);
  });

  // Messages are JSON notices ({"id", "kind", "status"}), not HTML: stop the extension
  // from swapping them and re-fetch instead.
  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    event.preventDefault();
    // Presence ({"presence": …}) says who is viewing, not what changed: escalation.js shows it.
    if (String(event.detail.message).indexOf('{"presence"') === 0) return;
    sync(event.target);
  });

  document.addEventListener("htmx:wsClose", function (event) {
    var code = event.detail.event.code;
    if (FINAL.indexOf(code) >= 0 || !document.body.contains(event.target)) return;
    indicate("offline");
    if (EXTENSION_RETRIES.indexOf(code) >= 0) return;
    // Any other close (1001 from a proxy, 1005…): reconnect ourselves, with backoff and jitter.
    var n = (retries.get(event.target) || 0) + 1;
    retries.set(event.target, n);
    var delay = Math.random() * Math.min(MAX_DELAY_MS, 1000 * Math.pow(2, n));
    setTimeout(function () { event.detail.socketWrapper.reconnect(); }, delay);
  });

  // After a decision form comes back with errors, bring the first one into view.
  document.addEventListener("htmx:afterSwap", function (event) {
    var panel = event.detail.target;
    if (panel.id !== "decision-panel") return;
    var error = panel.querySelector(".field-error");
    if (error) {
      error.scrollIntoView({ block: "center" });
      var field = error.parentElement.querySelector("textarea, input:not([type=hidden])");
      if (field) field.focus({ preventScroll: true });
    }
  });

  // A decision never changes: once a panel shows it, a later live update (e.g. "resumed")
  // must not wipe what it says (such as "Decision recorded.").
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    if (target.id === "decision-panel" && target.dataset.state === "closed") {
      event.detail.shouldSwap = false;
    }
  });
})();
