// Every page: the collapsing menu (narrow screens), the keyboard-shortcuts dialog (`?`),
// times in the reader's own time zone (the UTC time on hover), and what a section loaded
// after its page (data-lazy) shows when loading it fails.
(function () {
  "use strict";

  // ------------------------------------------------------------ the menu, and what folds on a phone (the queue's filters)

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-menu-toggle], [data-fold-toggle]");
    if (!toggle) return;
    var menu = document.getElementById(toggle.getAttribute("aria-controls"));
    var open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    menu.classList.toggle("is-open", open);
  });

  // ------------------------------------------------------------ `?`: the shortcuts

  function typing(target) {
    return !!(target.closest && target.closest("input, select, textarea, [contenteditable]"));
  }

  function toggleShortcuts() {
    var dialog = document.getElementById("shortcuts");
    if (!dialog) return;
    if (dialog.open) dialog.close(); else dialog.showModal();
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-shortcuts-open]")) toggleShortcuts();
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "?" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.defaultPrevented || typing(event.target)) return;
    if (event.target.closest("dialog") && event.target.closest("dialog").id !== "shortcuts") return;
    event.preventDefault();
    toggleShortcuts();
  });

  // ------------------------------------------------------------ local times

  var pad = function (n) { return String(n).padStart(2, "0"); };

  function utc(date) {
    return date.getUTCFullYear() + "-" + pad(date.getUTCMonth() + 1) + "-" + pad(date.getUTCDate()) +
      " " + pad(date.getUTCHours()) + ":" + pad(date.getUTCMinutes()) + ":" + pad(date.getUTCSeconds()) + " UTC";
  }

  // What the server wrote decides what is shown: seconds if it had them, the year if it had it.
  function localise(time) {
    if (time.dataset.localised === time.getAttribute("datetime")) return;
    var value = time.getAttribute("datetime");
    if (!value || value.indexOf("T") < 0) return;
    var date = new Date(value);
    if (isNaN(date)) return;
    var text = time.textContent;
    var options = { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short" };
    if (/\d:\d\d:\d\d/.test(text)) options.second = "2-digit";
    if (/\b(19|20)\d\d\b/.test(text)) options.year = "numeric";
    if (!/[A-Za-z]{3}/.test(text)) { delete options.day; delete options.month; delete options.year; }
    time.textContent = new Intl.DateTimeFormat(undefined, options).format(date);
    time.title = utc(date);
    time.dataset.localised = value;
  }

  function localiseAll(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(localise);
  }

  document.addEventListener("DOMContentLoaded", function () { localiseAll(); });
  document.addEventListener("htmx:afterSettle", function (event) { localiseAll(event.target); });
  document.addEventListener("htmx:oobAfterSwap", function (event) { localiseAll(event.detail.target); });
  window.handoffLocalise = localiseAll;

  // ------------------------------------------------------------ sections loaded after the page

  // A data-lazy section loads itself (hx-get, hx-trigger "load, lazy-retry") and is replaced
  // by the answer. If that fails it says so, with a button that asks again.
  // After "Try again" the focus stays in the section: on its heading once it has come, on
  // the button again if it failed again.
  var retried = null;

  function lazyState(section, failed, why) {
    section.setAttribute("aria-busy", String(!failed));
    section.querySelector("[data-lazy-loading]").hidden = failed;
    section.querySelector("[data-lazy-error]").hidden = !failed;
    section.querySelector("[data-lazy-why]").textContent = why || "";
    if (failed && retried === section.id) {
      retried = null;
      section.querySelector("[data-lazy-retry]").focus();
    }
  }

  function lazyFailed(event, why) {
    var section = event.detail.elt;
    if (section.matches && section.matches("[data-lazy]")) lazyState(section, true, why);
  }

  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    lazyFailed(event, status === 403 ? " (403: your session may have ended; sign in again, then try again)"
      : " (the server answered " + status + ")");
  });
  document.addEventListener("htmx:sendError", function (event) { lazyFailed(event, " (the connection to Handoff was lost)"); });
  document.addEventListener("htmx:timeout", function (event) { lazyFailed(event, " (Handoff did not answer in time)"); });

  document.addEventListener("click", function (event) {
    var retry = event.target.closest("[data-lazy-retry]");
    if (!retry) return;
    var section = retry.closest("[data-lazy]");
    lazyState(section, false);
    section.querySelector("[data-lazy-loading]").focus({ preventScroll: true });
    retried = section.id;
    htmx.trigger(section, "lazy-retry");
  });

  // On the swap itself, not after the settle delay: the loading line that had the focus is
  // gone, and until the heading takes it the keyboard would be back at the top of the page.
  document.addEventListener("htmx:afterSwap", function () {
    var heading = retried && document.querySelector("#" + CSS.escape(retried) + ":not([data-lazy]) h2");
    if (!heading) return;
    retried = null;
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  });
})();
