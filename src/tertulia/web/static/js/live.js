// Every signed-in page: the person's presence (a live tab, and whether they use it) and the bell.
// The inbox holds its own socket (inbox.js) and hands it here with tertuliaLive.attach(socket);
// other pages open one that carries only what is addressed to the person (/ws?scope=me).
(function () {
  "use strict";
  var PING_MS = 20000;
  var used = true; // opening the page counts as using it
  function mark() { used = true; }
  ["pointerdown", "keydown", "wheel", "touchstart", "focus"].forEach(function (name) {
    window.addEventListener(name, mark, { passive: true, capture: true });
  });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) mark(); });

  var bell = document.querySelector("[data-bell]");
  var count = document.querySelector("[data-bell-count]");
  function showUnread(n) {
    if (!count) return;
    count.textContent = n > 99 ? "99+" : String(n);
    count.hidden = !(n > 0);
    if (bell) bell.setAttribute("data-unread", String(n || 0));
  }
  function loadUnread() {
    if (!bell) return;
    fetch("/api/v1/notifications/unread", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) { if (body) showUnread(body.unread); })
      .catch(function () { /* the next event or page load tries again */ });
  }

  // The inbox page alerts about these itself (inbox.js, with its sound): one alert, not two.
  var INBOX_ALERTS = { new_message: true, mentioned: true };
  function browserNotice(n) {
    if (!n || !n.browser || !("Notification" in window) || Notification.permission !== "granted") return;
    if (INBOX_ALERTS[n.kind] && document.querySelector("[data-inbox]")) return;
    if (!document.hidden && n.conversation_id && location.pathname === "/messages/" + n.conversation_id) return;
    var note = new Notification(n.title, { body: n.body || "", tag: "notification-" + n.id });
    note.onclick = function () {
      window.focus();
      note.close();
      var csrf = document.querySelector('meta[name="csrf-token"]');
      var go = function () { location.href = n.link; };
      fetch("/api/v1/notifications/" + n.id + "/read", {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf ? csrf.content : "" }
      }).then(go, go);
    };
  }

  // What every socket's event means here; the inbox passes on every event it receives.
  function onEvent(event) {
    if (!event || typeof event.type !== "string") return;
    if (event.type === "hello") { loadUnread(); return; }
    if (event.type.indexOf("notification.") === 0) {
      var data = event.data || {};
      if (typeof data.unread === "number") showUnread(data.unread);
      if (event.type === "notification.created") {
        browserNotice(data.notification);
        document.dispatchEvent(new CustomEvent("tertulia:notification", { detail: data.notification }));
      }
    } else if (event.type === "presence.changed" && event.data) {
      document.querySelectorAll("[data-my-status]").forEach(function (dot) {
        if (String(event.user_id) === dot.getAttribute("data-my-status")) dot.className = "status-dot status-" + event.data.status;
      });
    }
  }

  var pinger = null;
  function attach(socket) {
    if (pinger) window.clearInterval(pinger);
    pinger = window.setInterval(function () {
      if (socket.readyState !== 1) return;
      socket.send(JSON.stringify({ type: "ping", active: used && !document.hidden }));
      used = false;
    }, PING_MS);
  }

  window.tertuliaLive = { attach: attach, event: onEvent };

  var retry = 0;
  function connect() {
    var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws?scope=me");
    socket.onopen = function () { retry = 0; attach(socket); };
    socket.onmessage = function (raw) {
      var event;
      try { event = JSON.parse(raw.data); } catch (e) { return; }
      onEvent(event);
    };
    socket.onclose = function (event) {
      if (event.code === 4401) return; // signed out: the next page asks to sign in
      retry = Math.min(retry + 1, 6);
      window.setTimeout(connect, Math.min(30000, 500 * Math.pow(2, retry)) + Math.random() * 500);
    };
  }
  function start() {
    if (!document.querySelector("[data-inbox]")) connect();
    else loadUnread();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
