// Every htmx write (a POST: decide, claim, comment, approve, flag review, take over, halt…)
// says what became of it. While it is on its way its submit buttons are disabled (a second
// click cannot send it twice). A server error (htmx does not swap 4xx/5xx other than 409 and
// 422, see base.html's htmx-config) or a lost connection leaves the form exactly as the
// reviewer typed it and puts a message beside its button, with "Try again". The offline
// banner (base.html) shows while the browser is offline or the page's socket is down.
(function () {
  "use strict";

  function isWrite(detail) {
    var verb = detail && detail.requestConfig && detail.requestConfig.verb;
    return verb && verb.toLowerCase() !== "get";
  }

  // The heartbeat that renews a claim is a write nobody clicked: it fails quietly (the
  // claim box says so when the claim is really lost).
  function silent(elt) { return elt.hasAttribute && elt.hasAttribute("data-claim-renew"); }

  function controls(elt) {
    var form = elt.closest ? elt.closest("form") : null;
    var list = [];
    if (form) {
      list = Array.prototype.slice.call(form.querySelectorAll("button[type=submit], button:not([type])"));
      if (form.id) {
        list = list.concat(Array.prototype.slice.call(
          document.querySelectorAll('button[form="' + CSS.escape(form.id) + '"]')));
      }
    } else if (elt.matches && elt.matches("button")) {
      list = [elt];
    }
    return list;
  }

  function clearError(elt) {
    var form = elt.closest ? elt.closest("form") || elt : elt;
    form.querySelectorAll("[data-write-error]").forEach(function (note) { note.remove(); });
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (!isWrite(event.detail) || silent(elt)) return;
    clearError(elt);
    controls(elt).forEach(function (button) {
      if (button.disabled) return;
      button.disabled = true;
      button.dataset.writeBusy = "";
    });
    var form = elt.closest("form");
    if (form) form.setAttribute("aria-busy", "true");
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var elt = event.detail.elt;
    if (!isWrite(event.detail)) return;
    // The form may have been swapped out (then these are detached and nothing shows).
    controls(elt).forEach(function (button) {
      if (!("writeBusy" in button.dataset)) return;
      button.disabled = false;
      delete button.dataset.writeBusy;
    });
    var form = elt.closest && elt.closest("form");
    if (form) form.removeAttribute("aria-busy");
  });

  function explain(elt, text) {
    if (silent(elt) || !document.body.contains(elt)) return;
    clearError(elt);
    var form = elt.closest("form");
    var note = document.createElement("div");
    note.className = "write-error";
    note.setAttribute("role", "alert");
    note.dataset.writeError = "";
    var message = document.createElement("p");
    message.textContent = text;
    note.appendChild(message);
    if (form) {
      var retry = document.createElement("button");
      retry.type = "button";
      retry.className = "btn btn-small";
      retry.textContent = "Try again";
      retry.addEventListener("click", function () {
        note.remove();
        form.requestSubmit(form.querySelector("button[type=submit]") || undefined);
      });
      note.appendChild(retry);
      var buttons = controls(form).filter(function (b) { return form.contains(b); });
      var last = buttons[buttons.length - 1];
      if (last) last.before(note); else form.appendChild(note);
    } else {
      elt.after(note);
    }
  }

  document.addEventListener("htmx:responseError", function (event) {
    if (!isWrite(event.detail)) return;
    var status = event.detail.xhr.status;
    var text;
    if (status === 403) text = "Not saved: the server refused it (403). Your session may have ended: sign in again in another tab, then try again.";
    else if (status === 404) text = "Not saved: this escalation is no longer there for you (404).";
    else if (status === 503) text = "Not saved: Handoff is unavailable for a moment (503). What you typed is still here.";
    else text = "Not saved: the server had a problem (" + status + "). What you typed is still here.";
    explain(event.detail.elt, text);
  });

  document.addEventListener("htmx:sendError", function (event) {
    if (!isWrite(event.detail)) return;
    explain(event.detail.elt, "Not sent: the connection to Handoff was lost. What you typed is still here.");
  });

  document.addEventListener("htmx:timeout", function (event) {
    if (!isWrite(event.detail)) return;
    explain(event.detail.elt, "Not confirmed: Handoff did not answer in time. Reload to see whether it was saved.");
  });

  // ------------------------------------------------------------ the offline banner

  var socketDown = false;

  function banner() {
    var box = document.getElementById("offline-banner");
    if (!box) return;
    var offline = navigator.onLine === false;
    box.hidden = !(offline || socketDown);
    box.querySelector("[data-offline-text]").textContent = offline
      ? "You are offline. What you type stays on this page; send it once the connection is back."
      : "Connection to Handoff lost: reconnecting. Changes by others show once it is back.";
  }

  window.addEventListener("online", banner);
  window.addEventListener("offline", banner);
  document.addEventListener("handoff:live", function (event) {
    socketDown = event.detail.state === "offline";
    banner();
  });
})();
