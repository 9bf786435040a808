/**
 * The JupyterLab / Notebook 7 extension of semheat_widgets.
 *
 * - The file browser recognises a bundle (`manifest.json`) or a toy world (`world.json`):
 *   such a folder gets the semheat icon and a context-menu item "Open in semheat explorer",
 *   which writes a notebook beside it (named after it, never over an existing file) and runs
 *   its one explorer cell. Any other folder gets neither.
 * - A Launcher card and palette commands: "semheat: toy-world quickstart" and
 *   "semheat: open bundle…".
 * - Only a notebook the user just asked for from these commands is run, once.
 */
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, InputDialog, showErrorMessage } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IDefaultFileBrowser, type FileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { INotebookTracker, NotebookActions, type NotebookPanel } from '@jupyterlab/notebook';
import type { Contents } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import {
  explorerSource,
  freeNotebookName,
  type Kind,
  kindOf,
  notebookOf,
  QUICKSTART_SOURCE,
  requestRun,
  takeRun,
} from './recognise';
import iconSvg from '../style/semheat.svg';

const OPEN = 'semheat:open-in-explorer';
const OPEN_PATH = 'semheat:open-bundle';
const QUICKSTART = 'semheat:toy-world-quickstart';
const MAX_SCANNED = 200; // folders looked into per listing (a huge listing is not walked)

const semheatIcon = new LabIcon({ name: 'semheat-widgets:icon', svgstr: iconSvg });

/** Folder path -> what it is, kept current with the file browser's listing. */
class Recogniser {
  private readonly kinds = new Map<string, Kind>();
  private readonly scanned = new Map<string, string>(); // path -> last_modified looked at

  constructor(
    private readonly browser: FileBrowser,
    private readonly contents: Contents.IManager,
  ) {
    browser.model.refreshed.connect(() => void this.scan());
    // JupyterLab redraws listing rows at will: the marks are put back after every redraw
    new MutationObserver(() => this.mark()).observe(browser.node, {
      childList: true,
      subtree: true,
    });
    void this.scan();
  }

  kindOf(path: string): Kind | null {
    return this.kinds.get(path) ?? null;
  }

  async lookAt(path: string): Promise<Kind | null> {
    try {
      const listing = await this.contents.get(path, { content: true });
      if (listing.type !== 'directory' || !Array.isArray(listing.content)) {
        return null;
      }
      return kindOf((listing.content as Contents.IModel[]).map((c) => c.name));
    } catch {
      return null; // gone, or not readable: not ours
    }
  }

  private async scan(): Promise<void> {
    const dirs = Array.from(this.browser.model.items())
      .filter((item) => item.type === 'directory')
      .slice(0, MAX_SCANNED);
    await Promise.all(
      dirs.map(async (dir) => {
        if (this.scanned.get(dir.path) === dir.last_modified) {
          return;
        }
        this.scanned.set(dir.path, dir.last_modified);
        const kind = await this.lookAt(dir.path);
        if (kind) {
          this.kinds.set(dir.path, kind);
        } else {
          this.kinds.delete(dir.path);
        }
      }),
    );
    this.mark();
  }

  /** `data-semheat-kind` on the rows of recognised folders (the icon and menu key on it). */
  private mark(): void {
    const here = this.browser.model.path;
    for (const row of this.browser.node.querySelectorAll<HTMLElement>('.jp-DirListing-item')) {
      const name = row.querySelector('.jp-DirListing-itemText')?.textContent ?? '';
      const kind = row.dataset.isdir === 'true' ? this.kindOf(PathExt.join(here, name)) : null;
      if (kind && row.dataset.semheatKind !== kind) {
        row.dataset.semheatKind = kind;
      } else if (!kind && row.dataset.semheatKind !== undefined) {
        delete row.dataset.semheatKind;
      }
    }
  }
}

/** Write a new notebook in `dir` named after `base` (never over a file) and open it to run. */
async function writeAndOpen(
  app: JupyterFrontEnd,
  dir: string,
  base: string,
  title: string,
  source: string,
): Promise<string> {
  const contents = app.serviceManager.contents;
  const draft = await contents.newUntitled({ path: dir, type: 'notebook' });
  await contents.save(draft.path, {
    type: 'notebook',
    format: 'json',
    content: notebookOf(title, source),
  });
  let path = draft.path;
  for (let attempt = 0; attempt < 20; attempt++) {
    const listing = await contents.get(dir, { content: true });
    const taken = (listing.content as Contents.IModel[]).map((c) => c.name);
    const target = PathExt.join(dir, freeNotebookName(base, taken));
    try {
      await contents.rename(draft.path, target); // the server refuses an existing name
      path = target;
      break;
    } catch {
      // taken in between: look again
    }
  }
  requestRun(window.localStorage, path);
  await app.commands.execute('docmanager:open', { path });
  return path;
}

