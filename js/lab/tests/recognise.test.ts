import { describe, expect, it } from 'vitest';

import {
  explorerSource,
  freeNotebookName,
  kindOf,
  notebookOf,
  pythonString,
  QUICKSTART_SOURCE,
  requestRun,
  takeRun,
} from '../src/recognise';

/** A `Storage` held in a Map: what `localStorage` gives the extension. */
class MemoryStorage implements Storage {
  private items = new Map<string, string>();
  get length(): number {
    return this.items.size;
  }
  clear(): void {
    this.items.clear();
  }
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  key(index: number): string | null {
    return [...this.items.keys()][index] ?? null;
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
}

describe('kindOf', () => {
  it('knows a bundle by its manifest and a toy world by world.json', () => {
    expect(kindOf(['manifest.json', 'records.arrow'])).toBe('bundle');
    expect(kindOf(['world.json', 'encoder_fault', 'head_fault'])).toBe('world');
  });
  it('prefers the world when a folder holds both', () => {
    expect(kindOf(['manifest.json', 'world.json'])).toBe('world');
  });
  it('leaves every other folder alone', () => {
    expect(kindOf([])).toBeNull();
    expect(kindOf(['notes.txt', 'manifest.json.tmp', 'Manifest.json'])).toBeNull();
  });
});

describe('freeNotebookName', () => {
  it('takes the plain name when it is free', () => {
    expect(freeNotebookName('fault', ['other.ipynb'])).toBe('fault.ipynb');
  });
  it('never returns a name already taken', () => {
    const taken = ['fault.ipynb', 'fault-1.ipynb', 'fault-3.ipynb'];
    expect(freeNotebookName('fault', taken)).toBe('fault-2.ipynb');
    expect(freeNotebookName('fault.ipynb', taken)).toBe('fault-2.ipynb');
  });
  it('falls back to a stem when the base is empty', () => {
    expect(freeNotebookName('', [])).toBe('semheat.ipynb');
  });
});

describe('the notebook it writes', () => {
  it('quotes any folder name as one Python string literal', () => {
    const odd = 'a "quoted" \\ name\nwith a newline';
    const literal = pythonString(odd);
    expect(literal.startsWith('"') && literal.endsWith('"')).toBe(true);
    expect(literal).not.toContain('\n');
    expect(JSON.parse(literal)).toBe(odd);
  });
  it('opens a bundle with Explorer and a toy world with Explorer.toy', () => {
    expect(explorerSource('fault', 'bundle')).toBe(
      'import semheat_widgets as sw\n\nsw.Explorer("fault")',
    );
    expect(explorerSource('tw', 'world')).toBe(
      'import semheat_widgets as sw\n\nsw.Explorer.toy(directory="tw")',
    );
    expect(QUICKSTART_SOURCE).toContain('sw.Explorer.toy()');
  });
  it('is a valid nbformat 4 notebook of a title and one code cell', () => {
    const nb = notebookOf('fault', explorerSource('fault', 'bundle'));
    expect(nb.nbformat).toBe(4);
    expect(nb.cells.map((c) => c.cell_type)).toEqual(['markdown', 'code']);
    expect(nb.cells[1]).toMatchObject({ outputs: [], execution_count: null });
    expect(nb.cells[0]?.source).toBe('# fault');
  });
});

describe('run once', () => {
  it('runs a requested notebook once, and only that one', () => {
    const storage = new MemoryStorage();
    requestRun(storage, 'dir/fault.ipynb', 1000);
    expect(takeRun(storage, 'dir/other.ipynb', 1001)).toBe(false);
    expect(takeRun(storage, 'dir/fault.ipynb', 1002)).toBe(true);
    expect(takeRun(storage, 'dir/fault.ipynb', 1003)).toBe(false);
  });
  it('forgets a request after two minutes and one from the future', () => {
    const storage = new MemoryStorage();
    requestRun(storage, 'late.ipynb', 0);
    expect(takeRun(storage, 'late.ipynb', 120_000)).toBe(false);
    requestRun(storage, 'future.ipynb', 10_000);
    expect(takeRun(storage, 'future.ipynb', 5_000)).toBe(false);
  });
  it('survives damaged storage', () => {
    const storage = new MemoryStorage();
    storage.setItem('semheat-widgets:run-once', '{not json');
    expect(takeRun(storage, 'x.ipynb', 0)).toBe(false);
    storage.setItem('semheat-widgets:run-once', JSON.stringify({ 'x.ipynb': 'soon' }));
    expect(takeRun(storage, 'x.ipynb', 0)).toBe(false);
    requestRun(storage, 'x.ipynb', 0);
    expect(takeRun(storage, 'x.ipynb', 1)).toBe(true);
  });
});
