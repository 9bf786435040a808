// Keyboard access to a heatmap: a focusable strip under the chart. Arrow keys move the cursor
// (outlined in the chart), Enter (or Space) opens the cell (the grid shows its inputs), Escape
// clears. The cell's description is read out (aria-live): it is set as text only.
import type { AnyWidget, RenderProps } from "@anywidget/types";
import { el, Lifetime } from "./dom";

export interface CellKeysModel {
  _label: string;
  _request: { keys?: KeyEntry[]; session?: string };
}

export type KeyEntry = ({ move: [number, number] } | { open: true } | { clear: true }) & { seq: number };

const MOVES: Record<string, [number, number]> = {
  ArrowUp: [-1, 0],
  ArrowDown: [1, 0],
  ArrowLeft: [0, -1],
  ArrowRight: [0, 1],
};
/** How many of the latest keys travel with each request. */
export const LOG_LENGTH = 64;

/** The key entry a keydown means, or null when the strip ignores that key. */
export function keyOf(key: string): Omit<KeyEntry, "seq"> | null {
  const move = MOVES[key];
  if (move) return { move };
  if (key === "Enter" || key === " ") return { open: true };
  if (key === "Escape") return { clear: true };
  return null;
}

export function render({ model, el: root }: Pick<RenderProps<CellKeysModel>, "model" | "el">): () => void {
  const life = new Lifetime();
  // One id per rendered strip: the kernel tells apart the numbered logs of two views.
  const sessionId = `${Date.now()}-${Math.random()}`;
  root.classList.add("semheat-keys");
  const strip = el("div", "semheat-keys-strip");
  strip.tabIndex = 0;
  strip.setAttribute("role", "application");
  strip.setAttribute("aria-roledescription", "heatmap cursor");
  strip.setAttribute("aria-label", "heatmap: arrow keys move between cells, Enter opens a cell");
  const text = el("span", "semheat-keys-text");
  text.setAttribute("aria-live", "polite");
  const help = el("span", "semheat-keys-help", "⌨ focus here: arrows move · Enter opens");
  strip.append(text, help);
  root.append(strip);

  // Keys go out as a numbered log of the latest ones: when presses come faster than the kernel
  // answers, the widget manager sends only the last state, and the log loses none of them.
  let seq = 0;
  const log: KeyEntry[] = [];
  life.listen(strip, "keydown", (e) => {
    const key = keyOf(e.key);
    if (!key) return;
    e.preventDefault();
    seq += 1;
    log.push({ ...key, seq } as KeyEntry);
    if (log.length > LOG_LENGTH) log.shift();
    model.set("_request", { keys: [...log], session: sessionId });
    model.save_changes();
  });
  const draw = () => {
    text.textContent = model.get("_label");
  };
  life.onChange(model, ["_label"], draw);
  draw();
  return () => {
    life.dispose();
    strip.remove();
  };
}

export default { render } satisfies AnyWidget<CellKeysModel>;
