// Blinded review client.
//
// Frames (docs/architecture.md, ulcerseg/review/views.py):
// - review px: the review image (the reviewed region on the marker plane at the photo's native
//   resolution, `view.px_per_mm`); pixel centres at integers. Outlines and edited polygons
//   live here and are submitted here, with their px/mm: {polygons: [[[u, v], ...]], px_per_mm}.
// - model px: the stored mask's frame; model = review / view.factor (same origin). The brush
//   paints a model-frame mask, submitted as mask_png.
// - photo-view px: the whole photo downscaled by view.photo.scale; review_to_photo maps to it.
//   Manual-scale points and tracings are submitted in photo px (photo-view px / scale).
// Screen: x = ox + (frame x + 0.5) * zoom, for whichever layer is shown.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#ff4fd8", "#4fc3ff", "#7dff4f", "#ff9f1a", "#b18cff", "#ff5252"];
const state = {
  assessor: "", session: null, items: [], index: -1, item: null, view: null,
  img: null, photoImg: null, layer: "review", zoom: 1, ox: 0, oy: 0,
  outline: true, opacity: 0.9,
  editing: false, tool: "vertex", polys: [], trace: [], drag: null, pan: null, hover: null,
  mask: null, maskMode: false, painting: false, last: null,
  scaleMode: false, scalePts: [], scaleTrace: [], scaleClosed: false,
  mine: new Map(), history: [], busy: false, pending: null,
};

function message(text, isError) {
  $("message").textContent = text || "";
  $("message").className = isError ? "error" : "";
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const res = await fetch(path, { credentials: "same-origin", ...opts });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    // a 409 needs_confirmation carries the question in `message`
    const needsConfirmation = res.status === 409 && data.error === "needs_confirmation";
    const err = new Error((needsConfirmation ? data.message : data.error) || data.message || res.statusText);
    err.status = res.status; err.data = data; err.needsConfirmation = needsConfirmation;
    throw err;
  }
  return data;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const im = new Image();
    im.onload = () => resolve(im);
    im.onerror = () => reject(new Error("cannot load " + src));
    im.src = src;
  });
}

function makeCanvas(w, h) {
  const c = document.createElement("canvas");
  c.width = w; c.height = h;
  return c;
}

// ---------------------------------------------------------------- geometry (pure)
function shoelace(poly) {
  let s = 0;
  for (let i = 0; i < poly.length; i++) {
    const [x0, y0] = poly[i], [x1, y1] = poly[(i + 1) % poly.length];
    s += x0 * y1 - x1 * y0;
  }
  return s / 2;
}

function inside(pt, poly) {
  let c = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > pt[1]) !== (yj > pt[1]) && pt[0] < ((xj - xi) * (pt[1] - yi)) / (yj - yi) + xi) c = !c;
  }
  return c;
}

// area of polygons combined even-odd (nesting depth decides add or subtract), units²
function polysArea(polys) {
  const closed = polys.filter((p) => p.length >= 3);
  let total = 0;
  closed.forEach((p, i) => {
    const depth = closed.filter((q, j) => j !== i && inside(p[0], q)).length;
    total += (depth % 2 === 0 ? 1 : -1) * Math.abs(shoelace(p));
  });
  return Math.max(total, 0);
}

function applyH(m, [x, y]) {
  const w = m[6] * x + m[7] * y + m[8];
  return [(m[0] * x + m[1] * y + m[2]) / w, (m[3] * x + m[4] * y + m[5]) / w];
}

function segDist(p, a, b) {
  const dx = b[0] - a[0], dy = b[1] - a[1];
  const L = dx * dx + dy * dy;
  const t = L ? Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / L)) : 0;
  const q = [a[0] + t * dx, a[1] + t * dy];
  return [Math.hypot(p[0] - q[0], p[1] - q[1]), q];
}

// ---------------------------------------------------------------- layers and the view transform
function layerSize() {
  if (state.layer === "photo" && state.photoImg) return [state.photoImg.naturalWidth, state.photoImg.naturalHeight];
  return [state.view.width || 1, state.view.height || 1];
}

// review px -> px of the shown layer
function toLayer(p) {
  if (state.layer === "photo") {
    const m = state.view.photo && state.view.photo.review_to_photo;
    return m ? applyH(m, p) : p;
  }
  return p;
}

function layerToScreen([x, y]) { return [state.ox + (x + 0.5) * state.zoom, state.oy + (y + 0.5) * state.zoom]; }
function screenToLayer([x, y]) { return [(x - state.ox) / state.zoom - 0.5, (y - state.oy) / state.zoom - 0.5]; }
function toScreen(p) { return layerToScreen(toLayer(p)); }

// screen (CSS) px per mm at the shown layer: exact on the review plane, local on the photo
function screenPxPerMm() {
  if (!state.view) return 0;
  if (state.layer === "review") return state.zoom * state.view.px_per_mm;
  const photoPpm = photoViewPxPerMm();
  return photoPpm ? state.zoom * photoPpm : 0;
}

