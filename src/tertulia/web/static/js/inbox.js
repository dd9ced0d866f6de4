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

  function api(method, path, body, quiet) {
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
          if (!quiet) toast(message);
          var failure = new Error(message);
          failure.details = (data.error && data.error.details) || null;
          throw failure;
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
  var statusById = {};
  DATA.members.forEach(function (m) { membersById[m.id] = m.name; statusById[m.id] = m.status; });
  (DATA.people || []).forEach(function (p) { if (!membersById[p.id]) membersById[p.id] = p.name; });
  var teamsById = {};
  DATA.teams.forEach(function (t) { teamsById[t.id] = t.name; });
  var channelsById = {};
  (DATA.channels || []).forEach(function (c) { channelsById[c.id] = c; });

  // The channel of a conversation or message: its type's icon and its name.
  var CHANNEL_ICONS = {
    telegram: ["M21.5 3.5 2.8 10.7c-.9.4-.9 1.6 0 1.9l4.7 1.6 1.8 5.6c.2.7 1.1.9 1.6.4l2.6-2.5 4.8 3.5c.6.4 1.4.1 1.6-.6L22.9 4.8c.2-.9-.6-1.6-1.4-1.3z", "m7.5 14.2 10-7.2-7.4 8.4"],
    webchat: ["M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"],
    whatsapp: ["M3.5 20.5 5 16a8.5 8.5 0 1 1 3 3z", "M9 8.5c0 3.5 3 6.5 6.5 6.5l1-1.5-2-1-1 1a4.5 4.5 0 0 1-3-3l1-1-1-2z"],
    messenger: ["M12 3C7 3 3 6.7 3 11.3c0 2.6 1.3 4.9 3.3 6.4V21l3-1.7c.9.3 1.8.4 2.7.4 5 0 9-3.7 9-8.4S17 3 12 3z", "m7 14 3.5-4 2 2 4-3-3.5 4-2-2z"],
    instagram: ["M7 3h10a4 4 0 0 1 4 4v10a4 4 0 0 1-4 4H7a4 4 0 0 1-4-4V7a4 4 0 0 1 4-4z", "M12 8.5a3.5 3.5 0 1 1 0 7 3.5 3.5 0 0 1 0-7z", "M17.5 6.5h.01"]
  };
  function channelBadge(channelId) {
    var channel = channelsById[channelId];
    if (!channel) return null;
    var badge = el("span", "chan chan-" + channel.type);
    badge.setAttribute("data-testid", "channel-badge");
    badge.title = channel.name;
    var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "12");
    svg.setAttribute("height", "12");
    svg.setAttribute("aria-hidden", "true");
    (CHANNEL_ICONS[channel.type] || CHANNEL_ICONS.webchat).forEach(function (d) {
      var path = document.createElementNS("http://www.w3.org/2000/svg", "path");
      path.setAttribute("d", d);
      svg.appendChild(path);
    });
    badge.appendChild(svg);
    badge.appendChild(el("span", "chan-name", channel.name));
    return badge;
  }

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
    var badge = channelBadge(c.channel_id);
    if (badge) meta.appendChild(badge);
    if (c.assignee_id && statusById[c.assignee_id]) {
      var dot = el("span", "status-dot status-" + statusById[c.assignee_id]);
      dot.setAttribute("data-status-user", String(c.assignee_id));
      dot.title = T["status_" + statusById[c.assignee_id]] || "";
      meta.appendChild(dot);
    }
    meta.appendChild(el("span", "", owner));
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
  function memberLabel(m) {
    var status = statusById[m.id];
    return status && T["status_" + status] ? m.name + " · " + T["status_" + status] : m.name;
  }
  DATA.members.forEach(function (m) {
    var option = new Option(memberLabel(m), String(m.id));
    option.setAttribute("data-status-user", String(m.id));
    assignUser.appendChild(option);
  });
  // A teammate's activity status changed: their dots and their name in the assignee list.
  function showStatus(userId, status) {
    if (!status) return;
    statusById[userId] = status;
    DATA.members.forEach(function (m) {
      if (m.id !== userId) return;
      var option = assignUser.querySelector('option[data-status-user="' + userId + '"]');
      if (option) option.textContent = memberLabel(m);
    });
    document.querySelectorAll('.status-dot[data-status-user="' + userId + '"]').forEach(function (dot) {
      dot.className = "status-dot status-" + status;
      dot.title = T["status_" + status] || status;
    });
  }
  DATA.teams.forEach(function (t) { assignTeam.appendChild(new Option(t.name, String(t.id))); });

  function systemText(m) {
    var p = m.payload || {};
    if (p.event === "unassigned") return T.unassigned;
    if (p.event === "assigned") {
      var names = [];
      if (p.assignee_id != null) names.push(membersById[p.assignee_id]);
      if (p.team_id != null) names.push(teamsById[p.team_id]);
      // Someone this page has no name for (a team the agent is not in): keep the stored line.
      if (!names.length || names.some(function (n) { return !n; })) return m.text || "";
      return T.sys_assigned.replace("%(name)s", names.join(" / "));
    }
    if (p.event === "closed" && p.source === "auto-close") return T.sys_auto_closed;
    if (p.event === "closed") return p.category ? T.sys_closed_as.replace("%(category)s", p.category) : T.sys_closed;
    if (p.event === "reopened") return T.sys_reopened;
    if (p.event === "bot") return p.paused ? T.sys_bot_paused : T.sys_bot_resumed;
    return m.text || "";
  }

  function messageNode(m) {
    var kind = m.direction; // incoming | outgoing | comment | system
    var node = el("div", "msg msg-" + kind);
    node.setAttribute("data-message", String(m.id));
    if (kind === "system") {
      node.appendChild(el("span", "msg-system", systemText(m)));
      return node;
    }
    var bubble = el("div", "msg-bubble");
    if (kind === "comment") bubble.appendChild(el("span", "msg-label", T.internal));
    var content = kind === "comment" ? commentText(m) : contentNode(m);
    var mail = kind === "incoming" && m.payload && m.payload.email;
    if (mail && mail.subject) bubble.appendChild(el("div", "msg-email-subject", mail.subject));
    bubble.appendChild(content);
    if (mail) emailExtras(bubble, mail);
    var offered = kind === "outgoing" ? choicesNode(m.payload || {}) : null;
    if (offered) bubble.appendChild(offered);
    if (kind === "incoming" && m.type === "postback" && m.payload && m.payload.postback && m.payload.postback.data != null) {
      node.setAttribute("data-picked-choice", String(m.payload.postback.data));
    }
    (m.attachments || []).forEach(function (a) {
      var node = attachmentNode(a);
      if (node) bubble.appendChild(node);
    });
    var meta = el("div", "msg-meta");
    var who = m.direction === "incoming" ? "" : (membersById[m.sender_user_id] || "");
    var payload = m.payload || {};
    var edited = payload.edited_at ? T.edited : "";
    var current = laterStatus(m.status, statusSeen[m.id]);
    var status = current && T[current] ? T[current] : "";
    var channelMark = kind === "comment" ? null : channelBadge(m.channel_id);
    if (channelMark) meta.appendChild(channelMark);
    meta.appendChild(el("span", "msg-meta-text", [who, when(m.created_at), edited, status].filter(Boolean).join(" · ")));
    if (edited) {
      node.setAttribute("data-edited", "true");
      meta.title = (payload.edits || []).map(function (e) { return e.text || ""; }).join(" → ");
    }
    if (m.status === "failed" && m.status_reason) meta.title = m.status_reason;
    if (kind === "incoming" || kind === "outgoing") {
      // Answer this very message: the channel quotes it where it can (WhatsApp, Telegram).
      var quote = el("button", "msg-quote-button", T.quote);
      quote.type = "button";
      quote.setAttribute("data-testid", "quote-button");
      quote.addEventListener("click", function () { setQuote(m); });
      meta.appendChild(quote);
    }
    bubble.appendChild(meta);
    if (kind === "incoming" && payload.comment) bubble.appendChild(privateReplyNode(m, payload));
    node.appendChild(bubble);
    return node;
  }

  // An email's quoted history and signature, collapsed; its HTML (sanitised by the server, remote
  // images held back in data-src) in a sandboxed frame, images loaded only when the agent asks.
  function collapsed(label, text, testid) {
    var box = el("details", "msg-email-part");
    box.setAttribute("data-testid", testid);
    box.appendChild(el("summary", "", label));
    box.appendChild(el("pre", "msg-email-pre", text));
    return box;
  }
  function emailExtras(bubble, mail) {
    if (mail.quoted) bubble.appendChild(collapsed(T.email_quoted, mail.quoted, "email-quoted"));
    if (mail.signature) bubble.appendChild(collapsed(T.email_signature, mail.signature, "email-signature"));
    if (!mail.html) return;
    var box = el("details", "msg-email-part");
    box.setAttribute("data-testid", "email-html");
    box.appendChild(el("summary", "", T.email_html));
    var frame = document.createElement("iframe");
    frame.className = "msg-email-html";
    frame.setAttribute("sandbox", "");
    frame.setAttribute("referrerpolicy", "no-referrer");
    box.addEventListener("toggle", function () {
      if (box.open && !frame.srcdoc) frame.srcdoc = mail.html;
    });
    box.appendChild(frame);
    if (/data-src=/.test(mail.html)) {
      var images = el("button", "button small", T.email_images);
      images.type = "button";
      images.setAttribute("data-testid", "email-load-images");
      images.addEventListener("click", function () {
        frame.srcdoc = mail.html.replace(/data-src=/g, "src=");
        images.remove();
      });
      box.appendChild(images);
    }
    bubble.appendChild(box);
  }

  // A comment on the business's post (Messenger, Instagram): one private reply, within 7 days.
  function privateReplyNode(m, payload) {
    if (payload.private_reply) return el("div", "msg-private-reply muted small", T.private_reply_sent);
    var button = el("button", "button small", T.reply_privately);
    button.type = "button";
    button.setAttribute("data-testid", "reply-privately");
    button.addEventListener("click", function () {
      state.privateReplyTo = m.id;
      privateNotice.hidden = false;
      privateNotice.textContent = T.replying_privately;
      input.focus();
    });
    return button;
  }

  // A delivery status that arrived before its message was shown (the outbox can be quicker than the
  // answer to our own POST): kept, so the message is not drawn with an older one.
  var statusSeen = {};
  var STATUS_RANK = { pending: 0, sent: 1, delivered: 2, read: 3, failed: 4 };
  function laterStatus(a, b) {
    if (!b) return a;
    if (!a) return b;
    return (STATUS_RANK[b] || 0) > (STATUS_RANK[a] || 0) ? b : a;
  }

  // What the customer sent, by type: text, a location, a contact card, a choice, or what we cannot show.
  function contentNode(m) {
    var p = m.payload || {};
    if (m.type === "location" && p.location) {
      var place = el("a", "msg-text msg-location");
      var lat = p.location.latitude, lon = p.location.longitude;
      place.href = "https://www.openstreetmap.org/?mlat=" + encodeURIComponent(lat) + "&mlon=" + encodeURIComponent(lon);
      place.target = "_blank";
      place.rel = "noopener";
      place.textContent = T.location + ": " + [p.location.name, p.location.address, lat + ", " + lon].filter(Boolean).join(" · ");
      return place;
    }
    if (m.type === "contact" && p.contact) {
      var card = p.contact;
      var who = [card.first_name, card.last_name].filter(Boolean).join(" ");
      return el("div", "msg-text msg-card", T.shared_contact + ": " + [who, card.phone_number].filter(Boolean).join(" · "));
    }
    if (m.type === "postback" && p.postback) {
      return el("div", "msg-text msg-choice", T.chose.replace("%(choice)s", p.postback.title || m.text || p.postback.data || ""));
    }
    if (m.type === "unsupported") {
      var what = T.unsupported.replace("%(kind)s", String(p.unsupported || m.type));
      return el("div", "msg-text msg-unsupported", m.text ? m.text + " · " + what : what);
    }
    return el("div", "msg-text", m.text || "");
  }

  function addMessage(m, atTop) {
    if (shownMessages[m.id]) {
      var fresh = messageNode(m);
      shownMessages[m.id].replaceWith(fresh);
      shownMessages[m.id] = fresh;
      markPicks();
      return;
    }
    var node = messageNode(m);
    shownMessages[m.id] = node;
    if (atTop) thread.insertBefore(node, thread.firstChild);
    else thread.appendChild(node);
    markPicks();
  }

  function nearBottom() { return thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80; }
  function toBottom() { thread.scrollTop = thread.scrollHeight; }

  function renderHead(c) {
    $("[data-pane-name]").textContent = (c.contact && c.contact.name) || "#" + c.contact_id;
    var status = $("[data-pane-status]");
    status.textContent = c.status === "open" ? T.open : T.closed;
    status.className = "badge " + (c.status === "open" ? "badge-success" : "");
    // The channel the conversation is on now (the last one used, either way).
    var paneChannel = $("[data-pane-channel]");
    paneChannel.textContent = "";
    var mark = channelBadge(c.channel_id);
    if (mark) paneChannel.appendChild(mark);
    assignUser.value = c.assignee_id ? String(c.assignee_id) : "";
    assignTeam.value = c.team_id ? String(c.team_id) : "";
    if (c.assignee_id && assignUser.value !== String(c.assignee_id)) {
      assignUser.appendChild(new Option(membersById[c.assignee_id] || "#" + c.assignee_id, String(c.assignee_id)));
      assignUser.value = String(c.assignee_id);
    }
    $("[data-assign-me]").hidden = !ME || c.assignee_id === ME;
    $("[data-close-open]").hidden = c.status !== "open";
    $("[data-reopen]").hidden = c.status === "open";
    renderWindow(c);
    state.privateReplyTo = null;
    privateNotice.hidden = true;
    $all(".conv", list).forEach(function (li) {
      li.classList.toggle("active", li.getAttribute("data-conversation") === String(c.id));
    });
  }

  // Messenger and Instagram: outside the window a message goes out only with a tag, each explained.
  var privateNotice = $("[data-private-reply-notice]");
  var tagBox = $("[data-message-tag]");
  var tagSelect = $("[data-message-tag-select]");
  var tagHint = $("[data-message-tag-hint]");
  // Drawn again whenever the conversation is (a new message, an assignment): the tag the agent
  // picked stays picked while it is still offered.
  function renderMessageTags(tags) {
    var chosen = tagSelect.value;
    tagSelect.textContent = "";
    tagSelect.appendChild(new Option(T.no_message_tag, ""));
    tags.forEach(function (t) { tagSelect.appendChild(new Option(t.tag, t.tag)); });
    tagBox.hidden = !tags.length;
    var still = tags.some(function (t) { return t.tag === chosen; });
    tagSelect.value = still ? chosen : "";
    tagHint.textContent = still ? T["tag_" + chosen] || "" : "";
  }
  tagSelect.addEventListener("change", function () {
    tagHint.textContent = tagSelect.value ? T["tag_" + tagSelect.value] || "" : "";
  });

  // ----- composer: which channel the answer goes through -----
  // Shown when the contact can be answered on more than one channel; the default is the one they
  // last wrote on (the API's default_channel_id).
  var channelField = $("[data-composer-channel-field]");
  var channelSelect = $("[data-composer-channel]");
  function pickedChannel(c) {
    var id = Number(channelSelect.value);
    return (c.reply_channels || []).filter(function (ch) { return ch.id === id; })[0] || null;
  }
  function renderChannelChoice(c) {
    var choices = c.reply_channels || [];
    channelSelect.textContent = "";
    choices.forEach(function (ch) {
      var option = new Option(ch.name, String(ch.id));
      option.setAttribute("data-type", ch.type);
      channelSelect.appendChild(option);
    });
    if (c.default_channel_id) channelSelect.value = String(c.default_channel_id);
    channelField.hidden = choices.length < 2 || state.mode === "note";
  }
  channelSelect.addEventListener("change", function () {
    if (state.current) renderWindow(state.current);
    clearComposerError();
    renderSegments();
  });

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
      if (!state.current || state.current.id !== c.id) {
        clearFiles();
        hideTyping();
        clearQuote();
        clearChoices();
      }
      state.current = c;
      renderChannelChoice(c);
      renderSegments();
      state.olderId = results[1].next_before_id;
      shownMessages = {};
      thread.textContent = "";
      results[1].items.forEach(function (m) { addMessage(m, false); });
      paneEmpty.hidden = true;
      pane.hidden = false;
      renderHead(c);
      toBottom();
      markRead();
      loadSuggestions();
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
    // Only a paused bot has something to turn back on.
    $("[data-close-resume-field]").hidden = !(state.current && state.current.bot_paused);
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
      summary: summary || null,
      resume_bot: closeForm.elements.resume_bot.checked
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
      renderSegments();
      $all("[data-mode]", composer).forEach(function (b) { b.classList.toggle("selected", b === button); });
      composer.classList.toggle("note-mode", state.mode === "note");
      attachButton.hidden = state.mode === "note";
      channelField.hidden = state.mode === "note" || channelSelect.options.length < 2;
      if (state.current) renderWindow(state.current);
      hideMentions();
      clearComposerError();
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
      // A menu shown meanwhile (a slower snippets fetch answering for the "/..." just replaced)
      // would take the next Enter, which is meant to send.
      hideMenu();
      var caret = token.start + data.text.length;
      input.focus();
      input.setSelectionRange(caret, caret);
    }).catch(function () {});
  }

  function loadSnippets() {
    if (state.snippets) return Promise.resolve(state.snippets);
    return api("GET", "/snippets").then(function (items) { state.snippets = items; return items; });
  }

  // Tell the customer (or, writing a note, only teammates) that someone is writing: at most every 3 s.
  var typingToldAt = 0;
  input.addEventListener("input", function () {
    var now = Date.now();
    if (!state.current || !input.value.trim() || now - typingToldAt < 3000) return;
    typingToldAt = now;
    api("POST", "/conversations/" + state.current.id + "/typing", { note: state.mode === "note" }, true)
      .catch(function () { /* best effort */ });
  });
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
    if (mentionKeydown(event)) return;
    if (!menu.hidden && menuItems.length && slashToken()) {
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

  // ----- suggested replies: the knowledge's best answers to the customer's last message -----
  var suggestionsBar = $("[data-suggestions]");
  var suggestionList = $("[data-suggestion-list]");
  var suggestSeq = 0;
  function loadSuggestions() {
    if (!suggestionsBar || !suggestionList) return;
    var seq = ++suggestSeq;
    if (!state.current) { suggestionsBar.hidden = true; return; }
    var id = state.current.id;
    api("GET", "/assistant/conversations/" + id + "/suggestions", undefined, true).then(function (data) {
      if (seq !== suggestSeq || !state.current || state.current.id !== id) return;
      var items = data.items || [];
      suggestionList.textContent = "";
      items.forEach(function (item) {
        var button = el("button", "suggestion", item.answer);
        button.type = "button";
        button.title = item.answer;
        button.setAttribute("data-testid", "suggestion");
        button.addEventListener("click", function () { insertSuggestion(item.answer); });
        suggestionList.appendChild(button);
      });
      suggestionsBar.hidden = items.length === 0;
    }).catch(function () { if (seq === suggestSeq) suggestionsBar.hidden = true; });
  }
  function insertSuggestion(text) {
    input.value = text;
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.focus();
  }

  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!state.current) return;
    clearComposerError();
    var note = state.mode === "note";
    if (note && files.length) { showComposerError(T.notes_no_files); return; }
    if (files.some(function (f) { return f.status === "uploading"; })) { showComposerError(T.uploading); return; }
    // The server refuses these too (kit.text); said here, in the reader's language, beside the box.
    if (UNSAFE_TEXT.test(text)) { showComposerError(T.unsafe_text); return; }
    var fileIds = files.map(function (f) { return f.fileId; });
    var quickReply = note ? undefined : choicesPayload(text, fileIds.length > 0);
    if (quickReply === null) return;
    if (!text && !fileIds.length) return;
    var id = state.current.id;
    var path = note ? "/comments" : "/messages";
    var body = note
      ? { text: text, mentions: mentionIds(text) }
      : { type: messageType(text), text: text || null, attachments: fileIds };
    if (!note && !tagBox.hidden && tagSelect.value) body.message_tag = tagSelect.value;
    if (!note && state.privateReplyTo) body.private_reply_to_message_id = state.privateReplyTo;
    if (!note && !channelField.hidden && channelSelect.value) body.channel_id = Number(channelSelect.value);
    if (!note && quoted) body.reply_to_message_id = quoted.id;
    if (quickReply) { body.type = "quick_reply"; body.quick_reply = quickReply; }
    var emailOptions = note ? null : emailPayload();
    if (emailOptions) body.email = emailOptions;
    clearEmailErrors();
    if (emailOptions) {
      var problems = emailProblems(emailOptions);
      if (Object.keys(problems).length) { showEmailErrors(prefixed(problems)); return; }
    }
    input.disabled = true;
    api("POST", "/conversations/" + id + path, body, true).then(function (m) {
      input.value = "";
      renderSegments();
      if (body.private_reply_to_message_id) {
        state.privateReplyTo = null;
        privateNotice.hidden = true;
        var answered = shownMessages[body.private_reply_to_message_id];
        var button = answered && answered.querySelector('[data-testid="reply-privately"]');
        if (button) button.replaceWith(el("div", "msg-private-reply muted small", T.private_reply_sent));
      }
      picked = {};
      if (!note) {
        clearFiles(true);
        clearQuote();
        clearChoices();
        clearEmailFields();
      }
      if (state.current && state.current.id === id) {
        addMessage(m, false);
        toBottom();
      }
    }).catch(function (error) {
      // The API's own message (it says which field); a network failure has no useful text.
      showComposerError(error instanceof TypeError ? T.error : error.message);
      showChoiceErrors(error.details);
      showEmailErrors(error.details);
    }).then(function () {
      input.disabled = false;
      input.focus();
    });
  });

  // ----- composer: reply buttons and lists (the API's quick_reply) -----
  // Offered on channels whose provider has them, within its limits (DATA.channels[].reply_choices);
  // each choice's id is its title, which comes back as the customer's pick.
  var choicesOpen = $("[data-choices-open]");
  var choicesBox = $("[data-choices]");
  var choicesBody = $("[data-choices-body]");
  var choicesHint = $("[data-choices-hint]");
  var choicesKindList = $('[data-choices-kind="list"]');
  var choices = null; // {kind: "buttons"|"list", buttons: [{title}], list: {button, sections: [{title, rows: [{title, description}]}]}}

  function choiceLimits() {
    var c = state.current;
    if (!c || state.mode === "note") return null;
    var picked = pickedChannel(c);
    var channel = channelsById[picked ? picked.id : c.channel_id];
    return (channel && channel.reply_choices) || null;
  }
  function renderChoicesAvailability() {
    // Outside WhatsApp's window only a template goes out: no buttons of our own then.
    var available = !!choiceLimits() && !composer.classList.contains("templates-only");
    choicesOpen.hidden = !available;
    if (!available && choices) clearChoices();
    else if (choices) drawChoices();
  }
  function emptyRow() { return { title: "", description: "" }; }
  function openChoices() {
    if (!choiceLimits()) return;
    if (!choices) choices = { kind: "buttons", buttons: [{ title: "" }, { title: "" }], list: { button: "", sections: [{ title: "", rows: [emptyRow()] }] } };
    choicesBox.hidden = false;
    choicesOpen.setAttribute("aria-expanded", "true");
    drawChoices();
    var first = $("input", choicesBody);
    if (first) first.focus();
  }
  function clearChoices() {
    choices = null;
    choicesBox.hidden = true;
    choicesOpen.setAttribute("aria-expanded", "false");
    choicesBody.textContent = "";
  }
  choicesOpen.addEventListener("click", function () {
    if (choices) { clearChoices(); input.focus(); } else openChoices();
  });
  $("[data-choices-remove]").addEventListener("click", function () { clearChoices(); input.focus(); });
  $all("[data-choices-kind]").forEach(function (button) {
    button.addEventListener("click", function () {
      if (!choices) return;
      choices.kind = button.getAttribute("data-choices-kind");
      drawChoices();
    });
  });

  // One input with its label and the error beside it; `path` names it as the API's details do.
  function choiceField(label, value, path, limit, onInput, testid) {
    var wrap = el("div", "field choice-field");
    var id = "choice-" + path.replace(/[^a-z0-9]+/gi, "-");
    var lab = el("label", "", label);
    lab.htmlFor = id;
    var field = el("input");
    field.type = "text";
    field.id = id;
    field.value = value;
    field.setAttribute("data-choice-path", path);
    field.setAttribute("aria-describedby", id + "-error");
    if (testid) field.setAttribute("data-testid", testid);
    var count = el("span", "choice-count muted small");
    function counted() { count.textContent = limit ? field.value.length + "/" + limit : ""; }
    counted();
    field.addEventListener("input", function () {
      onInput(field.value);
      counted();
      setChoiceError(path, "");
      if (composerError.textContent === T.choices_fix) clearComposerError();
    });
    var error = el("p", "field-error");
    error.id = id + "-error";
    error.setAttribute("data-choice-error", path);
    error.setAttribute("role", "alert");
    wrap.appendChild(lab);
    var line = el("div", "choice-line");
    line.appendChild(field);
    line.appendChild(count);
    wrap.appendChild(line);
    wrap.appendChild(error);
    return wrap;
  }
  function removeButton(label, onClick, testid) {
    var button = el("button", "icon-button choice-remove", "×");
    button.type = "button";
    button.setAttribute("aria-label", label);
    button.title = label;
    if (testid) button.setAttribute("data-testid", testid);
    button.addEventListener("click", function () { onClick(); drawChoices(); });
    return button;
  }
  function addButton(label, onClick, testid) {
    var button = el("button", "button small", label);
    button.type = "button";
    button.setAttribute("data-testid", testid);
    button.addEventListener("click", function () {
      onClick();
      drawChoices();
      var inputs = $all("input", choicesBody);
      if (inputs.length) inputs[inputs.length - 1].focus();
    });
    return button;
  }
  function rowCount() {
    return choices.list.sections.reduce(function (n, s) { return n + s.rows.length; }, 0);
  }

  function drawChoices() {
    var limits = choiceLimits();
    if (!choices || !limits) return;
    if (choices.kind === "list" && !limits.lists) choices.kind = "buttons";
    choicesKindList.hidden = !limits.lists;
    $all("[data-choices-kind]").forEach(function (b) { b.classList.toggle("selected", b.getAttribute("data-choices-kind") === choices.kind); });
    choicesBody.textContent = "";
    if (choices.kind === "buttons") {
      choicesHint.textContent = fill(T.choices_buttons_hint, { count: limits.max_buttons, length: limits.title_length });
      choices.buttons = choices.buttons.slice(0, limits.max_buttons);
      choices.buttons.forEach(function (b, index) {
        var row = el("div", "choice-row");
        row.appendChild(choiceField(fill(T.choice_button, { n: index + 1 }), b.title, "buttons[" + index + "].title", limits.title_length, function (v) { b.title = v; }, "choice-title"));
        if (choices.buttons.length > 1) row.appendChild(removeButton(fill(T.remove_choice, { n: index + 1 }), function () { choices.buttons.splice(index, 1); }, "choice-remove"));
        choicesBody.appendChild(row);
      });
      if (choices.buttons.length < limits.max_buttons) {
        choicesBody.appendChild(addButton(T.add_button, function () { choices.buttons.push({ title: "" }); }, "add-choice"));
      }
    } else {
      var L = limits.lists;
      choicesHint.textContent = fill(T.choices_list_hint, { rows: L.max_rows, length: L.row_title_length });
      choicesBody.appendChild(choiceField(T.list_button, choices.list.button, "list.button", L.button_length, function (v) { choices.list.button = v; }, "list-button"));
      choices.list.sections.forEach(function (section, s) {
        var box = el("fieldset", "choice-section");
        var legend = el("legend", "", fill(T.list_section, { n: s + 1 }));
        box.appendChild(legend);
        var head = el("div", "choice-row");
        head.appendChild(choiceField(T.section_title, section.title, "list.sections[" + s + "].title", L.section_title_length, function (v) { section.title = v; }, "section-title"));
        if (choices.list.sections.length > 1) head.appendChild(removeButton(fill(T.remove_section, { n: s + 1 }), function () { choices.list.sections.splice(s, 1); }, "section-remove"));
        box.appendChild(head);
        section.rows.forEach(function (r, i) {
          var row = el("div", "choice-row");
          var path = "list.sections[" + s + "].rows[" + i + "]";
          row.appendChild(choiceField(fill(T.row_title, { n: i + 1 }), r.title, path + ".title", L.row_title_length, function (v) { r.title = v; }, "row-title"));
          row.appendChild(choiceField(T.row_description, r.description, path + ".description", L.row_description_length, function (v) { r.description = v; }, "row-description"));
          if (section.rows.length > 1) row.appendChild(removeButton(fill(T.remove_row, { n: i + 1 }), function () { section.rows.splice(i, 1); }, "row-remove"));
          box.appendChild(row);
        });
        if (rowCount() < L.max_rows) box.appendChild(addButton(T.add_row, function () { section.rows.push(emptyRow()); }, "add-row"));
        choicesBody.appendChild(box);
      });
      if (choices.list.sections.length < L.max_sections && rowCount() < L.max_rows) {
        choicesBody.appendChild(addButton(T.add_section, function () { choices.list.sections.push({ title: "", rows: [emptyRow()] }); }, "add-section"));
      }
    }
  }

  function setChoiceError(path, message) {
    var node = $all("[data-choice-error]", choicesBody).filter(function (n) { return n.getAttribute("data-choice-error") === path; })[0];
    if (!node) return false;
    node.textContent = message;
    var field = $all("[data-choice-path]", choicesBody).filter(function (n) { return n.getAttribute("data-choice-path") === path; })[0];
    if (field) {
      if (message) field.setAttribute("aria-invalid", "true");
      else field.removeAttribute("aria-invalid");
    }
    return true;
  }
  function byteLength(text) { return new TextEncoder().encode(text).length; }
  function checkTitle(path, title, limit, limits, seen, errors) {
    var value = title.trim();
    if (!value) errors.push([path, T.choice_required]);
    else if (value.length > limit) errors.push([path, fill(T.choice_too_long, { count: limit })]);
    else if (limits.id_in_bytes && byteLength(value) > limits.id_length) errors.push([path, fill(T.choice_too_long_bytes, { count: limits.id_length })]);
    else if (seen[value]) errors.push([path, T.choice_duplicate]);
    seen[value] = true;
  }
  // The choices as the API takes them, or null when a field is wrong (each error beside its field).
  function choicesPayload(text, hasFiles) {
    var limits = choiceLimits();
    if (!choices || !limits) return undefined;
    $all("[data-choice-error]", choicesBody).forEach(function (n) { setChoiceError(n.getAttribute("data-choice-error"), ""); });
    var errors = [];
    var seen = {};
    var payload;
    if (choices.kind === "buttons") {
      choices.buttons.forEach(function (b, index) { checkTitle("buttons[" + index + "].title", b.title, limits.title_length, limits, seen, errors); });
      payload = { buttons: choices.buttons.map(function (b) { return { id: b.title.trim(), title: b.title.trim() }; }) };
    } else {
      var L = limits.lists;
      var label = choices.list.button.trim();
      if (!label) errors.push(["list.button", T.choice_required]);
      else if (label.length > L.button_length) errors.push(["list.button", fill(T.choice_too_long, { count: L.button_length })]);
      var several = choices.list.sections.length > 1;
      choices.list.sections.forEach(function (section, s) {
        var path = "list.sections[" + s + "]";
        var title = section.title.trim();
        if (several && !title) errors.push([path + ".title", T.section_title_required]);
        else if (title.length > L.section_title_length) errors.push([path + ".title", fill(T.choice_too_long, { count: L.section_title_length })]);
        section.rows.forEach(function (r, i) {
          checkTitle(path + ".rows[" + i + "].title", r.title, L.row_title_length, limits, seen, errors);
          if (r.description.trim().length > L.row_description_length) errors.push([path + ".rows[" + i + "].description", fill(T.choice_too_long, { count: L.row_description_length })]);
        });
      });
      payload = {
        list: {
          button: label,
          sections: choices.list.sections.map(function (section) {
            var shaped = { rows: section.rows.map(function (r) {
              var row = { id: r.title.trim(), title: r.title.trim() };
              if (r.description.trim()) row.description = r.description.trim();
              return row;
            }) };
            if (section.title.trim()) shaped.title = section.title.trim();
            return shaped;
          })
        }
      };
    }
    errors.forEach(function (e) { setChoiceError(e[0], e[1]); });
    if (errors.length) { showComposerError(T.choices_fix); return null; }
    if (!text) { showComposerError(T.choices_need_text); return null; }
    if (choices.kind === "buttons" && limits.body_length && text.length > limits.body_length) {
      showComposerError(fill(T.choices_text_too_long, { count: limits.body_length })); return null;
    }
    if (hasFiles) { showComposerError(T.choices_no_files); return null; }
    return payload;
  }
  // The API's refusal, beside the field it names (a list row's index counts across sections; an
  // id is the title it was made from); true when one was found.
  function showChoiceErrors(details) {
    if (!choices || !details) return false;
    var shown = false;
    Object.keys(details).forEach(function (key) {
      if (key.indexOf("message.quick_reply.") !== 0) return;
      var path = key.slice("message.quick_reply.".length).replace(/\.id$/, ".title");
      var flat = /^list\.rows\[(\d+)\]\.(\w+)$/.exec(path);
      if (flat) {
        var n = Number(flat[1]);
        choices.list.sections.some(function (section, s) {
          if (n < section.rows.length) { path = "list.sections[" + s + "].rows[" + n + "]." + flat[2]; return true; }
          n -= section.rows.length;
          return false;
        });
      }
      if (setChoiceError(path, details[key])) shown = true;
    });
    return shown;
  }

  // ----- the thread: interactive messages with their buttons or list, and the customer's pick -----
  function choiceChip(id, title, url) {
    var chip = el(url ? "a" : "span", "msg-choice-button", title);
    chip.setAttribute("data-choice-id", id);
    if (url) { chip.href = url; chip.target = "_blank"; chip.rel = "noopener"; }
    return chip;
  }
  function choicesNode(p) {
    var quick = p.quick_reply;
    var box;
    if (quick && quick.list) {
      box = el("div", "msg-list");
      box.setAttribute("data-testid", "message-list");
      box.appendChild(el("div", "msg-list-button", "☰ " + (quick.list.button || "")));
      (quick.list.sections || []).forEach(function (section) {
        if (section.title) box.appendChild(el("div", "msg-list-section", section.title));
        var rows = el("ul", "msg-list-rows");
        (section.rows || []).forEach(function (r) {
          var item = el("li", "msg-list-row");
          item.setAttribute("data-choice-id", String(r.id));
          item.appendChild(el("span", "msg-list-title", r.title));
          if (r.description) item.appendChild(el("span", "msg-list-description small", r.description));
          rows.appendChild(item);
        });
        box.appendChild(rows);
      });
      return box;
    }
    var buttons = (quick && quick.buttons) || (p.quick_replies || []).map(function (q) { return { id: q.payload || q.title, title: q.title }; });
    var links = (p.buttons || []).map(function (b) { return { id: b.payload || b.title, title: b.title, url: b.url }; });
    var all = buttons.concat(links);
    if (!all.length) return null;
    box = el("div", "msg-choices");
    box.setAttribute("data-testid", "message-buttons");
    all.forEach(function (b) { box.appendChild(choiceChip(String(b.id), b.title, b.url)); });
    return box;
  }
  // Each pick marks its button (or row) on the latest of our messages before it that offered it.
  function markPicks() {
    var nodes = $all("[data-message]", thread);
    $all(".picked", thread).forEach(function (n) { n.classList.remove("picked"); n.removeAttribute("data-picked"); });
    nodes.forEach(function (node, index) {
      var data = node.getAttribute("data-picked-choice");
      if (data === null) return;
      for (var j = index - 1; j >= 0; j--) {
        if (!nodes[j].classList.contains("msg-outgoing")) continue;
        var match = $all("[data-choice-id]", nodes[j]).filter(function (c) { return c.getAttribute("data-choice-id") === data; })[0];
        if (match) {
          match.classList.add("picked");
          match.setAttribute("data-picked", "true");
          match.title = T.picked;
          return;
        }
      }
    });
  }

  // ----- composer: the message a reply quotes -----
  var quoteBar = $("[data-composer-quote]");
  var quoteText = $("[data-quote-text]");
  var quoted = null; // {id}
  function setQuote(m) {
    var shown = (m.text || (m.attachments && m.attachments[0] && m.attachments[0].name) || "").trim();
    quoted = { id: m.id };
    quoteText.textContent = fill(T.quoting, { text: shown.length > 80 ? shown.slice(0, 79) + "…" : shown });
    quoteBar.hidden = false;
    input.focus();
  }
  function clearQuote() {
    quoted = null;
    quoteBar.hidden = true;
    quoteText.textContent = "";
  }
  $("[data-quote-cancel]").addEventListener("click", function () { clearQuote(); input.focus(); });

  // ----- composer: the error beside it -----
  var composerError = $("[data-composer-error]");
  // NUL, or a surrogate without its pair (a paste cut in the middle of an emoji).
  var UNSAFE_TEXT = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(^|[^\ud800-\udbff])[\udc00-\udfff]/;
  function showComposerError(message) {
    composerError.textContent = message;
    input.setAttribute("aria-invalid", "true");
  }
  function clearComposerError() {
    composerError.textContent = "";
    input.removeAttribute("aria-invalid");
  }
  function fill(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (all, key) { return key in values ? String(values[key]) : all; });
  }

  // ----- composer: SMS segments -----
  // SMS channels send (and charge) per segment: GSM-7 fits 160 septets, 153 per part of a longer
  // message, the extension characters costing two; one character outside GSM-7 makes the whole
  // message UCS-2: 70 UTF-16 units, 67 per part, an emoji counting two. channels/adapters/sms.py
  // counts the same way on the server.
  var SMS_TYPES = ["twilio", "vonage", "bird"];
  var GSM_BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ" +
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var GSM_EXTENDED = "\f^{}\\[~]|€";
  var segmentsLine = $("[data-composer-segments]");
  function smsSegments(text) {
    var septets = 0;
    for (var i = 0; i < text.length; i++) {
      var ch = text.charAt(i);
      if (GSM_BASIC.indexOf(ch) >= 0) septets += 1;
      else if (GSM_EXTENDED.indexOf(ch) >= 0) septets += 2;
      else { septets = -1; break; }
    }
    var gsm = septets >= 0;
    var units = gsm ? septets : text.length;  // a JS string's length is its UTF-16 units
    var single = gsm ? 160 : 70, part = gsm ? 153 : 67;
    var count = units === 0 ? 0 : units <= single ? 1 : Math.ceil(units / part);
    return { encoding: gsm ? "GSM-7" : "UCS-2", units: units, segments: count, limit: count > 1 ? part * count : single };
  }
  // Email channels: subject, CC and BCC beside the text (the API's message.email).
  var emailBox = $("[data-email-fields]");
  function emailField(name) { return emailBox.querySelector('[data-email-field="' + name + '"]'); }
  function emailError(name) { return emailBox.querySelector('[data-email-error="' + name + '"]'); }
  function addressList(value) {
    return value.split(/[,;\s]+/).map(function (a) { return a.trim(); }).filter(Boolean);
  }
  // The server's own address rule (channels/adapters/email.py _ADDRESS) and limits, checked here so
  // the reader sees the refusal in their language; the API still checks (its text is English).
  var ADDRESS = /^[^@\s<>()\[\],;:"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z0-9-]{2,63}$/;
  var MAX_EMAIL_RECIPIENTS = 50;
  function emailProblems(payload) {
    var problems = {};
    ["cc", "bcc"].forEach(function (name) {
      if (payload[name].some(function (a) { return !ADDRESS.test(a); })) problems[name] = T.email_bad_address;
    });
    if (!problems.cc && 1 + payload.cc.length + payload.bcc.length > MAX_EMAIL_RECIPIENTS) {
      problems.cc = T.email_too_many;
    }
    if (payload.subject && payload.subject.length > 998) problems.subject = T.email_subject_long;
    return problems;
  }
  function emailPayload() {
    if (emailBox.hidden) return null;
    var payload = { cc: addressList(emailField("cc").value), bcc: addressList(emailField("bcc").value) };
    var subject = emailField("subject").value.trim();
    if (subject) payload.subject = subject;
    return payload;
  }
  function prefixed(problems) {
    var details = {};
    Object.keys(problems).forEach(function (name) { details["message.email." + name] = problems[name]; });
    return details;
  }
  function clearEmailErrors() {
    ["subject", "cc", "bcc"].forEach(function (name) {
      emailError(name).textContent = "";
      emailField(name).removeAttribute("aria-invalid");
    });
  }
  function showEmailErrors(details) {
    if (!details || emailBox.hidden) return false;
    var shown = false;
    Object.keys(details).forEach(function (key) {
      var found = /^message\.email\.(subject|cc|bcc)$/.exec(key);
      if (!found) return;
      emailError(found[1]).textContent = details[key];
      emailField(found[1]).setAttribute("aria-invalid", "true");
      shown = true;
    });
    return shown;
  }
  function clearEmailFields() {
    ["subject", "cc", "bcc"].forEach(function (name) { emailField(name).value = ""; });
    clearEmailErrors();
  }
  function renderSegments() {
    var c = state.current;
    var picked = c ? pickedChannel(c) : null;
    var type = picked ? picked.type : c ? c.channel_type : null;
    emailBox.hidden = !(type === "email" && state.mode !== "note");
    var sms = SMS_TYPES.indexOf(type) >= 0 && state.mode !== "note";
    segmentsLine.hidden = !sms;
    if (!sms) return;
    var counted = smsSegments(input.value);
    segmentsLine.textContent = fill(T.sms_segments, counted);
  }
  input.addEventListener("input", renderSegments);

  // ----- composer: attachments (button, drag and drop, pasted images) -----
  var UPLOAD = DATA.upload || { max_bytes: 0, types: [], max_files: 0 };
  var attachButton = $("[data-attach]");
  var fileInput = $("[data-file-input]");
  var fileList = $("[data-composer-files]");
  var dropHint = $("[data-drop-hint]");
  var files = []; // {file, name, size, type, status: uploading|done, progress, fileId, xhr, bar, conversationId}
  var sizeFormat = new Intl.NumberFormat(DATA.language, { maximumFractionDigits: 1 });

  function humanSize(bytes) {
    if (bytes < 1024) return sizeFormat.format(bytes) + " B";
    if (bytes < 1024 * 1024) return sizeFormat.format(bytes / 1024) + " KB";
    return sizeFormat.format(bytes / (1024 * 1024)) + " MB";
  }
  function kindOf(type) { return (type || "application/octet-stream").toLowerCase(); }
  function typeAllowed(type) {
    var kind = kindOf(type);
    return UPLOAD.types.some(function (prefix) { return kind.indexOf(prefix) === 0; });
  }
  function messageType(text) {
    // A reply with text is a text message carrying files; without text, the files' kind names it.
    if (text || !files.length) return "text";
    var kinds = files.map(function (f) { return kindOf(f.type).split("/")[0]; });
    var first = kinds[0];
    var same = kinds.every(function (k) { return k === first; });
    return same && (first === "image" || first === "audio" || first === "video") ? first : "file";
  }

  function renderFiles() {
    fileList.textContent = "";
    fileList.hidden = !files.length;
    files.forEach(function (entry) {
      var chip = el("li", "file-chip" + (entry.status === "uploading" ? " uploading" : ""));
      chip.appendChild(el("span", "file-chip-name", entry.name));
      chip.appendChild(el("span", "file-chip-size", humanSize(entry.size)));
      if (entry.status === "uploading") {
        var bar = document.createElement("progress");
        bar.max = 100;
        bar.value = Math.round((entry.progress || 0) * 100);
        bar.setAttribute("aria-label", entry.name);
        chip.appendChild(bar);
        entry.bar = bar;
      }
      var remove = el("button", "icon-button file-chip-remove", "×");
      remove.type = "button";
      remove.setAttribute("aria-label", fill(T.remove_file, { name: entry.name }));
      remove.title = remove.getAttribute("aria-label");
      remove.addEventListener("click", function () { removeFile(entry); input.focus(); });
      chip.appendChild(remove);
      fileList.appendChild(chip);
    });
  }
  // An upload taken off before sending is deleted, not left stored with nothing pointing to it.
  function forget(entry) {
    if (entry.xhr && entry.status === "uploading") entry.xhr.abort();
    if (entry.fileId) api("DELETE", "/files/" + entry.fileId, undefined, true).catch(function () { /* kept */ });
  }
  function removeFile(entry) {
    forget(entry);
    files = files.filter(function (f) { return f !== entry; });
    renderFiles();
  }
  function clearFiles(sent) {
    if (!sent) files.forEach(forget);
    files = [];
    renderFiles();
  }

  function uploadError(data, fallback) {
    var error = data && data.error;
    if (!error) return fallback;
    var details = error.details || {};
    return details.file || details.conversation_id || error.message || fallback;
  }

  function upload(entry) {
    // XMLHttpRequest rather than fetch: only it reports upload progress.
    var form = new FormData();
    form.append("file", entry.file, entry.name);
    form.append("conversation_id", String(entry.conversationId));
    var xhr = new XMLHttpRequest();
    entry.xhr = xhr;
    xhr.open("POST", "/api/v1/files");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRF-Token", csrf());
    xhr.upload.addEventListener("progress", function (event) {
      if (!event.lengthComputable) return;
      entry.progress = event.loaded / event.total;
      if (entry.bar) entry.bar.value = Math.round(entry.progress * 100);
    });
    xhr.addEventListener("load", function () {
      var data = null;
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
      if (xhr.status === 401) {
        window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname);
        return;
      }
      if (xhr.status === 201 && data && data.id) {
        entry.status = "done";
        entry.fileId = data.id;
        renderFiles();
        return;
      }
      removeFile(entry);
      showComposerError(fill(T.upload_failed, { name: entry.name, reason: uploadError(data, T.error) }));
    });
    xhr.addEventListener("error", function () {
      removeFile(entry);
      showComposerError(fill(T.upload_failed, { name: entry.name, reason: T.error }));
    });
    xhr.send(form);
  }

  function addFiles(list) {
    if (!state.current || !list || !list.length) return;
    clearComposerError();
    if (state.mode === "note") { showComposerError(T.notes_no_files); return; }
    var problems = [];
    Array.prototype.forEach.call(list, function (file) {
      // The same checks as the server (conversations/files.py), before spending the upload.
      var name = file.name || "file";
      if (files.length >= UPLOAD.max_files) {
        if (problems.indexOf(T.too_many_files) === -1) problems.push(fill(T.too_many_files, { count: UPLOAD.max_files }));
        return;
      }
      if (!typeAllowed(file.type)) { problems.push(fill(T.file_type, { type: kindOf(file.type) })); return; }
      if (file.size > UPLOAD.max_bytes) {
        problems.push(fill(T.file_too_big, { name: name, size: humanSize(UPLOAD.max_bytes) }));
        return;
      }
      if (!file.size) { problems.push(fill(T.file_empty, { name: name })); return; }
      var entry = {
        file: file, name: name, size: file.size, type: file.type, status: "uploading", progress: 0,
        fileId: null, xhr: null, bar: null, conversationId: state.current.id
      };
      files.push(entry);
      upload(entry);
    });
    renderFiles();
    if (problems.length) showComposerError(problems.join(" "));
  }

  attachButton.addEventListener("click", function () { fileInput.click(); });
  fileInput.addEventListener("change", function () {
    addFiles(fileInput.files);
    fileInput.value = "";
  });
  input.addEventListener("paste", function (event) {
    var data = event.clipboardData;
    if (!data || !data.files || !data.files.length) return;
    var images = Array.prototype.filter.call(data.files, function (f) { return kindOf(f.type).indexOf("image/") === 0; });
    if (!images.length) return;
    event.preventDefault();
    addFiles(images);
  });
  function dragsFiles(event) {
    return event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types || [], "Files") !== -1;
  }
  var dragDepth = 0;
  composer.addEventListener("dragenter", function (event) {
    if (!dragsFiles(event) || state.mode === "note") return;
    dragDepth += 1;
    dropHint.hidden = false;
    composer.classList.add("dropping");
  });
  composer.addEventListener("dragover", function (event) {
    if (!dragsFiles(event) || state.mode === "note") return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  composer.addEventListener("dragleave", function () {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) { dropHint.hidden = true; composer.classList.remove("dropping"); }
  });
  composer.addEventListener("drop", function (event) {
    dragDepth = 0;
    dropHint.hidden = true;
    composer.classList.remove("dropping");
    if (!dragsFiles(event)) return;
    event.preventDefault();
    addFiles(event.dataTransfer.files);
  });

  // ----- history: attachments and mentions -----
  function attachmentNode(a) {
    if (a && typeof a === "object" && a.unavailable) {
      return el("span", "msg-file msg-file-unavailable",
        T.file_unavailable.replace("%(name)s", a.name || "").replace("%(reason)s", a.unavailable));
    }
    var id = a && typeof a === "object" ? a.file_id || a.id : a;
    if (!id) return null;
    var href = "/api/v1/files/" + encodeURIComponent(id);
    var name = (a && a.name) || "#" + id;
    var type = kindOf(a && a.content_type);
    if (type.indexOf("image/") === 0) {
      var frame = el("a", "msg-image");
      frame.href = href;
      frame.title = name;
      var image = document.createElement("img");
      image.src = href;
      image.alt = name;
      image.loading = "lazy";
      frame.appendChild(image);
      return frame;
    }
    var link = el("a", "msg-file", name);
    link.href = href;
    link.setAttribute("download", name);
    if (a && a.size) link.appendChild(el("span", "msg-file-size", " · " + humanSize(a.size)));
    return link;
  }

  function fold(text) {
    return String(text).normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }
  var WORD = /[\p{L}\p{N}_]/u;
  function foldMapped(text) {
    // The folded text and, for each folded character, where it came from in the original.
    var out = "";
    var from = [];
    for (var i = 0; i < text.length; i++) {
      var folded = fold(text[i]);
      for (var k = 0; k < folded.length; k++) { out += folded[k]; from.push(i); }
    }
    from.push(text.length);
    return { text: out, from: from };
  }
  function findMentions(text, candidates) {
    // "@Full Name" of the candidates in text, longest name first, ending at a word boundary (as
    // conversations/mentions.py does on the server): [{start, end, id}] in the original text.
    var keyed = candidates.map(function (p) { return { id: p.id, key: fold(p.name).replace(/\s+/g, " ").trim() }; })
      .filter(function (p) { return p.key; })
      .sort(function (a, b) { return b.key.length - a.key.length; });
    var mapped = foldMapped(text);
    var folded = mapped.text;
    var found = [];
    var i = folded.indexOf("@");
    while (i !== -1) {
      var next = i + 1;
      if (i === 0 || !WORD.test(folded[i - 1])) {
        for (var c = 0; c < keyed.length; c++) {
          var end = i + 1 + keyed[c].key.length;
          if (folded.slice(i + 1, end) === keyed[c].key && (end >= folded.length || !WORD.test(folded[end]))) {
            found.push({ start: mapped.from[i], end: mapped.from[end], id: keyed[c].id });
            next = end;
            break;
          }
        }
      }
      i = folded.indexOf("@", next);
    }
    return found;
  }

  function commentText(m) {
    var node = el("div", "msg-text");
    var text = m.text || "";
    var ids = (m.payload && m.payload.mentions) || [];
    var named = ids.filter(function (id) { return membersById[id]; }).map(function (id) { return { id: id, name: membersById[id] }; });
    var at = 0;
    findMentions(text, named).forEach(function (hit) {
      if (hit.start > at) node.appendChild(document.createTextNode(text.slice(at, hit.start)));
      var mark = el("span", "mention" + (hit.id === ME ? " mention-me" : ""), text.slice(hit.start, hit.end));
      mark.setAttribute("data-mention", String(hit.id));
      node.appendChild(mark);
      at = hit.end;
    });
    if (at < text.length) node.appendChild(document.createTextNode(text.slice(at)));
    return node;
  }

  // ----- composer: @mentions in internal notes -----
  var mentionMenu = $("[data-mention-menu]");
  var mentionable = (DATA.people || []).filter(function (p) { return p.active && p.id !== ME; });
  var mentionItems = [];
  var mentionIndex = 0;
  var picked = {}; // id -> name of the teammates chosen from the menu for this draft

  function mentionToken() {
    if (state.mode !== "note") return null;
    var upto = input.value.slice(0, input.selectionStart);
    var found = upto.match(/(^|[^\p{L}\p{N}_])@([^@\n]{0,40})$/u);
    if (!found || /^\s/.test(found[2])) return null;
    return { query: fold(found[2]).replace(/\s+/g, " "), start: upto.length - found[2].length - 1, end: input.selectionStart };
  }
  function hideMentions() {
    mentionMenu.hidden = true;
    mentionItems = [];
  }
  function showMentions(token) {
    var matches = mentionable.filter(function (p) {
      // By first name, last name, or the full name typed on: "ana", "lóp", "ana ma".
      return (" " + fold(p.name)).indexOf(" " + token.query) !== -1;
    }).slice(0, 8);
    if (!matches.length && token.query.indexOf(" ") !== -1) { hideMentions(); return; }
    mentionMenu.textContent = "";
    mentionItems = matches;
    mentionIndex = 0;
    if (!matches.length) mentionMenu.appendChild(el("div", "snippet-empty muted small", T.no_members));
    matches.forEach(function (p, index) {
      var item = el("button", "snippet-item mention-item" + (index === 0 ? " active" : ""));
      item.type = "button";
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", index === 0 ? "true" : "false");
      item.setAttribute("data-member", String(p.id));
      item.appendChild(el("span", "mention-name", p.name));
      item.addEventListener("mousedown", function (event) { event.preventDefault(); });
      item.addEventListener("click", function () { insertMention(p); });
      mentionMenu.appendChild(item);
    });
    mentionMenu.hidden = false;
  }
  function highlightMention(index) {
    mentionIndex = (index + mentionItems.length) % mentionItems.length;
    $all(".mention-item", mentionMenu).forEach(function (item, i) {
      item.classList.toggle("active", i === mentionIndex);
      item.setAttribute("aria-selected", i === mentionIndex ? "true" : "false");
    });
  }
  function insertMention(person) {
    var token = mentionToken();
    hideMentions();
    if (!token) return;
    var value = input.value;
    var inserted = "@" + person.name + " ";
    input.value = value.slice(0, token.start) + inserted + value.slice(token.end);
    var caret = token.start + inserted.length;
    picked[person.id] = person.name;
    input.focus();
    input.setSelectionRange(caret, caret);
  }
  function mentionIds(text) {
    // The teammates picked from the menu whose "@Name" is still in the text, then anyone else
    // written by name; the server resolves names the same way when no ids come.
    var ids = Object.keys(picked).map(Number).filter(function (id) { return text.indexOf("@" + picked[id]) !== -1; });
    var takenNames = ids.map(function (id) { return fold(picked[id]); });
    var others = mentionable.filter(function (p) { return takenNames.indexOf(fold(p.name)) === -1; });
    findMentions(text, others).forEach(function (hit) { if (ids.indexOf(hit.id) === -1) ids.push(hit.id); });
    return ids;
  }
  function mentionKeydown(event) {
    if (mentionMenu.hidden) return false;
    if (event.key === "Escape") { event.preventDefault(); hideMentions(); return true; }
    if (!mentionItems.length) return false;
    if (event.key === "ArrowDown") { event.preventDefault(); highlightMention(mentionIndex + 1); return true; }
    if (event.key === "ArrowUp") { event.preventDefault(); highlightMention(mentionIndex - 1); return true; }
    if (event.key === "Enter" || event.key === "Tab") {
      event.preventDefault();
      insertMention(mentionItems[mentionIndex]);
      return true;
    }
    return false;
  }
  input.addEventListener("input", function () {
    var token = mentionToken();
    if (token) showMentions(token); else hideMentions();
  });
  input.addEventListener("blur", function () { window.setTimeout(hideMentions, 150); });

  // ----- composer: emoji picker -----
  var EMOJI = window.TertuliaEmoji || [];
  var spanish = String(DATA.language || "").indexOf("es") === 0;
  var emojiButton = $("[data-emoji-open]");
  var emojiPanel = $("[data-emoji-panel]");
  var emojiSearch = $("[data-emoji-search]");
  var emojiTabs = $("[data-emoji-tabs]");
  var emojiGrid = $("[data-emoji-grid]");
  EMOJI.forEach(function (group) {
    group.items.forEach(function (item) { item.search = fold(item[1] + " " + item[2] + " " + item[3]); });
  });

  function emojiLabel(item) { return spanish ? item[2] : item[1]; }
  function emojiButtonFor(item) {
    var button = el("button", "emoji-item", item[0]);
    button.type = "button";
    button.title = emojiLabel(item);
    button.setAttribute("aria-label", emojiLabel(item));
    button.setAttribute("data-emoji", item[0]);
    return button;
  }
  function renderEmoji() {
    var words = fold(emojiSearch.value).split(/\s+/).filter(Boolean);
    emojiGrid.textContent = "";
    if (words.length) {
      var section = el("div", "emoji-section");
      EMOJI.forEach(function (group) {
        group.items.forEach(function (item) {
          var hit = words.every(function (w) { return item.search.indexOf(w) !== -1; });
          if (hit) section.appendChild(emojiButtonFor(item));
        });
      });
      if (!section.firstChild) emojiGrid.appendChild(el("p", "muted small emoji-empty", T.no_emoji));
      else emojiGrid.appendChild(section);
      return;
    }
    EMOJI.forEach(function (group) {
      var title = el("h3", "emoji-heading", T["emoji_" + group.key] || group.key);
      title.id = "emoji-" + group.key;
      emojiGrid.appendChild(title);
      var section = el("div", "emoji-section");
      section.setAttribute("role", "group");
      section.setAttribute("aria-labelledby", title.id);
      group.items.forEach(function (item) { section.appendChild(emojiButtonFor(item)); });
      emojiGrid.appendChild(section);
    });
  }
  EMOJI.forEach(function (group) {
    var tab = el("button", "emoji-tab", group.items[0][0]);
    tab.type = "button";
    tab.title = T["emoji_" + group.key] || group.key;
    tab.setAttribute("aria-label", tab.title);
    tab.addEventListener("click", function () {
      if (emojiSearch.value) { emojiSearch.value = ""; renderEmoji(); }
      var heading = document.getElementById("emoji-" + group.key);
      if (heading) emojiGrid.scrollTop = heading.offsetTop - emojiGrid.offsetTop;
      var first = heading && heading.nextElementSibling && heading.nextElementSibling.querySelector(".emoji-item");
      if (first) first.focus();
    });
    emojiTabs.appendChild(tab);
  });

  function openEmoji() {
    hideMenu();
    hideMentions();
    if (!emojiGrid.firstChild || emojiSearch.value) { emojiSearch.value = ""; renderEmoji(); }
    emojiPanel.hidden = false;
    emojiButton.setAttribute("aria-expanded", "true");
    emojiSearch.focus();
  }
  function closeEmoji(focusInput) {
    if (emojiPanel.hidden) return;
    emojiPanel.hidden = true;
    emojiButton.setAttribute("aria-expanded", "false");
    if (focusInput) input.focus(); else emojiButton.focus();
  }
  function insertAtCaret(text) {
    var start = input.selectionStart;
    var end = input.selectionEnd;
    var value = input.value;
    input.value = value.slice(0, start) + text + value.slice(end);
    input.focus();
    input.setSelectionRange(start + text.length, start + text.length);
  }
  emojiButton.addEventListener("click", function () {
    if (emojiPanel.hidden) openEmoji(); else closeEmoji(true);
  });
  emojiSearch.addEventListener("input", renderEmoji);
  emojiGrid.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-emoji]");
    if (!button) return;
    closeEmoji(true);
    insertAtCaret(button.getAttribute("data-emoji"));
  });
  function neighbour(current, key) {
    // Arrow keys move through the grid as it is laid out (rows wrap, sections differ in length).
    var buttons = $all(".emoji-item", emojiGrid);
    var index = buttons.indexOf(current);
    if (key === "ArrowLeft") return buttons[index - 1];
    if (key === "ArrowRight") return buttons[index + 1];
    var here = current.getBoundingClientRect();
    var down = key === "ArrowDown";
    var best = null;
    var bestScore = Infinity;
    buttons.forEach(function (b) {
      var box = b.getBoundingClientRect();
      var dy = down ? box.top - here.top : here.top - box.top;
      if (dy < 4) return;
      var score = dy * 1000 + Math.abs(box.left - here.left);
      if (score < bestScore) { best = b; bestScore = score; }
    });
    return best;
  }
  emojiPanel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); closeEmoji(false); return; }
    var onSearch = event.target === emojiSearch;
    if (onSearch && event.key === "Enter") {
      event.preventDefault();
      var first = emojiGrid.querySelector(".emoji-item");
      if (first) { closeEmoji(true); insertAtCaret(first.getAttribute("data-emoji")); }
      return;
    }
    if (onSearch && event.key === "ArrowDown") {
      event.preventDefault();
      var top = emojiGrid.querySelector(".emoji-item");
      if (top) top.focus();
      return;
    }
    if (!onSearch && event.target.classList.contains("emoji-item") && /^Arrow/.test(event.key)) {
      event.preventDefault();
      var target = neighbour(event.target, event.key);
      if (target) target.focus();
      else if (event.key === "ArrowUp") emojiSearch.focus();
    }
  });
  document.addEventListener("mousedown", function (event) {
    if (emojiPanel.hidden || emojiPanel.contains(event.target) || emojiButton.contains(event.target)) return;
    closeEmoji(true);
  });

  // ----- notifications -----
  // The person's own choices (Profile > Notifications), carried on the inbox root.
  var wantsDesktop = root.getAttribute("data-notify-desktop") !== "off";
  var wantsSound = root.getAttribute("data-notify-sound") !== "off";
  var notifyButton = $("[data-notify]");
  var canNotify = wantsDesktop && "Notification" in window;
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
    if (wantsSound) beep();
    if (canNotify && Notification.permission === "granted") {
      var row = list.querySelector('[data-conversation="' + event.conversation_id + '"] .conv-name');
      var title = T.new_message_from.replace("%(name)s", row ? row.textContent : "#" + event.contact_id);
      var note = new Notification(title, { body: (message.text || "").slice(0, 140), tag: "conversation-" + event.conversation_id });
      note.onclick = function () { window.focus(); openConversation(event.conversation_id, true); note.close(); };
    }
  }

  // A teammate @mentioned me in a note: tell me even if the conversation is not in my lists.
  function mentioned(event, isCurrent) {
    var note = event.data && event.data.message;
    if (!note || note.sender_user_id === ME || (isCurrent && !document.hidden)) return;
    var title = T.mentioned_you.replace("%(name)s", membersById[note.sender_user_id] || "?");
    var open = el("button", "flash flash-mention", title + " · " + (note.text || "").slice(0, 80));
    open.type = "button";
    open.setAttribute("data-testid", "mention-toast");
    open.addEventListener("click", function () { open.remove(); openConversation(event.conversation_id, true); });
    var box = document.getElementById("flashes");
    if (box) box.appendChild(open);
    if (wantsSound) beep();
    if (canNotify && Notification.permission === "granted") {
      var alert = new Notification(title, { body: (note.text || "").slice(0, 140), tag: "mention-" + note.id });
      alert.onclick = function () { window.focus(); openConversation(event.conversation_id, true); alert.close(); };
    }
  }

  // ----- live updates -----
  // The customer is typing (web chat sends it at most every 2 s while they type).
  var typingMark = $("[data-typing]");
  var typingWord = typingMark.textContent;
  var typingTimer = null;
  function hideTyping() {
    typingMark.hidden = true;
    if (typingTimer) window.clearTimeout(typingTimer);
    typingTimer = null;
  }
  function showTyping(who) {
    typingMark.textContent = who ? who + " · " + typingWord : typingWord; // a teammate, or the customer
    typingMark.hidden = false;
    if (typingTimer) window.clearTimeout(typingTimer);
    typingTimer = window.setTimeout(hideTyping, 5000);
  }

  var liveState = $("[data-live-state]");
  var retry = 0;
  function connect() {
    var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws?personal=1");
    // live.js (every page) keeps the person's presence and the bell from this socket's events.
    if (window.tertuliaLive) window.tertuliaLive.attach(socket);
    socket.onmessage = function (raw) {
      var event;
      try { event = JSON.parse(raw.data); } catch (e) { return; }
      if (window.tertuliaLive) window.tertuliaLive.event(event);
      if (event.type === "presence.changed") { showStatus(event.user_id, event.data && event.data.status); return; }
      if (event.type.indexOf("notification.") === 0) return;
      if (event.type === "hello") {
        // Subscribed from here on: catch up on whatever happened before (page load, or while away).
        loadList(false);
        if (retry > 0) refreshCurrent();
        retry = 0;
        liveState.hidden = true;
        root.setAttribute("data-live", "on");
        return;
      }
      var isCurrent = state.current && state.current.id === event.conversation_id;
      if (event.type === "typing") {
        var typist = event.data || {};
        if (isCurrent && typist.user_id !== ME) showTyping(typist.user_id ? membersById[typist.user_id] : null);
        return;
      }
      if (event.type === "message.created") {
        var message = event.data && event.data.message;
        if (!message) return;
        if (isCurrent) {
          if (message.direction === "incoming") { hideTyping(); refreshCurrent(); loadSuggestions(); }
          var stick = nearBottom();
          addMessage(message, false);
          if (stick) toBottom();
          if (!document.hidden) markRead();
        }
        notify(event, message);
        reloadListSoon();
      } else if (event.type === "message.updated") {
        var changed = event.data && event.data.message;
        if (isCurrent && changed && shownMessages[changed.id]) addMessage(changed, false);
      } else if (event.type === "mention.created") {
        mentioned(event, isCurrent);
      } else if (event.type === "message.status") {
        if (event.data) statusSeen[event.data.message_id] = laterStatus(statusSeen[event.data.message_id], event.data.status);
        var node = isCurrent && event.data && shownMessages[event.data.message_id];
        if (node) {
          var meta = node.querySelector(".msg-meta-text");
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
      root.setAttribute("data-live", "off");
      liveState.hidden = false;
      retry = Math.min(retry + 1, 6);
      window.setTimeout(connect, Math.min(30000, 500 * Math.pow(2, retry)) + Math.random() * 500);
    };
  }

  // ----- the reply window and templates (WhatsApp) -----
  // The server says whether the customer-service window is open and when it closes (its clock, not
  // the browser's); outside it the composer sends approved templates only.
  var windowNotice = $("[data-window-notice]");
  var picker = $("[data-template-picker]");
  var pickerOpen = $("[data-template-open]");
  var templateSelect = $("[data-template-select]");
  var templateParams = $("[data-template-params]");
  var templatePreview = $("[data-template-preview]");
  var templateError = $("[data-template-error]");
  var templateSend = $("[data-template-send]");
  var sendButton = $("[data-testid=send]", composer);
  var templates = [];
  var templatesFor = null;
  var previewTimer = null;
  var previewSeq = 0;
  var windowFormat = new Intl.DateTimeFormat(DATA.language, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });

  // The reply window of the channel the answer goes through: the conversation's, or another of the
  // contact's channels picked in the composer (whose window is known, not when it closes).
  function renderWindow(c) {
    var picked = pickedChannel(c);
    var other = picked !== null && picked.id !== c.channel_id;
    var open = other ? picked.reply_window_open : c.reply_window_open;
    var templatesOutside = !other && c.templates_outside_window === true;
    var closesAt = !other && c.reply_window_closes_at ? windowFormat.format(new Date(c.reply_window_closes_at)) : "";
    var templatesOnly = open === false && templatesOutside;
    // On the conversation's own Messenger or Instagram channel a closed window offers the tags.
    var tags = open === false && !other ? c.message_tags || [] : [];
    renderMessageTags(tags);
    windowNotice.classList.toggle("window-closed", open === false);
    if (open === false) {
      windowNotice.hidden = false;
      windowNotice.textContent = templatesOnly
        ? (closesAt ? fill(T.window_closed_templates_at, { time: closesAt }) : T.window_closed_templates)
        : tags.length ? T.window_closed_tags : T.window_closed;
    } else if (open === true && closesAt) {
      windowNotice.hidden = false;
      windowNotice.textContent = fill(T.window_open_until, { time: closesAt });
    } else {
      windowNotice.hidden = true;
    }
    pickerOpen.hidden = !templatesOutside;
    var locked = templatesOnly && state.mode !== "note";
    composer.classList.toggle("templates-only", templatesOnly);
    input.disabled = locked;
    input.placeholder = locked ? T.templates_only : input.getAttribute("data-placeholder");
    sendButton.disabled = locked;
    attachButton.disabled = locked;
    if (locked) openPicker();
    else if (!templatesOutside) closePicker();
    renderChoicesAvailability();
  }

  function closePicker() {
    picker.hidden = true;
    pickerOpen.setAttribute("aria-expanded", "false");
  }

  function openPicker() {
    if (!state.current) return;
    picker.hidden = false;
    pickerOpen.setAttribute("aria-expanded", "true");
    var id = state.current.id;
    if (templatesFor === id) return;
    templatesFor = id;
    templates = [];
    templateSelect.textContent = "";
    templateSelect.appendChild(new Option(T.template_choose, ""));
    renderParams();
    api("GET", "/conversations/" + id + "/templates", undefined, true).then(function (data) {
      if (!state.current || state.current.id !== id) return;
      templates = data.items || [];
      templates.forEach(function (t, index) {
        templateSelect.appendChild(new Option(t.name + " (" + t.language + ")", String(index)));
      });
      if (!templates.length) templateError.textContent = T.template_none;
    }).catch(function (error) {
      templatesFor = null;
      templateError.textContent = error.message;
    });
  }

  function chosenTemplate() {
    var index = templateSelect.value;
    return index === "" ? null : templates[Number(index)];
  }

  function renderParams() {
    var t = chosenTemplate();
    templateParams.textContent = "";
    templatePreview.textContent = "";
    templateError.textContent = "";
    templateSend.disabled = !t;
    if (!t) return;
    t.parameters.forEach(function (p, index) {
      var field = el("label", "template-param");
      var name = p.kind === "text" ? "{{" + p.key + "}}" : p.kind;
      field.appendChild(el("span", "template-param-name", fill(T.template_parameter, { part: p.component === "header" ? T.template_header : T.template_body, name: name })));
      var box = el("input");
      box.type = "text";
      box.setAttribute("data-param", String(index));
      box.setAttribute("data-testid", "template-param-" + p.component + "-" + p.key);
      box.placeholder = T.template_value_hint;
      box.disabled = p.kind !== "text";
      field.appendChild(box);
      templateParams.appendChild(field);
    });
    if (t.parameters.some(function (p) { return p.kind !== "text"; })) {
      templateError.textContent = T.template_media_header;
      templateSend.disabled = true;
      return;
    }
    schedulePreview();
  }

  function builtTemplate(t) {
    var parts = { header: [], body: [] };
    t.parameters.forEach(function (p, index) {
      var box = templateParams.querySelector('[data-param="' + index + '"]');
      var parameter = { type: "text", text: box ? box.value : "" };
      if (t.parameter_format === "NAMED") parameter.parameter_name = p.key;
      parts[p.component].push(parameter);
    });
    var components = [];
    ["header", "body"].forEach(function (kind) {
      if (parts[kind].length) components.push({ type: kind, parameters: parts[kind] });
    });
    return { name: t.name, language: { code: t.language }, components: components };
  }

  function schedulePreview() {
    window.clearTimeout(previewTimer);
    previewTimer = window.setTimeout(preview, 250);
  }

  function preview() {
    var t = chosenTemplate();
    if (!t || !state.current) return;
    var seq = ++previewSeq;
    var empty = t.parameters.some(function (p, index) {
      var box = templateParams.querySelector('[data-param="' + index + '"]');
      return !box || !box.value.trim();
    });
    if (empty) {
      // Until every parameter is filled in, the template's own text shows where each one goes.
      templatePreview.textContent = [t.header, t.body, t.footer].filter(Boolean).join("\n\n");
      templateError.textContent = T.template_fill_all;
      templateSend.disabled = true;
      return;
    }
    api("POST", "/conversations/" + state.current.id + "/template-preview", { template: builtTemplate(t) }, true).then(function (data) {
      if (seq !== previewSeq) return;
      templatePreview.textContent = data.text;
      templateError.textContent = "";
      templateSend.disabled = false;
    }).catch(function (error) {
      if (seq !== previewSeq) return;
      templateError.textContent = error instanceof TypeError ? T.error : error.message;
      templateSend.disabled = true;
    });
  }

  pickerOpen.addEventListener("click", function () {
    if (picker.hidden) openPicker();
    else if (!composer.classList.contains("templates-only")) closePicker();
  });
  $("[data-template-cancel]").addEventListener("click", function () {
    templateSelect.value = "";
    renderParams();
    if (!composer.classList.contains("templates-only")) closePicker();
  });
  templateSelect.addEventListener("change", renderParams);
  templateParams.addEventListener("input", schedulePreview);
  templateSend.addEventListener("click", function () {
    var t = chosenTemplate();
    if (!t || !state.current) return;
    var id = state.current.id;
    templateSend.disabled = true;
    api("POST", "/conversations/" + id + "/messages", { type: "whatsapp_template", template: builtTemplate(t) }, true).then(function (m) {
      templateSelect.value = "";
      renderParams();
      if (state.current && state.current.id === id) {
        addMessage(m, false);
        toBottom();
      }
    }).catch(function (error) {
      templateError.textContent = error instanceof TypeError ? T.error : error.message;
      templateSend.disabled = false;
    });
  });

  document.addEventListener("visibilitychange", function () { if (!document.hidden) markRead(); });

  selectView();
  loadList(false);
  connect();
  if (DATA.conversation_id) openConversation(DATA.conversation_id, false);
})();
