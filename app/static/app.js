// clipsearch web page: plain JavaScript against the documented HTTP API, no build step.
"use strict";

const K = 24;
const KEY_STORE = "clipsearch-api-key"; // session storage: gone when the tab closes
const $ = (id) => document.getElementById(id);
// `page`: how to fetch the next page of the results on screen (null: no more).
// `index`: the chosen index on a server of several (null: the server's default).
const state = {
  hits: new Map(), current: null, info: null, page: null, loadingMore: false, index: null,
};

// The chosen index, as a JSON field, a form field and a query string.
function withIndex(body) {
  return state.index ? { ...body, index: state.index } : body;
}

function indexQuery() {
  return state.index ? `?index=${encodeURIComponent(state.index)}` : "";
}

function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

function authHeaders() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

const KEY_NEEDED =
  "This server needs an API key: enter it in the “API key” field at the top and press “Use key”.";

function askForKey(wrong) {
  $("key-form").classList.add("needed");
  $("api-key").focus();
  return new Error(wrong ? "The API key was not accepted: check it and enter it again." : KEY_NEEDED);
}

async function api(path, body, method) {
  const init = { method: method || (body ? "POST" : "GET"), headers: authHeaders() };
  if (body instanceof FormData) init.body = body;
  else if (body) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new Error("The server cannot be reached. Is clipsearch still running?");
  }
  if (res.status === 401) throw askForKey(Boolean(apiKey()));
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const msg = data && data.error ? data.error.message : `The server answered ${res.status}.`;
    throw new Error(msg);
  }
  return data;
}

// An <img> cannot send a header: with a key, images are fetched and shown from a blob.
const blobUrls = new Set();

async function showImage(img, url) {
  if (!apiKey()) {
    img.src = url;
    return;
  }
  try {
    const res = await fetch(url, { headers: authHeaders() });
    if (!res.ok) return;
    const blobUrl = URL.createObjectURL(await res.blob());
    blobUrls.add(blobUrl);
    img.src = blobUrl;
  } catch (err) {
    // the grid keeps its placeholder; the search itself reported any real problem
  }
}

function releaseImages() {
  for (const url of blobUrls) URL.revokeObjectURL(url);
  blobUrls.clear();
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text || "";
  box.hidden = !text;
}

function setLoading(on) {
  $("loading").hidden = !on;
  $("grid").setAttribute("aria-busy", on ? "true" : "false");
}

function fmtScore(s) {
  return s.toFixed(3);
}

function renderHits(title, hits, append) {
  const grid = $("grid");
  if (!append) {
    grid.replaceChildren();
    state.hits.clear();
    releaseImages();
    $("results-title").hidden = false;
    $("results-title").textContent = hits.length ? title : `${title}: no matches`;
  }
  for (const hit of hits) {
    state.hits.set(hit.id, hit);
    const li = document.createElement("li");
    li.className = "card";
    li.tabIndex = 0;
    li.dataset.id = hit.id;
    li.setAttribute("aria-label", `${hit.path}, score ${fmtScore(hit.score)}. Press Enter for details.`);
    const img = document.createElement("img");
    showImage(img, hit.thumbnail_url);
    img.alt = hit.caption || hit.path;
    img.decoding = "async";
    const info = document.createElement("div");
    info.className = "info";
    const path = document.createElement("span");
    path.className = "path";
    path.textContent = hit.path.split("/").pop();
    path.title = hit.path;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = fmtScore(hit.score);
    info.append(path, score);
    const more = document.createElement("button");
    more.type = "button";
    more.className = "more";
    more.textContent = "More like this";
    more.addEventListener("click", (ev) => {
      ev.stopPropagation();
      searchSimilar(hit);
    });
    li.append(img, info, more);
    li.addEventListener("click", () => openDetails(hit));
    li.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && ev.target === li) {
        ev.preventDefault(); // else the same Enter would also press the dialog's focused button
        openDetails(hit);
      }
    });
    grid.append(li);
  }
}

// `request(offset)` fetches one page; the next page starts at the answer's next_offset.
async function runSearch(title, request) {
  showMessage("");
  setLoading(true);
  state.page = null;
  $("more").hidden = true;
  try {
    const data = await request(0);
    renderHits(title, data.hits, false);
    setNextPage(request, data);
    return data;
  } catch (err) {
    showMessage(err.message);
  } finally {
    setLoading(false);
  }
}

function setNextPage(request, data) {
  state.page = data.next_offset == null ? null : { request, offset: data.next_offset };
  $("more").hidden = state.page === null;
}

async function loadMore() {
  if (!state.page || state.loadingMore) return;
  const { request, offset } = state.page;
  state.loadingMore = true;
  $("more").textContent = "Loading…";
  try {
    const data = await request(offset);
    renderHits("", data.hits, true);
    setNextPage(request, data);
  } catch (err) {
    showMessage(err.message);
  } finally {
    state.loadingMore = false;
    $("more").textContent = "Load more";
  }
}

