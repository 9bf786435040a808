/**
 * What the extension decides without JupyterLab: whether a folder's listing is a semheat
 * bundle or toy world, the notebook to create beside it (never an existing name), and that
 * notebook's content. Kept pure so the unit tests need no JupyterLab.
 */

export type Kind = 'bundle' | 'world';

/** A bundle holds `manifest.json`, a toy world `world.json` (a world wins: it holds bundles). */
export function kindOf(childNames: Iterable<string>): Kind | null {
  const names = new Set(childNames);
  if (names.has('world.json')) {
    return 'world';
  }
  return names.has('manifest.json') ? 'bundle' : null;
}

/** `base.ipynb`, else `base-1.ipynb`, `base-2.ipynb`, ...: the first name not taken. */
export function freeNotebookName(base: string, taken: Iterable<string>): string {
  const used = new Set(taken);
  const stem = base.replace(/\.ipynb$/, '') || 'semheat';
  for (let i = 0; ; i++) {
    const name = i === 0 ? `${stem}.ipynb` : `${stem}-${i}.ipynb`;
    if (!used.has(name)) {
      return name;
    }
  }
}

/** A Python string literal for any text: JSON's escapes are all valid Python escapes. */
export function pythonString(text: string): string {
  return JSON.stringify(text);
}

/** The one code cell that opens the explorer on `folder` (relative to the notebook). */
export function explorerSource(folder: string, kind: Kind): string {
  const open =
    kind === 'world'
      ? `sw.Explorer.toy(directory=${pythonString(folder)})`
      : `sw.Explorer(${pythonString(folder)})`;
  return `import semheat_widgets as sw\n\n${open}`;
}

/** The quickstart's code cell: the bundled toy world, built on first use. */
export const QUICKSTART_SOURCE =
  'import semheat_widgets as sw\n\n' +
  '# the toy world is built on first use (progress bars; a few minutes on two CPU cores)\n' +
  'sw.Explorer.toy()';

export interface NotebookContent {
  cells: Array<Record<string, unknown>>;
  metadata: Record<string, unknown>;
  nbformat: number;
  nbformat_minor: number;
}

/** A notebook of one markdown cell (its title) and one code cell. */
export function notebookOf(title: string, source: string): NotebookContent {
  return {
    cells: [
      { cell_type: 'markdown', metadata: {}, source: `# ${title}` },
      { cell_type: 'code', execution_count: null, metadata: {}, outputs: [], source },
    ],
    metadata: {
      kernelspec: { display_name: 'Python 3 (ipykernel)', language: 'python', name: 'python3' },
      language_info: { name: 'python' },
    },
    nbformat: 4,
    nbformat_minor: 5,
  };
}

/**
 * Notebooks the user asked to run, by path, with the time of asking. The notebook page may
 * be another tab (Notebook 7), so the request travels in `localStorage`, which only this
 * origin's own code can write: a notebook file can never ask to be run by itself.
 */
const RUN_KEY = 'semheat-widgets:run-once';
const RUN_WITHIN_MS = 120_000;

export function requestRun(storage: Storage, path: string, now = Date.now()): void {
  const pending = readPending(storage, now);
  pending[path] = now;
  storage.setItem(RUN_KEY, JSON.stringify(pending));
}

/** True once for a path asked for in the last two minutes; the request is used up. */
export function takeRun(storage: Storage, path: string, now = Date.now()): boolean {
  const pending = readPending(storage, now);
  const asked = path in pending;
  delete pending[path];
  storage.setItem(RUN_KEY, JSON.stringify(pending));
  return asked;
}

function readPending(storage: Storage, now: number): Record<string, number> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(storage.getItem(RUN_KEY) ?? '{}');
  } catch {
    parsed = {};
  }
  const fresh: Record<string, number> = {};
  if (parsed && typeof parsed === 'object') {
    for (const [path, when] of Object.entries(parsed as Record<string, unknown>)) {
      if (typeof when === 'number' && now - when >= 0 && now - when < RUN_WITHIN_MS) {
        fresh[path] = when;
      }
    }
  }
  return fresh;
}
