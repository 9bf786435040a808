import { describe, expect, it, vi } from "vitest";
import { el, fmt, Lifetime } from "../src/dom";

describe("dom helpers", () => {
  it("el() sets class and text, never HTML", () => {
    const node = el("div", "a b", "<i>x</i>");
    expect(node.className).toBe("a b");
    expect(node.textContent).toBe("<i>x</i>");
    expect(node.children.length).toBe(0);
    expect(el("span", null, 3).textContent).toBe("3");
    expect(el("span").textContent).toBe("");
  });

  it("fmt() writes two decimals or a dash", () => {
    expect(fmt(1)).toBe("1.00");
    expect(fmt(-0.125)).toBe("-0.13");
    expect(fmt(null)).toBe("–");
    expect(fmt(undefined)).toBe("–");
    expect(fmt(Number.NaN)).toBe("–");
  });

  it("Lifetime releases DOM listeners and object URLs", () => {
    const life = new Lifetime();
    const button = el("button");
    const clicks = vi.fn();
    life.listen(button, "click", clicks);
    const url = life.pngUrl(new Uint8Array([1, 2]));
    expect(life.liveUrls).toBe(1);
    const revoke = vi.spyOn(URL, "revokeObjectURL");
    button.click();
    life.dispose();
    button.click();
    expect(clicks).toHaveBeenCalledTimes(1);
    expect(revoke).toHaveBeenCalledWith(url);
    expect(life.liveUrls).toBe(0);
    expect(life.signal.aborted).toBe(true);
  });
});
