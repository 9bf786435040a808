import { afterEach, describe, expect, it } from "vitest";
import { type CellKeysModel, keyOf, LOG_LENGTH, render } from "../src/cell_keys";
import { FakeModel, root } from "./fake_model";

function model(label = "") {
  return new FakeModel<CellKeysModel>({ _label: label, _request: {} });
}
const press = (target: HTMLElement, key: string) => {
  const e = new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true });
  target.dispatchEvent(e);
  return e;
};

afterEach(() => document.body.replaceChildren());

describe("heatmap keyboard strip", () => {
  it("renders a focusable strip that reads out its label as text", () => {
    const m = model("<b>ship</b> · wet");
    const r = root();
    render({ model: m.asModel, el: r });
    const strip = r.querySelector(".semheat-keys-strip") as HTMLElement;
    expect(strip.tabIndex).toBe(0);
    expect(r.querySelector(".semheat-keys-text")?.textContent).toBe("<b>ship</b> · wet");
    expect(r.querySelector("b")).toBeNull();
    expect(r.querySelector(".semheat-keys-text")?.getAttribute("aria-live")).toBe("polite");
    m.kernelSet({ _label: "ship · wet (open)" });
    expect(r.querySelector(".semheat-keys-text")?.textContent).toBe("ship · wet (open)");
  });

  it("arrows move, Enter/Space open, Escape clears (README); other keys pass through", () => {
    expect(keyOf("ArrowUp")).toEqual({ move: [-1, 0] });
    expect(keyOf("ArrowDown")).toEqual({ move: [1, 0] });
    expect(keyOf("ArrowLeft")).toEqual({ move: [0, -1] });
    expect(keyOf("ArrowRight")).toEqual({ move: [0, 1] });
    expect(keyOf("Enter")).toEqual({ open: true });
    expect(keyOf(" ")).toEqual({ open: true });
    expect(keyOf("Escape")).toEqual({ clear: true });
    expect(keyOf("a")).toBeNull();
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    const strip = r.querySelector(".semheat-keys-strip") as HTMLElement;
    expect(press(strip, "Tab").defaultPrevented).toBe(false);
    expect(m.saved).toEqual([]);
    expect(press(strip, "ArrowDown").defaultPrevented).toBe(true);
    press(strip, "Enter");
    const request = m.saved.at(-1)?._request;
    expect(request?.keys).toEqual([{ move: [1, 0], seq: 1 }, { open: true, seq: 2 }]);
    expect(typeof request?.session).toBe("string");
  });

  it("sends a numbered log of the latest keys, the same session id each time", () => {
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    const strip = r.querySelector(".semheat-keys-strip") as HTMLElement;
    for (let i = 0; i < LOG_LENGTH + 6; i++) press(strip, "ArrowRight");
    const last = m.saved.at(-1)?._request;
    expect(last?.keys?.length).toBe(LOG_LENGTH);
    expect(last?.keys?.[0]?.seq).toBe(7);
    expect(last?.keys?.at(-1)?.seq).toBe(LOG_LENGTH + 6);
    expect(new Set(m.saved.map((s) => s._request?.session)).size).toBe(1);
    const other = model();
    render({ model: other.asModel, el: root() });
    press(document.querySelectorAll<HTMLElement>(".semheat-keys-strip")[1] as HTMLElement, "Escape");
    expect(other.saved[0]?._request?.session).not.toBe(last?.session);
  });

  it("removes its listeners on cleanup", () => {
    const m = model();
    const r = root();
    const strip = (() => {
      const cleanup = render({ model: m.asModel, el: r });
      const s = r.querySelector(".semheat-keys-strip") as HTMLElement;
      cleanup();
      return s;
    })();
    expect(m.listenerCount).toBe(0);
    press(strip, "Enter");
    expect(m.saved).toEqual([]);
  });
});
