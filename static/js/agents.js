// The agents page: copy buttons for a token or secret shown once, and a confirmation before
// forms marked data-confirm (revoke, roll). Without JavaScript the value can still be
// selected and copied by hand, and the forms submit directly.
(function () {
  "use strict";

  function copyText(input) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(input.value);
    }
    input.select();
    return document.execCommand("copy") ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function say(button, text) {
    var label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = text;
    clearTimeout(button.sayTimer);
    button.sayTimer = setTimeout(function () { button.textContent = label; }, 2000);
  }

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var input = document.querySelector(button.dataset.copy);
    if (!input) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      copyText(input).then(
        function () { say(button, "Copied"); },
        function () { input.select(); say(button, "Press Ctrl+C"); }
      );
    });
  });

  document.querySelectorAll("[data-select-on-focus]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });

  // After a refused form, the first field to fix has the focus.
  var invalid = document.querySelector(".agent-form .has-error input, .agent-form .has-error select");
  if (invalid) invalid.focus();

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
})();
