// clipsearch serve: search as you type, more on scroll, refine, drop a photo, view, duplicates.
// Plain script, no build step. The server renders every piece of HTML (escaped there); this
// file only moves those pieces around and reads values with textContent and dataset.
"use strict";

const DEBOUNCE_MS = 180;
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// ---- searching ------------------------------------------------------------------------

let searchSerial = 0;
let inflight = null;
let loadingMore = false;
let moreObserver = null;

function formQuery() {
  const form = $("#search");
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) {
    if (String(value).trim() !== "") params.append(key, value);
  }
  return params;
}

// Show the search at `pageUrl` (a "/?..." URL): fetch its fragment and swap it in.
async function showSearch(pageUrl, { push = false, fromTyping = false } = {}) {
  const target = new URL(pageUrl, location.href);
  const serial = ++searchSerial;
  if (inflight) inflight.abort();
  inflight = new AbortController();
  let html;
  try {
    const answer = await fetch("/results" + target.search, { signal: inflight.signal });
    html = await answer.text();
  } catch (err) {
    if (err.name === "AbortError") return;
    toast("The server did not answer: is clipsearch serve still running?");
    return;
  }
  if (serial !== searchSerial) return;
  $("#results").innerHTML = html;
  const address = "/" + target.search;
  if (push) history.pushState(null, "", address);
  else history.replaceState(null, "", address);
  syncForm(target.searchParams, fromTyping);
  watchForMore();
}

// After a chip, "more like this" or the history changed the search, show it in the form.
function syncForm(params, fromTyping) {
  if (!fromTyping) {
    $("#q").value = params.get("q") || "";
    const folder = $("#in");
    if (folder) folder.value = params.get("in") || "";
  }
  const uploads = $("#uploads");
  uploads.replaceChildren();
  for (const key of params.getAll("img")) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = "img";
    input.value = key;
    uploads.append(input);
  }
  const q = params.get("q");
  document.title = q ? q + " · clipsearch" : "clipsearch";
}

function watchForMore() {
  if (moreObserver) moreObserver.disconnect();
  const marker = $("#more");
  if (!marker) return;
  moreObserver = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadMore();
  }, { rootMargin: "600px" });
  moreObserver.observe(marker);
}

// Append the next page of results; resolves once they are in the grid.
async function loadMore() {
  const marker = $("#more");
  if (!marker || loadingMore) return false;
  loadingMore = true;
  const serial = searchSerial;
  try {
    const answer = await fetch(marker.dataset.next);
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    if (serial !== searchSerial) return false;
    $("#grid").append(...$$("#grid > .card", page));
    const next = $("#more", page);
    if (next) marker.replaceWith(next);
    else marker.remove();
    const summary = $("#summary", page);
    if (summary && !summary.classList.contains("error")) {
      $("#summary").textContent = `Best ${$$("#grid > .card").length} matches` +
        (next ? " (scroll for more)" : "");
    }
    watchForMore();
    return true;
  } finally {
    loadingMore = false;
  }
}

function setUpSearch() {
  const form = $("#search");
  if (!form) return;
  let timer = null;
  const typed = () => {
    clearTimeout(timer);
    timer = setTimeout(() => showSearch("/?" + formQuery(), { fromTyping: true }), DEBOUNCE_MS);
  };
  $("#q").addEventListener("input", typed);
  for (const input of $$(".filters input", form)) input.addEventListener("input", typed);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    showSearch("/?" + formQuery(), { push: true, fromTyping: true });
  });
  // Chips' ×, "more like this" and "less like this" are links to the refined search.
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a.remove, .card a.more, .card a.less");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    showSearch(link.getAttribute("href"), { push: true });
  });
  window.addEventListener("popstate", () => showSearch(location.href));
  watchForMore();
  setUpDrop();
}

// ---- a dropped or pasted photo ----------------------------------------------------------

function setUpDrop() {
  const zone = $("#dropzone");
  let depth = 0;
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  document.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    depth += 1;
    zone.hidden = false;
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.hidden = true;
  });
  document.addEventListener("dragover", (event) => {
    if (hasFiles(event)) event.preventDefault();
  });
  document.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    zone.hidden = true;
    const file = Array.from(event.dataTransfer.files).find((f) => f.type.startsWith("image/"))
      || event.dataTransfer.files[0];
    if (file) searchByPhoto(file);
  });
  document.addEventListener("paste", (event) => {
    const file = Array.from(event.clipboardData?.files || []).find((f) => f.type.startsWith("image/"));
    if (!file) return;
    event.preventDefault();
    searchByPhoto(file);
  });
}

