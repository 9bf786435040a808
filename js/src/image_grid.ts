// Image grid: thumbnails (binary PNG buffers) with their labels and scores, paged and sortable.
// Every label is set as text, never HTML: class and concept names are user data. Each part
// redraws only when its own data changes: the tiles when the page's tiles arrive, the header on
// title/page/total, the selection by toggling one CSS class.
import type { AnyWidget, RenderProps } from "@anywidget/types";
import { el, fmt, Lifetime } from "./dom";

export interface Tile {
  index: number;
  id: number;
  label?: string;
  prediction?: string;
  correct?: boolean;
  concept?: string;
  score?: number | null;
  defect?: number | null;
  flagged?: boolean;
  fault?: string;
  lines?: string[];
}

export interface GridModel {
  selected: number;
  sort_by: string;
  page: number;
  page_size: number;
  overlay: boolean;
  _tiles: Tile[];
  _images: Array<ArrayBuffer | DataView | null>;
  _title: string;
  _empty_message: string;
  _total: number;
  _sort_options: Array<[string, string]>;
}

/** What a screen reader says for a tile. */
export function tileLabel(t: Tile): string {
  if (t.lines) return `input ${t.id}: ${t.lines.join("; ")}`;
  return (
    `input ${t.id}: ${t.label} predicted ${t.prediction}; ` +
    `${t.concept ? `${t.concept} ${fmt(t.score)}; ` : ""}defect score ${fmt(t.defect)}, ` +
    `${t.flagged ? "flagged" : "passed"}${t.fault ? `; fault: ${t.fault}` : ""}`
  );
}

export function render({ model, el: root }: Pick<RenderProps<GridModel>, "model" | "el">): () => void {
  const life = new Lifetime();
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
  const overlay = el("input");
  overlay.type = "checkbox";
  overlayLabel.append(overlay, document.createTextNode(" concept maps"));
  const sortLabel = el("span", null, "sort by ");
  sortLabel.setAttribute("aria-hidden", "true");
  header.append(title, el("span", "semheat-grid-spacer"), overlayLabel, sortLabel, sort, prev, pageInfo, next);
  const body = el("div", "semheat-grid-body");
  body.setAttribute("role", "list");
  body.setAttribute("aria-label", "the inputs behind the selected cell");
  root.append(header, body);

  function drawSortOptions(): void {
    sort.replaceChildren(
      ...model.get("_sort_options").map(([value, label]) => {
        const opt = el("option", null, label);
        opt.value = value;
        return opt;
      }),
    );
    sort.value = model.get("sort_by");
  }

  function drawHeader(): void {
    title.textContent = model.get("_title");
    const total = model.get("_total");
    const pages = Math.max(1, Math.ceil(total / model.get("page_size")));
    const page = model.get("page");
    pageInfo.textContent = `${page + 1} / ${pages} (${total})`;
    prev.disabled = page <= 0;
    next.disabled = page >= pages - 1;
  }

  function drawSelection(): void {
    const selected = String(model.get("selected"));
    for (const tile of body.querySelectorAll<HTMLElement>(".semheat-tile")) {
      tile.classList.toggle("semheat-tile-selected", tile.dataset.index === selected);
    }
  }

  function makeTile(t: Tile, buf: ArrayBuffer | DataView | null | undefined): HTMLButtonElement {
    const tile = el("button", "semheat-tile"); // focusable; Enter or Space opens it
    tile.type = "button";
    tile.dataset.index = String(t.index);
    tile.setAttribute("role", "listitem");
    if (!t.correct) tile.classList.add("semheat-tile-wrong");
    const img = el("img");
    img.alt = ""; // the tile's own label says what it shows
    if (buf) img.src = life.pngUrl(buf);
    tile.append(img);
    tile.setAttribute("aria-label", tileLabel(t));
    if (t.lines) {
      // tiles that say something else (e.g. a comparison) bring their lines
      t.lines.forEach((line, n) => {
        tile.append(el("div", n ? "semheat-tile-score" : "semheat-tile-labels", line));
      });
      return tile;
    }
    tile.append(el("div", "semheat-tile-labels", `${t.label} → ${t.prediction}`));
    if (t.concept) tile.append(el("div", "semheat-tile-score", `${t.concept}: ${fmt(t.score)}`));
    const monitor = el("div", "semheat-tile-monitor", `defect ${fmt(t.defect)} · ${t.flagged ? "FLAG" : "ok"}`);
    monitor.title = t.flagged ? "flagged by the runtime monitor" : "passed by the runtime monitor";
    if (t.flagged) monitor.classList.add("semheat-tile-flagged");
    tile.append(monitor);
    if (t.fault) tile.append(el("div", "semheat-tile-fault", `fault: ${t.fault}`));
    return tile;
  }

  function drawTiles(): void {
    life.revokeUrls();
    const tiles = model.get("_tiles");
    const images = model.get("_images");
    if (!tiles.length) {
      body.replaceChildren(el("div", "semheat-grid-empty", model.get("_empty_message")));
      return;
    }
    body.replaceChildren(...tiles.map((t, i) => makeTile(t, images[i])));
    drawSelection();
  }

  // One click listener for every tile (delegation): tiles carry no listeners of their own.
  life.listen(body, "click", (e) => {
    const tile = (e.target as HTMLElement | null)?.closest?.<HTMLElement>(".semheat-tile");
    if (!tile || tile.dataset.index === undefined) return;
    model.set("selected", Number(tile.dataset.index));
    model.save_changes();
  });
  life.listen(overlay, "change", () => {
    model.set("overlay", overlay.checked);
    model.save_changes();
  });
  life.listen(sort, "change", () => {
    model.set("sort_by", sort.value);
    model.set("page", 0);
    model.save_changes();
  });
  life.listen(prev, "click", () => {
    model.set("page", Math.max(0, model.get("page") - 1));
    model.save_changes();
  });
  life.listen(next, "click", () => {
    model.set("page", model.get("page") + 1);
    model.save_changes();
  });
  life.onChange(model, ["overlay"], () => {
    overlay.checked = model.get("overlay");
  });
  life.onChange(model, ["_sort_options"], drawSortOptions);
  life.onChange(model, ["sort_by"], () => {
    sort.value = model.get("sort_by");
  });
  life.onChange(model, ["_title", "_total", "page"], drawHeader);
  // Tiles, images and the empty message usually change together (one message): the changes of
  // one tick are drawn once.
  let pending = false;
  let disposed = false;
  life.onChange(model, ["_tiles", "_images", "_empty_message"], () => {
    if (pending) return;
    pending = true;
    queueMicrotask(() => {
      pending = false;
      if (!disposed) drawTiles();
    });
  });
  life.onChange(model, ["selected"], drawSelection);
  overlay.checked = model.get("overlay");
  drawSortOptions();
  drawHeader();
  drawTiles();
  return () => {
    disposed = true;
    life.dispose();
  };
}

export default { render } satisfies AnyWidget<GridModel>;
