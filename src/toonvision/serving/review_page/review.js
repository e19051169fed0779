// The review page: one screenshot at a time, its boxes drawn over it in image pixels (an SVG whose viewBox is
// the image), every change sent to the server at once with the version of the file it was made on.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const COG_RE = /^cog_([a-z]+)_([a-z0-9]+)$/;
const TOON_RE = /^toon_([a-z0-9]+)$/;

const S = {
  list: null, // /api/screenshots
  index: 0,
  shot: null, // /api/screenshot of the one shown
  boxes: [],
  verified: false,
  version: null,
  selected: -1,
  drawing: false,
  drag: null,
  readonly: true,
  label: null, // the label a new box gets: the last one picked
  sentAt: Date.now(), // time spent on this screenshot is sent with each save, from here on
  dirty: false,
  chain: Promise.resolve(), // saves run one after the other, in the order the changes were made
  conflict: null,
  unreadable: new Set(), // screenshots found not to be images, marked in the list
  history: [], // the states of this screenshot before each change, for undo; the undone ones for redo
  future: [],
  zoom: 1, // on top of the fit to the page's width; kept from screenshot to screenshot, as labelImg does
};
const ZOOM_STEP = 1.25;
const ZOOM_LIMITS = [0.25, 8];

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

// --- the list, the counter, the timer ---

async function refreshList() {
  S.list = await getJSON("/api/screenshots");
  const nav = $("list");
  nav.replaceChildren();
  S.list.screenshots.forEach((item, i) => {
    const row = document.createElement("div");
    row.textContent = item.seconds >= 1 ? `${item.path} (${Math.round(item.seconds)} s)` : item.path;
    row.className = item.status + (i === S.index ? " current" : "") + (S.unreadable.has(item.path) ? " unreadable" : "");
    row.title = `${item.path}: ${item.status}, ${Math.round(item.seconds)} s`;
    row.onclick = () => go(i);
    nav.append(row);
  });
  $("counter").textContent = `reviewed ${S.list.reviewed} / left ${S.list.left}`;
  $("position").textContent = `${S.index + 1} of ${S.list.screenshots.length}`;
  tick();
}

function tick() {
  if (!S.list || !S.shot) return;
  const item = S.list.screenshots[S.index];
  const seconds = (item ? item.seconds : 0) + (Date.now() - S.sentAt) / 1000;
  $("timer").textContent = `time on this screenshot: ${Math.floor(seconds)} s`;
}

// --- loading a screenshot ---

function step(delta) {
  // from where the last key press is going, so that d d d pressed quickly moves three screenshots
  go((S.target === undefined ? S.index : S.target) + delta);
}

async function go(index) {
  if (!S.list || index < 0 || index >= S.list.screenshots.length) return;
  S.target = index;
  await S.chain; // what was done to the screenshot being left is saved first
  if (S.target !== index) return; // a later key press goes further
  S.target = undefined;
  if (S.conflict) return; // the person chooses first
  const leaving = S.shot;
  S.index = index; // before any other wait: the next key press steps on from here
  if (leaving) await sendSeconds(leaving.path); // time spent looking counts too, saved or not
  await load(S.list.screenshots[index].path);
  await refreshList();
}

async function sendSeconds(path) {
  const now = Date.now();
  const seconds = (now - S.sentAt) / 1000;
  S.sentAt = now;
  try {
    await fetch("/api/seconds", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ path, seconds }) });
  } catch (error) {
    // the timer is a record, not a person's work: nothing to keep if the server is gone
  }
}

async function load(path) {
  let shot;
  try {
    shot = await getJSON("/api/screenshot?path=" + encodeURIComponent(path));
  } catch (error) {
    say(String(error.message || error), true);
    return;
  }
  if (S.list.screenshots[S.index].path === path) show(shot); // not one the person has moved on from
}

