// Handoff's service worker (served at /sw.js so its scope is the whole site): shows the
// web pushes notifications.push sends ({title, body, url, tag}) and opens the escalation.
self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (error) { data = { title: "Handoff", body: event.data.text() }; }
  event.waitUntil(self.registration.showNotification(data.title || "Handoff", {
    body: data.body || "",
    tag: data.tag,
    icon: "{{ icon }}",
    data: { url: data.url || "/" },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = event.notification.data && event.notification.data.url ? event.notification.data.url : "/";
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const client of windows) {
      if (client.url === url && "focus" in client) return client.focus();
    }
    return self.clients.openWindow(url);
  })());
});
