// The labelling page: a paged list, one object in view, keys 0-5 label and go on.
"use strict";

const PAGE = 50;
const state = { items: [], index: -1, offset: 0, total: 0, current: null, detail: null, map: null, polling: null,
                opening: 0, rankedBy: "neighbour_score" };
const $ = (id) => document.getElementById(id);
const objectUrl = (id, tail = "") => `api/objects/${encodeURIComponent(id)}${tail}`;

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = `message ${kind === "info" ? "info" : ""}`;
  box.hidden = !text;
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) {
    showMessage(body.error || body.message || `request failed: ${response.status}`);
    throw new Error(body.error || response.status);
  }
  return body;
}

function showProgress(progress) {
  if (!progress) return;
  $("progress").textContent = `${progress.labelled} labelled, ${progress.targets} targets (label 5) of ${progress.total}`;
}

function listQuery(offset) {
  const params = new URLSearchParams({ sort: $("sort").value || "rank", order: $("order").value, offset, limit: PAGE });
  if ($("unlabelled").checked) params.set("unlabelled_first", "1");
  const cluster = $("cluster").value;
  if (cluster) {
    const [method, number] = cluster.split(":");
    params.set("method", method);
    params.set("cluster", number);
  }
  const search = $("search").value.trim();
  if (search) params.set("search", search);
  return `api/objects?${params}`;
}

function badge(label) {
  const span = document.createElement("span");
  span.className = "badge" + (label === null || label === undefined ? "" : label === 5 ? " l5" : " labelled");
  span.textContent = label === null || label === undefined ? "-" : String(label);
  return span;
}

function score(item) {
  const sorted = $("sort").value;
  // Sorted by rank: the score the rank follows (the config's active_learning.method).
  const column = sorted in item && sorted !== "rank" ? sorted : state.rankedBy in item ? state.rankedBy : "isolation_forest";
  return typeof item[column] === "number" ? `${column} ${item[column].toFixed(3)}` : "";
}

function renderList() {
  const list = $("list");
  list.replaceChildren();
  state.items.forEach((item, i) => {
    const li = document.createElement("li");
    li.dataset.id = item.id;
    li.dataset.index = i;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = "";
    img.src = objectUrl(item.id, "/image");
    const name = document.createElement("div");
    name.className = "name";
    name.title = item.catalogue_id ? `${item.id} (${item.catalogue_id})` : item.id;
    name.textContent = `#${item.rank} ${item.id}`;
    const small = document.createElement("small");
    small.textContent = [item.catalogue_id, score(item)].filter(Boolean).join("  ");
    name.append(small);
    li.append(img, name, badge(item.label));
    li.addEventListener("click", () => select(i));
    list.append(li);
  });
  const last = Math.min(state.offset + state.items.length, state.total);
  $("page-info").textContent = state.total ? `${state.offset + 1}-${last} of ${state.total}` : "nothing found";
}

async function loadPage(offset, pick = 0) {
  const page = await api(listQuery(offset));
  state.items = page.items;
  state.offset = page.offset;
  state.total = page.total;
  showProgress(page.progress);
  renderList();
  if (state.items.length) await select(pick === "last" ? state.items.length - 1 : pick);
}

async function select(i) {
  state.index = i;
  document.querySelectorAll("#list li").forEach((li) => li.classList.toggle("current", Number(li.dataset.index) === i));
  const li = document.querySelector(`#list li[data-index="${i}"]`);
  if (li) li.scrollIntoView({ block: "nearest" });
  await openObject(state.items[i].id);
}

function fieldRows(fields) {
  const table = $("fields");
  table.replaceChildren();
  for (const [key, value] of Object.entries(fields)) {
    if (["id", "catalogue_id", "ra", "dec", "map_x", "map_y"].includes(key)) continue;
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.textContent = key;
    const cell = document.createElement("td");
    cell.textContent = typeof value === "number" && !Number.isInteger(value) ? value.toPrecision(4) : String(value ?? "");
    tr.append(name, cell);
    table.append(tr);
  }
}

function showLabel(label) {
  $("current-label").textContent = label === null || label === undefined ? "not labelled yet" : `labelled ${label}`;
  document.querySelectorAll("#label-buttons button").forEach((b) => b.classList.toggle("chosen", Number(b.value) === label));
}