function show(shot) {
  S.shot = shot;
  S.boxes = shot.boxes.map((b) => ({ ...b }));
  S.verified = shot.verified;
  S.version = shot.version;
  S.selected = -1;
  S.drawing = false;
  S.history = [];
  S.future = [];
  S.sentAt = Date.now();
  S.readonly = Boolean(shot.image_error || shot.annotation_error);
  const messages = [];
  if (shot.image_error) {
    S.unreadable.add(shot.path);
    messages.push(`${shot.path} cannot be read as an image: skipped (d: next). ${shot.image_error}`);
  } else if (shot.annotation_error) {
    messages.push(`${shot.annotation_error}. The file is left untouched; fix it in a text editor or labelImg.`);
  }
  const unknown = S.boxes.filter((b) => b.unknown_label).map((b) => b.name);
  if (unknown.length) messages.push(`label not in predefined_classes.txt: ${[...new Set(unknown)].join(", ")}`);
  if (S.boxes.some((b) => b.outside)) messages.push("a box reaches outside the image (shown clipped)");
  $("position").textContent = `${S.index + 1} of ${S.list.screenshots.length}`;
  if (S.list.refused.length) messages.push(`left out (they link outside the folder): ${S.list.refused.join(", ")}`);
  say(messages.join("\n"), Boolean(shot.image_error || shot.annotation_error));
  $("stage").classList.toggle("hidden", Boolean(shot.image_error));
  if (!shot.image_error) {
    $("image").src = "/api/image?path=" + encodeURIComponent(shot.path) + "&v=" + (shot.version || "none");
    $("boxes").setAttribute("viewBox", `0 0 ${shot.width} ${shot.height}`);
    layout();
  }
  render();
  tick();
}

// --- zoom: the boxes are drawn in image pixels, so only the picture's size on the page changes ---

function layout() {
  const shot = S.shot;
  const fit = Math.min(1, ($("view").clientWidth - 20) / shot.width);
  S.scale = fit * S.zoom;
  const img = $("image");
  img.width = Math.round(shot.width * S.scale);
  img.height = Math.round(shot.height * S.scale);
  $("boxes").setAttribute("width", img.width);
  $("boxes").setAttribute("height", img.height);
  $("zoom").textContent = `zoom ${Math.round(S.zoom * 100)}%`;
}

function zoom(factor, around) {
  if (!S.shot || S.shot.image_error) return;
  const next = clamp(factor === null ? 1 : S.zoom * factor, ...ZOOM_LIMITS);
  if (next === S.zoom) return;
  const view = $("view");
  const stage = $("image").getBoundingClientRect();
  // the image point under the pointer (or the view's middle) stays where it is on the page
  const box = view.getBoundingClientRect();
  const client = around || { x: box.left + view.clientWidth / 2, y: box.top + view.clientHeight / 2 };
  const point = { x: (client.x - stage.left) / S.scale, y: (client.y - stage.top) / S.scale };
  S.zoom = next;
  layout();
  render();
  const moved = $("image").getBoundingClientRect();
  view.scrollLeft += moved.left + point.x * S.scale - client.x;
  view.scrollTop += moved.top + point.y * S.scale - client.y;
}

$("view").addEventListener(
  "wheel",
  (event) => {
    if (!event.ctrlKey) return; // a plain wheel scrolls, as in labelImg
    event.preventDefault();
    zoom(event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, { x: event.clientX, y: event.clientY });
  },
  { passive: false },
);
window.addEventListener("resize", () => {
  if (S.shot && !S.shot.image_error) {
    layout();
    render();
  }
});

// --- drawing ---

function kindOf(name) {
  return COG_RE.test(name) ? "cog" : TOON_RE.test(name) ? "toon" : "other";
}

function render() {
  const svg = $("boxes");
  svg.replaceChildren();
  svg.classList.toggle("drawing", S.drawing);
  const handle = 8 / (S.scale || 1);
  S.boxes.forEach((b, i) => {
    const g = document.createElementNS(SVG, "g");
    g.classList.add("box", kindOf(b.name));
    if (b.unknown_label || b.outside || (b.flags && b.flags.length)) g.classList.add("flagged");
    if (i === S.selected) g.classList.add("selected");
    g.dataset.index = i;
    const body = document.createElementNS(SVG, "rect");
    body.classList.add("body");
    body.setAttribute("x", b.xmin);
    body.setAttribute("y", b.ymin);
    body.setAttribute("width", b.xmax - b.xmin);
    body.setAttribute("height", b.ymax - b.ymin);
    body.setAttribute("stroke-width", 2 / (S.scale || 1));
    body.dataset.index = i;
    g.append(body);
    for (const corner of ["nw", "ne", "sw", "se"]) {
      const h = document.createElementNS(SVG, "rect");
      h.classList.add("handle");
      h.dataset.corner = corner;
      h.dataset.index = i;
      h.setAttribute("x", (corner[1] === "w" ? b.xmin : b.xmax) - handle / 2);
      h.setAttribute("y", (corner[0] === "n" ? b.ymin : b.ymax) - handle / 2);
      h.setAttribute("width", handle);
      h.setAttribute("height", handle);
      g.append(h);
    }
    const text = document.createElementNS(SVG, "text");
    text.setAttribute("x", Math.max(0, b.xmin) + 2 / (S.scale || 1));
    text.setAttribute("y", Math.max(b.ymin, 0) + 13 / (S.scale || 1));
    text.setAttribute("font-size", 12 / (S.scale || 1));
    text.setAttribute("stroke-width", 2 / (S.scale || 1));
    text.textContent = b.name + (b.confidence == null ? "" : ` ${b.confidence.toFixed(2)}`);
    g.append(text);
    svg.append(g);
  });
  renderPanel();
}

