import { afterEach, describe, expect, it, vi } from "vitest";
import { type GridModel, render, type Tile, tileLabel } from "../src/image_grid";
import { FakeModel, root, tick } from "./fake_model";

const XSS = '<img src=x onerror="window.__pwned=1">';

function tile(index: number, extra: Partial<Tile> = {}): Tile {
  return { index, id: 100 + index, label: "cat", prediction: "dog", correct: false, concept: "wet",
    score: 0.5, defect: 1.25, flagged: true, fault: "", ...extra };
}

function model(extra: Partial<GridModel> = {}) {
  return new FakeModel<GridModel>({
    selected: -1, sort_by: "concept", page: 0, page_size: 24, overlay: false, _tiles: [], _images: [],
    _title: "", _empty_message: "Click a heatmap cell to see its inputs.", _total: 0,
    _sort_options: [["concept", "selected concept"], ["defect", "defect score"]], ...extra,
  });
}

const png = () => new Uint8Array([137, 80, 78, 71]).buffer;

afterEach(() => {
  document.body.replaceChildren();
  vi.restoreAllMocks();
});

describe("image grid", () => {
  it("renders the empty message, header and sort options from its traits", () => {
    const m = model({ _total: 50, page: 1, _title: "differential · cat · wet" });
    const r = root();
    render({ model: m.asModel, el: r });
    expect(r.querySelector(".semheat-grid-empty")?.textContent).toBe("Click a heatmap cell to see its inputs.");
    expect(r.querySelector(".semheat-grid-title")?.textContent).toBe("differential · cat · wet");
    expect(r.querySelector(".semheat-grid-page")?.textContent).toBe("2 / 3 (50)");
    expect((r.querySelector(".semheat-grid-prev") as HTMLButtonElement).disabled).toBe(false);
    expect((r.querySelector(".semheat-grid-next") as HTMLButtonElement).disabled).toBe(false);
    const options = [...r.querySelectorAll("option")].map((o) => [o.value, o.textContent]);
    expect(options).toEqual([["concept", "selected concept"], ["defect", "defect score"]]);
  });

  it("draws tiles with their labels, scores and verdicts, one object URL per image", async () => {
    const created = vi.spyOn(URL, "createObjectURL");
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    m.kernelSet({ _tiles: [tile(3), tile(7, { flagged: false, correct: true, fault: "encoder" })], _images: [png(), png()] });
    await tick();
    const tiles = r.querySelectorAll<HTMLElement>(".semheat-tile");
    expect(tiles.length).toBe(2);
    expect(created).toHaveBeenCalledTimes(2);
    expect(tiles[0]?.dataset.index).toBe("3");
    expect(tiles[0]?.querySelector(".semheat-tile-labels")?.textContent).toBe("cat → dog");
    expect(tiles[0]?.querySelector(".semheat-tile-score")?.textContent).toBe("wet: 0.50");
    expect(tiles[0]?.querySelector(".semheat-tile-monitor")?.textContent).toBe("defect 1.25 · FLAG");
    expect(tiles[0]?.classList.contains("semheat-tile-wrong")).toBe(true);
    expect(tiles[1]?.classList.contains("semheat-tile-wrong")).toBe(false);
    expect(tiles[1]?.querySelector(".semheat-tile-fault")?.textContent).toBe("fault: encoder");
    expect(tiles[0]?.getAttribute("aria-label")).toBe("input 103: cat predicted dog; wet 0.50; defect score 1.25, flagged");
    expect(tiles[0]?.querySelector("img")?.getAttribute("src")).toMatch(/^blob:/);
  });

  it("draws tiles, images and message of one message once", async () => {
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    const body = r.querySelector(".semheat-grid-body") as HTMLElement;
    const spy = vi.spyOn(body, "replaceChildren");
    m.kernelSet({ _tiles: [tile(1)] });
    m.kernelSet({ _images: [png()] });
    m.kernelSet({ _empty_message: "No inputs in this cell." });
    await tick();
    expect(spy).toHaveBeenCalledTimes(1);
  });

  it("redraws only what changed: header, selection and overlay leave the tiles alone", async () => {
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    m.kernelSet({ _tiles: [tile(1), tile(2)], _images: [png(), png()] });
    await tick();
    const before = [...r.querySelectorAll(".semheat-tile")];
    m.kernelSet({ _title: "t2", _total: 2 });
    m.kernelSet({ selected: 2 });
    m.kernelSet({ overlay: true });
    m.kernelSet({ sort_by: "defect" });
    await tick();
    const after = [...r.querySelectorAll(".semheat-tile")];
    expect(after).toEqual(before);
    expect(after.map((t) => t.classList.contains("semheat-tile-selected"))).toEqual([false, true]);
    expect((r.querySelector(".semheat-grid-overlay input") as HTMLInputElement).checked).toBe(true);
    expect((r.querySelector(".semheat-grid-sort") as HTMLSelectElement).value).toBe("defect");
    expect(r.querySelector(".semheat-grid-title")?.textContent).toBe("t2");
  });

  it("revokes the previous page's object URLs, and all of them on removal", async () => {
    const revoked = vi.spyOn(URL, "revokeObjectURL");
    const m = model();
    const r = root();
    const cleanup = render({ model: m.asModel, el: r });
    m.kernelSet({ _tiles: [tile(1), tile(2)], _images: [png(), png()] });
    await tick();
    const first = [...r.querySelectorAll("img")].map((i) => i.getAttribute("src"));
    m.kernelSet({ _tiles: [tile(3)], _images: [png()] });
    await tick();
    expect(revoked.mock.calls.map((c) => c[0])).toEqual(first);
    const second = r.querySelector("img")?.getAttribute("src");
    cleanup();
    expect(revoked.mock.calls.at(-1)?.[0]).toBe(second);
    expect(revoked).toHaveBeenCalledTimes(3);
  });

  it("removes every model and DOM listener on cleanup", async () => {
    const m = model();
    const r = root();
    const cleanup = render({ model: m.asModel, el: r });
    m.kernelSet({ _tiles: [tile(1)], _images: [png()] });
    await tick();
    expect(m.listenerCount).toBeGreaterThan(0);
    cleanup();
    expect(m.listenerCount).toBe(0);
    (r.querySelector(".semheat-tile") as HTMLElement).click();
    (r.querySelector(".semheat-grid-next") as HTMLElement).click();
    expect(m.saved).toEqual([]);
    // a change queued before removal draws nothing after it
    m.kernelSet({ _tiles: [] });
    await tick();
    expect(r.querySelectorAll(".semheat-tile").length).toBe(1);
  });

  it("a click on a tile (or anything inside it) selects that record", async () => {
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    m.kernelSet({ _tiles: [tile(4), tile(9)], _images: [png(), null] });
    await tick();
    (r.querySelectorAll(".semheat-tile-labels")[1] as HTMLElement).click();
    expect(m.saved).toEqual([{ selected: 9 }]);
    expect(r.querySelectorAll(".semheat-tile")[1]?.querySelector("img")?.hasAttribute("src")).toBe(false);
  });

  it("pages, sorts and toggles the overlay through synced traits", () => {
    const m = model({ _total: 60 });
    const r = root();
    render({ model: m.asModel, el: r });
    (r.querySelector(".semheat-grid-next") as HTMLElement).click();
    (r.querySelector(".semheat-grid-prev") as HTMLElement).click();
    const sort = r.querySelector(".semheat-grid-sort") as HTMLSelectElement;
    sort.value = "defect";
    sort.dispatchEvent(new Event("change"));
    const overlay = r.querySelector(".semheat-grid-overlay input") as HTMLInputElement;
    overlay.checked = true;
    overlay.dispatchEvent(new Event("change"));
    expect(m.saved).toEqual([{ page: 1 }, { page: 0 }, { sort_by: "defect", page: 0 }, { overlay: true }]);
  });

  it("sets names as text, never as HTML", async () => {
    const m = model({ _title: XSS });
    const r = root();
    render({ model: m.asModel, el: r });
    m.kernelSet({ _tiles: [tile(1, { label: XSS, prediction: XSS, concept: XSS, fault: XSS })], _images: [png()] });
    await tick();
    expect(r.querySelectorAll("img").length).toBe(1); // only the thumbnail, no injected <img>
    expect(r.querySelector(".semheat-tile-labels")?.textContent).toBe(`${XSS} → ${XSS}`);
    expect(r.querySelector(".semheat-grid-title")?.textContent).toBe(XSS);
  });

  it("tiles that bring their own lines show them", async () => {
    const m = model();
    const r = root();
    render({ model: m.asModel, el: r });
    const t: Tile = { index: 2, id: 5, correct: true, lines: ["A: cat", "B: dog"] };
    m.kernelSet({ _tiles: [t], _images: [png()] });
    await tick();
    expect([...r.querySelectorAll(".semheat-tile div")].map((d) => [d.className, d.textContent])).toEqual([
      ["semheat-tile-labels", "A: cat"], ["semheat-tile-score", "B: dog"]]);
    expect(tileLabel(t)).toBe("input 5: A: cat; B: dog");
    expect(tileLabel({ index: 0, id: 1, label: "a", prediction: "b", score: null, defect: Number.NaN }))
      .toBe("input 1: a predicted b; defect score –, passed");
  });
});