function photoViewPxPerMm() {
  if (state.scaleMode && state.scalePts.length === 2) {
    const mm = Number($("scale-mm").value);
    const [a, b] = state.scalePts;
    const d = Math.hypot(a[0] - b[0], a[1] - b[1]);  // photo-view px
    return mm > 0 && d > 0 ? d / mm : 0;
  }
  const m = state.view.photo && state.view.photo.review_to_photo;
  if (!m || !state.view.px_per_mm) return 0;
  const c = [state.view.width / 2, state.view.height / 2], s = state.view.px_per_mm;
  const a = applyH(m, c), bx = applyH(m, [c[0] + s, c[1]]), by = applyH(m, [c[0], c[1] + s]);
  return Math.sqrt(Math.hypot(bx[0] - a[0], bx[1] - a[1]) * Math.hypot(by[0] - a[0], by[1] - a[1]));
}

function clientPoint(ev) {
  const r = $("view").getBoundingClientRect();
  return [ev.clientX - r.left, ev.clientY - r.top];
}

function zoomAt(factor, at) {
  const view = $("view");
  const p = at || [view.width / 2, view.height / 2];
  const [w, h] = layerSize();
  const minZoom = Math.min(view.width / w, view.height / h) / 4;
  const z = Math.max(minZoom, Math.min(80, state.zoom * factor));
  const f = screenToLayer(p);
  state.zoom = z;
  state.ox = p[0] - (f[0] + 0.5) * z;
  state.oy = p[1] - (f[1] + 0.5) * z;
  draw();
}

function fitBox(x0, y0, x1, y1) {
  const view = $("view");
  const bw = Math.max(x1 - x0, 1), bh = Math.max(y1 - y0, 1);
  state.zoom = Math.min(view.width / bw, view.height / bh, 80);
  state.ox = view.width / 2 - ((x0 + x1) / 2 + 0.5) * state.zoom;
  state.oy = view.height / 2 - ((y0 + y1) / 2 + 0.5) * state.zoom;
  draw();
}

function fitAll() {
  const [w, h] = layerSize();
  fitBox(-0.5, -0.5, w - 0.5, h - 0.5);
}

// fit the ulcer (outline or the polygons being edited) with a margin of its size, at least 4 mm
function fitUlcer() {
  const polys = state.editing && state.polys.length ? state.polys : state.view.contours;
  // manual scale: the tracing is already in photo-view px
  const pts = state.scaleMode && state.scaleTrace.length ? state.scaleTrace : polys.flat().map(toLayer);
  if (!pts.length) { fitAll(); return; }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const ppm = state.layer === "review" ? state.view.px_per_mm : (photoViewPxPerMm() || 10);
  const half = Math.max(x1 - x0, y1 - y0, 4 * ppm);
  fitBox(cx - half, cy - half, cx + half, cy + half);
}

// ---------------------------------------------------------------- drawing
function niceLength(pxPerMm) {
  for (const mm of [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]) if (mm * pxPerMm >= 60) return mm;
  return 100;
}

