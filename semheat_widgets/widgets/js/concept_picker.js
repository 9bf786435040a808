// Concept picker: filter by typing, show/hide and reorder concepts, add a free-text concept.
// Names are user data: they are only ever set with textContent.

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
  const list = el("div", "semheat-picker-list");
  const addRow = el("div", "semheat-picker-add");
  const input = el("input", "semheat-picker-new");
  input.type = "text";
  input.placeholder = "new concept, e.g. stripes";
  const add = el("button", "semheat-picker-add-button", "add");
  const message = el("div", "semheat-picker-message");
  addRow.append(input, add);
  root.append(filter, list, addRow, message);

  function move(name, delta) {
    const order = [...model.get("concepts")];
    const i = order.indexOf(name);
    const j = i + delta;
    if (i < 0 || j < 0 || j >= order.length) return;
    [order[i], order[j]] = [order[j], order[i]];
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
    list.replaceChildren();
    for (const name of model.get("concepts")) {
      if (needle && !name.toLowerCase().includes(needle)) continue;
      const row = el("div", "semheat-picker-row");
      row.dataset.concept = name;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !hidden.has(name);
      box.addEventListener("change", () => toggle(name, box.checked));
      const label = el("span", "semheat-picker-name", name);
      const up = el("button", "semheat-picker-up", "↑");
      const down = el("button", "semheat-picker-down", "↓");
      up.addEventListener("click", () => move(name, -1));
      down.addEventListener("click", () => move(name, +1));
      row.append(box, label, up, down);
      list.append(row);
    }
    message.textContent = model.get("message");
    add.disabled = model.get("busy");
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