function renderPanel() {
  const shot = S.shot;
  $("status").textContent = shot
    ? `${shot.path}: ${shot.status}${S.verified ? ", verified" : ""} (${shot.annotation || "no annotation yet"})`
    : "";
  const list = $("box-list");
  list.replaceChildren();
  S.boxes.forEach((b, i) => {
    const li = document.createElement("li");
    li.textContent = b.name + (b.confidence == null ? "" : ` (confidence ${b.confidence.toFixed(2)})`);
    if (b.unknown_label) li.append(flag(" not in predefined_classes.txt"));
    if (b.outside) li.append(flag(" outside the image"));
    // The game rules the box breaks (the server's one judge, as annotate's table shows them), each with why.
    for (const f of b.flags || []) li.append(flag(` ${f.rule}: ${f.why}`));
    if (i === S.selected) li.className = "selected";
    li.onclick = () => select(i);
    list.append(li);
  });
  const editing = !S.readonly;
  for (const id of ["draw", "delete", "verify", "kind", "suit", "name", "animal"]) $(id).disabled = !editing;
  $("undo").disabled = !editing || !S.history.length;
  $("redo").disabled = !editing || !S.future.length;
  $("delete").disabled = !editing || S.selected < 0;
  $("verify").textContent = S.verified ? "verified \u2713" : "verify";
  const label = S.selected >= 0 ? S.boxes[S.selected].name : S.label || defaultLabel();
  $("picking").textContent = S.selected >= 0 ? `label of box ${S.selected + 1}` : "label of the next box drawn";
  fillPickers(label);
}

function flag(text) {
  const span = document.createElement("span");
  span.className = "flag";
  span.textContent = text;
  return span;
}

function defaultLabel() {
  return (S.list && S.list.labels[0]) || "cog_bb_flunky";
}

// --- pickers: kind, then suit and its 8 Cogs, or the animal ---

function options(select, items, chosen) {
  select.replaceChildren();
  for (const [value, text] of items) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = text;
    select.append(option);
  }
  select.value = chosen;
}

function fillPickers(label) {
  if (!S.list) return;
  const tax = S.list.taxonomy;
  const cog = COG_RE.exec(label);
  const toon = TOON_RE.exec(label);
  const kind = cog ? "cog" : toon ? "toon" : "";
  const kinds = [["cog", "Cog"], ["toon", "Toon"]];
  if (!kind) kinds.unshift(["", `(${label})`]);
  options($("kind"), kinds, kind);
  const suit = tax.suits.find((s) => cog && s.short === cog[1]) || tax.suits[0];
  options($("suit"), tax.suits.map((s) => [s.short, s.long]), suit.short);
  options($("name"), suit.cogs.map((c, i) => [c, suit.names[i]]), cog ? cog[2] : suit.cogs[0]);
  options($("animal"), tax.animals.map((a) => [a, a]), toon ? toon[1] : tax.animals[0]);
  $("suit-row").hidden = $("name-row").hidden = kind !== "cog";
  $("animal-row").hidden = kind !== "toon";
}

function picked(source) {
  const tax = S.list.taxonomy;
  const kind = $("kind").value;
  let label;
  if (kind === "toon") {
    label = `toon_${$("animal").value}`;
  } else {
    const suit = tax.suits.find((s) => s.short === $("suit").value);
    let name = $("name").value;
    if (source === "suit" || !suit.cogs.includes(name)) {
      // a new suit: the Cog on the same rung of its ladder
      const before = tax.suits.find((s) => s.cogs.includes(name));
      name = suit.cogs[before ? before.cogs.indexOf(name) : 0] || suit.cogs[0];
    }
    label = `cog_${suit.short}_${name}`;
  }
  S.label = label;
  if (S.selected >= 0) {
    remember();
    const box = S.boxes[S.selected];
    box.name = label;
    box.unknown_label = !S.list.labels.includes(label);
    box.confidence = null;
    box.flags = []; // judged again on the new label when the screenshot is next loaded
    changed();
  } else {
    renderPanel();
  }
}

for (const id of ["kind", "suit", "name", "animal"]) {
  $(id).addEventListener("change", () => {
    picked(id);
    $(id).blur(); // the keys go back to the page
  });
}

// --- editing ---