function selectedFolder(browser: FileBrowser): string | null {
  const first = browser.selectedItems().next();
  return first.done || first.value.type !== 'directory' ? null : first.value.path;
}

const browserPlugin: JupyterFrontEndPlugin<void> = {
  id: 'semheat-widgets-lab:file-browser',
  description: 'Bundles and toy worlds in the file browser; the Launcher card and commands.',
  autoStart: true,
  requires: [IDefaultFileBrowser],
  optional: [ILauncher, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    browser: FileBrowser,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
  ) => {
    const recogniser = new Recogniser(browser, app.serviceManager.contents);

    const openFolder = async (folder: string, kind: Kind) => {
      const name = PathExt.basename(folder);
      await writeAndOpen(
        app,
        PathExt.dirname(folder),
        name,
        `semheat explorer: ${name}`,
        explorerSource(name, kind),
      );
    };

    app.commands.addCommand(OPEN, {
      label: 'Open in semheat explorer',
      icon: semheatIcon,
      isVisible: () => {
        const folder = selectedFolder(browser);
        return folder !== null && recogniser.kindOf(folder) !== null;
      },
      execute: async () => {
        const folder = selectedFolder(browser);
        const kind = folder === null ? null : await recogniser.lookAt(folder);
        if (folder !== null && kind) {
          await openFolder(folder, kind);
        }
      },
    });
    app.contextMenu.addItem({
      command: OPEN,
      selector: '.jp-DirListing-item[data-semheat-kind]',
      rank: 1,
    });

    app.commands.addCommand(OPEN_PATH, {
      label: 'semheat: open bundle…',
      icon: semheatIcon,
      execute: async () => {
        const answer = await InputDialog.getText({
          title: 'Open a semheat bundle or toy world',
          label: 'Folder, relative to the file browser root',
          text: browser.model.path,
        });
        if (!answer.button.accept || answer.value === null) {
          return;
        }
        const folder = answer.value.replace(/^\/+|\/+$/g, '');
        const kind = await recogniser.lookAt(folder);
        if (!kind) {
          await showErrorMessage(
            'Not a semheat bundle',
            `${folder || '(the root)'} holds neither manifest.json (a bundle) nor world.json (a toy world).`,
          );
          return;
        }
        await openFolder(folder, kind);
      },
    });

    app.commands.addCommand(QUICKSTART, {
      label: (args) => (args.isLauncher ? 'semheat quickstart' : 'semheat: toy-world quickstart'),
      caption: 'A notebook with the explorer on the bundled toy world',
      icon: semheatIcon,
      execute: async () => {
        await writeAndOpen(
          app,
          browser.model.path,
          'semheat-quickstart',
          'semheat quickstart: the toy world',
          QUICKSTART_SOURCE,
        );
      },
    });

    launcher?.add({ command: QUICKSTART, args: { isLauncher: true }, category: 'Notebook', rank: 90 });
    for (const command of [QUICKSTART, OPEN_PATH]) {
      palette?.addItem({ command, category: 'semheat' });
    }
  },
};

/** Waits for the kernel to be connected, so a "run all" is not lost on the way. */
async function kernelConnected(panel: NotebookPanel): Promise<void> {
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel || kernel.connectionStatus === 'connected') {
    return;
  }
  await new Promise<void>((resolve) => {
    const check = () => {
      if (kernel.connectionStatus === 'connected') {
        kernel.connectionStatusChanged.disconnect(check);
        resolve();
      }
    };
    kernel.connectionStatusChanged.connect(check);
  });
}

const runnerPlugin: JupyterFrontEndPlugin<void> = {
  id: 'semheat-widgets-lab:run-requested',
  description: 'Runs a notebook that one of the semheat commands just wrote, once.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (_app: JupyterFrontEnd, tracker: INotebookTracker) => {
    tracker.widgetAdded.connect((_, panel) => {
      void panel.context.ready.then(async () => {
        if (!takeRun(window.localStorage, panel.context.path)) {
          return; // not asked for: nothing runs
        }
        await kernelConnected(panel);
        await NotebookActions.runAll(panel.content, panel.sessionContext);
      });
    });
  },
};

export default [browserPlugin, runnerPlugin];
