// A stand-in for anywidget's model: traits in a map, change events, and a record of what the
// view saved (what the kernel would receive).
import type { AnyModel } from "@anywidget/types";

// biome-ignore lint/suspicious/noExplicitAny: traits of any view
export class FakeModel<T extends Record<string, any>> {
  private readonly state: T;
  private readonly handlers = new Map<string, Set<(...args: unknown[]) => void>>();
  /** Every save_changes(): the traits set since the previous one. */
  readonly saved: Array<Partial<T>> = [];
  private dirty: Partial<T> = {};

  constructor(initial: T) {
    this.state = { ...initial };
  }

  get<K extends keyof T>(key: K): T[K] {
    return this.state[key];
  }

  /** Set from the view (like the browser side): change events fire at once. */
  set<K extends keyof T>(key: K, value: T[K]): void {
    this.state[key] = value;
    this.dirty[key] = value;
    this.emit(`change:${String(key)}`);
  }

  /** Set from the kernel (what a message from Python does). */
  kernelSet(values: Partial<T>): void {
    Object.assign(this.state, values);
    for (const key of Object.keys(values)) this.emit(`change:${key}`);
  }

  save_changes(): void {
    this.saved.push(this.dirty);
    this.dirty = {};
  }

  on(event: string, handler: (...args: unknown[]) => void): void {
    let set = this.handlers.get(event);
    if (!set) {
      set = new Set();
      this.handlers.set(event, set);
    }
    set.add(handler);
  }

  off(event?: string | null, handler?: ((...args: unknown[]) => void) | null): void {
    if (!event) {
      this.handlers.clear();
      return;
    }
    if (!handler) this.handlers.delete(event);
    else this.handlers.get(event)?.delete(handler);
  }

  send(): void {}

  /** How many listeners are registered (all events). */
  get listenerCount(): number {
    let n = 0;
    for (const set of this.handlers.values()) n += set.size;
    return n;
  }

  private emit(event: string): void {
    for (const h of [...(this.handlers.get(event) ?? [])]) h();
  }

  /** This fake typed as anywidget's model. */
  get asModel(): AnyModel<T> {
    return this as unknown as AnyModel<T>;
  }

  widget_manager = { get_model: () => Promise.reject(new Error("no widget manager")) };
}

/** A fresh root element in the document. */
export function root(): HTMLElement {
  const div = document.createElement("div");
  document.body.append(div);
  return div;
}

/** Let queued microtasks (batched redraws) run. */
export const tick = () => new Promise<void>((r) => setTimeout(r, 0));
