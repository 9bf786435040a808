// Concept picker: filter by typing, show/hide and reorder concepts, add a free-text concept.
// Names are user data: they are only ever set as text. Reorder by dragging a row's handle, or
// from the keyboard: focus a row, Alt+↑ / Alt+↓. Each part redraws only when its own data
// changes: the rows on concepts/filter, the ticks on hidden, the status line on message/busy.
import type { AnyWidget, RenderProps } from "@anywidget/types";
import { el, Lifetime } from "./dom";

export interface PickerModel {
  concepts: string[];
  hidden: string[];
  message: string;
  _busy: boolean;
  _request: { name?: string; nonce?: number };
}

/** `order` with `name` moved to position `target` (clamped). */
export function moved(order: readonly string[], name: string, target: number): string[] {
  const rest = order.filter((c) => c !== name);
  const at = Math.max(0, Math.min(rest.length, target));
  rest.splice(at, 0, name);
  return rest;
}

export function render({ model, el: root }: Pick<RenderProps<PickerModel>, "model" | "el">): () => void {
  const life = new Lifetime();
  root.classList.add("semheat-picker");
  const filter = el("input", "semheat-picker-filter");
  filter.type = "search";
  filter.placeholder = "filter concepts";
  filter.setAttribute("aria-label", "filter concepts");
  const list = el("div", "semheat-picker-list");
  list.setAttribute("role", "list");
  list.setAttribute("aria-label", "concepts: tick to show; drag, or Alt+arrow keys, to reorder");
  const addRow = el("div", "semheat-picker-add");
  const input = el("input", "semheat-picker-new");
  input.type = "text";
  input.placeholder = "new concept, e.g. stripes";
  input.setAttribute("aria-label", "new concept");
  const add = el("button", "semheat-picker-add-button", "add");
  add.setAttribute("aria-label", "add the concept");
  const message = el("div", "semheat-picker-message");
  message.setAttribute("role", "status");
  addRow.append(input, add);
  root.append(filter, list, addRow, message);
  let dragged: string | null = null;
  let focusAfterDraw: string | null = null;
  const rows = new Map<string, HTMLDivElement>(); // concept -> its row (all concepts, filtered or not)

  function moveTo(name: string, target: number): void {
    model.set("concepts", moved(model.get("concepts"), name, target));
    model.save_changes();
  }

  function toggle(name: string, shown: boolean): void {
    const hidden = new Set(model.get("hidden"));
    if (shown) hidden.delete(name);
    else hidden.add(name);
    model.set("hidden", [...hidden]);
    model.save_changes();
  }

  function makeRow(name: string): HTMLDivElement {
    const row = el("div", "semheat-picker-row");
    row.dataset.concept = name;
    row.setAttribute("role", "listitem");
    row.tabIndex = 0;
    row.draggable = true;
    const handle = el("span", "semheat-picker-handle", "⠿");
    handle.setAttribute("aria-hidden", "true");
    const box = el("input");
    box.type = "checkbox";
    box.setAttribute("aria-label", `show ${name}`);
    row.append(handle, box, el("span", "semheat-picker-name", name));
    return row;
  }

  /** The rows, in order, filtered: rows are kept and reused, only their order is redrawn. */
  function drawRows(): void {
    const needle = filter.value.trim().toLowerCase();
    const order = model.get("concepts");
    const known = new Set(order);
    for (const name of [...rows.keys()]) if (!known.has(name)) rows.delete(name);
    const shown: HTMLDivElement[] = [];
    for (const name of order) {
      if (needle && !name.toLowerCase().includes(needle)) continue;
      let row = rows.get(name);
      if (!row) {
        row = makeRow(name);
        rows.set(name, row);
      }
      shown.push(row);
    }
    const same = shown.length === list.children.length && shown.every((r, i) => list.children[i] === r);
    if (!same) list.replaceChildren(...shown);
    drawTicks();
    if (focusAfterDraw) {
      rows.get(focusAfterDraw)?.focus();
      focusAfterDraw = null;
    }
  }

  function drawTicks(): void {
    const hidden = new Set(model.get("hidden"));
    for (const [name, row] of rows) {
      const box = row.querySelector("input") as HTMLInputElement;
      box.checked = !hidden.has(name);
    }
  }

  function drawStatus(): void {
    message.textContent = model.get("message");
    add.disabled = model.get("_busy");
  }

  function submit(): void {
    const name = input.value.trim();
    if (!name) return;
    // A synced request (with a nonce, so the same name twice is still a change).
    model.set("_request", { name, nonce: Date.now() + Math.random() });
    model.save_changes();
    input.value = "";
  }

  const rowOf = (e: Event): HTMLElement | null =>
    (e.target as HTMLElement | null)?.closest?.(".semheat-picker-row") ?? null;
  // One listener per event on the list (delegation): rows carry no listeners of their own.
  life.listen(list, "change", (e) => {
    const row = rowOf(e);
    const box = e.target as HTMLInputElement;
    if (row?.dataset.concept !== undefined && box.type === "checkbox") toggle(row.dataset.concept, box.checked);
  });
  life.listen(list, "dragstart", (e) => {
    const row = rowOf(e);
    if (!row?.dataset.concept) return;
    dragged = row.dataset.concept;
    if (e.dataTransfer) {
      e.dataTransfer.effectAllowed = "move";
      e.dataTransfer.setData("text/plain", dragged);
    }
    row.classList.add("semheat-picker-dragging");
  });
  life.listen(list, "dragend", (e) => rowOf(e)?.classList.remove("semheat-picker-dragging"));
  life.listen(list, "dragover", (e) => {
    const row = rowOf(e);
    if (!row) return;
    e.preventDefault();
    row.classList.add("semheat-picker-over");
  });
  life.listen(list, "dragleave", (e) => rowOf(e)?.classList.remove("semheat-picker-over"));
  life.listen(list, "drop", (e) => {
    const row = rowOf(e);
    if (!row?.dataset.concept) return;
    e.preventDefault();
    row.classList.remove("semheat-picker-over");
    const name = row.dataset.concept;
    if (dragged && dragged !== name) moveTo(dragged, model.get("concepts").indexOf(name));
    dragged = null;
  });
  life.listen(list, "keydown", (e) => {
    const row = rowOf(e);
    if (!row?.dataset.concept) return;
    if (!e.altKey || (e.key !== "ArrowUp" && e.key !== "ArrowDown")) return;
    e.preventDefault();
    const name = row.dataset.concept;
    focusAfterDraw = name;
    moveTo(name, model.get("concepts").indexOf(name) + (e.key === "ArrowUp" ? -1 : 1));
  });
  life.listen(filter, "input", drawRows);
  life.listen(add, "click", submit);
  life.listen(input, "keydown", (e) => {
    if (e.key === "Enter") submit();
  });
  life.onChange(model, ["concepts"], drawRows);
  life.onChange(model, ["hidden"], drawTicks);
  life.onChange(model, ["message", "_busy"], drawStatus);
  drawRows();
  drawStatus();
  return () => life.dispose();
}

export default { render } satisfies AnyWidget<PickerModel>;