function searchText(text) {
  $("query-view").hidden = true;
  const body = (offset) => withIndex({ text, k: K, offset });
  return runSearch(`Images for “${text}”`, (offset) => api("/search", body(offset)));
}

function searchSimilar(hit) {
  closeDetails();
  $("query-view").hidden = true;
  $("query").value = "";
  const body = (offset) => withIndex({ image_id: hit.id, k: K, offset });
  return runSearch(`More like ${hit.path}`, (offset) => api("/search", body(offset)));
}

function imageForm(file, fields) {
  const form = new FormData();
  form.append("image", file);
  for (const [k, v] of Object.entries(withIndex(fields))) form.append(k, String(v));
  return form;
}

async function searchImage(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    showMessage(`“${file.name}” is not an image. Choose a JPEG, PNG, WebP, GIF, BMP or TIFF file.`);
    return;
  }
  $("query").value = "";
  const preview = $("query-image");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  $("captions").replaceChildren();
  const page = (offset) => api("/search", imageForm(file, { k: K, offset }));
  const data = await runSearch(`Images like ${file.name}`, page);
  if (!data) {
    $("query-view").hidden = true;
    return;
  }
  $("query-view").hidden = false;
  if (state.info && state.info.has_texts) {
    try {
      const texts = await api("/search", imageForm(file, { k: 5, target: "texts" }));
      renderCaptions(texts.hits);
    } catch (err) {
      renderCaptions([], err.message);
    }
  } else {
    renderCaptions([], "This index has no caption corpus.");
  }
}

function renderCaptions(hits, note) {
  const list = $("captions");
  list.replaceChildren();
  if (note) {
    const li = document.createElement("li");
    li.textContent = note;
    list.append(li);
  }
  for (const hit of hits) {
    const li = document.createElement("li");
    li.textContent = hit.text;
    const s = document.createElement("span");
    s.className = "score";
    s.textContent = fmtScore(hit.score);
    li.append(s);
    list.append(li);
  }
}

function openDetails(hit) {
  state.current = hit;
  showImage($("details-image"), hit.url);
  $("details-image").alt = hit.caption || hit.path;
  $("details-title").textContent = hit.path;
  const meta = $("details-meta");
  meta.replaceChildren();
  const rows = [
    ["Score", fmtScore(hit.score)],
    ["Size", `${hit.width} × ${hit.height} px`],
    ["Caption", hit.caption || "—"],
    ["Id", hit.id],
  ];
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    meta.append(dt, dd);
  }
  $("details").showModal();
  $("details").querySelector(".close-form button").focus();
}

function closeDetails() {
  if ($("details").open) $("details").close();
}

async function classify(ev) {
  ev.preventDefault();
  const file = $("classify-file").files[0];
  const bars = $("bars");
  bars.replaceChildren();
  showMessage("");
  if (!file) {
    showMessage("Choose an image to classify.");
    return;
  }
  const form = new FormData();
  form.append("image", file);
  form.append("labels", $("labels").value);
  if (state.index) form.append("index", state.index);
  const button = ev.target.querySelector("button");
  button.disabled = true;
  button.textContent = "Classifying…";
  try {
    const data = await api("/classify", form);
    for (const { label, score } of data.labels) {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = label;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.display = "block";
      fill.style.width = `${(score * 100).toFixed(1)}%`;
      track.append(fill);
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = `${(score * 100).toFixed(1)}%`;
      li.append(name, track, pct);
      bars.append(li);
    }
  } catch (err) {
    showMessage(err.message);
  } finally {
    button.disabled = false;
    button.textContent = "Classify";
  }
}

async function loadStatus() {
  try {
    const stats = await api("/stats");
    const every = stats.indexes || {};
    showIndexPicker(Object.keys(every), stats.index);
    // the chosen index's statistics (the top level describes the default index)
    const info = (state.index && every[state.index]) || stats;
    state.info = info;
    showWrites(Boolean(info.writable));
    $("status").textContent =
      `${info.count.toLocaleString()} images · model ${info.model} · index ${info.index_version}`;
  } catch (err) {
    if ($("key-form").classList.contains("needed")) {
      $("status").textContent = "API key needed";
      showMessage(err.message);
    } else {
      $("status").textContent = `not ready: ${err.message}`;
    }
  }
}

// -- several indexes: a selector, shown only when the server serves more than one -------------
function showIndexPicker(names, defaultName) {
  const select = $("index-select");
  $("index-picker").hidden = names.length < 2;
  if (names.length < 2) return;
  if (select.options.length !== names.length) {
    select.replaceChildren(
      ...names.map((name) => {
        const opt = document.createElement("option");
        opt.value = name;
        opt.textContent = name === defaultName ? `${name} (default)` : name;
        return opt;
      }),
    );
  }
  select.value = state.index || defaultName;
}

