// The clip gallery's page: data files are scripts that call galleryLoad({...}) (a file:// page
// cannot fetch() in Chromium); the index is loaded first, a video's cards when a page shows them.
// Everything read is untrusted: text goes in with textContent, links only from validated names.
"use strict";

const FRAGMENT_RE = /^[0-9a-f]{32}$/;
const SLUG_RE = /^[a-z0-9-]{1,64}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const PREVIEW_RE = /^previews\/[0-9a-f-]{36}\/[0-9]+_[0-9]+\.webp$/;
const CLIP_RE = /^(filtered_)?clips\/[0-9a-f-]{36}\.mp4$/;
const PASSED = 1, HAS_CAPTION = 2, HAS_PREVIEW = 4;
const PARALLEL = 8;

const state = {index: null, videos: [], order: null, fragments: new Map(), loading: new Map(),
               page: 0, search: null, lastSearch: null, textScan: 0, renderId: 0};

// ---------------------------------------------------------------------------------------------
// Loading data files

window.galleryLoad = function (value) {
  if (!value || typeof value !== "object") return;
  if (value.kind === "index") state.index = value;
  else if (value.kind === "video" && FRAGMENT_RE.test(value.fragment) && Array.isArray(value.clips)) {
    state.fragments.set(value.fragment, value);
  } else if (value.kind === "search") state.lastSearch = value;
};

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const tag = document.createElement("script");
    tag.src = src;
    tag.onload = () => { tag.remove(); resolve(); };
    tag.onerror = () => { tag.remove(); reject(new Error("cannot load " + src)); };
    document.head.appendChild(tag);
  });
}

function loadFragment(fragment) {
  if (!FRAGMENT_RE.test(fragment)) return Promise.resolve(null);
  if (state.fragments.has(fragment)) return Promise.resolve(state.fragments.get(fragment));
  if (!state.loading.has(fragment)) {
    state.loading.set(fragment, loadScript("data/" + fragment + ".js")
      .then(() => state.fragments.get(fragment) || null, () => null)
      .finally(() => state.loading.delete(fragment)));
  }
  return state.loading.get(fragment);
}

