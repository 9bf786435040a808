// Keyboard access to a heatmap: a focusable strip under the chart. Arrow keys move the cursor
// (outlined in the chart), Enter opens the cell (the grid shows its inputs), Escape clears.
// The cell's description is read out (aria-live): names are set with textContent only.

function render({ model, el: root }) {
  root.classList.add("semheat-keys");
  const strip = document.createElement("div");
  strip.className = "semheat-keys-strip";
  strip.tabIndex = 0;
  strip.setAttribute("role", "application");
  strip.setAttribute("aria-roledescription", "heatmap cursor");
  strip.setAttribute("aria-label", "heatmap: arrow keys move between cells, Enter opens a cell");
  const text = document.createElement("span");
  text.className = "semheat-keys-text";
  text.setAttribute("aria-live", "polite");
  const help = document.createElement("span");
  help.className = "semheat-keys-help";
  help.textContent = "⌨ focus here: arrows move · Enter opens";
  strip.append(text, help);
  root.append(strip);
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };

  // Keys go out as a numbered log of the latest ones: when presses come faster than the kernel
  // answers, the widget manager sends only the last state, and the log loses none of them.
  let seq = 0;
  const log = [];
  strip.addEventListener("keydown", (e) => {
    let key = null;
    if (moves[e.key]) key = { move: moves[e.key] };
    else if (e.key === "Enter" || e.key === " ") key = { open: true };
    else if (e.key === "Escape") key = { clear: true };
    if (!key) return;
    e.preventDefault();
    log.push({ ...key, seq: ++seq });
    if (log.length > 64) log.shift();
    model.set("request", { keys: [...log], session: sessionId });
    model.save_changes();
  });
  const sessionId = `${Date.now()}-${Math.random()}`;
  const draw = () => { text.textContent = model.get("label"); };
  model.on("change:label", draw);
  draw();
}

export default { render };