async function searchByPhoto(file) {
  toast("Looking at the photo…");
  let answer;
  try {
    const response = await fetch("/upload", {
      method: "POST",
      body: file,
      headers: { "content-type": file.type || "application/octet-stream" },
    });
    answer = await response.json();
  } catch (err) {
    toast("The photo could not be sent to the server.");
    return;
  }
  if (answer.error) {
    toast(answer.error);
    return;
  }
  await showSearch(answer.url, { push: true });
  toast("Photos like the one you dropped");
}

// ---- the photo viewer -------------------------------------------------------------------

let current = null;

function cards() {
  return $$(".card[data-id]");
}

function openViewer(card) {
  const viewer = $("#viewer");
  if (current) current.classList.remove("current");
  current = card;
  card.classList.add("current");
  const path = card.dataset.path;
  $(".full", viewer).src = "/image/" + card.dataset.id;
  $(".full", viewer).alt = path;
  $(".name", viewer).textContent = path.split("/").pop();
  $(".path", viewer).textContent = path;
  $(".score", viewer).textContent = card.dataset.score ? "score " + card.dataset.score : "";
  const facts = $(".facts", card);
  $(".facts", viewer).replaceChildren(...(facts ? Array.from(facts.children, (n) => n.cloneNode(true)) : []));
  for (const kind of ["more", "less"]) {
    const source = $(".actions a." + kind, card);
    const target = $(".actions a." + kind, viewer);
    target.hidden = !source;
    if (source) target.setAttribute("href", source.getAttribute("href"));
  }
  viewer.hidden = false;
  $(".close", viewer).focus({ preventScroll: true });
  card.scrollIntoView({ block: "nearest" });
  preload(card);
}

function preload(card) {
  const all = cards();
  const at = all.indexOf(card);
  for (const near of [all[at + 1], all[at - 1]]) {
    if (near) new Image().src = "/image/" + near.dataset.id;
  }
}

function closeViewer() {
  $("#viewer").hidden = true;
  $(".full", $("#viewer")).removeAttribute("src");
  if (current) {
    current.classList.remove("current");
    $(".open", current)?.focus();
  }
}

async function step(delta) {
  let all = cards();
  let at = all.indexOf(current) + delta;
  if (at >= all.length && (await loadMore())) all = cards();
  if (at < 0 || at >= all.length) return;
  openViewer(all[at]);
}

function setUpViewer() {
  const viewer = $("#viewer");
  document.addEventListener("click", (event) => {
    const open = event.target.closest(".card a.open");
    if (!open || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    openViewer(open.closest(".card"));
  });
  $(".close", viewer).addEventListener("click", closeViewer);
  $(".prev", viewer).addEventListener("click", () => step(-1));
  $(".next", viewer).addEventListener("click", () => step(1));
  $(".copy", viewer).addEventListener("click", () => copyText(current.dataset.path, "Path copied"));
  for (const kind of ["more", "less"]) {
    $(".actions a." + kind, viewer).addEventListener("click", (event) => {
      if (!$("#search")) return;
      event.preventDefault();
      closeViewer();
      showSearch(event.currentTarget.getAttribute("href"), { push: true });
    });
  }
  viewer.addEventListener("click", (event) => {
    if (event.target === viewer || event.target.classList.contains("stage")) closeViewer();
  });
  document.addEventListener("keydown", (event) => {
    if (viewer.hidden) return;
    if (event.key === "Escape") closeViewer();
    else if (event.key === "ArrowRight") step(1);
    else if (event.key === "ArrowLeft") step(-1);
    else return;
    event.preventDefault();
  });
}

// ---- duplicates ---------------------------------------------------------------------------

function setUpDupes() {
  const copy = $("#copy-chosen");
  if (!copy) return;
  copy.addEventListener("click", () => {
    const paths = $$("#chosen input[name=id]:checked").map((box) => box.dataset.path);
    if (!paths.length) {
      toast("Nothing chosen");
      return;
    }
    copyText(paths.join("\n") + "\n", `${paths.length} path${paths.length === 1 ? "" : "s"} copied`);
  });
  $("#choose-none").addEventListener("click", () => {
    for (const box of $$("#chosen input[name=id]")) box.checked = false;
  });
}

// ---- small things -------------------------------------------------------------------------

async function copyText(text, done) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  toast(done);
}

let toastTimer = null;
function toast(text) {
  const box = $("#toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 2500);
}

setUpSearch();
setUpViewer();
setUpDupes();
