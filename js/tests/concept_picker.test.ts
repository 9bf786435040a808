import { afterEach, describe, expect, it, vi } from "vitest";
import { moved, type PickerModel, render } from "../src/concept_picker";
import { FakeModel, root } from "./fake_model";

const XSS = '<img src=x onerror="window.__pwned=1">';

function model(extra: Partial<PickerModel> = {}) {
  return new FakeModel<PickerModel>({ concepts: ["wet", "snowy", "stripes"], hidden: [], message: "", _busy: false, _request: {}, ...extra });
}

const names = (r: HTMLElement) => [...r.querySelectorAll<HTMLElement>(".semheat-picker-row")].map((x) => x.dataset.concept);
const box = (r: HTMLElement, name: string) =>
  r.querySelector(`.semheat-picker-row[data-concept="${name}"] input`) as HTMLInputElement;

afterEach(() => document.body.replaceChildren());

describe("concept picker", () => {
  it("renders one row per concept, ticked unless hidden", () => {
    const m = model({ hidden: ["snowy"], message: "hello" });
    const r = root();
    render({ model: m.asModel, el: r });
    expect(names(r)).toEqual(["wet", "snowy", "stripes"]);
    expect([...r.querySelectorAll<HTMLInputElement>(".semheat-picker-row input")].map((b) => b.checked)).toEqual([true, false, true]);
    expect(box(r, "wet").getAttribute("aria-label")).toBe("show wet");
    expect(r.querySelector(".semheat-picker-message")?.textContent).toBe("hello");
  });

  it("busy and message redraw only the status line, not the list (issue 27)", () => {
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    const list = r.querySelector(".semheat-picker-list") as HTMLElement;
    const rows = [...list.children];
    const spy = vi.spyOn(list, "replaceChildren");
    m.kernelSet({ _busy: true });
    expect((r.querySelector(".semheat-picker-add-button") as HTMLButtonElement).disabled).toBe(true);
    m.kernelSet({ message: "added 'stripes'", _busy: false });
    expect((r.querySelector(".semheat-picker-add-button") as HTMLButtonElement).disabled).toBe(false);
    expect(r.querySelector(".semheat-picker-message")?.textContent).toBe("added 'stripes'");
    m.kernelSet({ hidden: ["wet"] });
    expect(box(r, "wet").checked).toBe(false);
    expect(spy).not.toHaveBeenCalled();
    expect([...list.children]).toEqual(rows);
  });

  it("a new concept adds one row and keeps the others (and their focus)", () => {
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    const wet = r.querySelector('[data-concept="wet"]') as HTMLElement;
    wet.focus();
    m.kernelSet({ concepts: ["wet", "snowy", "stripes", "fur"] });
    expect(names(r)).toEqual(["wet", "snowy", "stripes", "fur"]);
    expect(r.querySelector('[data-concept="wet"]')).toBe(wet);
    m.kernelSet({ concepts: ["wet", "fur"] });
    expect(names(r)).toEqual(["wet", "fur"]);
  });

  it("ticking a box hides or shows that concept", () => {
    const m = model({ hidden: ["snowy"] });
    const r = root();
    render({ model: m.asModel, el: r });
    const wet = box(r, "wet");
    wet.checked = false;
    wet.dispatchEvent(new Event("change", { bubbles: true }));
    expect(new Set(m.saved[0]?.hidden)).toEqual(new Set(["snowy", "wet"]));
    const snowy = box(r, "snowy");
    snowy.checked = true;
    snowy.dispatchEvent(new Event("change", { bubbles: true }));
    expect(m.saved[1]?.hidden).toEqual(["wet"]);
  });

  it("filters rows by typing, case-insensitively", () => {
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    const filter = r.querySelector(".semheat-picker-filter") as HTMLInputElement;
    filter.value = " SN ";
    filter.dispatchEvent(new Event("input"));
    expect(names(r)).toEqual(["snowy"]);
    filter.value = "";
    filter.dispatchEvent(new Event("input"));
    expect(names(r)).toEqual(["wet", "snowy", "stripes"]);
  });

  it("Alt+↑ / Alt+↓ on a row reorder, keep focus on the moved row; plain arrows do nothing", () => {
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    const row = r.querySelector('[data-concept="stripes"]') as HTMLElement;
    row.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowUp", bubbles: true }));
    expect(m.saved).toEqual([]);
    row.focus();
    row.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowUp", altKey: true, bubbles: true, cancelable: true }));
    expect(m.saved.at(-1)?.concepts).toEqual(["wet", "stripes", "snowy"]);
    expect(names(r)).toEqual(["wet", "stripes", "snowy"]);
    expect(document.activeElement).toBe(row);
    row.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", altKey: true, bubbles: true }));
    expect(m.saved.at(-1)?.concepts).toEqual(["wet", "snowy", "stripes"]);
  });

  it("dragging a row onto another moves it there", () => {
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    const stripes = r.querySelector('[data-concept="stripes"]') as HTMLElement;
    const wet = r.querySelector('[data-concept="wet"]') as HTMLElement;
    stripes.dispatchEvent(new Event("dragstart", { bubbles: true }));
    expect(stripes.classList.contains("semheat-picker-dragging")).toBe(true);
    wet.dispatchEvent(new Event("dragover", { bubbles: true, cancelable: true }));
    expect(wet.classList.contains("semheat-picker-over")).toBe(true);
    wet.dispatchEvent(new Event("drop", { bubbles: true, cancelable: true }));
    expect(wet.classList.contains("semheat-picker-over")).toBe(false);
    stripes.dispatchEvent(new Event("dragend", { bubbles: true }));
    expect(stripes.classList.contains("semheat-picker-dragging")).toBe(false);
    expect(m.saved).toEqual([{ concepts: ["stripes", "wet", "snowy"] }]);
  });

  it("Enter or the add button sends the typed concept with a fresh nonce; blank sends nothing", () => {
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    const input = r.querySelector(".semheat-picker-new") as HTMLInputElement;
    input.value = "   ";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(m.saved).toEqual([]);
    input.value = " fur ";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    input.value = "fur";
    (r.querySelector(".semheat-picker-add-button") as HTMLElement).click();
    expect(m.saved.map((s) => s._request?.name)).toEqual(["fur", "fur"]);
    expect(m.saved[0]?._request?.nonce).not.toBe(m.saved[1]?._request?.nonce);
    expect(input.value).toBe("");
  });

  it("sets names as text, never as HTML", () => {
    const m = model({ concepts: [XSS], message: XSS });
    const r = root();
    render({ model: m.asModel, el: r });
    expect(r.querySelector("img")).toBeNull();
    expect(r.querySelector(".semheat-picker-name")?.textContent).toBe(XSS);
    expect(r.querySelector(".semheat-picker-message")?.textContent).toBe(XSS);
  });

  it("removes every listener on cleanup", () => {
    const m = model();
    const r = root();
    const cleanup = render({ model: m.asModel, el: r });
    cleanup();
    expect(m.listenerCount).toBe(0);
    const wet = box(r, "wet");
    wet.checked = false;
    wet.dispatchEvent(new Event("change", { bubbles: true }));
    (r.querySelector(".semheat-picker-add-button") as HTMLElement).click();
    expect(m.saved).toEqual([]);
  });

  it("moved() clamps the target", () => {
    expect(moved(["a", "b", "c"], "a", 9)).toEqual(["b", "c", "a"]);
    expect(moved(["a", "b", "c"], "c", -3)).toEqual(["c", "a", "b"]);
  });
});
