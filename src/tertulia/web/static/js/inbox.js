/* The Messages module: conversation list, conversation pane, composer with "/" snippets, live
 * updates over WebSocket /ws. Talks to the JSON endpoints in /api/v1 with the session cookie and the
 * X-CSRF-Token header. Every text a customer or colleague wrote is set with textContent. */
(function () {
  "use strict";

  var root = document.querySelector("[data-inbox]");
  var dataNode = document.getElementById("inbox-data");
  if (!root || !dataNode) return;
  var DATA = JSON.parse(dataNode.textContent);
  var T = DATA.texts;
  var ME = DATA.user_id;

  function $(selector, scope) { return (scope || document).querySelector(selector); }
  function $all(selector, scope) { return Array.prototype.slice.call((scope || document).querySelectorAll(selector)); }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  function toast(message) {
    var box = document.getElementById("flashes");
    if (!box) return;
    var div = el("div", "flash flash-error", message);
    div.setAttribute("role", "alert");
    box.appendChild(div);
    window.setTimeout(function () { div.remove(); }, 6000);
  }

  function api(method, path, body) {
    var options = { method: method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method !== "GET") options.headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch("/api/v1" + path, options).then(function (response) {
      if (response.status === 401) {
        window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname);
        throw new Error("signed out");
      }
      if (response.status === 204) return {};
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var message = (data.error && data.error.message) || T.error;
          toast(message);
          throw new Error(message);
        }
        return data;
      });
    });
  }

  var dateFormat = new Intl.DateTimeFormat(DATA.language, { hour: "2-digit", minute: "2-digit" });
  var dayFormat = new Intl.DateTimeFormat(DATA.language, { day: "numeric", month: "short" });
  function when(iso) {
    var date = new Date(iso);
    var today = new Date();
    return date.toDateString() === today.toDateString() ? dateFormat.format(date) : dayFormat.format(date);
  }

  var membersById = {};
  DATA.members.forEach(function (m) { membersById[m.id] = m.name; });
  var teamsById = {};
  DATA.teams.forEach(function (t) { teamsById[t.id] = t.name; });

  // ----- state -----
  var state = {
    view: DATA.see_all || !DATA.user_id ? "all" : "mine",
    teamId: null,
    status: "open",
    search: "",
    cursor: null,
    current: null, // the open conversation (as the API returns it)
    olderId: null,
    loadingOlder: false,
    mode: "reply",
    snippets: null
  };
  var shownMessages = {};

  // ----- conversation list -----
  var list = $("[data-conv-list]");
  var more = $("[data-conv-more]");

  function listQuery() {
    var params = new URLSearchParams();
    params.set("view", state.teamId ? "team" : state.view);
    if (state.teamId) params.set("team_id", state.teamId);
    params.set("status", state.status);
    if (state.search) params.set("search", state.search);
    if (state.cursor) params.set("cursor", state.cursor);
    return "/conversations?" + params.toString();
  }

  function convRow(c) {
    var li = el("li", "conv" + (state.current && state.current.id === c.id ? " active" : ""));
    li.setAttribute("data-conversation", String(c.id));
    var button = el("button", "conv-button");
    button.type = "button";
    var top = el("span", "conv-top");
    var name = (c.contact && c.contact.name) || "#" + c.contact_id;
    top.appendChild(el("span", "conv-name", name));
    top.appendChild(el("span", "conv-time", when(c.last_message_at)));
    var bottom = el("span", "conv-bottom");
    bottom.appendChild(el("span", "conv-preview", c.last_message_preview || ""));
    if (c.unread > 0) {
      var badge = el("span", "conv-unread", c.unread);
      badge.setAttribute("data-testid", "unread");
      bottom.appendChild(badge);
    }
    var meta = el("span", "conv-meta");
    var owner = c.assignee_id ? (membersById[c.assignee_id] || "#" + c.assignee_id) : T.unassigned;
    if (c.team_id && teamsById[c.team_id]) owner += " · " + teamsById[c.team_id];
    meta.textContent = owner;
    button.appendChild(top);
    button.appendChild(bottom);
    button.appendChild(meta);
    button.addEventListener("click", function () { openConversation(c.id, true); });
    li.appendChild(button);
    return li;
  }

  var listSeq = 0;
  function loadList(append) {
    if (!append) state.cursor = null;
    var seq = ++listSeq;
    return api("GET", listQuery()).then(function (data) {
      if (seq !== listSeq) return; // a newer filter won
      if (!append) list.textContent = "";
      data.items.forEach(function (c) { list.appendChild(convRow(c)); });
      if (!list.firstChild) list.appendChild(el("li", "conv-empty muted", T.no_conversations));
      state.cursor = data.next_cursor;
      more.hidden = !data.next_cursor;
    }).catch(function () {});
  }
  var listTimer = null;
  function reloadListSoon() {
    window.clearTimeout(listTimer);
    listTimer = window.setTimeout(function () { loadList(false); }, 150);
  }
  more.addEventListener("click", function () { loadList(true); });

  function selectView() {
    $all("[data-view]").forEach(function (b) {
      b.classList.toggle("selected", !state.teamId && b.getAttribute("data-view") === state.view);
    });
    $all("[data-status]").forEach(function (b) {
      b.classList.toggle("selected", b.getAttribute("data-status") === state.status);
    });
  }
  $all("[data-view]").forEach(function (button) {
    button.addEventListener("click", function () {
      state.view = button.getAttribute("data-view");
      state.teamId = null;
      var teamSelect = $("[data-team-view]");
      if (teamSelect) teamSelect.value = "";
      selectView();
      loadList(false);
    });
  });
  var teamView = $("[data-team-view]");
  if (teamView) teamView.addEventListener("change", function () {
    state.teamId = teamView.value || null;
    selectView();
    loadList(false);
  });
  $all("[data-status]").forEach(function (button) {
    button.addEventListener("click", function () {
      state.status = button.getAttribute("data-status");
      selectView();
      loadList(false);
    });
  });
  var searchTimer = null;
  $("[data-inbox-search]").addEventListener("input", function (event) {
    window.clearTimeout(searchTimer);
    searchTimer = window.setTimeout(function () {
      state.search = event.target.value.trim();
      loadList(false);
    }, 250);
  });

  // ----- conversation pane -----
  var pane = $("[data-pane]");
  var paneEmpty = $("[data-pane-empty]");
  var thread = $("[data-thread]");
  var assignUser = $("[data-assign-user]");
  var assignTeam = $("[data-assign-team]");
  DATA.members.forEach(function (m) { assignUser.appendChild(new Option(m.name, String(m.id))); });
  DATA.teams.forEach(function (t) { assignTeam.appendChild(new Option(t.name, String(t.id))); });

  function messageNode(m) {
    var kind = m.direction; // incoming | outgoing | comment | system
    var node = el("div", "msg msg-" + kind);
    node.setAttribute("data-message", String(m.id));
    if (kind === "system") {
      node.appendChild(el("span", "msg-system", m.text || ""));
      return node;
    }
    var bubble = el("div", "msg-bubble");
    if (kind === "comment") bubble.appendChild(el("span", "msg-label", T.internal));
    bubble.appendChild(el("div", "msg-text", m.text || ""));
    (m.attachments || []).forEach(function (a) {
      var id = typeof a === "object" && a ? a.id : a;
      if (!id) return;
      var link = el("a", "msg-file", (a && a.name) || "file #" + id);
      link.href = "/api/v1/files/" + encodeURIComponent(id);
      bubble.appendChild(link);
    });
    var meta = el("div", "msg-meta");
    var who = m.direction === "incoming" ? "" : (membersById[m.sender_user_id] || "");
    meta.textContent = [who, when(m.created_at), m.status && T[m.status] ? T[m.status] : ""].filter(Boolean).join(" · ");
    if (m.status === "failed" && m.status_reason) meta.title = m.status_reason;
    bubble.appendChild(meta);
    node.appendChild(bubble);
    return node;
  }

  function addMessage(m, atTop) {
    if (shownMessages[m.id]) {
      var fresh = messageNode(m);
      shownMessages[m.id].replaceWith(fresh);
      shownMessages[m.id] = fresh;
      return;
    }
    var node = messageNode(m);
    shownMessages[m.id] = node;
    if (atTop) thread.insertBefore(node, thread.firstChild);
    else thread.appendChild(node);
  }

  function nearBottom() { return thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80; }
  function toBottom() { thread.scrollTop = thread.scrollHeight; }

  function renderHead(c) {
    $("[data-pane-name]").textContent = (c.contact && c.contact.name) || "#" + c.contact_id;
    var status = $("[data-pane-status]");
    status.textContent = c.status === "open" ? T.open : T.closed;
    status.className = "badge " + (c.status === "open" ? "badge-success" : "");
    assignUser.value = c.assignee_id ? String(c.assignee_id) : "";
    assignTeam.value = c.team_id ? String(c.team_id) : "";
    if (c.assignee_id && assignUser.value !== String(c.assignee_id)) {
      assignUser.appendChild(new Option(membersById[c.assignee_id] || "#" + c.assignee_id, String(c.assignee_id)));
      assignUser.value = String(c.assignee_id);
    }
    $("[data-assign-me]").hidden = !ME || c.assignee_id === ME;
    $("[data-close-open]").hidden = c.status !== "open";
    $("[data-reopen]").hidden = c.status === "open";
    var notice = $("[data-window-notice]");
    notice.hidden = c.reply_window_open !== false;
    notice.textContent = T.window_closed;
    $all(".conv", list).forEach(function (li) {
      li.classList.toggle("active", li.getAttribute("data-conversation") === String(c.id));
    });
  }

  function markRead() {
    if (!state.current || !ME) return;
    api("POST", "/conversations/" + state.current.id + "/read", {}).then(function () {
      var row = list.querySelector('[data-conversation="' + state.current.id + '"] .conv-unread');
      if (row) row.remove();
    }).catch(function () {});
  }

  function loadContactPanel(c) {
    var url = "/messages/contacts/" + c.contact_id + "/panel?conversation_id=" + c.id;
    if (window.htmx) window.htmx.ajax("GET", url, { target: "#contact-panel", swap: "innerHTML" });
  }

  var openSeq = 0;
  function openConversation(id, push) {
    var seq = ++openSeq;
    return Promise.all([
      api("GET", "/conversations/" + id),
      api("GET", "/conversations/" + id + "/messages?limit=30")
    ]).then(function (results) {
      if (seq !== openSeq) return;
      var c = results[0];
      state.current = c;
      state.olderId = results[1].next_before_id;
      shownMessages = {};
      thread.textContent = "";
      results[1].items.forEach(function (m) { addMessage(m, false); });
      paneEmpty.hidden = true;
      pane.hidden = false;
      renderHead(c);
      toBottom();
      markRead();
      loadContactPanel(c);
      if (push && window.history.pushState) window.history.pushState({ id: id }, "", "/messages/" + id);
    }).catch(function () {});
  }
  window.addEventListener("popstate", function (event) {
    if (event.state && event.state.id) openConversation(event.state.id, false);
  });

  thread.addEventListener("scroll", function () {
    if (thread.scrollTop > 60 || !state.olderId || state.loadingOlder || !state.current) return;
    state.loadingOlder = true;
    var id = state.current.id;
    var loader = el("div", "thread-loading muted small", T.load_older);
    thread.insertBefore(loader, thread.firstChild);
    api("GET", "/conversations/" + id + "/messages?limit=30&before_id=" + state.olderId).then(function (data) {
      loader.remove();
      if (!state.current || state.current.id !== id) return;
      var height = thread.scrollHeight;
      data.items.slice().reverse().forEach(function (m) { addMessage(m, true); });
      thread.scrollTop += thread.scrollHeight - height; // keep the reader's place
      state.olderId = data.next_before_id;
    }).catch(function () { loader.remove(); }).then(function () { state.loadingOlder = false; });
  });

  function refreshCurrent() {
    if (!state.current) return;
    var id = state.current.id;
    api("GET", "/conversations/" + id).then(function (c) {
      if (state.current && state.current.id === id) {
        state.current = c;
        renderHead(c);
      }
    }).catch(function () {});
  }

  function assign(userId, teamId) {
    if (!state.current) return;
    api("POST", "/conversations/" + state.current.id + "/assign", { user_id: userId, team_id: teamId })
      .then(function (c) {
        state.current = Object.assign({}, state.current, c);
        renderHead(state.current);
        reloadListSoon();
      }).catch(function () { renderHead(state.current); });
  }
  function numberOrNull(value) { return value ? Number(value) : null; }
  $("[data-assign-me]").addEventListener("click", function () {
    assign(ME, state.current ? state.current.team_id : null);
  });
  assignUser.addEventListener("change", function () { assign(numberOrNull(assignUser.value), numberOrNull(assignTeam.value)); });
  assignTeam.addEventListener("change", function () { assign(numberOrNull(assignUser.value), numberOrNull(assignTeam.value)); });

  var dialog = $("[data-close-dialog]");
  var closeForm = $("[data-close-form]");
  $("[data-close-open]").addEventListener("click", function () {
    closeForm.reset();
    if (typeof dialog.showModal === "function") dialog.showModal();
    else dialog.setAttribute("open", "");
  });
  $("[data-close-cancel]").addEventListener("click", function () { dialog.close(); });
  closeForm.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!state.current) return;
    var category = closeForm.elements.category_id.value;
    var summary = closeForm.elements.summary.value.trim();
    api("POST", "/conversations/" + state.current.id + "/close", {
      category_id: numberOrNull(category),
      summary: summary || null
    }).then(function (c) {
      dialog.close();
      state.current = Object.assign({}, state.current, c);
      renderHead(state.current);
      reloadListSoon();
    }).catch(function () {});
  });
  $("[data-reopen]").addEventListener("click", function () {
    if (!state.current) return;
    api("POST", "/conversations/" + state.current.id + "/reopen").then(function (c) {
      state.current = Object.assign({}, state.current, c);
      renderHead(state.current);
      reloadListSoon();
    }).catch(function () {});
  });

  // ----- composer and "/" snippets -----
  var composer = $("[data-composer]");
  var input = $("[data-composer-input]");
  var menu = $("[data-snippet-menu]");
  var menuItems = [];
  var menuIndex = 0;

  $all("[data-mode]", composer).forEach(function (button) {
    button.addEventListener("click", function () {
      state.mode = button.getAttribute("data-mode");
      $all("[data-mode]", composer).forEach(function (b) { b.classList.toggle("selected", b === button); });
      composer.classList.toggle("note-mode", state.mode === "note");
      input.focus();
    });
  });

  function slashToken() {
    // The "/word" just before the caret, if it starts the text or follows a space.
    var upto = input.value.slice(0, input.selectionStart);
    var found = upto.match(/(^|\s)\/([^\s\/]*)$/);
    if (!found) return null;
    return { query: found[2].toLowerCase(), start: upto.length - found[2].length - 1, end: input.selectionStart };
  }

  function hideMenu() {
    menu.hidden = true;
    menuItems = [];
  }

  function showMenu(token) {
    var matches = (state.snippets || []).filter(function (s) {
      return s.shortcut.toLowerCase().indexOf(token.query) !== -1 || (s.text || "").toLowerCase().indexOf(token.query) !== -1;
    }).slice(0, 8);
    menu.textContent = "";
    menuItems = matches;
    menuIndex = 0;
    if (!matches.length) {
      menu.appendChild(el("div", "snippet-empty muted small", T.no_snippets));
    }
    matches.forEach(function (s, index) {
      var item = el("button", "snippet-item" + (index === 0 ? " active" : ""));
      item.type = "button";
      item.setAttribute("role", "option");
      item.setAttribute("data-snippet", s.shortcut);
      item.appendChild(el("span", "snippet-shortcut", "/" + s.shortcut));
      item.appendChild(el("span", "snippet-text", s.text));
      item.addEventListener("mousedown", function (event) { event.preventDefault(); });
      item.addEventListener("click", function () { insertSnippet(s); });
      menu.appendChild(item);
    });
    menu.hidden = false;
  }

  function highlight(index) {
    menuIndex = (index + menuItems.length) % menuItems.length;
    $all(".snippet-item", menu).forEach(function (item, i) { item.classList.toggle("active", i === menuIndex); });
  }

  function insertSnippet(snippet) {
    var token = slashToken();
    hideMenu();
    if (!state.current || !token) return;
    api("POST", "/snippets/" + snippet.id + "/render", { conversation_id: state.current.id }).then(function (data) {
      var value = input.value;
      input.value = value.slice(0, token.start) + data.text + value.slice(token.end);
      var caret = token.start + data.text.length;
      input.focus();
      input.setSelectionRange(caret, caret);
    }).catch(function () {});
  }

  function loadSnippets() {
    if (state.snippets) return Promise.resolve(state.snippets);
    return api("GET", "/snippets").then(function (items) { state.snippets = items; return items; });
  }

  input.addEventListener("input", function () {
    var token = slashToken();
    if (!token) { hideMenu(); return; }
    loadSnippets().then(function () {
      var again = slashToken();
      if (again) showMenu(again); else hideMenu();
    }).catch(hideMenu);
  });
  input.addEventListener("blur", function () { window.setTimeout(hideMenu, 150); });
  input.addEventListener("keydown", function (event) {
    if (!menu.hidden && menuItems.length) {
      if (event.key === "ArrowDown") { event.preventDefault(); highlight(menuIndex + 1); return; }
      if (event.key === "ArrowUp") { event.preventDefault(); highlight(menuIndex - 1); return; }
      if (event.key === "Enter" || event.key === "Tab") { event.preventDefault(); insertSnippet(menuItems[menuIndex]); return; }
    }
    if (event.key === "Escape" && !menu.hidden) { event.preventDefault(); hideMenu(); return; }
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });

  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || !state.current) return;
    var id = state.current.id;
    var path = state.mode === "note" ? "/comments" : "/messages";
    var body = state.mode === "note" ? { text: text } : { type: "text", text: text };
    input.disabled = true;
    api("POST", "/conversations/" + id + path, body).then(function (m) {
      input.value = "";
      if (state.current && state.current.id === id) {
        addMessage(m, false);
        toBottom();
      }
    }).catch(function () {}).then(function () {
      input.disabled = false;
      input.focus();
    });
  });

  // ----- notifications -----
  var notifyButton = $("[data-notify]");
  var canNotify = "Notification" in window;
  if (canNotify && Notification.permission === "default") notifyButton.hidden = false;
  notifyButton.addEventListener("click", function () {
    // Browsers only grant this after a click, and asking unprompted is rude.
    Notification.requestPermission().then(function (result) {
      notifyButton.hidden = result !== "default";
    });
  });
  var audio = null;
  function beep() {
    try {
      var Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return;
      audio = audio || new Context();
      var oscillator = audio.createOscillator();
      var gain = audio.createGain();
      oscillator.frequency.value = 880;
      gain.gain.setValueAtTime(0.08, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.25);
      oscillator.connect(gain);
      gain.connect(audio.destination);
      oscillator.start();
      oscillator.stop(audio.currentTime + 0.25);
    } catch (e) { /* no sound available */ }
  }
  function notify(event, message) {
    if (!ME || event.assignee_id !== ME || message.direction !== "incoming") return;
    var visible = !document.hidden && state.current && state.current.id === event.conversation_id;
    if (visible) return;
    beep();
    if (canNotify && Notification.permission === "granted") {
      var row = list.querySelector('[data-conversation="' + event.conversation_id + '"] .conv-name');
      var title = T.new_message_from.replace("%(name)s", row ? row.textContent : "#" + event.contact_id);
      var note = new Notification(title, { body: (message.text || "").slice(0, 140), tag: "conversation-" + event.conversation_id });
      note.onclick = function () { window.focus(); openConversation(event.conversation_id, true); note.close(); };
    }
  }

  // ----- live updates -----
  var liveState = $("[data-live-state]");
  var retry = 0;
  function connect() {
    var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    socket.onopen = function () {
      if (retry > 0) { loadList(false); refreshCurrent(); } // catch up on what happened while away
      retry = 0;
      liveState.hidden = true;
    };
    socket.onmessage = function (raw) {
      var event;
      try { event = JSON.parse(raw.data); } catch (e) { return; }
      if (event.type === "hello" || event.type === "typing") return;
      var isCurrent = state.current && state.current.id === event.conversation_id;
      if (event.type === "message.created") {
        var message = event.data && event.data.message;
        if (!message) return;
        if (isCurrent) {
          var stick = nearBottom();
          addMessage(message, false);
          if (stick) toBottom();
          if (!document.hidden) markRead();
        }
        notify(event, message);
        reloadListSoon();
      } else if (event.type === "message.status") {
        var node = isCurrent && event.data && shownMessages[event.data.message_id];
        if (node) {
          var meta = node.querySelector(".msg-meta");
          if (meta && T[event.data.status]) {
            var parts = meta.textContent.split(" · ");
            parts[parts.length - 1] = T[event.data.status];
            meta.textContent = parts.join(" · ");
          }
        }
      } else if (event.type.indexOf("conversation.") === 0) {
        if (isCurrent && event.type !== "conversation.read") refreshCurrent();
        reloadListSoon();
      }
    };
    socket.onclose = function (event) {
      if (event.code === 4401) { window.location.reload(); return; }
      liveState.hidden = false;
      retry = Math.min(retry + 1, 6);
      window.setTimeout(connect, Math.min(30000, 500 * Math.pow(2, retry)) + Math.random() * 500);
    };
  }

  document.addEventListener("visibilitychange", function () { if (!document.hidden) markRead(); });

  selectView();
  loadList(false);
  connect();
  if (DATA.conversation_id) openConversation(DATA.conversation_id, false);
})();