function showImage() {
  if (!state.current) return;
  const fits = document.querySelector('input[name="source"]:checked').value === "fits" && state.detail.fits;
  const img = $("cutout");
  // The previous object's image stays until the new one arrives: fade it, so that nobody
  // labels this object by that image.
  img.classList.add("loading");
  img.onload = img.onerror = () => img.classList.remove("loading");
  img.src = objectUrl(state.current, `/image?source=${fits ? "fits" : "store"}`);
}

async function openObject(id) {
  const opening = ++state.opening;  // a later open (fast keys, clicks) wins over this one
  const detail = await api(objectUrl(id));
  if (opening !== state.opening) return;
  state.current = id;
  state.detail = detail;
  const f = detail.fields;
  $("object-id").textContent = id;
  $("catalogue-id").textContent = f.catalogue_id ? `catalogue_id ${f.catalogue_id}` : "";
  $("position").textContent = typeof f.ra === "number" ? `ra ${f.ra.toFixed(5)}, dec ${f.dec.toFixed(5)} (deg)` : "no sky position";
  const links = $("links");
  links.replaceChildren();
  for (const [name, href] of Object.entries(detail.links)) {
    const a = document.createElement("a");
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.textContent = name;
    links.append(a);
  }
  $("source-fits").disabled = !detail.fits;
  showImage();
  showLabel(detail.label);
  fieldRows(f);
  drawMap();
  const similar = await api(objectUrl(id, "/similar?k=8"));
  if (opening !== state.opening) return;
  const thumbs = $("similar");
  thumbs.replaceChildren();
  for (const other of similar.similar) {
    const img = document.createElement("img");
    img.loading = "lazy";
    img.src = objectUrl(other, "/image");
    img.alt = img.title = other;
    img.dataset.id = other;
    img.addEventListener("click", () => openOutsideList(other));
    thumbs.append(img);
  }
  thumbs.dataset.for = id;
}

async function openOutsideList(id) {
  const i = state.items.findIndex((item) => item.id === id);
  if (i >= 0) return select(i);
  state.index = -1;
  document.querySelectorAll("#list li").forEach((li) => li.classList.remove("current"));
  return openObject(id);
}

async function move(step) {
  const next = state.index + step;
  if (state.index >= 0 && next >= 0 && next < state.items.length) return select(next);
  if (step > 0 && state.offset + state.items.length < state.total) return loadPage(state.offset + PAGE, 0);
  if (step < 0 && state.offset > 0) return loadPage(Math.max(0, state.offset - PAGE), "last");
  if (state.index < 0 && state.items.length) return select(0);
}

async function label(value) {
  if (!state.current) return;
  const id = state.current;
  const answer = await api("api/labels", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id, label: value }),
  });
  showMessage(answer.message || "", "info");
  showProgress(answer.progress);
  const i = state.items.findIndex((item) => item.id === id);
  if (i >= 0) {
    state.items[i].label = value;
    const li = document.querySelector(`#list li[data-index="${i}"]`);
    if (li) li.lastChild.replaceWith(badge(value));
  }
  showLabel(value);
  if (state.current === id) await move(1);
}

// ----------------------------------------------------------------------------- map

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"];

function mapScale() {
  const { x, y } = state.map;
  const canvas = $("map");
  const pad = 10;
  const [x0, x1, y0, y1] = [Math.min(...x), Math.max(...x), Math.min(...y), Math.max(...y)];
  const sx = (canvas.width - 2 * pad) / (x1 - x0 || 1);
  const sy = (canvas.height - 2 * pad) / (y1 - y0 || 1);
  return {
    toCanvas: (px, py) => [pad + (px - x0) * sx, canvas.height - pad - (py - y0) * sy],
    toData: (cx, cy) => [x0 + (cx - pad) / sx, y0 + (canvas.height - pad - cy) / sy],
  };
}

function drawMap() {
  const canvas = $("map");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.map || !state.map.x.length) {
    context.fillText("no map: cluster/assignments.csv is missing", 10, 20);
    return;
  }
  const scale = mapScale();
  state.map.x.forEach((px, i) => {
    const c = state.map.cluster[i];
    context.fillStyle = c < 0 ? "#c0c4cc" : PALETTE[c % PALETTE.length];
    const [cx, cy] = scale.toCanvas(px, state.map.y[i]);
    context.fillRect(cx - 1.5, cy - 1.5, 3, 3);
  });
  const f = state.detail && state.detail.fields;
  if (f && typeof f.map_x === "number") {
    const [cx, cy] = scale.toCanvas(f.map_x, f.map_y);
    context.strokeStyle = "#000";
    context.lineWidth = 2;
    context.beginPath();
    context.arc(cx, cy, 7, 0, 2 * Math.PI);
    context.stroke();
  }
}

