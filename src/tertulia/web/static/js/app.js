/* Tertulia web app behaviour. Loaded as a file (the Content-Security-Policy forbids inline script). */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // Every htmx request carries the session's CSRF token; the server rejects unsafe requests without it.
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  // A thin progress bar at the top while any htmx request is in flight.
  var inFlight = 0;
  document.addEventListener("htmx:beforeRequest", function () {
    inFlight += 1;
    document.body.classList.add("is-loading");
  });
  document.addEventListener("htmx:afterRequest", function () {
    inFlight = Math.max(0, inFlight - 1);
    if (inFlight === 0) document.body.classList.remove("is-loading");
  });

  function toast(message) {
    var box = document.getElementById("flashes");
    if (!box || !message) return;
    var div = document.createElement("div");
    div.className = "flash flash-error";
    div.setAttribute("role", "alert");
    div.textContent = message;
    box.appendChild(div);
    window.setTimeout(function () { div.remove(); }, 6000);
  }
  document.addEventListener("htmx:responseError", function () {
    toast(document.body.getAttribute("data-error-text"));
  });
  document.addEventListener("htmx:sendError", function () {
    toast(document.body.getAttribute("data-offline-text"));
  });

  function isTyping(target) {
    return target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName);
  }

  document.addEventListener("keydown", function (event) {
    // "/" jumps to the page's search box, as in most web apps.
    if (event.key === "/" && !event.ctrlKey && !event.metaKey && !event.altKey && !isTyping(event.target)) {
      var search = document.querySelector("[data-search]");
      if (search) {
        event.preventDefault();
        search.focus();
        search.select();
      }
    }
    // Escape leaves an in-place edit without saving.
    if (event.key === "Escape" && event.target.closest) {
      var editing = event.target.closest("form.prop.editing");
      var cancel = editing && editing.querySelector("[data-cancel]");
      if (cancel) {
        event.preventDefault();
        cancel.click();
      }
    }
  });

  // Selection in the contacts list and the bulk-action bar.
  function updateSelection() {
    var boxes = Array.prototype.slice.call(document.querySelectorAll("[data-select]"));
    var checked = boxes.filter(function (box) { return box.checked; }).length;
    document.querySelectorAll("[data-selected-count]").forEach(function (el) { el.textContent = String(checked); });
    document.querySelectorAll("[data-bulkbar]").forEach(function (bar) { bar.classList.toggle("visible", checked > 0); });
    var all = document.querySelector("[data-select-all]");
    if (all) {
      all.checked = checked > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
    document.querySelectorAll("[data-row]").forEach(function (row) {
      var box = row.querySelector("[data-select]");
      row.classList.toggle("selected", Boolean(box && box.checked));
    });
  }

  function showBulkInputs(select) {
    var action = select.value;
    document.querySelectorAll("[data-bulk-for]").forEach(function (el) {
      el.hidden = el.getAttribute("data-bulk-for").split(" ").indexOf(action) === -1;
    });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("[data-select-all]")) {
      document.querySelectorAll("[data-select]").forEach(function (box) { box.checked = target.checked; });
    }
    if (target.matches("[data-select], [data-select-all]")) updateSelection();
    if (target.matches("[data-bulk-action]")) showBulkInputs(target);
  });
  document.addEventListener("htmx:afterSwap", updateSelection);
  document.addEventListener("DOMContentLoaded", function () {
    updateSelection();
    var action = document.querySelector("[data-bulk-action]");
    if (action) showBulkInputs(action);
  });

  // The filter panel's drawer, the copy button of a new API token, and the options box of a
  // custom field that only list fields use.
  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target : null;
    if (!target) return;
    var close = target.closest("[data-close-drawer]");
    if (close) {
      var host = document.getElementById("filter-drawer");
      if (host) host.innerHTML = "";
    }
    // A variable button (the broadcast editor): its text goes into the field at the cursor, which
    // then waits `data-cursor-back` characters before its end (inside the fallback's quotes).
    var insert = target.closest("[data-insert]");
    if (insert) {
      var field = document.querySelector(insert.getAttribute("data-insert-into"));
      if (field) {
        var text = insert.getAttribute("data-insert");
        var start = field.selectionStart || 0;
        var end = field.selectionEnd || 0;
        field.value = field.value.slice(0, start) + text + field.value.slice(end);
        field.focus();
        var back = parseInt(insert.getAttribute("data-cursor-back") || "0", 10);
        field.selectionStart = field.selectionEnd = start + text.length - back;
      }
    }
    var copy = target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      if (source) {
        source.select();
        var done = function () { copy.textContent = copy.getAttribute("data-copied-text") || copy.textContent; };
        if (navigator.clipboard) navigator.clipboard.writeText(source.value).then(done, done);
        else { document.execCommand("copy"); done(); }
      }
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      var host = document.getElementById("filter-drawer");
      if (host && host.firstElementChild && !isTyping(event.target)) host.innerHTML = "";
    }
  });
  function showOptions() {
    var type = document.querySelector("[data-field-type]");
    if (!type) return;
    document.querySelectorAll("[data-options-for]").forEach(function (el) {
      el.hidden = el.getAttribute("data-options-for") !== type.value;
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("[data-field-type]")) showOptions();
  });
  document.addEventListener("DOMContentLoaded", showOptions);

  // The broadcast editor's header fields (the header's parameter, its file's link, a document's
  // name, a place's four fields): each shown while the typed template (name and language, spelt as
  // `name|language` in its `data-template-header`) has a header that takes it, or one of its fields
  // holds a value or a problem.
  function showTemplateHeader() {
    var name = document.getElementById("f-template_name");
    if (!name) return;
    var language = document.getElementById("f-template_language");
    var code = (language && language.value.trim()) || "es";
    var key = name.value.trim() + "|" + code.replace(/-/g, "_").toLowerCase();
    document.querySelectorAll("[data-template-header]").forEach(function (box) {
      var wanted = (box.getAttribute("data-template-header") || "").split(" ");
      var filled = Array.prototype.some.call(box.querySelectorAll("input"), function (input) {
        return input.value.trim() !== "";
      });
      box.hidden = !(wanted.indexOf(key) !== -1 || filled || box.querySelector(".field-error"));
    });
  }
  document.addEventListener("input", function (event) {
    var id = event.target && event.target.id;
    if (id === "f-template_name" || id === "f-template_language") showTemplateHeader();
  });
  document.addEventListener("DOMContentLoaded", showTemplateHeader);

  // Alpine components (the CSP build evaluates no inline expressions; behaviour lives here).
  document.addEventListener("alpine:init", function () {
    window.Alpine.data("shell", function () {
      return {
        open: false,
        toggle: function () { this.open = !this.open; },
        close: function () { this.open = false; },
        get sidebarClass() { return this.open ? "open" : ""; },
        get scrimClass() { return this.open ? "visible" : ""; }
      };
    });
  });
})();