function chooseIndex() {
  const select = $("index-select");
  state.index = select.value === select.options[0].value ? null : select.value;
  state.hits.clear();
  state.page = null;
  releaseImages();
  $("grid").replaceChildren();
  $("results-title").hidden = true;
  $("more").hidden = true;
  $("query-view").hidden = true;
  loadStatus();
  const text = $("query").value.trim();
  if (text) searchText(text);
}

// -- writes: only shown when the server says it is writable (GET /stats `writable`) ------------
const MAX_ADD = 64; // images per POST /images (the server's limit)

function showWrites(on) {
  $("add").hidden = !on;
  $("details-delete").hidden = !on;
}

function errorOf(status, data) {
  if (status === 401) return askForKey(Boolean(apiKey()));
  return new Error(data && data.error ? data.error.message : `The server answered ${status}.`);
}

// XMLHttpRequest, not fetch: only it reports upload progress.
function postImages(files, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/images${indexQuery()}`);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable) onProgress(ev.loaded / ev.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 201) resolve(xhr.response);
      else reject(errorOf(xhr.status, xhr.response));
    });
    xhr.addEventListener("error", () => {
      reject(new Error("The server cannot be reached. Is clipsearch still running?"));
    });
    const form = new FormData();
    for (const f of files) form.append("image", f);
    xhr.send(form);
  });
}

function addedText(items) {
  const dups = items.filter((it) => it.duplicate_of != null).length;
  const fresh = items.length - dups;
  const already = dups ? `; ${dups} already in the index` : "";
  return `Added ${fresh} image${fresh === 1 ? "" : "s"}${already}. Search to find them.`;
}

async function addImages(files) {
  const images = files.filter((f) => f.type.startsWith("image/"));
  const skipped = files.length - images.length;
  showMessage(skipped ? `Skipped ${skipped} file(s) that are not images.` : "");
  if (!images.length) return;
  const bar = $("add-progress");
  const status = $("add-status");
  bar.value = 0;
  bar.hidden = false;
  status.textContent = `Uploading ${images.length} image${images.length === 1 ? "" : "s"}…`;
  const added = [];
  try {
    for (let i = 0; i < images.length; i += MAX_ADD) {
      const chunk = images.slice(i, i + MAX_ADD);
      const done = (f) => (bar.value = ((i + f * chunk.length) / images.length) * 100);
      const data = await postImages(chunk, done);
      added.push(...data.items);
    }
    status.textContent = addedText(added);
    status.dataset.ids = added.map((it) => it.id).join(",");
    loadStatus();
  } catch (err) {
    status.textContent = added.length ? addedText(added) : "";
    showMessage(err.message);
  } finally {
    bar.hidden = true;
  }
}

async function deleteCurrent() {
  const hit = state.current;
  if (!hit || !window.confirm(`Delete ${hit.path} from the index?`)) return;
  closeDetails();
  try {
    await api(`/images/${encodeURIComponent(hit.id)}${indexQuery()}`, null, "DELETE");
  } catch (err) {
    showMessage(err.message);
    return;
  }
  state.hits.delete(hit.id);
  for (const card of $("grid").querySelectorAll(".card")) {
    if (card.dataset.id === hit.id) card.remove();
  }
  $("add-status").textContent = `Deleted ${hit.path}.`;
  loadStatus();
}

// A drop zone that is also a button: click, Enter or Space opens the file picker.
function wireDropZone(dropId, inputId, onFiles) {
  const drop = $(dropId);
  const file = $(inputId);
  drop.addEventListener("click", () => file.click());
  drop.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      file.click();
    }
  });
  file.addEventListener("change", () => {
    onFiles([...file.files]);
    file.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    onFiles([...ev.dataTransfer.files]);
  });
}

function wireKey() {
  $("api-key").value = apiKey();
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    $("key-form").classList.remove("needed");
    showMessage("");
    loadStatus();
  });
}

function wireMore() {
  $("more").addEventListener("click", loadMore);
  // Scrolling to the end of the results loads the next page too.
  if ("IntersectionObserver" in window) {
    const seen = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    });
    seen.observe($("more"));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("text-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("query").value.trim();
    if (!text) {
      showMessage("Type what you are looking for, e.g. “a cup of coffee”.");
      return;
    }
    searchText(text);
  });
  $("details-more").addEventListener("click", () => state.current && searchSimilar(state.current));
  $("classify-form").addEventListener("submit", classify);
  wireDropZone("drop", "file", (files) => searchImage(files[0]));
  wireDropZone("add-drop", "add-files", addImages);
  $("details-delete").addEventListener("click", deleteCurrent);
  $("index-select").addEventListener("change", chooseIndex);
  wireKey();
  wireMore();
  loadStatus();
});
