/* Tertulia web-chat widget. Embedded on any site with one tag:
 *   <script src="https://tertulia.example/widget/<key>.js" async></script>
 * Everything lives in a Shadow DOM so the host page's CSS cannot reach it; no cookies are used (the
 * visitor token is kept in localStorage); message text is only ever set with textContent.
 * Strict Content-Security-Policy: no inline script, no eval, no inline style element (the styles are a
 * constructed stylesheet; the colour a CSSOM custom property), no markup strings (Trusted Types). A
 * host page lists this server's origin in script-src and its http(s) and ws(s) origins in connect-src
 * (img-src too for https:// agent avatars); docs/channels/webchat-*.md.
 * Credentials: the kept visitor token goes only in the body of POST /session, which answers with an
 * access token valid for an hour, kept in memory. Requests carry the access token in Authorization and
 * the socket in its first frame (never in a URL, which logs keep); it is renewed before it expires,
 * and once more when the server says it has (401, close code 4401). */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || !script.src) return;
  var source = new URL(script.src);
  var match = source.pathname.match(/\/widget\/([A-Za-z0-9_-]+)\.js$/);
  if (!match) return;
  var KEY = match[1];
  var BASE = source.origin;
  var flag = "__tertuliaWidget_" + KEY;
  if (window[flag]) return; // the snippet pasted twice
  window[flag] = true;
  var STORE = "tertulia-widget:" + KEY;
  // A site that knows who is signed in adds data-user-id and data-user-hash (its server computes
  // the HMAC with the channel's identity secret), and may add data-name and data-email.
  var known = {};
  ["user-id", "user-hash", "name", "email"].forEach(function (attribute) {
    var value = script.getAttribute("data-" + attribute);
    if (value) known[attribute.replace("-", "_")] = value;
  });
  var verified = Boolean(known.user_id && known.user_hash);

  var TEXTS = {
    en: {
      open: "Chat with us", close: "Close chat", placeholder: "Write a message…", send: "Send",
      name: "Your name", email: "Your email", start: "Start chat", intro: "Tell us who you are and we'll reply here.",
      failed: "Not sent. Tap to retry.", offline: "Reconnecting…", title: "Chat", typing: "Typing…",
      slow: "You are sending messages too fast. Wait a moment, then tap to retry.",
      busy: "We are receiving many new chats right now. Tap to retry in a minute.",
      tabs: "This chat is open in too many tabs: close some to see replies as they arrive."
    },
    es: {
      open: "Chatea con nosotros", close: "Cerrar chat", placeholder: "Escribe un mensaje…", send: "Enviar",
      name: "Tu nombre", email: "Tu correo", start: "Empezar", intro: "Dinos quién eres y te responderemos aquí.",
      failed: "No enviado. Toca para reintentar.", offline: "Reconectando…", title: "Chat", typing: "Escribiendo…",
      slow: "Estás enviando mensajes muy rápido. Espera un momento y toca para reintentar.",
      busy: "Estamos recibiendo muchos chats nuevos ahora mismo. Toca para reintentar en un minuto.",
      tabs: "Este chat está abierto en demasiadas pestañas: cierra alguna para ver las respuestas al llegar."
    }
  };
  var lang = ((document.documentElement.lang || navigator.language || "en").slice(0, 2).toLowerCase() === "es") ? "es" : "en";
  var T = TEXTS[lang];

  function load() {
    try { return JSON.parse(window.localStorage.getItem(STORE) || "{}") || {}; } catch (e) { return {}; }
  }
  function save(state) {
    try { window.localStorage.setItem(STORE, JSON.stringify(state)); } catch (e) { /* private mode: this page only */ }
  }
  var stored = load();
  var token = typeof stored.token === "string" ? stored.token : null; // the kept visitor token
  var access = null; // the access token, in memory only
  var accessExpires = 0; // seconds since the epoch
  var accessLifetime = 3600; // seconds it was issued for

  function api(method, path, body, bearer) {
    var headers = { "Content-Type": "application/json" };
    if (bearer) headers.Authorization = "Bearer " + bearer;
    return fetch(BASE + "/widget/" + KEY + path, {
      method: method,
      headers: headers,
      body: body ? JSON.stringify(body) : undefined,
      credentials: "omit",
      mode: "cors"
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error((data.error && data.error.code) || String(response.status));
          error.status = response.status;
          error.code = data.error && data.error.code;
          throw error;
        }
        return data;
      });
    });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function uuid() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID().replace(/-/g, "");
    var out = "";
    for (var i = 0; i < 32; i++) out += Math.floor(Math.random() * 16).toString(16);
    return out;
  }

  // Built node by node, not with innerHTML: a site whose CSP requires Trusted Types
  // (require-trusted-types-for 'script') refuses markup assigned as a string.
  function chatIcon() {
    var NS = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(NS, "svg");
    var attributes = {
      width: "26", height: "26", viewBox: "0 0 24 24", fill: "none", stroke: "currentColor", "stroke-width": "2",
      "stroke-linecap": "round", "stroke-linejoin": "round", "aria-hidden": "true"
    };
    Object.keys(attributes).forEach(function (name) { svg.setAttribute(name, attributes[name]); });
    var path = document.createElementNS(NS, "path");
    path.setAttribute("d", "M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z");
    svg.appendChild(path);
    return svg;
  }

  var CSS = [
    ":host{all:initial;position:fixed;bottom:20px;z-index:2147483000;font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;font-size:14px;line-height:1.45;color:#101828}",
    ":host(.left){left:20px}:host(.right){right:20px}",
    "*{box-sizing:border-box}[hidden]{display:none!important}",
    ".launcher{width:56px;height:56px;border-radius:50%;border:0;cursor:pointer;color:#fff;background:var(--tw-colour);box-shadow:0 6px 18px rgba(16,24,40,.25);display:grid;place-items:center;position:relative}",
    ".launcher:focus-visible,button:focus-visible,input:focus-visible,textarea:focus-visible{outline:3px solid rgba(79,70,229,.35);outline-offset:2px}",
    ".badge{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;border-radius:10px;background:#d92d20;color:#fff;font-size:12px;font-weight:600;display:grid;place-items:center;padding:0 5px}",
    ".panel{position:absolute;bottom:72px;width:360px;max-width:calc(100vw - 40px);height:520px;max-height:calc(100vh - 120px);background:#fff;border-radius:16px;box-shadow:0 16px 40px rgba(16,24,40,.22);display:flex;flex-direction:column;overflow:hidden}",
    ":host(.left) .panel{left:0}:host(.right) .panel{right:0}",
    ".head{background:var(--tw-colour);color:#fff;padding:14px 16px;display:flex;align-items:center;gap:10px}",
    ".head h2{margin:0;font-size:16px;font-weight:600;flex:1;min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}",
    ".avatars{display:flex}.avatars img{width:28px;height:28px;border-radius:50%;border:2px solid #fff;margin-left:-8px;object-fit:cover;background:#fff}.avatars img:first-child{margin-left:0}",
    ".x{background:transparent;border:0;color:#fff;cursor:pointer;font-size:22px;line-height:1;padding:2px 6px;border-radius:6px}",
    ".log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:8px;background:#f6f7f9}",
    ".msg{max-width:80%;padding:8px 12px;border-radius:14px;white-space:pre-wrap;word-wrap:break-word;overflow-wrap:anywhere}",
    ".msg.in{align-self:flex-end;background:var(--tw-colour);color:#fff;border-bottom-right-radius:4px}",
    ".msg.out,.msg.greeting{align-self:flex-start;background:#fff;border:1px solid #e4e7ec;border-bottom-left-radius:4px}",
    ".msg.failed{opacity:.7;cursor:pointer}.note{font-size:12px;color:#667085;align-self:center}",
    ".form{display:flex;gap:8px;padding:10px;border-top:1px solid #e4e7ec;background:#fff}",
    ".form textarea{flex:1;resize:none;border:1px solid #d0d5dd;border-radius:10px;padding:8px 10px;font:inherit;color:inherit;height:40px;max-height:120px}",
    ".send{border:0;border-radius:10px;padding:0 14px;background:var(--tw-colour);color:#fff;font:inherit;font-weight:600;cursor:pointer}",
    ".prechat{padding:16px;display:flex;flex-direction:column;gap:10px;background:#fff;flex:1}",
    ".prechat label{display:flex;flex-direction:column;gap:4px;font-size:13px;color:#475467}",
    ".prechat input{border:1px solid #d0d5dd;border-radius:8px;padding:8px 10px;font:inherit;color:#101828}",
    ".prechat .send{height:40px}",
    ".status{font-size:12px;text-align:center;padding:4px;background:#fffaeb;color:#93370d}",
    ".typing{font-size:12px;color:#667085;padding:0 14px 6px;font-style:italic}"
  ].join("\n");

  function start(config) {
    var theme = config.theme || {};
    var colour = /^#[0-9a-fA-F]{6}$/.test(theme.color || "") ? theme.color : "#2563eb";
    var host = el("div");
    host.setAttribute("data-tertulia-widget", KEY);
    host.className = theme.position === "left" ? "left" : "right";
    host.style.setProperty("--tw-colour", colour);
    var root = host.attachShadow({ mode: "open" });
    if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function" && "replaceSync" in CSSStyleSheet.prototype) {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } else {
      root.appendChild(el("style", "", CSS));
    }

    var launcher = el("button", "launcher");
    launcher.type = "button";
    launcher.setAttribute("aria-label", T.open);
    launcher.setAttribute("part", "launcher");
    launcher.appendChild(chatIcon());
    var badge = el("span", "badge");
    badge.hidden = true;
    launcher.appendChild(badge);

    var panel = el("div", "panel");
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", config.name || T.title);
    var head = el("div", "head");
    var avatars = el("div", "avatars");
    (theme.avatars || []).slice(0, 3).forEach(function (url) {
      if (typeof url !== "string" || url.indexOf("https://") !== 0) return;
      var img = el("img");
      img.src = url;
      img.alt = "";
      img.referrerPolicy = "no-referrer";
      avatars.appendChild(img);
    });
    var title = el("h2", "", config.name || T.title);
    var closeButton = el("button", "x", "×");
    closeButton.type = "button";
    closeButton.setAttribute("aria-label", T.close);
    head.appendChild(avatars);
    head.appendChild(title);
    head.appendChild(closeButton);
    var status = el("div", "status", T.offline);
    var typingNote = el("div", "typing", T.typing);
    typingNote.hidden = true;
    var typingTimer = null;
    function agentTyping() {
      typingNote.hidden = false;
      if (typingTimer) window.clearTimeout(typingTimer);
      typingTimer = window.setTimeout(function () { typingNote.hidden = true; }, 6000);
    }
    status.hidden = true;
    var log = el("div", "log");
    log.setAttribute("aria-live", "polite");
    var form = el("form", "form");
    var input = el("textarea");
    input.rows = 1;
    input.placeholder = T.placeholder;
    input.setAttribute("aria-label", T.placeholder);
    input.maxLength = 10000;
    var send = el("button", "send", T.send);
    send.type = "submit";
    form.appendChild(input);
    form.appendChild(send);

    var needsIntro = !token && !verified && (config.ask_name || config.ask_email);
    var prechat = el("form", "prechat");
    var nameInput = el("input");
    var emailInput = el("input");
    if (needsIntro) {
      prechat.appendChild(el("p", "note", T.intro));
      if (config.ask_name) {
        var nameLabel = el("label", "", T.name);
        nameInput.name = "name";
        nameInput.required = true;
        nameInput.maxLength = 200;
        nameInput.autocomplete = "name";
        nameLabel.appendChild(nameInput);
        prechat.appendChild(nameLabel);
      }
      if (config.ask_email) {
        var emailLabel = el("label", "", T.email);
        emailInput.name = "email";
        emailInput.type = "email";
        emailInput.required = true;
        emailInput.maxLength = 254;
        emailInput.autocomplete = "email";
        emailLabel.appendChild(emailInput);
        prechat.appendChild(emailLabel);
      }
      var startButton = el("button", "send", T.start);
      startButton.type = "submit";
      prechat.appendChild(startButton);
    }

    panel.appendChild(head);
    panel.appendChild(status);
    panel.appendChild(log);
    panel.appendChild(typingNote);
    if (needsIntro) {
      panel.appendChild(prechat);
      log.hidden = true;
      form.hidden = true;
    }
    panel.appendChild(form);
    root.appendChild(panel);
    root.appendChild(launcher);
    document.body.appendChild(host);

    var shown = {}; // message ids already on screen: the socket echoes the visitor's own messages
    var unread = 0;
    var socket = null;
    var socketOpen = false;
    var retry = 0;
    var waiting = {}; // client message id -> the promise waiting for its ack
    var ACK_TIMEOUT = 5000;
    var typingSent = 0;
    var refreshing = null; // the /session call under way, shared by everyone who needs a token
    var refreshTimer = null;

    if (theme.greeting) log.appendChild(el("div", "msg greeting", theme.greeting));

    function scrollDown() { log.scrollTop = log.scrollHeight; }

    function render(message, before) {
      if (message.id && shown[message.id]) return shown[message.id];
      var bubble = el("div", "msg " + (message.direction === "incoming" ? "in" : "out"), message.text || "");
      bubble.setAttribute("data-direction", message.direction);
      if (message.id) {
        shown[message.id] = bubble;
        bubble.setAttribute("data-id", String(message.id));
      }
      if (before) log.insertBefore(bubble, before);
      else log.appendChild(bubble);
      return bubble;
    }

    function setUnread(count) {
      unread = count;
      badge.hidden = unread === 0;
      badge.textContent = String(unread);
    }

    function session(body) {
      var payload = {};
      Object.keys(known).forEach(function (k) { if (k !== "user_id" && k !== "user_hash") payload[k] = known[k]; });
      if (verified) {
        payload.user_id = known.user_id;
        payload.user_hash = known.user_hash;
      }
      Object.keys(body).forEach(function (k) { if (body[k]) payload[k] = body[k]; });
      return api("POST", "/session", payload).then(function (data) {
        token = data.token;
        stored.token = token;
        save(stored);
        access = data.access_token;
        accessExpires = data.access_expires_at;
        accessLifetime = Math.max(1, accessExpires - Date.now() / 1000);
        scheduleRefresh();
        // An open socket takes the new token too, or the server closes it when the old one expires.
        if (socket && socketOpen) socket.send(JSON.stringify({ type: "auth", token: access }));
        return access;
      });
    }

    // A fresh access token for the visitor this browser keeps (one request however many ask).
    function renew() {
      if (!refreshing) {
        refreshing = session(token ? { token: token } : {}).then(function (value) {
          refreshing = null;
          return value;
        }, function (error) {
          refreshing = null;
          throw error;
        });
      }
      return refreshing;
    }

    function scheduleRefresh() {
      if (refreshTimer) window.clearTimeout(refreshTimer);
      // Before it expires: two minutes before for an hour-long token, a third of its life for a short one.
      var seconds = Math.max(5, accessExpires - Date.now() / 1000 - Math.min(120, accessLifetime / 3));
      refreshTimer = window.setTimeout(function () { renew().catch(function () { /* retried on next use */ }); }, Math.min(seconds * 1000, 2147483000));
    }

    // The access token to send now: the one in memory while it is good, else a fresh one.
    function ready() {
      if (access && Date.now() / 1000 < accessExpires - Math.min(30, accessLifetime / 10)) return Promise.resolve(access);
      return renew();
    }

    // A request as the visitor; a 401 (the token expired meanwhile) gets one fresh token and one more try.
    function authed(method, path, body) {
      return ready().then(function (bearer) {
        return api(method, path, body, bearer).catch(function (error) {
          if (error.status !== 401) throw error;
          access = null;
          return renew().then(function (fresh) { return api(method, path, body, fresh); });
        });
      });
    }

    function history() {
      return authed("GET", "/messages?limit=50").then(function (data) {
        data.items.forEach(function (m) { render(m); });
        scrollDown();
      });
    }

    function connect() {
      if (!(token || verified) || socket) return;
      var opened = new WebSocket(BASE.replace(/^http/, "ws") + "/widget/ws?key=" + encodeURIComponent(KEY));
      socket = opened;
      opened.onopen = function () {
        ready().then(function (bearer) {
          if (opened.readyState === 1) opened.send(JSON.stringify({ type: "auth", token: bearer }));
        }, function () { opened.close(); });
      };
      opened.onmessage = function (event) {
        var frame;
        try { frame = JSON.parse(event.data); } catch (e) { return; }
        if (frame.type === "ready") {
          socketOpen = true;
          retry = 0;
          status.hidden = true;
          return;
        }
        if ((frame.type === "ack" || frame.type === "error") && frame.client_msg_id && waiting[frame.client_msg_id]) {
          var wait = waiting[frame.client_msg_id];
          delete waiting[frame.client_msg_id];
          window.clearTimeout(wait.timer);
          if (frame.type === "ack") wait.resolve(frame.message);
          else wait.reject(frame.error);
          return;
        }
        if (frame.type === "typing") { agentTyping(); return; }
        if (frame.type !== "message.created" || !frame.message) return;
        if (frame.message.direction === "outgoing") typingNote.hidden = true;
        var isNew = !shown[frame.message.id];
        render(frame.message);
        scrollDown();
        if (isNew && frame.message.direction === "outgoing" && panel.hidden) setUnread(unread + 1);
      };
      opened.onclose = function (event) {
        var wasOpen = socketOpen;
        socket = null;
        socketOpen = false;
        if (event.code === 4403) return; // this site may not embed the widget
        if (event.code === 4429) {
          // Too many tabs of this visitor (or from this address): messages still go over HTTP.
          status.textContent = T.tabs;
          status.hidden = false;
          window.setTimeout(connect, 60000 + Math.random() * 5000);
          return;
        }
        status.textContent = T.offline;
        if (wasOpen) status.hidden = false;
        retry = Math.min(retry + 1, 6);
        var delay = Math.min(30000, 500 * Math.pow(2, retry)) + Math.random() * 500;
        window.setTimeout(function () {
          if (event.code === 4401) access = null; // expired or refused: a fresh one
          ready().then(function () { connect(); return history(); }).catch(function () { connect(); });
        }, delay);
      };
    }

    // Over the open socket when there is one (answered by an "ack" frame); over HTTP otherwise, or
    // when the ack is late. Both carry the same client id, so a message sent both ways is stored once.
    function viaSocket(text, clientId) {
      return new Promise(function (resolve, reject) {
        var timer = window.setTimeout(function () {
          delete waiting[clientId];
          reject(new Error("timeout"));
        }, ACK_TIMEOUT);
        waiting[clientId] = { resolve: resolve, reject: reject, timer: timer };
        socket.send(JSON.stringify({ type: "message", text: text, client_msg_id: clientId }));
      });
    }

    function viaHttp(text, clientId) {
      return authed("POST", "/messages", { text: text, client_msg_id: clientId });
    }

    // What a failed bubble says: the server's reason when it gave one the visitor can act on.
    function failure(error) {
      var code = error && error.code;
      if (code === "rate_limited") return T.slow;
      if (code === "too_many_conversations") return T.busy;
      return T.failed;
    }

    function transmit(text, clientId) {
      if (!socketOpen) return viaHttp(text, clientId);
      return viaSocket(text, clientId).catch(function (error) {
        if (error && error.code) throw error; // refused by the server: HTTP would say the same
        return viaHttp(text, clientId);
      });
    }

    function deliver(text, bubble, clientId) {
      bubble.classList.remove("failed");
      bubble.removeAttribute("title");
      return transmit(text, clientId).then(function (message) {
        if (shown[message.id] && shown[message.id] !== bubble) {
          bubble.remove(); // the socket was faster
        } else {
          shown[message.id] = bubble;
          bubble.setAttribute("data-id", String(message.id));
        }
      }, function (error) {
        var reason = failure(error);
        bubble.classList.add("failed");
        bubble.title = reason;
        bubble.appendChild(el("div", "note", reason));
        bubble.onclick = function () {
          var note = bubble.querySelector(".note");
          if (note) note.remove();
          bubble.onclick = null;
          deliver(text, bubble, clientId);
        };
      });
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text) return;
      input.value = "";
      var bubble = render({ direction: "incoming", text: text });
      scrollDown();
      var clientId = uuid();
      ready().then(function () {
        connect();
        return deliver(text, bubble, clientId);
      }).catch(function (error) {
        bubble.classList.add("failed");
        bubble.appendChild(el("div", "note", failure(error)));
      });
    });
    input.addEventListener("input", function () {
      var now = Date.now();
      if (!socketOpen || !input.value.trim() || now - typingSent < 2000) return;
      typingSent = now;
      socket.send(JSON.stringify({ type: "typing" }));
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (typeof form.requestSubmit === "function") form.requestSubmit();
        else form.dispatchEvent(new Event("submit", { cancelable: true }));
      }
    });

    prechat.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = {};
      if (config.ask_name) body.name = nameInput.value.trim();
      if (config.ask_email) body.email = emailInput.value.trim();
      session(body).then(function () {
        prechat.remove();
        log.hidden = false;
        form.hidden = false;
        connect();
        input.focus();
      }, function () {
        (config.ask_email ? emailInput : nameInput).setCustomValidity(" ");
        (config.ask_email ? emailInput : nameInput).reportValidity();
      });
    });
    emailInput.addEventListener("input", function () { emailInput.setCustomValidity(""); });

    function toggle(open) {
      panel.hidden = !open;
      launcher.setAttribute("aria-expanded", open ? "true" : "false");
      if (open) {
        setUnread(0);
        scrollDown();
        (needsIntro && !token ? (nameInput.isConnected ? nameInput : emailInput) : input).focus();
      } else {
        launcher.focus();
      }
    }
    launcher.addEventListener("click", function () { toggle(panel.hidden); });
    closeButton.addEventListener("click", function () { toggle(false); });
    panel.addEventListener("keydown", function (event) { if (event.key === "Escape") toggle(false); });

    if (token || verified) {
      // Renew the kept token (it slides forward), get an access token, and bring back the
      // conversation from earlier pages.
      renew().then(function () {
        connect();
        return history();
      }).catch(function () { /* the server is down: the launcher still opens; sending will retry */ });
    }
  }

  function boot() {
    api("GET", "/config").then(start).catch(function () { /* not allowed on this site, or unknown key */ });
  }
  if (document.body) boot();
  else document.addEventListener("DOMContentLoaded", boot);
})();
