// Image grid: thumbnails (binary PNG buffers) with their labels and scores, paged and sortable.
// Every label is set with textContent, never innerHTML: class and concept names are user data.
// Each part redraws only when its own data changes: the tiles when the page's tiles arrive,
// the header on title/page/total, the selection by toggling one CSS class.

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function fmt(x) {
  return x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(2);
}

function render({ model, el: root }) {
  root.classList.add("semheat-grid");
  const header = el("div", "semheat-grid-header");
  const title = el("span", "semheat-grid-title");
  const sort = el("select", "semheat-grid-sort");
  sort.setAttribute("aria-label", "sort the inputs by");
  const prev = el("button", "semheat-grid-prev", "◀");
  prev.setAttribute("aria-label", "previous page");
  const pageInfo = el("span", "semheat-grid-page");
  pageInfo.setAttribute("aria-live", "polite");
  const next = el("button", "semheat-grid-next", "▶");
  next.setAttribute("aria-label", "next page");
  const overlayLabel = el("label", "semheat-grid-overlay");
  const overlay = document.createElement("input");
  overlay.type = "checkbox";
  overlayLabel.append(overlay, document.createTextNode(" concept maps"));
  const sortLabel = el("span", null, "sort by ");
  sortLabel.setAttribute("aria-hidden", "true");
  header.append(title, el("span", "semheat-grid-spacer"), overlayLabel, sortLabel, sort, prev,
                pageInfo, next);
  overlay.checked = model.get("overlay");
  overlay.addEventListener("change", () => {
    model.set("overlay", overlay.checked);
    model.save_changes();
  });
  model.on("change:overlay", () => { overlay.checked = model.get("overlay"); });
  const body = el("div", "semheat-grid-body");
  body.setAttribute("role", "list");
  body.setAttribute("aria-label", "the inputs behind the selected cell");
  root.append(header, body);
  let urls = [];

  function drawSortOptions() {
    sort.replaceChildren();
    for (const [value, label] of model.get("sort_options")) {
      const opt = el("option", null, label);
      opt.value = value;
      sort.append(opt);
    }
    sort.value = model.get("sort_by");
  }

  function drawHeader() {
    title.textContent = model.get("title");
    const total = model.get("total");
    const pages = Math.max(1, Math.ceil(total / model.get("page_size")));
    const page = model.get("page");
    pageInfo.textContent = `${page + 1} / ${pages} (${total})`;
    prev.disabled = page <= 0;
    next.disabled = page >= pages - 1;
  }

  function drawSelection() {
    const selected = String(model.get("selected"));
    for (const tile of body.querySelectorAll(".semheat-tile")) {
      tile.classList.toggle("semheat-tile-selected", tile.dataset.index === selected);
    }
  }

  function drawTiles() {
    urls.forEach((u) => URL.revokeObjectURL(u));
    urls = [];
    body.replaceChildren();
    const tiles = model.get("tiles");
    const images = model.get("images");
    if (!tiles.length) {
      body.append(el("div", "semheat-grid-empty", model.get("empty_message")));
      return;
    }
    tiles.forEach((t, i) => {
      const tile = el("button", "semheat-tile");  // focusable; Enter or Space opens it
      tile.type = "button";
      tile.dataset.index = String(t.index);
      tile.setAttribute("role", "listitem");
      if (!t.correct) tile.classList.add("semheat-tile-wrong");
      const img = document.createElement("img");
      const buf = images[i];
      if (buf) {
        const url = URL.createObjectURL(new Blob([buf], { type: "image/png" }));
        urls.push(url);
        img.src = url;
      }
      img.alt = "";  // the tile's own label says what it shows
      tile.append(img);
      const open = () => { model.set("selected", t.index); model.save_changes(); };
      if (t.lines) {  // tiles that say something else (e.g. a comparison) bring their lines
        t.lines.forEach((line, n) => tile.append(el("div", n ? "semheat-tile-score" : "semheat-tile-labels", line)));
        tile.setAttribute("aria-label", `input ${t.id}: ${t.lines.join("; ")}`);
        tile.addEventListener("click", open);
        body.append(tile);
        return;
      }
      tile.setAttribute("aria-label", `input ${t.id}: ${t.label} predicted ${t.prediction}; ` +
        `${t.concept ? `${t.concept} ${fmt(t.score)}; ` : ""}defect score ${fmt(t.defect)}, ` +
        `${t.flagged ? "flagged" : "passed"}${t.fault ? `; fault: ${t.fault}` : ""}`);
      tile.append(el("div", "semheat-tile-labels", `${t.label} → ${t.prediction}`));
      if (t.concept) tile.append(el("div", "semheat-tile-score", `${t.concept}: ${fmt(t.score)}`));
      const monitor = el("div", "semheat-tile-monitor", `defect ${fmt(t.defect)} · ${t.flagged ? "FLAG" : "ok"}`);
      monitor.title = t.flagged ? "flagged by the runtime monitor" : "passed by the runtime monitor";
      if (t.flagged) monitor.classList.add("semheat-tile-flagged");
      tile.append(monitor);
      if (t.fault) tile.append(el("div", "semheat-tile-fault", `fault: ${t.fault}`));
      tile.addEventListener("click", open);
      body.append(tile);
    });
    drawSelection();
  }

  sort.addEventListener("change", () => {
    model.set("sort_by", sort.value);
    model.set("page", 0);
    model.save_changes();
  });
  prev.addEventListener("click", () => {
    model.set("page", Math.max(0, model.get("page") - 1));
    model.save_changes();
  });
  next.addEventListener("click", () => {
    model.set("page", model.get("page") + 1);
    model.save_changes();
  });
  model.on("change:sort_options", drawSortOptions);
  model.on("change:sort_by", () => { sort.value = model.get("sort_by"); });
  for (const name of ["title", "total", "page"]) model.on(`change:${name}`, drawHeader);
  // Tiles, images and the empty message usually change together (one message): the changes
  // of one tick are drawn once.
  let pending = false;
  function scheduleTiles() {
    if (pending) return;
    pending = true;
    queueMicrotask(() => { pending = false; drawTiles(); });
  }
  for (const name of ["tiles", "images", "empty_message"]) model.on(`change:${name}`, scheduleTiles);
  model.on("change:selected", drawSelection);
  drawSortOptions();
  drawHeader();
  drawTiles();
  return () => urls.forEach((u) => URL.revokeObjectURL(u));
}

export default { render };