async function mapClick(event) {
  if (!state.map || !state.map.x.length) return;
  const canvas = $("map");
  const box = canvas.getBoundingClientRect();
  const [x, y] = mapScale().toData((event.clientX - box.left) * canvas.width / box.width,
                                   (event.clientY - box.top) * canvas.height / box.height);
  const found = await api(`api/map/nearest?x=${x}&y=${y}`);
  await openOutsideList(found.id);
}

// ----------------------------------------------------------------------------- retrain

function showRetrain(status) {
  const line = $("retrain-status");
  const text = { idle: "", running: "retraining…", done: `retrained (${status.seconds ?? "?"} s)`,
                 error: "retrain failed", unavailable: "retrain unavailable" }[status.state] ?? status.state;
  line.textContent = text;
  line.className = `status ${status.state === "error" ? "error" : ""}`;
  $("retrain").disabled = status.state === "running" || status.state === "unavailable";
}

async function pollRetrain() {
  const status = await api("api/retrain");
  showRetrain(status);
  if (status.state === "running") return;
  clearInterval(state.polling);
  state.polling = null;
  if (status.state === "error") showMessage(`Retrain failed:\n${status.message}`);
  if (status.state === "done") {
    showMessage("");
    await loadPage(0, 0);
  }
}

async function retrain() {
  $("retrain").disabled = true;
  try {
    showRetrain(await api("api/retrain", { method: "POST" }));
  } catch (error) {
    $("retrain").disabled = false;
    return;
  }
  if (!state.polling) state.polling = setInterval(() => pollRetrain().catch(() => {}), 1000);
}

// ----------------------------------------------------------------------------- start

function keydown(event) {
  if (event.target.matches("input[type=search], select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
  if (/^[0-5]$/.test(event.key)) {
    event.preventDefault();
    label(Number(event.key)).catch(() => {});
  } else if (event.key === "ArrowDown" || event.key === "ArrowRight") {
    event.preventDefault();
    move(1).catch(() => {});
  } else if (event.key === "ArrowUp" || event.key === "ArrowLeft") {
    event.preventDefault();
    move(-1).catch(() => {});
  }
}

async function start() {
  const info = await api("api/info");
  state.rankedBy = info.ranked_by;
  $("dataset").textContent = `byol-discovery: ${info.dataset}`;
  document.title = `label ${info.dataset}`;
  showProgress(info.progress);
  showRetrain(info.retrain);
  for (const column of info.score_columns) $("sort").add(new Option(column, column));
  $("sort").value = "rank";
  for (const [method, numbers] of Object.entries(info.clusters)) {
    for (const n of numbers) $("cluster").add(new Option(`${method} ${n < 0 ? "noise" : n}`, `${method}:${n}`));
  }
  for (let v = 0; v <= 5; v++) {
    const button = document.createElement("button");
    button.type = "button";
    button.value = v;
    button.textContent = v;
    button.title = `label ${v} (key ${v})`;
    button.addEventListener("click", () => label(v).catch(() => {}));
    $("label-buttons").append(button);
  }
  const reload = () => loadPage(0, 0).catch(() => {});
  $("sort").addEventListener("change", () => {
    $("order").value = $("sort").value === "rank" ? "asc" : "desc";
    reload();
  });
  for (const id of ["order", "cluster", "unlabelled"]) $(id).addEventListener("change", reload);
  let typing;
  $("search").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(reload, 250); });
  $("prev-page").addEventListener("click", () => state.offset > 0 && loadPage(Math.max(0, state.offset - PAGE)));
  $("next-page").addEventListener("click", () => state.offset + PAGE < state.total && loadPage(state.offset + PAGE));
  document.querySelectorAll('input[name="source"]').forEach((r) => r.addEventListener("change", showImage));
  $("retrain").addEventListener("click", retrain);
  $("map").addEventListener("click", (event) => mapClick(event).catch(() => {}));
  document.addEventListener("keydown", keydown);
  if (info.retrain.state === "running") state.polling = setInterval(() => pollRetrain().catch(() => {}), 1000);
  await loadPage(0, 0);
  state.map = await api("api/map");
  $("map-note").textContent = state.map.method ? `(clusters stage, coloured by ${state.map.method}; click a point)` : "";
  drawMap();
}

start().catch((error) => showMessage(`The page could not start: ${error.message}`));
