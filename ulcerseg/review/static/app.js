// Blinded review client. All coordinates sent to the server are rectified-frame pixels.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  assessor: "", session: null, items: [], index: -1, item: null,
  img: null, w: 0, h: 0, scale: 1,
  mask: null, original: null, tint: null,
  editing: false, tool: "poly", poly: [], painting: false, last: null, busy: false,
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
  if (res.status === 409 && data.error === "needs_confirmation") {
    // endpoint-changing decision: the server asks for a second, explicit step
    if (body && window.confirm(data.message)) return api(path, { ...body, confirm: true });
    throw new Error("not saved: " + data.message);
  }
  if (!res.ok) throw new Error(data.error || res.statusText);
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

// Mask canvas convention: ulcer = opaque white, background = transparent.
function maskFromImage(im) {
  const c = makeCanvas(state.w, state.h);
  const ctx = c.getContext("2d");
  ctx.drawImage(im, 0, 0);
  const data = ctx.getImageData(0, 0, state.w, state.h);
  for (let i = 0; i < data.data.length; i += 4) {
    const on = data.data[i] >= 128;
    data.data[i] = data.data[i + 1] = data.data[i + 2] = 255;
    data.data[i + 3] = on ? 255 : 0;
  }
  ctx.putImageData(data, 0, 0);
  return c;
}

function copyCanvas(src) {
  const c = makeCanvas(src.width, src.height);
  c.getContext("2d").drawImage(src, 0, 0);
  return c;
}

function maskAreaMm2() {
  const data = state.mask.getContext("2d").getImageData(0, 0, state.w, state.h).data;
  let n = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] >= 128) n++;
  return n / (state.item.px_per_mm * state.item.px_per_mm);
}

