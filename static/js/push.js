// The notification settings page: turn browser push on or off for this browser. The
// subscription goes to Handoff (settings/notifications/push); the server's VAPID public key
// comes from the button's data-vapid-key.
(() => {
  const button = document.getElementById("push-toggle");
  if (!button) return;
  const status = document.getElementById("push-status");
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
  const say = (text) => { status.textContent = text; };
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
    button.disabled = true;
    say("This browser does not support web push.");
    return;
  }
  const key = (base64) => {
    const padded = (base64 + "=".repeat((4 - (base64.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  };
  const send = (url, body) => fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
    body: JSON.stringify(body),
  });
  const refresh = async () => {
    const registration = await navigator.serviceWorker.getRegistration("/");
    const subscription = registration && (await registration.pushManager.getSubscription());
    button.textContent = subscription ? "Turn off push in this browser" : "Turn on push in this browser";
    button.dataset.on = subscription ? "1" : "";
  };
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const registration = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
      await navigator.serviceWorker.ready;
      const existing = await registration.pushManager.getSubscription();
      if (button.dataset.on && existing) {
        await send(button.dataset.removeUrl, { endpoint: existing.endpoint });
        await existing.unsubscribe();
        say("Push is off in this browser.");
      } else {
        const subscription = existing || await registration.pushManager.subscribe({
          userVisibleOnly: true, applicationServerKey: key(button.dataset.vapidKey),
        });
        const answer = await send(button.dataset.url, subscription.toJSON());
        say(answer.ok ? "Push is on in this browser: choose it for events above, then save." : "Handoff refused this browser's subscription.");
      }
    } catch (error) {
      say(`Push could not be turned on: ${error.message}`);
    } finally {
      button.disabled = false;
      refresh();
    }
  });
  refresh();
})();