async function loadFragments(fragments, progress) {
  const list = [...new Set(fragments)];
  let next = 0, done = 0;
  async function worker() {
    while (next < list.length) {
      const f = list[next++];
      await loadFragment(f);
      done += 1;
      if (progress) progress(done, list.length);
    }
  }
  await Promise.all(Array.from({length: Math.min(PARALLEL, list.length)}, worker));
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers (text only, never markup)

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

const $ = (id) => document.getElementById(id);
const fmt = (v, digits) => (typeof v === "number" && isFinite(v)) ? v.toFixed(digits) : "—";

function numberInput(id) {
  const raw = $(id).value.trim();
  const v = raw === "" ? NaN : Number(raw);
  return isFinite(v) ? v : null;
}

// ---------------------------------------------------------------------------------------------
// Filters and sort over the index (every clip, no card data needed)

function filters() {
  return {status: $("f-status").value, mmin: numberInput("f-motion-min"), mmax: numberInput("f-motion-max"),
          amin: numberInput("f-aesthetic-min"), amax: numberInput("f-aesthetic-max"),
          captioned: $("f-captioned").checked, text: $("f-text").value.trim().toLowerCase(),
          source: $("f-source").value.trim().toLowerCase(), sort: $("f-sort").value,
          size: Number($("f-size").value) || 48};
}

function inRange(v, lo, hi) {
  if (lo === null && hi === null) return true;
  if (Number.isNaN(v)) return false;
  return (lo === null || v >= lo) && (hi === null || v <= hi);
}

function videoMatches(video, f) {
  if (state.onlyVideo) return video.f === state.onlyVideo;
  return !f.source || video.name.toLowerCase().includes(f.source);
}

// The clips that pass the index's filters, as [video number, clip number] pairs, sorted.
function selectClips(f) {
  const out = [];
  state.videos.forEach((video, vi) => {
    if (!videoMatches(video, f)) return;
    const c = video.cols;
    for (let i = 0; i < video.clips; i++) {
      const k = c.k[i];
      if (f.status === "passed" && !(k & PASSED)) continue;
      if (f.status === "filtered" && (k & PASSED)) continue;
      if (f.captioned && !(k & HAS_CAPTION)) continue;
      if (!inRange(c.m[i], f.mmin, f.mmax) || !inRange(c.a[i], f.amin, f.amax)) continue;
      out.push([vi, i]);
    }
  });
  const [key, dir] = f.sort.split("-");
  const col = {duration: "d", motion: "m", aesthetic: "a"}[key];
  if (col) {
    const sign = dir === "asc" ? 1 : -1;
    const value = (p) => state.videos[p[0]].cols[col][p[1]];
    out.sort((p, q) => {
      const a = value(p), b = value(q);
      if (Number.isNaN(a) && Number.isNaN(b)) return 0;
      if (Number.isNaN(a)) return 1;  // clips without the score last, either way
      if (Number.isNaN(b)) return -1;
      return (a - b) * sign || p[0] - q[0] || p[1] - q[1];
    });
  }
  return out;
}

function captionText(clip) {
  const parts = [];
  for (const w of clip.windows || []) {
    for (const [, text] of (w.captions || []).concat(w.enhanced || [])) parts.push(String(text));
  }
  return parts.join("\n").toLowerCase();
}

// Caption text lives in the fragments: load those of the candidate videos, then keep the matches.
async function textFilter(selected, text, renderId) {
  const wanted = [...new Set(selected.map((p) => state.videos[p[0]].f))];
  await loadFragments(wanted, (done, all) => {
    if (renderId === state.renderId) $("status").textContent = `searching captions: ${done} of ${all} videos loaded`;
  });
  return selected.filter((p) => {
    const frag = state.fragments.get(state.videos[p[0]].f);
    const clip = frag && frag.clips[p[1]];
    return clip && captionText(clip).includes(text);
  });
}

// ---------------------------------------------------------------------------------------------
// Cards

function row(parent, label, value) {
  const line = el("div", "row");
  line.appendChild(el("span", "label", label));
  line.appendChild(el("span", "value", value));
  parent.appendChild(line);
  return line;
}

function resolution(w, h, fps) {
  if (typeof w !== "number" || typeof h !== "number") return "—";
  return `${w}×${h}` + (typeof fps === "number" ? ` @ ${fmt(fps, 2)} fps` : "");
}

function renderCard(video, clip, score) {
  const card = el("article", "card " + (clip.passed ? "passed" : "filtered"));
  card.dataset.uuid = UUID_RE.test(clip.uuid) ? clip.uuid : "";
  const preview = (clip.windows || []).map((w) => w.preview).find((p) => typeof p === "string" && PREVIEW_RE.test(p));
  if (preview) {
    const img = el("img", "preview");
    img.loading = "lazy";
    img.alt = "preview of clip " + clip.uuid;
    img.src = "../" + preview;
    card.appendChild(img);
  } else {
    card.appendChild(el("div", "preview placeholder", "no preview"));
  }
  const body = el("div", "body");
  const title = el("div", "uuid", clip.uuid);
  body.appendChild(title);
  if (typeof score === "number") row(body, "score", fmt(score, 4)).classList.add("score");
  row(body, "status", clip.passed ? "passed" : "filtered by " + String(clip.filtered_by || "unknown"))
    .classList.add(clip.passed ? "ok" : "bad");
  row(body, "span", `${fmt(clip.start, 2)}–${fmt(clip.end, 2)} s (${fmt(clip.duration, 2)} s)` +
      (clip.snapped ? ", on keyframes" : ""));
  row(body, "source", video.rel_path);
  row(body, "resolution", resolution(clip.width, clip.height, clip.fps) +
      ` (source ${resolution(clip.source_width, clip.source_height, clip.source_fps)})`);
  row(body, "motion", `${fmt(clip.motion, 4)} (per patch min ${fmt(clip.motion_patch, 4)})`);
  row(body, "aesthetic", fmt(clip.aesthetic, 4));
  if (clip.cluster !== null && clip.cluster !== undefined) {
    row(body, "dedup", `cluster ${clip.cluster}` + (clip.duplicate_of ?
      `, duplicate of ${clip.duplicate_of} (${fmt(clip.duplicate_score, 4)})` : ""));
  }
  for (const [key, message] of clip.errors || []) row(body, "error", `${key}: ${message}`).classList.add("bad");
  for (const w of clip.windows || []) {
    const texts = (w.captions || []).map((t) => [t, "caption"]).concat((w.enhanced || []).map((t) => [t, "enhanced"]));
    if (!texts.length) continue;
    const block = el("div", "window");
    block.appendChild(el("div", "frames", `frames ${w.s}–${w.e}`));
    for (const [[model, text], kind] of texts) {
      const p = el("p", "caption " + kind);
      p.appendChild(el("span", "model", `${model}${kind === "enhanced" ? " (enhanced)" : ""}: `));
      p.appendChild(document.createTextNode(String(text)));
      block.appendChild(p);
    }
    body.appendChild(block);
  }
  if (typeof clip.clip === "string" && CLIP_RE.test(clip.clip)) {
    const a = el("a", "clip-link", "clip mp4");
    a.href = "../" + clip.clip;
    body.appendChild(a);
  }
  card.appendChild(body);
  return card;
}

// ---------------------------------------------------------------------------------------------
// Pages

async function render() {
  const renderId = ++state.renderId;
  const f = filters();
  const cards = $("cards");
  let items;  // [video number, clip number, score?]
  if (state.search) {
    items = state.search;
  } else {
    let selected = selectClips(f);
    if (f.text) selected = await textFilter(selected, f.text, renderId);
    items = selected;
  }
  if (renderId !== state.renderId) return;
  const pages = Math.max(1, Math.ceil(items.length / f.size));
  state.page = Math.min(Math.max(0, state.page), pages - 1);
  const shown = items.slice(state.page * f.size, (state.page + 1) * f.size);
  $("status").textContent = "loading…";
  await loadFragments(shown.map((p) => state.videos[p[0]].f));
  if (renderId !== state.renderId) return;
  const nodes = [];
  for (const [vi, ci, score] of shown) {
    const frag = state.fragments.get(state.videos[vi].f);
    const clip = frag && frag.clips[ci];
    if (clip) nodes.push(renderCard(frag, clip, score));
  }
  cards.replaceChildren(...nodes);
  $("page-info").textContent = `page ${state.page + 1} of ${pages}`;
  $("prev").disabled = state.page === 0;
  $("next").disabled = state.page >= pages - 1;
  const what = state.search ? `search “${state.searchQuery}”: ` : "";
  $("status").textContent = `${what}${items.length} clip(s) match; showing ${shown.length ? state.page * f.size + 1 : 0}` +
    `–${state.page * f.size + shown.length}`;
  if (window.galleryFirstPageMs === undefined) window.galleryFirstPageMs = performance.now();  // benchmarks read it
  document.body.dataset.ready = String(renderId);
}

// #search=<slug>: the clips a `curation-assets search` wrote, in its order, with their scores.
async function openSearch(slug) {
  state.lastSearch = null;
  try { await loadScript("searches/" + slug + ".js"); } catch (e) { /* reported below */ }
  const result = state.lastSearch;
  if (!result || !Array.isArray(result.results)) {
    state.search = [];
    state.searchQuery = slug;
    $("status").textContent = `no search result named ${slug} (curation-assets search writes them)`;
    return;
  }
  state.searchQuery = typeof result.query === "string" ? result.query : slug;
  const byFragment = new Map(state.videos.map((v, i) => [v.f, i]));
  const rows = result.results.filter((r) => r && UUID_RE.test(r.clip_uuid) && FRAGMENT_RE.test(r.fragment) &&
                                      byFragment.has(r.fragment));
  await loadFragments(rows.map((r) => r.fragment));
  state.search = [];
  for (const r of rows) {
    const frag = state.fragments.get(r.fragment);
    const ci = frag ? frag.clips.findIndex((c) => c.uuid === r.clip_uuid) : -1;
    if (ci >= 0) state.search.push([byFragment.get(r.fragment), ci, typeof r.score === "number" ? r.score : null]);
  }
}

async function route() {
  const hash = new URLSearchParams(location.hash.slice(1));
  state.search = null;
  state.onlyVideo = null;
  state.page = 0;
  const video = hash.get("video"), search = hash.get("search");
  if (video !== null && FRAGMENT_RE.test(video)) state.onlyVideo = video;
  if (search !== null) {
    if (SLUG_RE.test(search)) await openSearch(search);
    else { state.search = []; state.searchQuery = "(invalid name)"; }
  }
  $("all-clips").hidden = !(state.onlyVideo || state.search);
  $("filters").classList.toggle("disabled", Boolean(state.search));
  await render();
}

// A summary's per-clip columns are base64 of little-endian arrays (float32, NaN: no score; uint8 flags).
function unpack(text, Type, n) {
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  if (bytes.length !== n * Type.BYTES_PER_ELEMENT) throw new Error("column length");
  return new Type(bytes.buffer);
}

function videoOf(v) {
  if (!v || !FRAGMENT_RE.test(v.f) || typeof v.name !== "string" || !Number.isInteger(v.clips) || !v.cols) return null;
  try {
    const cols = {d: unpack(v.cols.d, Float32Array, v.clips), m: unpack(v.cols.m, Float32Array, v.clips),
                  a: unpack(v.cols.a, Float32Array, v.clips), k: unpack(v.cols.k, Uint8Array, v.clips)};
    return {f: v.f, name: v.name, clips: v.clips, passed: Number(v.passed) || 0, cols};
  } catch (e) {
    return null;
  }
}

async function start() {
  try {
    await loadScript("index.js");
  } catch (e) {
    $("status").textContent = "index.js is missing: build the gallery (curation-assets gallery --output-path ...)";
    return;
  }
  const index = state.index || {};
  state.videos = (Array.isArray(index.videos) ? index.videos : []).map(videoOf).filter(Boolean);
  const clips = state.videos.reduce((n, v) => n + v.clips, 0);
  const passed = state.videos.reduce((n, v) => n + v.passed, 0);
  $("totals").textContent = `${state.videos.length} videos, ${clips} clips (${passed} passed, ${clips - passed} filtered)`;
  if (index.datacard === "datacard.html") $("datacard").hidden = false;
  const list = $("sources");
  for (const v of state.videos.slice(0, 5000)) { const o = el("option"); o.value = v.name; list.appendChild(o); }
  for (const input of document.querySelectorAll("#filters input, #filters select")) {
    input.addEventListener(input.type === "search" || input.type === "number" ? "input" : "change",
                           () => { state.page = 0; render(); });
  }
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("prev").addEventListener("click", () => { state.page -= 1; render(); });
  $("next").addEventListener("click", () => { state.page += 1; render(); });
  $("all-clips").addEventListener("click", (e) => { e.preventDefault(); location.hash = ""; });
  window.addEventListener("hashchange", route);
  await route();
}

start();
