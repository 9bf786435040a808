// DOM helpers shared by every view. Names are user data: they are only ever set as text.
import type { AnyModel } from "@anywidget/types";

/** A new element with an optional class and text content (never HTML). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls?: string | null,
  text?: string | number,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

/** A score to two decimals, or a dash when missing. */
export function fmt(x: number | null | undefined): string {
  return x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(2);
}

/**
 * What a view registers and must release when it is removed: model listeners, DOM listeners
 * (through one AbortSignal) and object URLs.
 */
export class Lifetime {
  private readonly controller = new AbortController();
  private readonly offs: Array<() => void> = [];
  private readonly urls = new Set<string>();

  /** The signal to pass as `{ signal }` to addEventListener. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Listen to a DOM event until the view is removed. */
  listen<K extends keyof HTMLElementEventMap>(
    target: HTMLElement,
    type: K,
    handler: (e: HTMLElementEventMap[K]) => void,
  ): void {
    target.addEventListener(type, handler, { signal: this.controller.signal });
  }

  /** Listen to `change:NAME` for each name until the view is removed. */
  // biome-ignore lint/suspicious/noExplicitAny: the model's trait map is the view's own type
  onChange<T extends Record<string, any>>(model: AnyModel<T>, names: Array<keyof T & string>, handler: () => void): void {
    for (const name of names) {
      const event = `change:${name}` as const;
      model.on(event, handler);
      this.offs.push(() => model.off(event, handler));
    }
  }

  /** An object URL for a PNG buffer, revoked by `revoke` or when the view is removed. */
  pngUrl(buf: ArrayBuffer | ArrayBufferView | DataView): string {
    const url = URL.createObjectURL(new Blob([buf as BlobPart], { type: "image/png" }));
    this.urls.add(url);
    return url;
  }

  /** Revoke every object URL made so far. */
  revokeUrls(): void {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls.clear();
  }

  /** How many object URLs are live (for tests). */
  get liveUrls(): number {
    return this.urls.size;
  }

  /** Release everything. */
  dispose(): void {
    this.controller.abort();
    for (const off of this.offs.splice(0)) off();
    this.revokeUrls();
  }
}
