// Concept picker: filter by typing, show/hide and reorder concepts, add a free-text concept.
// Names are user data: they are only ever set with textContent.
// Reorder by dragging a row's handle, or from the keyboard: focus a row, Alt+↑ / Alt+↓.

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function render({ model, el: root }) {
  root.classList.add("semheat-picker");
  const filter = el("input", "semheat-picker-filter");
  filter.type = "search";
  filter.placeholder = "filter concepts";
  filter.setAttribute("aria-label", "filter concepts");
  const list = el("div", "semheat-picker-list");
  list.setAttribute("role", "list");
  list.setAttribute("aria-label", "concepts: tick to show; drag, or Alt+arrow keys, to reorder");
  const addRow = el("div", "semheat-picker-add");
  const input = el("input", "semheat-picker-new");
  input.type = "text";
  input.placeholder = "new concept, e.g. stripes";
  input.setAttribute("aria-label", "new concept");
  const add = el("button", "semheat-picker-add-button", "add");
  add.setAttribute("aria-label", "add the concept");
  const message = el("div", "semheat-picker-message");
  message.setAttribute("role", "status");
  addRow.append(input, add);
  root.append(filter, list, addRow, message);
  let dragged = null;
  let focusAfterDraw = null;

  function moveTo(name, target) {
    const order = model.get("concepts").filter((c) => c !== name);
    const at = Math.max(0, Math.min(order.length, target));
    order.splice(at, 0, name);
    model.set("concepts", order);
    model.save_changes();
  }

  function toggle(name, shown) {
    const hidden = new Set(model.get("hidden"));
    if (shown) hidden.delete(name); else hidden.add(name);
    model.set("hidden", [...hidden]);
    model.save_changes();
  }

  function draw() {
    const needle = filter.value.trim().toLowerCase();
    const hidden = new Set(model.get("hidden"));
    const order = model.get("concepts");
    list.replaceChildren();
    for (const name of order) {
      if (needle && !name.toLowerCase().includes(needle)) continue;
      const row = el("div", "semheat-picker-row");
      row.dataset.concept = name;
      row.setAttribute("role", "listitem");
      row.tabIndex = 0;
      row.draggable = true;
      const handle = el("span", "semheat-picker-handle", "⠿");
      handle.setAttribute("aria-hidden", "true");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !hidden.has(name);
      box.setAttribute("aria-label", `show ${name}`);
      box.addEventListener("change", () => toggle(name, box.checked));
      const label = el("span", "semheat-picker-name", name);
      row.append(handle, box, label);
      row.addEventListener("dragstart", (e) => {
        dragged = name;
        e.dataTransfer.effectAllowed = "move";
        e.dataTransfer.setData("text/plain", name);
        row.classList.add("semheat-picker-dragging");
      });
      row.addEventListener("dragend", () => row.classList.remove("semheat-picker-dragging"));
      row.addEventListener("dragover", (e) => { e.preventDefault(); row.classList.add("semheat-picker-over"); });
      row.addEventListener("dragleave", () => row.classList.remove("semheat-picker-over"));
      row.addEventListener("drop", (e) => {
        e.preventDefault();
        row.classList.remove("semheat-picker-over");
        if (dragged && dragged !== name) moveTo(dragged, order.indexOf(name));
        dragged = null;
      });
      row.addEventListener("keydown", (e) => {
        if (!e.altKey || (e.key !== "ArrowUp" && e.key !== "ArrowDown")) return;
        e.preventDefault();
        focusAfterDraw = name;
        moveTo(name, order.indexOf(name) + (e.key === "ArrowUp" ? -1 : 1));
      });
      list.append(row);
    }
    message.textContent = model.get("message");
    add.disabled = model.get("busy");
    if (focusAfterDraw) {
      const row = [...list.children].find((r) => r.dataset.concept === focusAfterDraw);
      if (row) row.focus();
      focusAfterDraw = null;
    }
  }

  function submit() {
    const name = input.value.trim();
    if (!name) return;
    // A synced request (with a nonce, so the same name twice is still a change).
    model.set("request", { name, nonce: Date.now() + Math.random() });
    model.save_changes();
    input.value = "";
  }

  filter.addEventListener("input", draw);
  add.addEventListener("click", submit);
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
  for (const name of ["concepts", "hidden", "message", "busy"]) model.on(`change:${name}`, draw);
  draw();
}

export default { render };