function draw() {
  const view = $("view");
  const ctx = view.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, view.width, view.height);
  if (!state.img) return;
  const W = state.w * state.scale, H = state.h * state.scale;
  ctx.drawImage(state.img, 0, 0, W, H);
  // light fill plus an opaque outline, so the lesion stays visible under the contour
  const colour = state.editing ? [0, 229, 255] : [255, 212, 0];
  const src = state.mask.getContext("2d").getImageData(0, 0, state.w, state.h).data;
  const t = state.tint.getContext("2d");
  const out = t.createImageData(state.w, state.h);
  const on = (x, y) => x >= 0 && y >= 0 && x < state.w && y < state.h
    && src[4 * (y * state.w + x) + 3] >= 128;
  for (let y = 0; y < state.h; y++) {
    for (let x = 0; x < state.w; x++) {
      if (!on(x, y)) continue;
      const edge = !on(x - 1, y) || !on(x + 1, y) || !on(x, y - 1) || !on(x, y + 1);
      const i = 4 * (y * state.w + x);
      out.data[i] = colour[0]; out.data[i + 1] = colour[1]; out.data[i + 2] = colour[2];
      out.data[i + 3] = edge ? 255 : 60;
    }
  }
  t.putImageData(out, 0, 0);
  ctx.drawImage(state.tint, 0, 0, W, H);
  if (state.poly.length) {
    ctx.strokeStyle = "#ff3b3b";
    ctx.lineWidth = 2;
    ctx.beginPath();
    state.poly.forEach(([u, v], i) => {
      const x = u * state.scale, y = v * state.scale;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
  if (state.editing) $("m-edit-area").textContent = maskAreaMm2().toFixed(2);
}

async function showItem() {
  closePanels();
  const next = state.items.findIndex((it) => !it.done);
  if (next < 0) {
    $("review").hidden = true;
    $("done").hidden = false;
    $("progress").textContent = `${state.items.length} / ${state.items.length}`;
    return;
  }
  state.index = next;
  const key = state.items[next].key;
  const item = await api(`/api/item/${key}`);
  const [img, maskImg] = await Promise.all([
    loadImage(`/image/${key}/rectified.png`), loadImage(`/image/${key}/mask.png`),
  ]);
  state.item = item; state.img = img; state.w = img.naturalWidth; state.h = img.naturalHeight;
  state.scale = Math.min(900 / state.w, 650 / state.h);
  const view = $("view");
  view.width = Math.round(state.w * state.scale);
  view.height = Math.round(state.h * state.scale);
  state.mask = maskFromImage(maskImg);
  state.original = copyCanvas(state.mask);
  state.tint = makeCanvas(state.w, state.h);
  state.poly = [];
  $("m-subject").textContent = item.subject;
  $("m-ulcer").textContent = item.ulcer;
  $("m-visit-wrap").hidden = !("visit" in item);
  $("m-visit").textContent = item.visit || "";
  $("m-area").textContent = item.area_mm2 == null ? "n/a" : item.area_mm2.toFixed(2);
  $("m-status").textContent = item.proposed_status || "n/a";
  $("m-flags").textContent = item.flags.length ? item.flags.join(", ") : "none";
  // adjudication: the readers' latest decisions on this photo
  const readings = item.readings || [];
  $("m-readings-wrap").hidden = readings.length === 0;
  $("m-readings").textContent = readings.map((r) => `${r.assessor}: ${r.action}` +
    (r.area_after_mm2 == null ? "" : ` ${r.area_after_mm2.toFixed(2)} mm²`) +
    (r.reason ? ` (${r.reason})` : "")).join("; ");
  const done = state.items.filter((it) => it.done).length;
  $("progress").textContent = `${done + 1} / ${state.items.length}`;
  view.dataset.key = key;
  draw();
}

async function decide(action, extra) {
  if (state.busy || !state.item) return;
  state.busy = true;
  try {
    const res = await api("/api/decision", {
      key: state.item.key, action, session_id: state.session, ...(extra || {}),
    });
    state.items[state.index].done = true;
    message(`saved: ${res.action}` +
      (res.area_after_mm2 == null ? "" : ` (${res.area_after_mm2.toFixed(2)} mm²)`));
    await showItem();
  } catch (err) {
    message(err.message, true);
  } finally {
    state.busy = false;
  }
}

function closePanels() {
  $("na-panel").hidden = true;
  $("edit-panel").hidden = true;
  $("m-edit-wrap").hidden = true;
  state.editing = false;
  state.poly = [];
  if (state.original) state.mask = copyCanvas(state.original);
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
  decide("not_assessable", { reason });
}

function openEdit() {
  closePanels();
  state.editing = true;
  $("edit-panel").hidden = false;
  $("m-edit-wrap").hidden = false;
  setTool("poly");
  draw();
}

function setTool(tool) {
  state.tool = tool;
  state.poly = [];
  for (const [id, t] of [["t-poly", "poly"], ["t-add", "add"], ["t-erase", "erase"]]) {
    $(id).classList.toggle("active", t === tool);
  }
  draw();
}

function closePolygon() {
  if (state.poly.length >= 3) {
    const ctx = state.mask.getContext("2d");
    ctx.globalCompositeOperation = "source-over";
    ctx.fillStyle = "#ffffff";
    ctx.beginPath();
    state.poly.forEach(([u, v], i) => (i === 0 ? ctx.moveTo(u, v) : ctx.lineTo(u, v)));
    ctx.closePath();
    ctx.fill();
  }
  state.poly = [];
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

function toFrame(ev) {
  const r = $("view").getBoundingClientRect();
  return [(ev.clientX - r.left) / state.scale, (ev.clientY - r.top) / state.scale];
}

function saveCorrection() {
  if (!state.editing) return;
  if (state.poly.length >= 3) closePolygon();
  const mask_png = state.mask.toDataURL("image/png");
  decide("correct", { mask_png });
}

function bind() {
  $("start").onclick = start;
  $("assessor").addEventListener("keydown", (e) => { if (e.key === "Enter") start(); });
  $("b-accept").onclick = () => decide("accept");
  $("b-na").onclick = openNa;
  $("b-healed").onclick = () => decide("confirm_healed");
  $("b-nothealed").onclick = () => decide("reject_healed");
  $("b-edit").onclick = openEdit;
  $("b-skip").onclick = skip;
  $("na-confirm").onclick = confirmNa;
  $("na-cancel").onclick = closePanels;
  $("t-poly").onclick = () => setTool("poly");
  $("t-add").onclick = () => setTool("add");
  $("t-erase").onclick = () => setTool("erase");
  $("t-clear").onclick = () => { state.mask = makeCanvas(state.w, state.h); draw(); };
  $("t-reset").onclick = () => { state.mask = copyCanvas(state.original); draw(); };
  $("t-save").onclick = saveCorrection;
  $("t-cancel").onclick = closePanels;
  const view = $("view");
  view.addEventListener("mousedown", (ev) => {
    if (!state.editing) return;
    const p = toFrame(ev);
    if (state.tool === "poly") { state.poly.push(p); draw(); return; }
    state.painting = true; state.last = p; paint(p, p);
  });
  view.addEventListener("mousemove", (ev) => {
    if (!state.painting) return;
    const p = toFrame(ev); paint(state.last, p); state.last = p;
  });
  window.addEventListener("mouseup", () => { state.painting = false; });
  view.addEventListener("dblclick", () => { if (state.editing && state.tool === "poly") closePolygon(); });
  document.addEventListener("keydown", onKey);
}

function skip() {
  // move the current item to the end of the walk without deciding
  if (!state.item) return;
  const [it] = state.items.splice(state.index, 1);
  state.items.push(it);
  showItem();
}

function onKey(e) {
  if ($("review").hidden) return;
  const tag = (e.target.tagName || "").toLowerCase();
  const inField = tag === "input" || tag === "select" || tag === "textarea";
  if (!$("na-panel").hidden) {
    if (e.key === "Enter") { e.preventDefault(); confirmNa(); }
    else if (e.key === "Escape") closePanels();
    return;
  }
  if (inField || e.ctrlKey || e.metaKey || e.altKey) return;
  if (state.editing) {
    const keys = {
      p: () => setTool("poly"), b: () => setTool("add"), x: () => setTool("erase"),
      c: () => $("t-clear").onclick(), z: () => $("t-reset").onclick(), s: saveCorrection,
      Enter: closePolygon, Escape: closePanels,
      "[": () => { $("t-size").value = Math.max(1, brushSize() - 1); },
      "]": () => { $("t-size").value = brushSize() + 1; },
    };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    return;
  }
  const keys = {
    a: () => decide("accept"), n: openNa, h: () => decide("confirm_healed"),
    r: () => decide("reject_healed"), e: openEdit, k: skip,
  };
  if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
}

async function start() {
  const name = $("assessor").value.trim();
  if (!name) { message("Enter your name first.", true); return; }
  try {
    const s = await api("/api/session", { assessor: name });
    state.assessor = s.assessor; state.session = s.session_id;
    const list = await api(`/api/items?assessor=${encodeURIComponent(name)}`);
    state.items = list.items;
    $("who").textContent = `${list.adjudicate ? "adjudicator" : "assessor"}: ${name}`;
    $("login").hidden = true;
    $("review").hidden = false;
    await showItem();
    document.body.dataset.ready = "1";
  } catch (err) {
    message(err.message, true);
  }
}

bind();