function pathPolys(ctx, polys, close) {
  ctx.beginPath();
  for (const poly of polys) {
    poly.forEach((p, i) => {
      const [x, y] = toScreen(p);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    if (close) ctx.closePath();
  }
}

function draw() {
  const view = $("view");
  const ctx = view.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, view.width, view.height);
  if (!state.view) return;
  const img = state.layer === "photo" ? state.photoImg : state.img;
  const [w, h] = layerSize();
  if (img) {
    ctx.imageSmoothingEnabled = state.zoom < 4;
    ctx.drawImage(img, state.ox, state.oy, w * state.zoom, h * state.zoom);
  }
  ctx.lineJoin = "round";
  if (state.outline && !state.scaleMode) {
    ctx.globalAlpha = state.opacity;
    // the model's proposal (yellow, dashed while it is being edited or compared)
    ctx.strokeStyle = "#ffd400";
    ctx.lineWidth = 1.5;
    ctx.setLineDash(state.editing || state.view.readings ? [6, 4] : []);
    pathPolys(ctx, state.view.contours, true);
    ctx.stroke();
    ctx.setLineDash([]);
    (state.view.readings || []).forEach((r, i) => {
      ctx.strokeStyle = PALETTE[i % PALETTE.length];
      ctx.lineWidth = 2;
      pathPolys(ctx, r.contours || [], true);
      ctx.stroke();
    });
    ctx.globalAlpha = 1;
  }
  if (state.editing && state.maskMode && state.mask) drawMask(ctx);
  if (state.editing && !state.maskMode) drawEdit(ctx);
  if (state.scaleMode) drawScale(ctx);
  drawScaleBar(ctx, view);
  view.dataset.screenPxPerMm = screenPxPerMm().toFixed(3);
  view.dataset.zoom = state.zoom.toFixed(4);
  view.dataset.layer = state.layer;
  if (state.editing) $("m-edit-area").textContent = editAreaMm2().toFixed(2);
}

function drawEdit(ctx) {
  ctx.globalAlpha = Math.max(state.opacity, 0.4);
  ctx.strokeStyle = "#00e5ff";
  ctx.fillStyle = "rgba(0, 229, 255, 0.12)";
  ctx.lineWidth = 2;
  pathPolys(ctx, state.polys, true);
  ctx.fill("evenodd");
  ctx.stroke();
  ctx.globalAlpha = 1;
  for (const poly of state.polys) {
    for (const p of poly) {
      const [x, y] = toScreen(p);
      ctx.fillStyle = "#00e5ff";
      ctx.fillRect(x - 3, y - 3, 6, 6);
    }
  }
  if (state.hover) {
    const [x, y] = toScreen(state.polys[state.hover[0]][state.hover[1]]);
    ctx.strokeStyle = "#fff";
    ctx.strokeRect(x - 5, y - 5, 10, 10);
  }
  if (state.trace.length) {
    ctx.strokeStyle = "#ff3b3b";
    pathPolys(ctx, [state.trace], false);
    ctx.stroke();
    for (const p of state.trace) {
      const [x, y] = toScreen(p);
      ctx.fillStyle = "#ff3b3b";
      ctx.fillRect(x - 3, y - 3, 6, 6);
    }
  }
}

function drawMask(ctx) {
  // the model-frame mask, tinted: model px i covers review px [f(i - 0.5), f(i + 0.5)]
  const f = state.view.factor, m = state.mask;
  const src = m.getContext("2d").getImageData(0, 0, m.width, m.height);
  const tint = makeCanvas(m.width, m.height);
  const out = tint.getContext("2d").createImageData(m.width, m.height);
  for (let i = 0; i < src.data.length; i += 4) {
    if (src.data[i + 3] < 128) continue;
    out.data[i] = 0; out.data[i + 1] = 229; out.data[i + 2] = 255; out.data[i + 3] = 110;
  }
  tint.getContext("2d").putImageData(out, 0, 0);
  const [x, y] = layerToScreen([-0.5 * f, -0.5 * f]);
  const prev = ctx.imageSmoothingEnabled;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tint, x - 0.5 * state.zoom, y - 0.5 * state.zoom,
    m.width * f * state.zoom, m.height * f * state.zoom);
  ctx.imageSmoothingEnabled = prev;
}