function snapshot() {
  return { boxes: S.boxes.map((b) => ({ ...b })), verified: S.verified };
}

function remember(state = snapshot()) {
  // called before each change, with the state it changes
  S.history.push(state);
  S.future = [];
}

function restore(from, to) {
  // undo (from history, to future) or redo (the other way): the restored state is saved like any change
  if (S.readonly || !from.length) return; // its button is greyed out
  to.push(snapshot());
  const state = from.pop();
  S.boxes = state.boxes.map((b) => ({ ...b }));
  S.verified = state.verified;
  S.selected = -1;
  changed();
}

const undo = () => restore(S.history, S.future);
const redo = () => restore(S.future, S.history);

function select(i) {
  S.selected = i;
  render();
}

function changed() {
  S.dirty = true;
  render();
  S.chain = S.chain.then(flush).catch((error) => say(`not saved: ${error.message || error}`, true));
}

async function flush() {
  if (!S.dirty || S.conflict || !S.shot) return;
  S.dirty = false;
  const shot = S.shot;
  const now = Date.now();
  const body = {
    path: shot.path,
    version: S.version,
    verified: S.verified,
    seconds: (now - S.sentAt) / 1000,
    boxes: S.boxes.map((b) => ({ name: b.name, xmin: b.xmin, ymin: b.ymin, xmax: b.xmax, ymax: b.ymax, difficult: b.difficult })),
  };
  S.sentAt = now;
  $("saved").textContent = "saving\u2026";
  let response, data;
  try {
    response = await fetch("/api/save", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    data = await response.json();
  } catch (error) {
    S.dirty = true;
    $("saved").textContent = "NOT SAVED: the server does not answer (start toonvision review again; this page keeps your change)";
    return;
  }
  if (response.status === 200) {
    if (S.shot === shot) {
      S.version = data.version;
      shot.status = data.status;
    }
    $("saved").textContent = "saved";
    await refreshList();
    renderPanel();
  } else if (response.status === 409) {
    S.conflict = { mine: body, current: data.current };
    showConflict();
  } else {
    $("saved").textContent = `NOT SAVED: ${data.error}`;
  }
}

function describe(boxes, verified) {
  const lines = boxes.map((b) => `${b.name}  ${[b.xmin, b.ymin, b.xmax, b.ymax].map((v) => Math.round(v)).join(" ")}`);
  return (verified ? "verified\n" : "") + (lines.join("\n") || "(no boxes)");
}

function showConflict() {
  const { mine, current } = S.conflict;
  $("conflict-mine").textContent = describe(mine.boxes, mine.verified);
  let theirs = current.annotation_error || describe(current.boxes, current.verified);
  if (current.text) theirs += `\n\n--- ${current.annotation} ---\n${current.text}`;
  $("conflict-theirs").textContent = theirs;
  $("saved").textContent = "NOT SAVED: changed on disk meanwhile";
  $("conflict").hidden = false;
}

$("reload").onclick = () => {
  if (!S.conflict) return;
  const { current } = S.conflict;
  S.conflict = null;
  $("conflict").hidden = true;
  $("saved").textContent = "reloaded from disk";
  show(current);
  refreshList();
};

$("overwrite").onclick = () => {
  if (!S.conflict) return;
  const { current } = S.conflict;
  S.conflict = null;
  $("conflict").hidden = true;
  S.version = current.version;
  changed();
};

function toImage(event) {
  const svg = $("boxes");
  const point = svg.createSVGPoint();
  point.x = event.clientX;
  point.y = event.clientY;
  const p = point.matrixTransform(svg.getScreenCTM().inverse());
  return { x: p.x, y: p.y };
}

function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}

$("boxes").addEventListener("pointerdown", (event) => {
  if (S.readonly || event.button !== 0) return;
  const p = toImage(event);
  const index = event.target.dataset.index;
  event.preventDefault();
  $("boxes").setPointerCapture(event.pointerId);
  if (S.drawing) {
    S.drag = { type: "draw", x0: clamp(p.x, 0, S.shot.width), y0: clamp(p.y, 0, S.shot.height), before: snapshot() };
    S.boxes.push({ name: S.label || defaultLabel(), xmin: S.drag.x0, ymin: S.drag.y0, xmax: S.drag.x0, ymax: S.drag.y0, difficult: false, confidence: null });
    S.boxes[S.boxes.length - 1].unknown_label = !S.list.labels.includes(S.boxes[S.boxes.length - 1].name);
    S.selected = S.boxes.length - 1;
  } else if (index !== undefined) {
    S.selected = Number(index);
    const b = S.boxes[S.selected];
    const type = event.target.dataset.corner ? "resize" : "move";
    S.drag = { type, corner: event.target.dataset.corner, start: p, box: { ...b }, moved: false, before: snapshot() };
  } else {
    S.selected = -1;
  }
  render();
});

