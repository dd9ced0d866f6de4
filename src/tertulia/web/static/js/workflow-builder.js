/* The workflow builder: the trigger on top, the steps as cards flowing down (a branch's branches
   side by side), a side panel that configures the selected card, zoom and pan.

   It edits the same JSON definition as the "Advanced: JSON" textarea and writes it there before
   the form is posted, so saving, the server's checks and its errors stay those of the JSON editor.
   The panel's forms are drawn from the JSON schemas of the language's configs (in the
   #workflow-builder-data block, with the words of the page's language): a step type added to the
   language gets a form with no change here. Loaded as a file: the page's CSP forbids inline script,
   and styles are set through the CSSOM only. */
(function () {
  "use strict";

  const dataBlock = document.getElementById("workflow-builder-data");
  const form = document.querySelector("[data-builder-form]");
  if (!dataBlock || !form) return;
  const DATA = JSON.parse(dataBlock.textContent);
  const UI = DATA.labels.ui;
  const FIELDS = DATA.labels.fields;
  const VALUES = DATA.labels.values;
  const OUTCOME_WORDS = DATA.labels.outcomes;
  const textarea = form.querySelector("textarea[name=definition]");
  const root = form.querySelector("[data-builder]");
  const jsonBox = form.querySelector("[data-json-editor]");
  const toggle = document.querySelector("[data-builder-toggle]");
  const ZOOM_STEP = 1.2;
  const PAN_STEP = 40;

  let definition = null;
  // Errors by the object they belong to (a step, the trigger), keyed by the path inside it, so
  // they follow their step when steps move; the others are shown above the canvas.
  let errorsOf = new Map();
  let generalErrors = {};
  let selected = null;
  const view = { scale: 1, x: 0, y: 0 };
  const keys = new WeakMap();
  let nextKey = 1;

  // ----- helpers ---------------------------------------------------------------------------------

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([name, value]) {
      if (value === null || value === undefined || value === false) return;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    });
    (children || []).forEach(function (child) {
      if (child) node.append(child);
    });
    return node;
  }

  function keyOf(object) {
    if (!keys.has(object)) keys.set(object, nextKey++);
    return keys.get(object);
  }

  function humanize(name) {
    const text = String(name).replace(/_/g, " ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  // A field's label: its own, or the one for "parent.name" (header_media.id is no step id), or the
  // one for its name.
  function fieldLabel(name, schema, path) {
    const parts = (path || "").replace(/\[\d+\]/g, "").split(".");
    const parent = parts.length > 1 ? FIELDS[parts[parts.length - 2] + "." + name] : null;
    return (schema && schema["x-label"]) || parent || FIELDS[name] || (schema && schema.title) || humanize(name);
  }

  function valueLabel(value) {
    return VALUES[value] || humanize(value);
  }

  function stepLabel(type) {
    const known = DATA.steps[type];
    return (known && known.label) || humanize(type);
  }

  function triggerLabel(type) {
    const known = DATA.triggers[type];
    return (known && known.label) || humanize(type);
  }

  function byLabel(types, label) {
    return Object.keys(types).sort(function (a, b) { return label(a).localeCompare(label(b)); });
  }

  function announce(message) {
    const live = root.querySelector("[data-live]");
    if (live) live.textContent = message;
  }

  function sync() {
    if (definition) textarea.value = JSON.stringify(definition, null, 2);
  }

  function steps() {
    return definition.steps;
  }

  function stepTitle(step) {
    return step.name || step.id;
  }

  // ----- errors ----------------------------------------------------------------------------------

  function placeErrors(raw) {
    errorsOf = new Map();
    generalErrors = {};
    Object.entries(raw || {}).forEach(function ([path, message]) {
      const match = /^steps\[(\d+)\](.*)$/.exec(path);
      let owner = null;
      let inner = "";
      if (match && steps()[Number(match[1])]) {
        owner = steps()[Number(match[1])];
        inner = match[2];
      } else if (path === "trigger" || path.startsWith("trigger.")) {
        owner = definition.trigger;
        inner = path.slice("trigger".length);
      }
      if (!owner) {
        generalErrors[path] = message;
        return;
      }
      if (!errorsOf.has(owner)) errorsOf.set(owner, {});
      errorsOf.get(owner)[inner.replace(/^\./, "")] = message;
    });
  }

  function ownErrors(owner) {
    return errorsOf.get(owner) || {};
  }

  function clearError(owner, path) {
    const found = errorsOf.get(owner);
    if (!found) return;
    Object.keys(found).forEach(function (key) {
      if (key === path || key.startsWith(path + ".") || key.startsWith(path + "[")) delete found[key];
    });
  }

  // ----- schemas ---------------------------------------------------------------------------------

  function resolve(schema, defs) {
    if (schema && schema.$ref) return defs[schema.$ref.split("/").pop()] || {};
    return schema || {};
  }

  // What form control a schema needs: a small description the renderer switches on.
  function kindOf(raw, defs, name) {
    const schema = resolve(raw, defs);
    if (schema.anyOf) {
      const members = schema.anyOf.map(function (member) { return resolve(member, defs); });
      const present = members.filter(function (member) { return member.type !== "null"; });
      const nullable = present.length < members.length;
      if (present.length === 1) {
        const single = kindOf(present[0], defs, name);
        return Object.assign({}, single, { nullable: true, schema: Object.assign({}, present[0], { title: schema.title }) });
      }
      const consts = present.filter(function (m) { return m.const !== undefined; }).map(function (m) { return m.const; });
      const other = present.find(function (m) { return m.const === undefined; }) || {};
      return { kind: "union", consts: consts, other: other, nullable: nullable, schema: schema };
    }
    if (schema.const !== undefined) return { kind: "const", schema: schema };
    if (schema.enum) return { kind: "enum", schema: schema };
    if ((schema["x-step"] || name === "next" || name === "target") && schema.type === "string") return { kind: "step", schema: schema };
    if (schema.type === "string") return { kind: "string", schema: schema };
    if (schema.type === "integer" || schema.type === "number") return { kind: "number", schema: schema };
    if (schema.type === "boolean") return { kind: "boolean", schema: schema };
    if (schema.type === "array") {
      const items = resolve(schema.items, defs);
      if (items.type === "object" && items.properties) return { kind: "objects", items: items, schema: schema };
      if (items.enum) return { kind: "checks", items: items, schema: schema };
      return { kind: "list", items: items, schema: schema };
    }
    if (schema.type === "object" && schema.properties) return { kind: "object", schema: schema };
    return { kind: "json", schema: schema };
  }

  function defaultFor(raw, defs, name) {
    const described = kindOf(raw, defs, name);
    const schema = described.schema;
    if (schema.default !== undefined && described.kind !== "object") return JSON.parse(JSON.stringify(schema.default));
    switch (described.kind) {
      case "enum": return schema.enum[0];
      case "const": return schema.const;
      case "union": return described.consts.length ? described.consts[0] : null;
      case "number": return schema.minimum !== undefined ? schema.minimum : (schema.type === "integer" ? 1 : 0);
      case "boolean": return false;
      case "object": return defaultObject(schema, defs);
      case "objects": {
        const count = schema.minItems || 0;
        const made = [];
        for (let i = 0; i < count; i++) made.push(defaultObject(described.items, defs));
        return made;
      }
      case "list": case "checks": return [];
      case "json": return name === "conditions" ? { groups: [] } : {};
      default: return "";
    }
  }

  function defaultObject(schema, defs) {
    const made = {};
    (schema.required || []).forEach(function (name) {
      made[name] = defaultFor(schema.properties[name], defs, name);
    });
    return made;
  }

  // ----- the definition's edits ------------------------------------------------------------------

  function uniqueId(base) {
    const taken = new Set(steps().map(function (step) { return step.id; }));
    const stem = base.replace(/_/g, "-").slice(0, 56);
    let n = 1;
    while (taken.has(stem + "-" + n)) n++;
    return stem + "-" + n;
  }

  // A step is "chained" when it goes on to the step below it, or ends the run as the last one:
  // moving and inserting keep such links pointing at whatever is below.
  function chained(list) {
    return list.map(function (step, index) {
      const below = list[index + 1];
      return below ? step.next === below.id : !step.next;
    });
  }

  function relink(list, wasChained) {
    list.forEach(function (step, index) {
      if (!wasChained.get(step)) return;
      const below = list[index + 1];
      if (below) step.next = below.id;
      else delete step.next;
    });
  }

  function reorder(mutate) {
    const list = steps();
    const flags = chained(list);
    const wasChained = new Map(list.map(function (step, index) { return [step, flags[index]]; }));
    mutate(list, wasChained);
    relink(list, wasChained);
  }

  function addStep(type) {
    const schema = DATA.steps[type].schema;
    const step = { id: uniqueId(type), type: type };
    const config = defaultObject(schema, schema.$defs || {});
    if (Object.keys(config).length || DATA.no_config.indexOf(type) < 0) step.config = config;
    const at = selected && selected !== definition.trigger ? steps().indexOf(selected) + 1 : steps().length;
    reorder(function (list, wasChained) {
      list.splice(at, 0, step);
      wasChained.set(step, true);
    });
    selected = step;
    announce(UI.step_added + ": " + stepTitle(step));
    changed({ panel: true, focus: [step, "select"] });
  }

  function duplicate(step) {
    const copy = JSON.parse(JSON.stringify(step));
    copy.id = uniqueId(step.id.replace(/-\d+$/, ""));
    const at = steps().indexOf(step) + 1;
    reorder(function (list, wasChained) {
      list.splice(at, 0, copy);
      wasChained.set(copy, wasChained.get(step));
    });
    selected = copy;
    announce(UI.step_added + ": " + stepTitle(copy));
    changed({ panel: true, focus: [copy, "select"] });
  }

  function move(step, by) {
    const from = steps().indexOf(step);
    const to = from + by;
    if (to < 0 || to >= steps().length) return;
    reorder(function (list) {
      list.splice(from, 1);
      list.splice(to, 0, step);
    });
    changed({ focus: [step, by < 0 ? "up" : "down"] });
  }

  function remove(step) {
    const index = steps().indexOf(step);
    reorder(function (list) { list.splice(index, 1); });
    forEachLink(function (holder, key) {
      if (holder[key] === step.id) delete holder[key];
    });
    if (selected === step) selected = null;
    announce(UI.step_deleted + ": " + stepTitle(step));
    const neighbour = steps()[Math.min(index, steps().length - 1)];
    changed({ panel: true, focus: neighbour ? [neighbour, "select"] : null });
  }

  // Every place a step id is referenced: next, outcomes, a branch's next, a jump's target.
  function forEachLink(visit) {
    steps().forEach(function (step) {
      visit(step, "next");
      Object.keys(step.on || {}).forEach(function (outcome) { visit(step.on, outcome); });
      const config = step.config || {};
      (Array.isArray(config.branches) ? config.branches : []).forEach(function (branch) { visit(branch, "next"); });
      if (step.type === "jump_to") visit(config, "target");
    });
  }

  function renameStep(step, newId) {
    const oldId = step.id;
    step.id = newId;
    const shared = steps().some(function (other) { return other !== step && other.id === oldId; });
    if (!oldId || oldId === newId || shared) return;
    forEachLink(function (holder, key) {
      if (holder !== step && holder[key] === oldId) holder[key] = newId;
      if (holder === step && key === "next" && holder[key] === oldId) holder[key] = newId;
    });
  }

  // ----- the canvas ------------------------------------------------------------------------------

  function button(label, action, object, extra) {
    return el("button", Object.assign({
      type: "button",
      class: "wfb-icon",
      "data-action": action,
      "data-key": keyOf(object),
      "aria-label": label,
      title: label,
    }, extra || {}));
  }

  function errorNote(owner) {
    const found = Object.values(ownErrors(owner));
    if (!found.length) return null;
    return el("p", { class: "wfb-card-error", "data-testid": "card-error", text: found.length > 1 ? found[0] + " (+" + (found.length - 1) + ")" : found[0] });
  }

  function summaryOf(config) {
    if (!config) return "";
    if (typeof config.text === "string") return config.text;
    if (config.duration && config.duration.amount) return config.duration.amount + " " + valueLabel(config.duration.unit);
    if (Array.isArray(config.tags)) return config.tags.join(", ");
    if (typeof config.url === "string") return config.url;
    if (typeof config.field === "string") return config.field;
    return "";
  }

  function triggerCard() {
    const trigger = definition.trigger;
    const active = selected === trigger;
    const card = el("div", {
      class: "wfb-card wfb-trigger" + (active ? " is-selected" : "") + (Object.keys(ownErrors(trigger)).length ? " has-errors" : ""),
      "data-testid": "trigger-card",
    }, [
      el("button", {
        type: "button",
        class: "wfb-card-title",
        "data-action": "select",
        "data-key": keyOf(trigger),
        "aria-pressed": active ? "true" : "false",
        "aria-label": UI.select + ": " + UI.trigger + " · " + triggerLabel(trigger.type),
      }, [el("span", { class: "wfb-kind", text: UI.trigger }), el("span", { class: "wfb-name", text: triggerLabel(trigger.type) })]),
      errorNote(trigger),
    ]);
    return card;
  }

  // Where a step's paths go, as columns under its card: a branch's branches and else, or the next
  // step and the other outcomes (failure, invalid, timeout) once one of them is set.
  function forkOf(step) {
    const config = step.config || {};
    const columns = [];
    const column = function (name, goes, extra) {
      const kind = extra === "wfb-else" ? "else" : extra === "wfb-outcome" ? "outcome" : step.type === "branch" ? "branch" : "next";
      return el("div", { class: "wfb-fork-column" + (extra ? " " + extra : ""), "data-testid": "branch-column", "data-link-kind": kind, "data-link-from": step.id }, [
        el("div", { class: "wfb-fork-box" }, [
          el("span", { class: "wfb-column-name", text: name }),
          goesTo(goes),
        ]),
      ]);
    };
    if (step.type === "branch" && Array.isArray(config.branches)) {
      config.branches.forEach(function (branch, b) {
        columns.push(column(branch.name || UI.item + " " + (b + 1), branch.next));
      });
      columns.push(column(UI.else, step.next, "wfb-else"));
    } else {
      const outcomes = (DATA.outcomes[step.type] || []).filter(function (outcome) { return (step.on || {})[outcome]; });
      if (!outcomes.length) return null;
      columns.push(column(FIELDS.next, step.next));
      outcomes.forEach(function (outcome) {
        columns.push(column(OUTCOME_WORDS[outcome] || humanize(outcome), step.on[outcome], "wfb-outcome"));
      });
    }
    return el("div", { class: "wfb-fork", "data-testid": "branch-fork", "data-step-id": step.id, role: "group", "aria-label": UI.goes_to + ": " + stepTitle(step) }, columns);
  }

  // A path's end: the step it goes to (a button that selects it) or the end of the run.
  function goesTo(id) {
    if (!id) return el("span", { class: "wfb-target wfb-end", text: UI.ends });
    const found = steps().find(function (step) { return step.id === id; });
    if (!found) return el("span", { class: "wfb-target wfb-missing", text: "→ " + id + " (" + UI.not_found + ")" });
    return el("button", {
      type: "button",
      class: "wfb-target wfb-goto",
      "data-action": "goto",
      "data-key": keyOf(found),
      "data-target": found.id,
      "aria-label": UI.goes_to + ": " + stepTitle(found),
      text: "→ " + stepTitle(found),
    });
  }

  function stepCard(step, index) {
    const active = selected === step;
    const label = stepTitle(step);
    const config = step.config || {};
    const summary = summaryOf(config);
    return el("div", {
      class: "wfb-card" + (active ? " is-selected" : "") + (Object.keys(ownErrors(step)).length ? " has-errors" : ""),
      "data-testid": "step-card",
      "data-step-id": step.id,
    }, [
      el("button", {
        type: "button",
        class: "wfb-card-title",
        "data-action": "select",
        "data-key": keyOf(step),
        "aria-pressed": active ? "true" : "false",
        "aria-label": UI.select + ": " + label + " · " + stepLabel(step.type),
      }, [
        el("span", { class: "wfb-kind", text: (index === 0 ? UI.start + " · " : "") + stepLabel(step.type) }),
        el("span", { class: "wfb-name", text: label }),
        summary ? el("span", { class: "wfb-summary", text: summary }) : null,
      ]),
      step.type === "jump_to" ? el("div", { class: "wfb-card-link", "data-link-kind": "jump", "data-link-from": step.id }, [
        el("span", { class: "wfb-column-name", text: FIELDS.target }),
        goesTo(config.target),
      ]) : null,
      el("div", { class: "wfb-tools" }, [
        button(UI.move_up + ": " + label, "up", step, { disabled: index === 0 }),
        button(UI.move_down + ": " + label, "down", step, { disabled: index === steps().length - 1 }),
        button(UI.duplicate + ": " + label, "duplicate", step),
        button(UI.delete + ": " + label, "delete", step, { class: "wfb-icon danger" }),
      ]),
      errorNote(step),
    ]);
  }

  function connector(step, index, forked) {
    const below = steps()[index + 1];
    if (forked) return el("div", { class: "wfb-gap" });
    if (below && step.next === below.id) return el("div", { class: "wfb-arrow", "aria-hidden": "true" });
    return el("div", { class: "wfb-gap" }, [el("span", { class: "wfb-jump", "data-link-kind": "next", "data-link-from": step.id }, [goesTo(step.next)])]);
  }

  function drawCanvas() {
    const canvas = root.querySelector("[data-canvas]");
    const flow = el("div", { class: "wfb-flow" }, [triggerCard(), el("div", { class: "wfb-arrow", "aria-hidden": "true" })]);
    steps().forEach(function (step, index) {
      const fork = forkOf(step);
      flow.append(stepCard(step, index));
      if (fork) flow.append(fork);
      if (index < steps().length - 1 || fork || step.next) flow.append(connector(step, index, Boolean(fork)));
    });
    canvas.replaceChildren(el("div", { class: "wfb-links-host", "data-links": true }), flow);
    const general = root.querySelector("[data-general-errors]");
    const entries = Object.entries(generalErrors);
    general.replaceChildren.apply(general, entries.map(function ([path, message]) {
      return el("li", { "data-testid": "builder-error" }, [el("code", { text: path }), document.createTextNode(": " + message)]);
    }));
    general.hidden = !entries.length;
    applyView();
    drawLinks();
  }

  // ----- connectors ------------------------------------------------------------------------------

  // A line from every path that goes elsewhere (a branch, the else, an outcome, a "→ step" chip, a
  // jump's target) to the card it goes to. Decoration only: the "→ step" buttons stay the
  // accessible way. Drawn in the canvas's own coordinates, inside the canvas, so panning, zooming
  // and scrolling move the lines with the cards; a change of layout (an edit, a resize) redraws them.
  const SVG = "http://www.w3.org/2000/svg";
  const LANE_GAP = 14;
  const ARRIVAL_GAP = 8;

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attrs).forEach(function ([name, value]) { node.setAttribute(name, String(value)); });
    return node;
  }

  function boxIn(canvasBox, node) {
    const box = node.getBoundingClientRect();
    const left = (box.left - canvasBox.left) / view.scale;
    const top = (box.top - canvasBox.top) / view.scale;
    return { left: left, top: top, right: left + box.width / view.scale, bottom: top + box.height / view.scale, width: box.width / view.scale, height: box.height / view.scale };
  }

  function round(value) {
    return Math.round(value * 10) / 10;
  }

  function pathOf(points) {
    return points.map(function (point, index) { return (index ? "L" : "M") + round(point[0]) + " " + round(point[1]); }).join(" ");
  }

  function drawLinks() {
    const canvas = root.querySelector("[data-canvas]");
    const host = canvas && canvas.querySelector("[data-links]");
    if (!host || root.hidden) return;
    const canvasBox = canvas.getBoundingClientRect();
    const flow = canvas.querySelector(".wfb-flow");
    const cards = Array.from(flow.children);
    const flowRight = cards.reduce(function (right, node) { return Math.max(right, boxIn(canvasBox, node).right); }, 0);
    const layer = svg("svg", { class: "wfb-links", "aria-hidden": "true", focusable: "false", "data-testid": "builder-links" });
    const marker = svg("marker", { id: "wfb-link-head", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0 0 L10 5 L0 10 z", class: "wfb-link-head" }));
    const defs = svg("defs", {});
    defs.append(marker);
    layer.append(defs);
    const arrivals = new Map();
    let lanes = 0;
    let width = flowRight;
    let height = boxIn(canvasBox, flow).bottom;
    flow.querySelectorAll("[data-action=goto][data-target]").forEach(function (goto) {
      const targetId = goto.getAttribute("data-target");
      const card = flow.querySelector('[data-testid=step-card][data-step-id="' + CSS.escape(targetId) + '"]');
      const holder = goto.closest("[data-link-from]");
      if (!card || !holder) return;
      const kind = holder.getAttribute("data-link-kind");
      const sourceCard = goto.closest(".wfb-card");
      const source = sourceCard || holder.querySelector(".wfb-fork-box") || holder;
      const from = boxIn(canvasBox, source);
      const to = boxIn(canvasBox, card);
      const column = holder.classList.contains("wfb-fork-column") ? holder : null;
      const centre = (from.left + from.right) / 2;
      let points;
      // A path of a fork whose target is the card just below it, straight underneath: a plain drop.
      const fork = column ? column.parentElement : null;
      const below = fork && fork.nextElementSibling ? fork.nextElementSibling.nextElementSibling : null;
      if (fork && below === card && centre > to.left + 12 && centre < to.right - 12) {
        points = [[centre, from.bottom], [centre, to.top]];
      } else {
        const lane = flowRight + LANE_GAP * (lanes + 1);
        lanes += 1;
        const arrived = arrivals.get(card) || 0;
        arrivals.set(card, arrived + 1);
        const endY = Math.min(to.top + 16 + ARRIVAL_GAP * arrived, to.bottom - 4);
        if (column) {
          // Down from the column into the gap under its fork, then out to its lane.
          const index = Array.prototype.indexOf.call(fork.children, column);
          const drop = boxIn(canvasBox, fork).bottom + 6 + 4 * (index % 5);
          points = [[centre, from.bottom], [centre, drop], [lane, drop], [lane, endY], [to.right, endY]];
        } else {
          const startY = sourceCard ? (boxIn(canvasBox, goto).top + boxIn(canvasBox, goto).bottom) / 2 : (from.top + from.bottom) / 2;
          points = [[from.right, startY], [lane, startY], [lane, endY], [to.right, endY]];
        }
        width = Math.max(width, lane + LANE_GAP);
      }
      height = Math.max(height, to.bottom, from.bottom + 40);
      layer.append(svg("path", {
        d: pathOf(points),
        class: "wfb-link wfb-link-" + kind,
        "marker-end": "url(#wfb-link-head)",
        "data-testid": "builder-link",
        "data-kind": kind,
        "data-from": holder.getAttribute("data-link-from"),
        "data-to": targetId,
      }));
    });
    layer.setAttribute("width", String(Math.ceil(width + LANE_GAP)));
    layer.setAttribute("height", String(Math.ceil(height)));
    host.replaceChildren(layer);
  }

  let linksPending = false;

  function scheduleLinks() {
    if (linksPending) return;
    linksPending = true;
    window.requestAnimationFrame(function () {
      linksPending = false;
      drawLinks();
    });
  }

  function applyView() {
    const canvas = root.querySelector("[data-canvas]");
    canvas.style.transform = "translate(" + view.x + "px, " + view.y + "px) scale(" + view.scale + ")";
    const level = root.querySelector("[data-zoom-level]");
    if (level) level.textContent = Math.round(view.scale * 100) + "%";
  }

  // Zooms around a point of the viewport (the pointer, else its centre), which stays where it is.
  function zoom(factor, point) {
    if (factor === 0) {
      view.scale = 1;
      view.x = 0;
      view.y = 0;
    } else {
      const viewport = root.querySelector(".wfb-viewport");
      const at = point || { x: viewport.clientWidth / 2, y: viewport.clientHeight / 2 };
      const scale = Math.min(2, Math.max(0.3, view.scale * factor));
      view.x = at.x - (at.x - view.x) * (scale / view.scale);
      view.y = at.y - (at.y - view.y) * (scale / view.scale);
      view.scale = scale;
    }
    applyView();
  }

  // Pans so that a card out of sight comes into the viewport.
  function reveal(node) {
    const viewport = root.querySelector(".wfb-viewport");
    const box = viewport.getBoundingClientRect();
    const card = node.getBoundingClientRect();
    let dx = 0;
    let dy = 0;
    if (card.top < box.top || card.bottom > box.bottom) dy = box.top + box.height / 3 - card.top;
    if (card.left < box.left || card.right > box.right) dx = box.left + box.width / 2 - (card.left + card.width / 2);
    if (dx || dy) pan(dx, dy);
  }

  function pan(dx, dy) {
    view.x += dx;
    view.y += dy;
    applyView();
  }

  // ----- the side panel --------------------------------------------------------------------------

  let fieldCount = 0;

  function fieldId() {
    fieldCount += 1;
    return "wfb-field-" + fieldCount;
  }

  // `slot` reads and writes one value: {get, set(value | undefined to drop it)}.
  function slotIn(container, name) {
    return {
      get: function () { const found = container(false); return found ? found[name] : undefined; },
      set: function (value) {
        const found = container(true);
        if (value === undefined) delete found[name];
        else found[name] = value;
      },
    };
  }

  // The workspace's channels, users, fields, ... for a field of this name (or "parent.name", for a
  // name that means different things in different places, like save_to.name).
  function choicesFor(name, path) {
    const parts = path.replace(/\[\d+\]/g, "").split(".");
    const parent = parts.length > 1 ? parts[parts.length - 2] + "." + name : null;
    return (parent && DATA.choices[parent]) || DATA.choices[name] || null;
  }

  // A template's header file (header_media) is asked for only when the chosen template's header is
  // an image, a video or a document, and its place (header_location) when it is a location; one
  // already given (or refused) stays shown so it can be cleared.
  function mediaFollowsTemplate(body, path, objectSlot) {
    const name = body.querySelector(':scope > [data-field="' + path + '.name"] input');
    if (!name) return;
    const kinds = DATA.media_templates || {};
    const headers = [
      ["header_media", function (kind) { return ["image", "video", "document"].indexOf(kind) >= 0; }],
      ["header_location", function (kind) { return kind === "location"; }],
    ];
    headers.forEach(function ([field, takes]) {
      const box = body.querySelector(':scope > [data-field="' + path + "." + field + '"]');
      if (!box) return;
      const show = function () {
        const current = objectSlot(false);
        const given = Boolean(current) && current[field] !== undefined && current[field] !== null;
        const wanted = Object.prototype.hasOwnProperty.call(kinds, name.value) && takes(kinds[name.value]);
        box.hidden = !(wanted || given || box.classList.contains("has-error"));
      };
      name.addEventListener("input", show);
      show();
    });
  }

  function choiceLabel(choices, value) {
    const found = choices.find(function (choice) { return choice.value === value; });
    return found ? found.label : null;
  }

  // A select of the choices; a value the workspace no longer has stays, marked, so it is not lost.
  function choiceOptions(select, choices, value, prefix) {
    choices.forEach(function (choice) {
      select.append(el("option", { value: (prefix || "") + choice.value, text: choice.label, selected: value === choice.value }));
    });
    if (value !== undefined && value !== null && value !== "" && choiceLabel(choices, value) === null) {
      select.append(el("option", { value: (prefix || "") + value, text: value + " (" + UI.not_found + ")", selected: true }));
    }
  }

  function renderField(ctx, name, raw, slot, path, required) {
    const described = kindOf(raw, ctx.defs, name);
    const choices = choicesFor(name, path);
    const schema = described.schema;
    const id = fieldId();
    const errorId = id + "-error";
    const messages = [];
    const errors = ownErrors(ctx.owner);
    Object.keys(errors).forEach(function (key) {
      const leaf = ["object", "objects"].indexOf(described.kind) < 0;
      if (key === path || (leaf && (key.startsWith(path + ".") || key.startsWith(path + "[")))) {
        messages.push(errors[key]);
        ctx.shown.add(key);
      }
    });
    const label = fieldLabel(name, schema, path);
    const wrapper = el("div", { class: "field wfb-field" + (messages.length ? " has-error" : ""), "data-field": path });
    const errorBox = el("p", { class: "field-error", id: errorId, role: "alert", "data-testid": "field-error", text: messages.join(" · ") });

    function changed(value) {
      slot.set(value);
      clearError(ctx.owner, path);
      errorBox.textContent = "";
      wrapper.classList.remove("has-error");
      ctx.onChange();
    }

    function describe(control) {
      control.id = id;
      if (messages.length) {
        control.setAttribute("aria-invalid", "true");
        control.setAttribute("aria-describedby", errorId);
      }
      return control;
    }

    const value = slot.get();
    switch (described.kind) {
      case "enum": {
        const select = describe(el("select", { "data-path": path }));
        if (described.nullable || !required) select.append(el("option", { value: "", text: "—" }));
        schema.enum.forEach(function (option) {
          select.append(el("option", { value: option, text: valueLabel(option), selected: value === option }));
        });
        select.addEventListener("change", function () {
          changed(select.value === "" ? (described.nullable ? null : undefined) : select.value);
          if (ctx.redrawOnChange) ctx.redraw();
        });
        wrapper.append(el("label", { for: id, text: label }), select);
        break;
      }
      case "const":
        wrapper.append(el("span", { class: "label", text: label }), el("span", { text: valueLabel(schema.const) }));
        break;
      case "step": {
        const select = describe(el("select", { "data-path": path, "data-testid": "step-select" }));
        select.append(el("option", { value: "", text: UI.end }));
        steps().forEach(function (step) {
          if (step === ctx.owner) return;
          select.append(el("option", { value: step.id, text: stepTitle(step) + (step.name ? " (" + step.id + ")" : ""), selected: value === step.id }));
        });
        select.addEventListener("change", function () { changed(select.value || undefined); });
        wrapper.append(el("label", { for: id, text: label }), select);
        break;
      }
      case "string": {
        // A name picked from the workspace's (a template's, up to 512 characters) stays one line.
        const long = !choices && ((schema.maxLength || 0) > 300 || ["text", "body", "value", "summary", "retry_text"].indexOf(name) >= 0);
        const input = describe(long ? el("textarea", { "data-path": path, rows: 3 }) : el("input", { type: "text", "data-path": path }));
        input.value = value === undefined || value === null ? "" : value;
        if (schema.maxLength) input.maxLength = schema.maxLength;
        if (choices) {
          const listId = id + "-choices";
          input.setAttribute("list", listId);
          input.setAttribute("data-testid", "picker-" + name);
          const list = el("datalist", { id: listId });
          choices.forEach(function (choice) {
            list.append(el("option", { value: choice.value, label: choice.label === choice.value ? null : choice.label }));
          });
          wrapper.append(list);
        }
        input.addEventListener("input", function () {
          changed(input.value === "" && (described.nullable || !required) ? undefined : input.value);
        });
        wrapper.append(el("label", { for: id, text: label }), input);
        break;
      }
      case "number": {
        if (choices) {
          const select = describe(el("select", { "data-path": path, "data-testid": "picker-" + name }));
          select.append(el("option", { value: "", text: described.nullable || !required ? "—" : UI.choose }));
          choiceOptions(select, choices, value);
          select.addEventListener("change", function () {
            if (select.value === "") return changed(described.nullable && required ? null : undefined);
            changed(Number(select.value));
          });
          wrapper.append(el("label", { for: id, text: label }), select);
          break;
        }
        const input = describe(el("input", { type: "number", "data-path": path, step: schema.type === "integer" ? 1 : "any" }));
        if (schema.minimum !== undefined) input.min = schema.minimum;
        if (schema.maximum !== undefined) input.max = schema.maximum;
        input.value = value === undefined || value === null ? "" : value;
        input.addEventListener("input", function () {
          if (input.value === "") return changed(required && !described.nullable ? input.value : undefined);
          const number = Number(input.value);
          changed(Number.isFinite(number) ? number : input.value);
        });
        wrapper.append(el("label", { for: id, text: label }), input);
        break;
      }
      case "boolean": {
        const input = describe(el("input", { type: "checkbox", "data-path": path }));
        input.checked = Boolean(value);
        input.addEventListener("change", function () { changed(input.checked); });
        wrapper.classList.add("wfb-check");
        wrapper.append(el("label", { for: id }, [input, document.createTextNode(" " + label)]));
        break;
      }
      case "union": {
        // A choice among constants ("last_interacted") or a value of the other kind (a channel id).
        const select = describe(el("select", { "data-path": path, "aria-label": label }));
        if (described.nullable) select.append(el("option", { value: "", text: "—" }));
        described.consts.forEach(function (option) {
          select.append(el("option", { value: "const:" + option, text: valueLabel(option), selected: value === option }));
        });
        const otherChosen = value !== undefined && value !== null && described.consts.indexOf(value) < 0;
        if (choices) {
          // The other kind's values are the workspace's (a channel), listed by name.
          select.setAttribute("data-testid", "picker-" + name);
          choiceOptions(select, choices, otherChosen ? value : undefined, "pick:");
          select.addEventListener("change", function () {
            if (select.value === "") return changed(described.nullable ? null : undefined);
            if (select.value.startsWith("const:")) return changed(select.value.slice(6));
            const picked = select.value.slice(5);
            changed(described.other.type === "string" ? picked : Number(picked));
          });
          wrapper.append(el("label", { for: id, text: label }), select);
          break;
        }
        const otherLabel = name === "channel" ? UI.channel_id : humanize(described.other.type || "value");
        select.append(el("option", { value: "other", text: otherLabel, selected: otherChosen }));
        const input = el("input", { type: described.other.type === "string" ? "text" : "number", "aria-label": otherLabel, "data-path": path + ".value" });
        input.value = otherChosen ? value : "";
        input.hidden = !otherChosen;
        const update = function () {
          input.hidden = select.value !== "other";
          if (select.value === "") return changed(described.nullable ? null : undefined);
          if (select.value !== "other") return changed(select.value.slice(6));
          if (input.value === "") return changed(undefined);
          changed(described.other.type === "string" ? input.value : Number(input.value));
        };
        select.addEventListener("change", update);
        input.addEventListener("input", update);
        wrapper.append(el("label", { for: id, text: label }), select, input);
        break;
      }
      case "checks": {
        const set = el("fieldset", { class: "wfb-fieldset" }, [el("legend", { text: label })]);
        const chosen = Array.isArray(value) ? value : [];
        described.items.enum.forEach(function (option) {
          const box = el("input", { type: "checkbox", value: option, checked: chosen.indexOf(option) >= 0 });
          box.addEventListener("change", function () {
            const now = Array.from(set.querySelectorAll("input:checked")).map(function (input) { return input.value; });
            changed(now.length || required ? now : undefined);
          });
          set.append(el("label", { class: "wfb-check" }, [box, document.createTextNode(" " + valueLabel(option))]));
        });
        if (messages.length) set.setAttribute("aria-describedby", errorId);
        wrapper.append(set);
        break;
      }
      case "list": {
        const numeric = described.items.type === "integer" || described.items.type === "number";
        if (choices && numeric) {
          // Ids must name something the workspace has: ticks, by name.
          const set = el("fieldset", { class: "wfb-fieldset", "data-testid": "picker-" + name }, [el("legend", { text: label })]);
          const chosen = Array.isArray(value) ? value : [];
          const shown = choices.concat(chosen.filter(function (item) { return choiceLabel(choices, item) === null; }).map(function (item) {
            return { value: item, label: item + " (" + UI.not_found + ")" };
          }));
          shown.forEach(function (choice) {
            const box = el("input", { type: "checkbox", value: String(choice.value), checked: chosen.indexOf(choice.value) >= 0 });
            box.addEventListener("change", function () {
              const now = Array.from(set.querySelectorAll("input:checked")).map(function (input) { return Number(input.value); });
              changed(now.length || required ? now : undefined);
            });
            set.append(el("label", { class: "wfb-check" }, [box, document.createTextNode(" " + choice.label)]));
          });
          if (!shown.length) set.append(el("span", { class: "hint", text: UI.none }));
          if (messages.length) set.setAttribute("aria-describedby", errorId);
          wrapper.append(set);
          break;
        }
        const input = describe(el("textarea", { "data-path": path, rows: 3, "aria-describedby": id + "-hint" }));
        input.value = (Array.isArray(value) ? value : []).join("\n");
        input.addEventListener("input", function () {
          const lines = input.value.split("\n").map(function (line) { return line.trim(); }).filter(Boolean);
          const items = numeric ? lines.map(function (line) { return Number.isFinite(Number(line)) ? Number(line) : line; }) : lines;
          changed(items.length || required ? items : undefined);
        });
        if (messages.length) input.setAttribute("aria-describedby", errorId + " " + id + "-hint");
        wrapper.append(el("label", { for: id, text: label }), input, el("span", { class: "hint", id: id + "-hint", text: UI.one_per_line }));
        if (choices && choices.length) {
          // Free text (a new tag is fine), with the workspace's names one choice away.
          const adder = el("select", { "aria-label": UI.add_from_list + ": " + label, "data-testid": "picker-" + name });
          adder.append(el("option", { value: "", text: UI.add_from_list + "…" }));
          choices.forEach(function (choice) { adder.append(el("option", { value: String(choice.value), text: choice.label })); });
          adder.addEventListener("change", function () {
            if (!adder.value) return;
            const lines = input.value.split("\n").map(function (line) { return line.trim(); }).filter(Boolean);
            if (lines.indexOf(adder.value) < 0) lines.push(adder.value);
            input.value = lines.join("\n");
            adder.value = "";
            input.dispatchEvent(new Event("input"));
          });
          wrapper.append(adder);
        }
        break;
      }
      case "json": {
        const input = describe(el("textarea", { "data-path": path, rows: 5, class: "mono", spellcheck: "false" }));
        input.value = JSON.stringify(value === undefined ? defaultFor(raw, ctx.defs, name) : value, null, 2);
        const local = el("p", { class: "field-error", role: "alert" });
        input.addEventListener("input", function () {
          try {
            const parsed = JSON.parse(input.value);
            local.textContent = "";
            changed(parsed);
          } catch (error) {
            local.textContent = UI.not_json;
          }
        });
        if (name === "conditions" && conditions.dialog) {
          // The segments' filter panel in a dialog; the JSON stays under "Advanced" for what the
          // panel cannot say (a condition it does not know keeps the JSON as it is).
          const scope = ctx.owner === definition.trigger ? "trigger" : "branch";
          const edit = el("button", { type: "button", class: "button small", "data-testid": "edit-conditions", "aria-describedby": id + "-summary", text: conditions.words.edit });
          edit.addEventListener("click", function () {
            const current = slot.get();
            openConditions(scope, current === undefined ? { groups: [] } : current, function (applied) {
              changed(applied);
              ctx.redraw();
              const again = root.querySelector('[data-panel] [data-field="' + path + '"] [data-testid=edit-conditions]');
              if (again) again.focus();
            });
          });
          const summary = el("span", { class: "hint", id: id + "-summary", "data-testid": "conditions-summary", text: conditionSummary(value) });
          input.addEventListener("input", function () { summary.textContent = conditionSummary(slot.get()); });
          wrapper.append(
            el("span", { class: "label", text: label }),
            el("div", { class: "wfb-conditions" }, [edit, summary]),
            el("details", { class: "wfb-advanced", "data-testid": "conditions-advanced" }, [
              el("summary", { text: conditions.words.advanced }),
              el("label", { for: id, text: label + " (JSON)" }), input, local,
            ]),
          );
          break;
        }
        wrapper.append(el("label", { for: id, text: label }), input, local);
        break;
      }
      case "object": {
        const set = el("fieldset", { class: "wfb-fieldset", "data-testid": "object-" + name }, [el("legend", { text: label })]);
        const objectSlot = function (create) {
          let current = slot.get();
          if ((current === undefined || current === null) && create) {
            current = {};
            slot.set(current);
          }
          return current;
        };
        const body = el("div", { class: "stack wfb-nested" });
        const fill = function () {
          body.replaceChildren();
          Object.entries(schema.properties).forEach(function ([child, childSchema]) {
            body.append(renderField(ctx, child, childSchema, slotIn(objectSlot, child), path + "." + child, (schema.required || []).indexOf(child) >= 0));
          });
          mediaFollowsTemplate(body, path, objectSlot);
        };
        if (described.nullable || !required) {
          const on = el("input", { type: "checkbox", id: id, checked: value !== undefined && value !== null });
          on.addEventListener("change", function () {
            if (on.checked) slot.set(defaultObject(schema, ctx.defs));
            else slot.set(undefined);
            clearError(ctx.owner, path);
            ctx.onChange();
            body.hidden = !on.checked;
            fill();
          });
          set.append(el("label", { class: "wfb-check", for: id }, [on, document.createTextNode(" " + UI.set)]));
          body.hidden = !on.checked;
        }
        fill();
        set.append(body);
        wrapper.append(set);
        break;
      }
      case "objects": {
        const set = el("fieldset", { class: "wfb-fieldset", "data-testid": "list-" + name }, [el("legend", { text: label })]);
        const items = Array.isArray(value) ? value : [];
        const itemSchema = described.items;
        items.forEach(function (item, index) {
          const itemPath = path + "[" + index + "]";
          const holder = function () { return item; };
          const box = el("fieldset", { class: "wfb-fieldset wfb-item", "data-testid": "item-" + name }, [
            el("legend", { text: (item.name ? item.name : UI.item + " " + (index + 1)) }),
          ]);
          Object.entries(itemSchema.properties).forEach(function ([child, childSchema]) {
            box.append(renderField(ctx, child, childSchema, slotIn(holder, child), itemPath + "." + child, (itemSchema.required || []).indexOf(child) >= 0));
          });
          const drop = el("button", { type: "button", class: "button small danger-ghost", text: UI.remove, "aria-label": UI.remove + ": " + label + " " + (index + 1) });
          drop.addEventListener("click", function () {
            items.splice(index, 1);
            clearError(ctx.owner, path);
            ctx.onChange();
            ctx.redraw();
          });
          box.append(drop);
          set.append(box);
        });
        const add = el("button", { type: "button", class: "button small", "data-testid": "add-" + name, text: UI.add, "aria-label": UI.add + ": " + label });
        if (schema.maxItems !== undefined && items.length >= schema.maxItems) add.disabled = true;
        add.addEventListener("click", function () {
          const list = Array.isArray(slot.get()) ? slot.get() : [];
          list.push(defaultObject(itemSchema, ctx.defs));
          slot.set(list);
          ctx.onChange();
          ctx.redraw(path + "[" + (list.length - 1) + "]");
        });
        set.append(add);
        wrapper.append(set);
        break;
      }
      default:
        break;
    }
    wrapper.append(errorBox);
    return wrapper;
  }

  function configFields(ctx, schema, holder) {
    const box = el("div", { class: "stack" });
    const configSlot = function (create) {
      if (!holder.config && create) holder.config = {};
      return holder.config;
    };
    Object.entries(schema.properties || {}).forEach(function ([name, raw]) {
      box.append(renderField(ctx, name, raw, slotIn(configSlot, name), "config." + name, (schema.required || []).indexOf(name) >= 0));
    });
    return box;
  }

  function drawPanel(focusPath) {
    const panel = root.querySelector("[data-panel]");
    fieldCount = 0;
    if (!selected) {
      panel.replaceChildren(el("p", { class: "muted", text: UI.nothing_selected }));
      return;
    }
    const owner = selected;
    const ctx = {
      owner: owner,
      defs: {},
      shown: new Set(),
      onChange: function () { sync(); drawCanvas(); },
      redraw: function (path) { drawPanel(path); },
      redrawOnChange: false,
    };
    const body = el("div", { class: "stack" });
    if (owner === definition.trigger) {
      const info = DATA.triggers[owner.type] || { schema: {} };
      ctx.defs = info.schema.$defs || {};
      const id = fieldId();
      const select = el("select", { id: id, "data-testid": "trigger-type" });
      byLabel(DATA.triggers, triggerLabel).forEach(function (type) {
        select.append(el("option", { value: type, text: triggerLabel(type), selected: owner.type === type }));
      });
      select.addEventListener("change", function () {
        owner.type = select.value;
        const schema = DATA.triggers[owner.type].schema;
        owner.config = defaultObject(schema, schema.$defs || {});
        sync();
        drawCanvas();
        drawPanel();
        root.querySelector("[data-testid=trigger-type]").focus();
      });
      body.append(el("h3", { class: "wfb-panel-title", text: UI.trigger }));
      body.append(el("div", { class: "field" }, [el("label", { for: id, text: UI.type }), select]));
      body.append(configFields(ctx, info.schema, owner));
      const holder = function () { return owner; };
      body.append(renderField(ctx, "conditions", { type: "object", additionalProperties: true }, slotIn(holder, "conditions"), "conditions", false));
      if (owner.type !== "manual") {
        body.append(renderField(ctx, "once_per_contact", { type: "boolean" }, slotIn(holder, "once_per_contact"), "once_per_contact", false));
      }
    } else {
      const info = DATA.steps[owner.type];
      const holder = function () { return owner; };
      body.append(el("h3", { class: "wfb-panel-title", text: stepLabel(owner.type) }));
      const idSlot = {
        get: function () { return owner.id; },
        set: function (value) { renameStep(owner, value || ""); },
      };
      body.append(renderField(ctx, "id", { type: "string", maxLength: 64 }, idSlot, "id", true));
      body.append(renderField(ctx, "name", { type: "string", maxLength: 100 }, slotIn(holder, "name"), "name", false));
      if (info) {
        ctx.defs = info.schema.$defs || {};
        body.append(configFields(ctx, info.schema, owner));
      }
      const nextLabel = owner.type === "branch" ? UI.else + " · " + FIELDS.next : FIELDS.next;
      const nextField = renderField(ctx, "next", { type: "string" }, slotIn(holder, "next"), "next", false);
      nextField.querySelector("label").textContent = nextLabel;
      body.append(nextField);
      const outcomes = DATA.outcomes[owner.type] || [];
      if (outcomes.length) {
        const set = el("fieldset", { class: "wfb-fieldset" }, [el("legend", { text: UI.outcomes })]);
        const onSlot = function (create) {
          if (!owner.on && create) owner.on = {};
          return owner.on;
        };
        outcomes.forEach(function (outcome) {
          const schema = { type: "string", "x-step": true, "x-label": OUTCOME_WORDS[outcome] || humanize(outcome) };
          const field = renderField(ctx, outcome, schema, slotIn(onSlot, outcome), "on." + outcome, false);
          field.querySelector("select").setAttribute("data-testid", "outcome-" + outcome);
          set.append(field);
        });
        body.append(set);
      }
    }
    // Errors of this card that no field showed (the step as a whole, a field the form lacks).
    const rest = Object.entries(ownErrors(owner)).filter(function ([key]) { return !ctx.shown.has(key); });
    const top = rest.length ? el("ul", { class: "wfb-panel-errors", role: "alert" }, rest.map(function ([key, message]) {
      return el("li", { class: "field-error", "data-testid": "panel-error" }, [key ? el("code", { text: key }) : null, document.createTextNode((key ? ": " : "") + message)]);
    })) : null;
    panel.replaceChildren.apply(panel, [top, body].filter(Boolean));
    if (focusPath) {
      const first = panel.querySelector('[data-field^="' + focusPath + '"] input, [data-field^="' + focusPath + '"] textarea, [data-field^="' + focusPath + '"] select');
      if (first) first.focus();
    }
  }

  // ----- the conditions dialog -------------------------------------------------------------------

  // The server renders the segments' filter panel in it (workflows/condition_views.py): from the
  // field's JSON when it opens, again as its pickers change (htmx, as on the contacts page), and
  // "Apply" answers the filter JSON (or the panel with the errors beside their conditions, 422).
  const conditions = { dialog: document.querySelector("[data-condition-dialog]"), words: {}, onApply: null };
  if (conditions.dialog) {
    const data = conditions.dialog.dataset;
    conditions.words = { edit: data.edit, advanced: data.advanced, none: data.none, count: data.count, failed: data.failed };
  }

  function conditionSummary(value) {
    const groups = value && Array.isArray(value.groups) ? value.groups : [];
    const count = groups.reduce(function (sum, group) {
      return sum + (group && Array.isArray(group.conditions) ? group.conditions.length : 0);
    }, 0);
    return count ? conditions.words.count.replace("{n}", String(count)) : conditions.words.none;
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function postForm(url, params) {
    return fetch(url, {
      method: "POST",
      body: params,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken(), "HX-Request": "true" },
    });
  }

  function showConditionPanel(html) {
    const host = conditions.dialog.querySelector("[data-condition-host]");
    host.innerHTML = html;
    if (window.htmx) window.htmx.process(host);
    // After a refused Apply, the first condition with an error; else the first control.
    const wrong = Array.from(host.querySelectorAll(".field-error")).find(function (node) { return node.textContent.trim(); });
    const place = wrong ? wrong.closest(".condition, .filter-group") || host : host;
    const first = place.querySelector("select, input:not([type=hidden]), button") || host.querySelector("select, button");
    if (first) first.focus();
  }

  function conditionFailure() {
    const slot = conditions.dialog.querySelector("#err-filter");
    if (slot) slot.textContent = conditions.words.failed;
  }

  function openConditions(scope, current, onApply) {
    const dialog = conditions.dialog;
    conditions.onApply = onApply;
    const params = new URLSearchParams({ editor_scope: scope, editor_source: JSON.stringify(current) });
    if (scope === "branch") params.set("editor_definition", JSON.stringify(definition));
    dialog.querySelector("[data-condition-host]").replaceChildren(el("p", { class: "muted", text: "…" }));
    if (!dialog.open) dialog.showModal();
    postForm(dialog.dataset.panelUrl, params).then(function (response) {
      if (response.ok || response.status === 422) return response.text().then(showConditionPanel);
      conditionFailure();
    }, conditionFailure);
  }

  if (conditions.dialog) {
    conditions.dialog.addEventListener("click", function (event) {
      if (event.target.closest("[data-close-dialog]")) conditions.dialog.close();
    });
    conditions.dialog.addEventListener("submit", function (event) {
      const panelForm = event.target.closest("[data-condition-form]");
      if (!panelForm) return;
      event.preventDefault();
      postForm(conditions.dialog.dataset.applyUrl, new URLSearchParams(new FormData(panelForm))).then(function (response) {
        if (response.ok) {
          return response.json().then(function (answer) {
            const apply = conditions.onApply;
            conditions.dialog.close();
            if (apply) apply(answer.conditions);
          });
        }
        if (response.status === 422) return response.text().then(showConditionPanel);
        conditionFailure();
      }, conditionFailure);
    });
  }

  // ----- putting it together ---------------------------------------------------------------------

  function changed(how) {
    sync();
    drawCanvas();
    if (how && how.panel) drawPanel();
    if (how && how.focus) {
      const [object, action] = how.focus;
      const found = root.querySelector('[data-key="' + keyOf(object) + '"][data-action="' + action + '"]');
      const usable = found && !found.disabled ? found : root.querySelector('[data-key="' + keyOf(object) + '"][data-action="select"]');
      if (usable) usable.focus();
    }
  }

  function buildShell() {
    const typeSelect = el("select", { id: "wfb-new-type", "data-testid": "new-step-type" });
    byLabel(DATA.steps, stepLabel).forEach(function (type) {
      typeSelect.append(el("option", { value: type, text: stepLabel(type) }));
    });
    const addButton = el("button", { type: "button", class: "button small primary", "data-testid": "add-step", text: UI.add_step });
    addButton.addEventListener("click", function () { addStep(typeSelect.value); });
    const zoomButton = function (text, label, factor, testid) {
      const made = el("button", { type: "button", class: "button small", "aria-label": label, title: label, "data-testid": testid, text: text });
      made.addEventListener("click", function () { zoom(factor); });
      return made;
    };
    const toolbar = el("div", { class: "wfb-toolbar", role: "group", "aria-label": UI.builder }, [
      el("label", { for: "wfb-new-type", class: "label", text: UI.step_type }),
      typeSelect,
      addButton,
      el("span", { class: "wfb-spacer" }),
      zoomButton("−", UI.zoom_out, 1 / ZOOM_STEP, "zoom-out"),
      el("span", { class: "wfb-zoom-level small", "data-zoom-level": true, "aria-live": "polite" }),
      zoomButton("+", UI.zoom_in, ZOOM_STEP, "zoom-in"),
      zoomButton("1:1", UI.zoom_reset, 0, "zoom-reset"),
    ]);
    const viewport = el("div", { class: "wfb-viewport", tabindex: "0", role: "region", "aria-label": UI.canvas, "data-testid": "builder-canvas" }, [
      el("div", { class: "wfb-canvas", "data-canvas": true }),
    ]);
    const panel = el("aside", { class: "wfb-panel", "aria-label": UI.panel, "data-panel": true, "data-testid": "builder-panel" });
    root.replaceChildren(
      el("ul", { class: "wfb-general-errors", "data-general-errors": true, role: "alert", hidden: true }),
      toolbar,
      el("div", { class: "wfb-body" }, [viewport, panel]),
      el("p", { class: "wfb-sr", "aria-live": "polite", "data-live": true }),
    );

    viewport.addEventListener("click", function (event) {
      const hit = event.target.closest("[data-action]");
      if (!hit || !viewport.contains(hit)) return;
      const key = Number(hit.getAttribute("data-key"));
      const owner = [definition.trigger].concat(steps()).find(function (object) { return keyOf(object) === key; });
      if (!owner) return;
      const action = hit.getAttribute("data-action");
      if (action === "goto") {
        selected = owner;
        changed({ panel: true, focus: [owner, "select"] });
        const card = root.querySelector('[data-key="' + key + '"][data-action="select"]');
        if (card) reveal(card);
      } else if (action === "select") {
        selected = owner;
        changed({ panel: true, focus: [owner, "select"] });
      } else if (action === "up") move(owner, -1);
      else if (action === "down") move(owner, 1);
      else if (action === "duplicate") duplicate(owner);
      else if (action === "delete") remove(owner);
    });
    viewport.addEventListener("keydown", function (event) {
      if (event.target !== viewport) return;
      const moves = { ArrowLeft: [PAN_STEP, 0], ArrowRight: [-PAN_STEP, 0], ArrowUp: [0, PAN_STEP], ArrowDown: [0, -PAN_STEP] };
      if (moves[event.key]) pan(moves[event.key][0], moves[event.key][1]);
      else if (event.key === "+" || event.key === "=") zoom(ZOOM_STEP);
      else if (event.key === "-") zoom(1 / ZOOM_STEP);
      else if (event.key === "0") zoom(0);
      else return;
      event.preventDefault();
    });
    let drag = null;
    viewport.addEventListener("pointerdown", function (event) {
      if (event.button !== 0 || event.target.closest("button, input, select, textarea, a")) return;
      drag = { x: event.clientX, y: event.clientY, id: event.pointerId };
      viewport.setPointerCapture(event.pointerId);
      viewport.classList.add("is-dragging");
    });
    viewport.addEventListener("pointermove", function (event) {
      if (!drag || drag.id !== event.pointerId) return;
      pan(event.clientX - drag.x, event.clientY - drag.y);
      drag.x = event.clientX;
      drag.y = event.clientY;
    });
    const stop = function () {
      drag = null;
      viewport.classList.remove("is-dragging");
    };
    viewport.addEventListener("pointerup", stop);
    viewport.addEventListener("pointercancel", stop);
    viewport.addEventListener("wheel", function (event) {
      event.preventDefault();
      if (event.ctrlKey) {
        const box = viewport.getBoundingClientRect();
        zoom(event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, { x: event.clientX - box.left, y: event.clientY - box.top });
      }
      else pan(-event.deltaX, -event.deltaY);
    }, { passive: false });
  }

  function usable(raw) {
    return raw && typeof raw === "object" && raw.trigger && typeof raw.trigger === "object" && Array.isArray(raw.steps);
  }

  function load(raw, errors) {
    definition = raw;
    if (!definition.trigger.type) definition.trigger.type = Object.keys(DATA.triggers)[0];
    placeErrors(errors);
    selected = null;
    const firstWrong = [definition.trigger].concat(steps()).find(function (object) { return Object.keys(ownErrors(object)).length; });
    if (firstWrong) selected = firstWrong;
    drawCanvas();
    drawPanel();
  }

  function show(json) {
    root.hidden = json;
    jsonBox.hidden = !json;
    toggle.setAttribute("aria-pressed", json ? "true" : "false");
    toggle.textContent = json ? UI.builder : UI.advanced;
  }

  function setMode(json) {
    const notice = form.querySelector("[data-builder-notice]");
    if (!json) {
      let raw = null;
      try {
        raw = JSON.parse(textarea.value);
      } catch (error) {
        raw = null;
      }
      if (!usable(raw)) {
        notice.textContent = UI.json_broken;
        notice.hidden = false;
        return;
      }
      notice.hidden = true;
      if (JSON.stringify(raw) !== JSON.stringify(definition)) load(raw, {});
    } else {
      sync();
    }
    show(json);
  }

  buildShell();
  window.addEventListener("resize", scheduleLinks);
  window.addEventListener("scroll", scheduleLinks, { passive: true });
  if (window.ResizeObserver) new ResizeObserver(scheduleLinks).observe(root.querySelector("[data-canvas]"));
  toggle.hidden = false;
  toggle.addEventListener("click", function () { setMode(root.hidden === false); });
  form.addEventListener("submit", function () {
    if (!root.hidden) sync();
  });
  if (usable(DATA.definition)) {
    load(DATA.definition, DATA.errors);
    show(false);
  } else {
    show(true);
    const notice = form.querySelector("[data-builder-notice]");
    notice.textContent = UI.json_broken;
    notice.hidden = false;
  }
})();