function drawScale(ctx) {
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#ff9f1a";
  if (state.scalePts.length) {
    ctx.beginPath();
    state.scalePts.forEach((p, i) => {
      const [x, y] = layerToScreen(p);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    for (const p of state.scalePts) {
      const [x, y] = layerToScreen(p);
      ctx.beginPath(); ctx.arc(x, y, 5, 0, 2 * Math.PI); ctx.stroke();
    }
  }
  if (state.scaleTrace.length) {
    ctx.strokeStyle = "#00e5ff";
    ctx.beginPath();
    state.scaleTrace.forEach((p, i) => {
      const [x, y] = layerToScreen(p);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    if (state.scaleClosed) ctx.closePath();
    ctx.stroke();
  }
}

function drawScaleBar(ctx, view) {
  const spm = screenPxPerMm();
  $("scale-label").textContent = spm ? `${spm.toFixed(1)} screen px/mm` : "no scale";
  if (!spm) return;
  const mm = niceLength(spm), len = mm * spm;
  const x = 16, y = view.height - 18;
  ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
  ctx.fillRect(x - 6, y - 20, len + 12, 30);
  ctx.fillStyle = "#fff";
  ctx.fillRect(x, y, len, 4);
  ctx.font = "13px system-ui, sans-serif";
  ctx.fillText(`${mm} mm`, x, y - 6);
  view.dataset.scaleBarMm = String(mm);
  view.dataset.scaleBarPx = len.toFixed(2);
}

// ---------------------------------------------------------------- items
function currentKey() { return state.items[state.index] && state.items[state.index].key; }

function updateProgress() {
  const decided = state.items.filter((it) => it.done).length;
  $("progress").textContent = `${decided} / ${state.items.length} decided · item ${state.index + 1} of ${state.items.length}`;
  $("progress").dataset.decided = String(decided);
}

async function showIndex(i) {
  closePanels();
  state.index = (i + state.items.length) % state.items.length;
  const key = state.items[state.index].key;
  const [item, view] = await Promise.all([api(`/api/item/${key}`), api(`/view/${key}.json`)]);
  // a photo without a usable marker has no marker-plane image: only the whole photo
  const img = view.manual_scale ? null : await loadImage(`/view/${key}/review.png`);
  state.item = item; state.view = view; state.img = img; state.photoImg = null; state.layer = "review";
  $("m-subject").textContent = item.subject;
  $("m-ulcer").textContent = item.ulcer;
  $("m-visit-wrap").hidden = !("visit" in item);
  $("m-visit").textContent = item.visit || "";
  $("m-area").textContent = item.area_mm2 == null ? "n/a" : item.area_mm2.toFixed(2);
  $("m-status").textContent = item.proposed_status || "n/a";
  $("m-flags").textContent = item.flags.length ? item.flags.join(", ") : "none";
  $("res-label").textContent = view.manual_scale ? "no usable marker: set the scale by hand (m)"
    : `image ${view.px_per_mm.toFixed(1)} px/mm` + (view.native ? " (photo's own resolution)" : " (model's resolution)");
  $("photo-toggle").disabled = !view.photo || view.manual_scale;
  for (const id of ["b-accept", "b-edit", "b-healed", "b-nothealed"]) $(id).disabled = Boolean(view.manual_scale);
  $("b-scale").disabled = !view.manual_scale;
  const readings = item.readings || [];
  $("m-readings-wrap").hidden = readings.length === 0;
  $("m-readings").textContent = readings.map((r) => `${r.assessor}: ${r.action}` +
    (r.area_after_mm2 == null ? "" : ` ${r.area_after_mm2.toFixed(2)} mm²`) +
    (r.reason ? ` (${r.reason})` : "")).join("; ");
  renderLegend();
  const mine = state.mine.get(key);
  $("m-mine-wrap").hidden = !mine;
  $("m-mine").textContent = mine ? describe(mine) : "";
  updateProgress();
  $("view").dataset.key = key;
  $("review").hidden = false;
  $("done").hidden = true;
  if (view.manual_scale) await openScale(); else fitUlcer();
}

function renderLegend() {
  const legend = $("legend");
  const readings = state.view.readings || [];
  legend.hidden = readings.length === 0;
  legend.replaceChildren();
  const row = (colour, text) => {
    const div = document.createElement("div");
    const sw = document.createElement("span");
    sw.className = "swatch"; sw.style.background = colour;
    div.append(sw, document.createTextNode(text));
    legend.append(div);
  };
  if (readings.length) row("#ffd400", "model proposal");
  readings.forEach((r, i) => row(PALETTE[i % PALETTE.length], `${r.assessor}: ${r.action}` +
    (r.area_after_mm2 == null ? "" : ` ${r.area_after_mm2.toFixed(2)} mm²`) +
    (r.outline_note ? ` (${r.outline_note})` : "")));
}

function describe(d) {
  return d.action + (d.area_after_mm2 == null ? "" : ` (${Number(d.area_after_mm2).toFixed(2)} mm²)`);
}

async function showNextUndecided() {
  const n = state.items.length;
  for (let s = 1; s <= n; s++) {
    const i = (state.index + s) % n;
    if (!state.items[i].done) { await showIndex(i); return; }
  }
  $("review").hidden = true;
  $("done").hidden = false;
  updateProgress();
}

// ---------------------------------------------------------------- decisions
const CONFIRM_TEXT = {
  confirm_healed: "Confirm HEALED? This sets the visit's endpoint to healed.",
  not_assessable: "Mark NOT ASSESSABLE? The visit will have no value in the endpoint.",
};

function askConfirm(text) {
  return new Promise((resolve) => {
    $("confirm-text").textContent = text;
    $("confirm").hidden = false;
    state.pending = resolve;
    $("confirm-no").focus();  // Enter on the dialog cancels: saving needs y or a click
  });
}

function answerConfirm(yes) {
  if (!state.pending) return;
  const resolve = state.pending;
  state.pending = null;
  $("confirm").hidden = true;
  resolve(yes);
}

async function decide(action, extra, path) {
  if (state.busy || !state.item) return;
  if (CONFIRM_TEXT[action] && !(await askConfirm(CONFIRM_TEXT[action]))) {
    message("not saved");
    return;
  }
  state.busy = true;
  const key = state.item.key;
  let body = { key, action, session_id: state.session, ...(extra || {}) };
  if (CONFIRM_TEXT[action]) body.confirm = true;
  try {
    let res;
    try {
      res = await api(path || "/api/decision", body);
    } catch (err) {
      // the server asks for a confirmation (e.g. a correction changing the area by > 50%)
      if (!err.needsConfirmation) throw err;
      state.busy = false;
      if (!(await askConfirm(err.message))) { message("not saved"); return; }
      state.busy = true;
      body = { ...body, confirm: true };
      res = await api(path || "/api/decision", body);
    }
    const saved = { key, action: res.action || action, area_after_mm2: res.area_after_mm2,
      decision_id: res.decision_id };
    state.mine.set(key, saved);
    state.history.push(saved);
    state.items[state.index].done = true;
    message(`saved: ${describe(saved)}`);
    renderMine();
    await showNextUndecided();
  } catch (err) {
    message(err.message, true);
  } finally {
    state.busy = false;
  }
}

async function undo() {
  if (state.busy) return;
  const last = state.history[state.history.length - 1];
  state.busy = true;
  try {
    const body = { session_id: state.session };
    if (last) Object.assign(body, { key: last.key, decision_id: last.decision_id });
    const res = await api("/api/undo", body);
    const key = res.key || (res.photo_sha256 || "").slice(0, 16) || (last && last.key);
    state.history.pop();
    await refreshMine();
    const i = state.items.findIndex((it) => it.key === key);
    if (i >= 0) {
      const now = state.mine.get(key);
      state.items[i].done = Boolean(now);
      message(`undone: ${last ? describe(last) : "last decision"}` + (now ? `; now ${describe(now)}` : ""));
      state.busy = false;
      await showIndex(i);
    } else {
      message("undone");
    }
  } catch (err) {
    message(err.status === 404 ? "undo is not available on this server" : err.message, true);
  } finally {
    state.busy = false;
  }
}

// the reader's own decisions: from the server when it lists them, else this session's
async function refreshMine() {
  try {
    const res = await api("/api/my-decisions");
    const list = Array.isArray(res) ? res : res.decisions || [];
    state.mine = new Map();
    for (const d of list) {
      if (d.standing === false || d.action === "undo" || d.action === "skip") continue;  // withdrawn
      const key = d.key || (d.photo_sha256 || "").slice(0, 16);
      if (key) state.mine.set(key, { key, action: d.action, area_after_mm2: d.area_after_mm2, decision_id: d.decision_id });
    }
    for (const it of state.items) it.done = state.mine.has(it.key);
  } catch (err) {
    if (err.status !== 404) message(err.message, true);
    const last = state.history[state.history.length - 1];
    state.mine = new Map(state.history.map((d) => [d.key, d]));
    if (!last) return;
  }
  renderMine();
}

function renderMine() {
  const list = $("mine-list");
  list.replaceChildren();
  state.items.forEach((it, i) => {
    const d = state.mine.get(it.key);
    if (!d) return;
    const li = document.createElement("li");
    li.textContent = `item ${i + 1}: ${describe(d)}`;
    li.dataset.key = it.key;
    li.onclick = () => showIndex(i);
    list.append(li);
  });
}

// ---------------------------------------------------------------- panels
function closePanels() {
  $("na-panel").hidden = true;
  $("edit-panel").hidden = true;
  $("scale-panel").hidden = true;
  $("m-edit-wrap").hidden = true;
  $("view").classList.remove("editing");
  state.editing = false; state.maskMode = false; state.mask = null;
  state.polys = []; state.trace = []; state.drag = null; state.hover = null;
  state.scaleMode = false; state.scalePts = []; state.scaleTrace = []; state.scaleClosed = false;
  draw();
}

function openNa() {
  closePanels();
  $("na-panel").hidden = false;
  $("na-reason").focus();
}

function confirmNa() {
  const text = $("na-text").value.trim();
  const reason = $("na-reason").value + (text ? `: ${text}` : "");
  $("na-text").value = "";
  $("na-panel").hidden = true;
  decide("not_assessable", { reason });
}

// ---------------------------------------------------------------- contour editing
function openEdit() {
  closePanels();
  state.editing = true;
  state.polys = state.view.contours.map((p) => p.map((q) => q.slice()));
  $("edit-panel").hidden = false;
  $("m-edit-wrap").hidden = false;
  $("view").classList.add("editing");
  if (state.layer !== "review") setLayer("review");
  setTool(state.polys.length ? "vertex" : "poly");
}

function setTool(tool) {
  if ((tool === "add" || tool === "erase") && !state.maskMode) toMaskMode();
  if ((tool === "vertex" || tool === "poly") && state.maskMode) {
    state.maskMode = false; state.mask = null;  // back to the polygons (brush strokes dropped)
  }
  state.tool = tool;
  state.trace = [];
  for (const [id, t] of [["t-vertex", "vertex"], ["t-poly", "poly"], ["t-add", "add"], ["t-erase", "erase"]]) {
    $(id).classList.toggle("active", t === tool);
  }
  draw();
}

// brush: the polygons become a model-frame mask (canvas fill) that the brush then edits
function toMaskMode() {
  const f = state.view.factor;
  const w = Math.round(state.view.width / f), h = Math.round(state.view.height / f);
  state.mask = makeCanvas(w, h);
  const ctx = state.mask.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.beginPath();
  for (const poly of state.polys) {
    poly.forEach(([u, v], i) => {
      const x = u / f + 0.5, y = v / f + 0.5;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.closePath();
  }
  ctx.fill("evenodd");
  state.maskMode = true;
}

function editAreaMm2() {
  if (state.maskMode && state.mask) {
    const data = state.mask.getContext("2d").getImageData(0, 0, state.mask.width, state.mask.height).data;
    let n = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] >= 128) n++;
    return n / (state.view.model_px_per_mm * state.view.model_px_per_mm);
  }
  const ppm = state.view.px_per_mm;
  return polysArea(state.polys) / (ppm * ppm);
}

function closeTrace() {
  if (state.trace.length >= 3) state.polys.push(state.trace);
  state.trace = [];
  if (state.tool === "poly") setTool("vertex"); else draw();
}

function hitVertex(screen) {
  let best = null, bestD = 8;
  state.polys.forEach((poly, i) => poly.forEach((p, j) => {
    const [x, y] = toScreen(p);
    const d = Math.hypot(x - screen[0], y - screen[1]);
    if (d < bestD) { best = [i, j]; bestD = d; }
  }));
  return best;
}

function hitEdge(screen) {
  let best = null, bestD = 6;
  state.polys.forEach((poly, i) => poly.forEach((p, j) => {
    const [d] = segDist(screen, toScreen(p), toScreen(poly[(j + 1) % poly.length]));
    if (d < bestD) { best = [i, j + 1]; bestD = d; }
  }));
  return best;
}

function deleteVertex(hit) {
  const poly = state.polys[hit[0]];
  poly.splice(hit[1], 1);
  if (poly.length < 3) state.polys.splice(hit[0], 1);
  state.hover = null;
  draw();
}

function brushSize() { return Number($("t-size").value); }

function paint(from, to) {
  const ctx = state.mask.getContext("2d");
  ctx.globalCompositeOperation = state.tool === "erase" ? "destination-out" : "source-over";
  ctx.strokeStyle = ctx.fillStyle = "#ffffff";
  ctx.lineWidth = 2 * brushSize();
  ctx.lineCap = "round";
  ctx.beginPath();
  ctx.moveTo(from[0], from[1]);
  ctx.lineTo(to[0], to[1]);
  ctx.stroke();
  ctx.beginPath();
  ctx.arc(to[0], to[1], brushSize(), 0, 2 * Math.PI);
  ctx.fill();
  ctx.globalCompositeOperation = "source-over";
  draw();
}

// screen -> model-frame canvas coordinates (pixel i covers [i, i + 1))
function toMaskCanvas(screen) {
  const [u, v] = screenToLayer(screen);
  return [u / state.view.factor + 0.5, v / state.view.factor + 0.5];
}

function saveCorrection() {
  if (!state.editing) return;
  if (state.trace.length >= 3) closeTrace();
  if (state.maskMode) {
    decide("correct", { mask_png: state.mask.toDataURL("image/png") });
    return;
  }
  if (!state.polys.length) { message("nothing traced: draw an outline first", true); return; }
  if (JSON.stringify(state.polys) === JSON.stringify(state.view.contours)) {
    message("the outline is unchanged: use Accept (a) instead", true);
    return;
  }
  const r = (x) => Math.round(x * 1000) / 1000;
  decide("correct", {
    polygons: state.polys.map((p) => p.map(([u, v]) => [r(u), r(v)])),
    px_per_mm: state.view.px_per_mm,
  });
}

// ---------------------------------------------------------------- whole photo and manual scale
async function setLayer(layer) {
  if (layer === "photo" && !state.view.photo) { message("the original photo is not available", true); return; }
  if (layer === "photo" && !state.photoImg) state.photoImg = await loadImage(`/view/${state.item.key}/photo.png`);
  state.layer = layer;
  $("photo-toggle").textContent = layer === "photo" ? "Marker plane (w)" : "Whole photo (w)";
  fitUlcer();
}

async function openScale() {
  // only a photo without a usable marker is measured by hand (the server takes no other)
  if (!state.view.manual_scale) { message("this photo has a marker: correct its outline instead (e)", true); return; }
  closePanels();
  if (!state.view.photo) { message("the original photo is not available", true); return; }
  await setLayer("photo");
  fitAll();
  state.scaleMode = true;
  $("scale-panel").hidden = false;
  $("view").classList.add("editing");
  scaleStatus();
}

function scaleStatus() {
  const n = state.scalePts.length;
  $("scale-step").textContent = n < 2
    ? `Click both ends of a known length (${n}/2).`
    : state.scaleClosed ? "Traced. Save, or restart." : "Trace the ulcer: click vertices, Enter closes.";
  const ppm = photoViewPxPerMm();
  const scale = state.view.photo.scale;
  $("scale-value").textContent = n === 2 && ppm ? `${(ppm / scale).toFixed(2)} photo px/mm` : "–";
  const area = scaleAreaMm2();
  $("scale-area").textContent = area == null ? "–" : area.toFixed(2);
  draw();
}

function scaleAreaMm2() {
  const ppm = photoViewPxPerMm();
  if (state.scalePts.length < 2 || !ppm || state.scaleTrace.length < 3) return null;
  return Math.abs(shoelace(state.scaleTrace)) / (ppm * ppm);
}

function saveScale() {
  if (!state.scaleMode) return;
  if (state.scaleTrace.length >= 3) state.scaleClosed = true;
  if (state.scalePts.length < 2 || !state.scaleClosed) { message("mark the known length and trace first", true); return; }
  const s = state.view.photo.scale;
  const toPhoto = ([x, y]) => [Math.round((x / s) * 1000) / 1000, Math.round((y / s) * 1000) / 1000];
  decide("correct", {
    scale_points: state.scalePts.map(toPhoto),
    length_mm: Number($("scale-mm").value),
    polygon: state.scaleTrace.map(toPhoto),
    frame: "photo",
  }, "/api/manual-scale");
}

function scaleClick(screen) {
  const p = screenToLayer(screen);
  if (state.scalePts.length < 2) state.scalePts.push(p);
  else if (!state.scaleClosed) state.scaleTrace.push(p);
  scaleStatus();
}

// ---------------------------------------------------------------- input
function onMouseDown(ev) {
  const view = $("view");
  view.focus();
  const s = clientPoint(ev);
  if (state.scaleMode && ev.button === 0 && !ev.shiftKey) { scaleClick(s); return; }
  if (state.editing && state.maskMode && ev.button === 0) {
    const p = toMaskCanvas(s);
    state.painting = true; state.last = p; paint(p, p);
    return;
  }
  if (state.editing && !state.maskMode && ev.button === 0 && !ev.shiftKey) {
    if (state.tool === "poly") {
      if (state.trace.length >= 3) {
        const [x0, y0] = toScreen(state.trace[0]);
        if (Math.hypot(x0 - s[0], y0 - s[1]) < 8) { closeTrace(); return; }
      }
      state.trace.push(screenToLayer(s)); draw(); return;
    }
    const v = hitVertex(s);
    if (v && ev.altKey) { deleteVertex(v); return; }
    if (v) { state.drag = v; return; }
    const e = hitEdge(s);
    if (e) {
      state.polys[e[0]].splice(e[1], 0, screenToLayer(s));
      state.drag = e; draw(); return;
    }
  }
  state.pan = { at: s, ox: state.ox, oy: state.oy };
}

function onMouseMove(ev) {
  const s = clientPoint(ev);
  if (state.painting) { const p = toMaskCanvas(s); paint(state.last, p); state.last = p; return; }
  if (state.drag) {
    const [i, j] = state.drag;
    state.polys[i][j] = screenToLayer(s);
    draw(); return;
  }
  if (state.pan) {
    state.ox = state.pan.ox + s[0] - state.pan.at[0];
    state.oy = state.pan.oy + s[1] - state.pan.at[1];
    draw(); return;
  }
  if (state.editing && !state.maskMode && state.tool === "vertex") {
    const h = hitVertex(s);
    if (String(h) !== String(state.hover)) { state.hover = h; draw(); }
  }
}

function onMouseUp() { state.painting = false; state.drag = null; state.pan = null; }

function onContextMenu(ev) {
  if (!state.editing || state.maskMode) return;
  ev.preventDefault();
  const v = hitVertex(clientPoint(ev));
  if (v) deleteVertex(v);
}

function onWheel(ev) {
  ev.preventDefault();
  zoomAt(Math.exp(-ev.deltaY * 0.0015), clientPoint(ev));
}

function bind() {
  $("b-accept").onclick = () => decide("accept");
  $("b-na").onclick = openNa;
  $("b-healed").onclick = () => decide("confirm_healed");
  $("b-nothealed").onclick = () => decide("reject_healed");
  $("b-edit").onclick = openEdit;
  $("b-scale").onclick = openScale;
  $("b-skip").onclick = () => showIndex(state.index + 1);
  $("b-back").onclick = () => showIndex(state.index - 1);
  $("b-forward").onclick = () => showIndex(state.index + 1);
  $("b-undo").onclick = undo;
  $("b-mine").onclick = () => { $("mine").hidden = !$("mine").hidden; };
  $("done-back").onclick = () => showIndex(state.items.length - 1);
  $("na-confirm").onclick = confirmNa;
  $("na-cancel").onclick = closePanels;
  $("confirm-yes").onclick = () => answerConfirm(true);
  $("confirm-no").onclick = () => answerConfirm(false);
  $("t-vertex").onclick = () => setTool("vertex");
  $("t-poly").onclick = () => setTool("poly");
  $("t-add").onclick = () => setTool("add");
  $("t-erase").onclick = () => setTool("erase");
  $("t-clear").onclick = () => { state.polys = []; state.maskMode = false; state.mask = null; setTool("poly"); };
  $("t-reset").onclick = () => { closePanels(); openEdit(); };
  $("t-save").onclick = saveCorrection;
  $("t-cancel").onclick = closePanels;
  $("scale-restart").onclick = () => { state.scalePts = []; state.scaleTrace = []; state.scaleClosed = false; scaleStatus(); };
  $("scale-save").onclick = saveScale;
  $("scale-cancel").onclick = closePanels;
  $("scale-mm").addEventListener("input", scaleStatus);
  $("z-in").onclick = () => zoomAt(1.5);
  $("z-out").onclick = () => zoomAt(1 / 1.5);
  $("z-fit").onclick = fitUlcer;
  $("z-all").onclick = fitAll;
  $("outline").onchange = () => { state.outline = $("outline").checked; draw(); };
  $("opacity").oninput = () => { state.opacity = Number($("opacity").value) / 100; draw(); };
  $("photo-toggle").onclick = () => setLayer(state.layer === "photo" ? "review" : "photo");
  const view = $("view");
  view.addEventListener("mousedown", onMouseDown);
  window.addEventListener("mousemove", onMouseMove);
  window.addEventListener("mouseup", onMouseUp);
  view.addEventListener("contextmenu", onContextMenu);
  view.addEventListener("wheel", onWheel, { passive: false });
  view.addEventListener("dblclick", () => {
    if (state.editing && state.tool === "poly") closeTrace();
    else if (state.scaleMode && state.scaleTrace.length >= 3) { state.scaleClosed = true; scaleStatus(); }
  });
  document.addEventListener("keydown", onKey);
}

function onKey(e) {
  if ($("review").hidden && $("done").hidden) return;
  if (!$("confirm").hidden) {
    // nothing else while a confirmation is open; Enter (or a repeated shortcut) does nothing
    if (e.key !== "Tab") e.preventDefault();
    if (e.key === "y") answerConfirm(true);
    else if (e.key === "Escape" || e.key === "n") answerConfirm(false);
    return;
  }
  const tag = (e.target.tagName || "").toLowerCase();
  const inField = tag === "input" || tag === "select" || tag === "textarea";
  if (!$("na-panel").hidden) {
    if (e.key === "Enter") { e.preventDefault(); confirmNa(); }
    else if (e.key === "Escape") closePanels();
    return;
  }
  if (inField && e.key !== "Escape" && e.key !== "Enter") return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const view = {
    "+": () => zoomAt(1.5), "=": () => zoomAt(1.5), "-": () => zoomAt(1 / 1.5),
    f: fitUlcer, 0: fitAll,
    o: () => { $("outline").checked = !$("outline").checked; $("outline").onchange(); },
  };
  if (view[e.key]) { e.preventDefault(); view[e.key](); return; }
  if (state.scaleMode) {
    const keys = {
      Enter: () => { if (state.scaleTrace.length >= 3) { state.scaleClosed = true; scaleStatus(); } },
      s: saveScale, c: () => $("scale-restart").onclick(), Escape: closePanels,
    };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    return;
  }
  if (state.editing) {
    const keys = {
      v: () => setTool("vertex"), p: () => setTool("poly"), b: () => setTool("add"), x: () => setTool("erase"),
      c: () => $("t-clear").onclick(), z: () => $("t-reset").onclick(), s: saveCorrection,
      Enter: closeTrace, Escape: closePanels,
      Delete: () => { if (state.hover) deleteVertex(state.hover); },
      Backspace: () => { if (state.hover) deleteVertex(state.hover); else { state.trace.pop(); draw(); } },
      "[": () => { $("t-size").value = Math.max(1, brushSize() - 1); },
      "]": () => { $("t-size").value = brushSize() + 1; },
    };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    return;
  }
  const manual = state.view && state.view.manual_scale;
  const keys = {
    a: () => !manual && decide("accept"), n: openNa, h: () => !manual && decide("confirm_healed"),
    r: () => !manual && decide("reject_healed"), e: () => !manual && openEdit(), k: () => showIndex(state.index + 1),
    m: openScale, u: undo, l: () => $("b-mine").onclick(),
    w: () => $("photo-toggle").onclick(),
    ArrowLeft: () => showIndex(state.index - 1), ArrowRight: () => showIndex(state.index + 1),
  };
  if (!$("done").hidden && e.key !== "u" && e.key !== "ArrowLeft") return;
  if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
}

// test and screenshot hooks: the current view transform in both directions
window.reviewView = {
  reviewToClient(u, v) {
    const r = $("view").getBoundingClientRect();
    const [x, y] = toScreen([u, v]);
    return [r.left + x, r.top + y];
  },
  modelToClient(u, v) { return this.reviewToClient(u * state.view.factor, v * state.view.factor); },
  layerToClient(x, y) {
    const r = $("view").getBoundingClientRect();
    const [sx, sy] = layerToScreen([x, y]);
    return [r.left + sx, r.top + sy];
  },
  screenPxPerMm,
  get view() { return state.view; },
  get imageSize() { return state.img ? [state.img.naturalWidth, state.img.naturalHeight] : null; },
  get polygons() { return state.polys.map((p) => p.map((q) => q.slice())); },
  get layer() { return state.layer; },
};

// who is reading comes from the personal token (the login link sets it as a cookie), never from
// anything typed here: /api/me names the reader, /api/session opens this sitting's session
async function start() {
  try {
    const me = await api("/api/me");
    const s = await api("/api/session", {});
    state.session = s.session_id;
    state.assessor = me.name;
    const list = await api("/api/items");
    state.items = list.items;
    $("who").textContent = `${me.role}: ${me.name}`;
    $("login").hidden = true;
    await refreshMine();
    const first = state.items.findIndex((it) => !it.done);
    if (first < 0) { $("done").hidden = false; updateProgress(); }
    else await showIndex(first);
    document.body.dataset.ready = "1";
  } catch (err) {
    $("login").hidden = false;
    message(err.status === 401 ? "Open your personal review link (ulcerseg review readers add prints it)." : err.message, true);
  }
}

bind();
start();