$("boxes").addEventListener("pointermove", (event) => {
  const d = S.drag;
  if (!d) return;
  const p = toImage(event);
  const b = S.boxes[S.selected];
  const W = S.shot.width;
  const H = S.shot.height;
  if (d.type === "draw") {
    const x = clamp(p.x, 0, W);
    const y = clamp(p.y, 0, H);
    Object.assign(b, { xmin: Math.min(d.x0, x), xmax: Math.max(d.x0, x), ymin: Math.min(d.y0, y), ymax: Math.max(d.y0, y) });
  } else if (d.type === "move") {
    const w = d.box.xmax - d.box.xmin;
    const h = d.box.ymax - d.box.ymin;
    const x = clamp(d.box.xmin + p.x - d.start.x, 0, Math.max(0, W - w));
    const y = clamp(d.box.ymin + p.y - d.start.y, 0, Math.max(0, H - h));
    Object.assign(b, { xmin: x, ymin: y, xmax: x + w, ymax: y + h });
  } else {
    const x = clamp(p.x, 0, W);
    const y = clamp(p.y, 0, H);
    if (d.corner.includes("w")) b.xmin = Math.min(x, d.box.xmax - 1);
    if (d.corner.includes("e")) b.xmax = Math.max(x, d.box.xmin + 1);
    if (d.corner.includes("n")) b.ymin = Math.min(y, d.box.ymax - 1);
    if (d.corner.includes("s")) b.ymax = Math.max(y, d.box.ymin + 1);
  }
  d.moved = true;
  render();
});

$("boxes").addEventListener("pointerup", () => {
  const d = S.drag;
  S.drag = null;
  if (!d) return;
  const b = S.boxes[S.selected];
  if (d.type === "draw") {
    S.drawing = false;
    if (b.xmax - b.xmin < 2 || b.ymax - b.ymin < 2) {
      S.boxes.pop();
      S.selected = -1;
      render();
      return;
    }
  } else if (!d.moved) {
    return;
  }
  remember(d.before);
  // labelImg keeps whole pixels
  for (const k of ["xmin", "ymin", "xmax", "ymax"]) b[k] = Math.round(b[k]);
  b.confidence = null; // the person's box now, not the model's
  b.flags = []; // its game rules are judged again on the new place when the screenshot is next loaded
  b.outside = b.xmin < 0 || b.ymin < 0 || b.xmax > S.shot.width || b.ymax > S.shot.height;
  changed();
});

function removeSelected() {
  if (S.readonly || S.selected < 0) return;
  remember();
  S.boxes.splice(S.selected, 1);
  S.selected = -1;
  changed();
}

function verify() {
  if (S.readonly) return;
  if (!S.verified) remember();
  S.verified = true;
  changed();
}

function startDrawing() {
  if (S.readonly) return;
  S.drawing = true;
  S.selected = -1;
  render();
}

$("prev").onclick = () => step(-1);
$("next").onclick = () => step(1);
$("draw").onclick = startDrawing;
$("delete").onclick = removeSelected;
$("verify").onclick = verify;
$("undo").onclick = undo;
$("redo").onclick = redo;
$("fit").onclick = () => zoom(null);

document.addEventListener("keydown", (event) => {
  if (S.conflict) return;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") {
    event.preventDefault();
    if (!S.readonly) changed(); // saved at every change anyway; this writes the file even with none
    return;
  }
  if ((event.ctrlKey || event.metaKey) && !event.altKey && ["z", "y"].includes(event.key.toLowerCase())) {
    event.preventDefault();
    if (event.key.toLowerCase() === "y" || event.shiftKey) redo();
    else undo();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  if (key === "d" || key === "D") step(1);
  else if (key === "a" || key === "A") step(-1);
  else if (key === "w" || key === "W") startDrawing();
  else if (key === "Delete" || key === "Backspace") removeSelected();
  else if (key === " ") verify();
  else if (key === "+" || key === "=") zoom(ZOOM_STEP);
  else if (key === "-") zoom(1 / ZOOM_STEP);
  else if (key === "0") zoom(null);
  else if (key === "Escape") {
    S.drawing = false;
    S.selected = -1;
    render();
  } else return;
  event.preventDefault();
});

setInterval(tick, 1000);

(async () => {
  try {
    await refreshList();
    await go(0);
  } catch (error) {
    say(`the server does not answer: ${error.message || error}`, true);
  }
})();
