// The Inbound routes tab: live filter and sort of the table, multi-select and the
// "assign selected" pop-up (a <dialog>). The page works without it (filter and change
// forms post to the server); the pop-up's change goes through the API with fsr.api.
(function () {
  "use strict";
  var table = document.getElementById("routes");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);

  // ---- filter: the server's rules (type, source, text in number, name or destination)
  var q = document.getElementById("routes-q");
  var type = document.getElementById("routes-type");
  var source = document.getElementById("routes-source");
  var shownCount = document.getElementById("routes-shown");

  // Number, name and destination: the columns the server's filter searches too.
  function searched(row) {
    var first = row.querySelector("th").cellIndex, cells = row.cells;
    return [cells[first], cells[first + 1], cells[first + 3]]
      .map(function (cell) { return cell.textContent; }).join(" ").toLowerCase();
  }

  function filter() {
    var needle = q.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var ok = (!type.value || row.dataset.type === type.value) &&
        (!source.value || row.dataset.source === source.value) &&
        (!needle || searched(row).indexOf(needle) >= 0);
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    shownCount.textContent = String(shown);
    selectionChanged();
  }
  [q, type, source].forEach(function (el) {
    el.addEventListener("input", filter);
    el.addEventListener("change", filter);
  });

  // ---- sort: fsr.table makes the headers sort buttons (keyboard too)
  fsr.table(table);

  // ---- selection, assign pop-up, reset (supervisors only: the form is there)
  var form = document.getElementById("routes-form");
  var dialog = document.getElementById("assign-dialog");
  var all = document.getElementById("select-all");
  var count = document.getElementById("selected-count");
  var open = document.getElementById("assign-open");
  var resetSelected = document.getElementById("reset-selected");
  showDone();
  if (!form || !dialog) { return; }

  function boxes() {
    return Array.prototype.slice.call(body.querySelectorAll("input[name=numbers]"));
  }
  function selected() {
    return boxes().filter(function (box) { return box.checked && !box.closest("tr").hidden; })
      .map(function (box) { return box.value; });
  }
  function selectionChanged() {
    if (!count) { return; }
    var numbers = selected();
    count.textContent = numbers.length + " selected";
    open.disabled = resetSelected.disabled = numbers.length === 0;
  }
  body.addEventListener("change", selectionChanged);
  all.addEventListener("change", function () {
    boxes().forEach(function (box) {
      if (!box.closest("tr").hidden) { box.checked = all.checked; }
    });
    selectionChanged();
  });

  var errors = document.getElementById("assign-errors");
  var choices = dialog.querySelector("select[data-choices]");
  var loaded = null;
  open.addEventListener("click", function () {
    document.getElementById("assign-count").textContent = String(selected().length);
    errors.textContent = "";
    dialog.showModal();
    choices.focus();
    loaded = loaded || fsr.api("GET", choices.dataset.choices).then(fill, function (error) {
      loaded = null;
      failed(error);
    });
  });

  // The agents and queues, fetched once (a page with many agents stays small).
  function fill(lists) {
    [["agent", lists.agents], ["queue", lists.queues]].forEach(function (pair) {
      var group = choices.querySelector('optgroup[data-kind="' + pair[0] + '"]');
      pair[1].forEach(function (choice) {
        group.appendChild(new Option(choice[1], pair[0] + ":" + choice[0]));
      });
    });
    choices.dataset.loaded = "yes";
  }
  document.getElementById("assign-cancel").addEventListener("click", function () {
    dialog.close();
    open.focus();
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();  // the pop-up's Assign button, or Enter in its text field
    var choice = form.elements.destination.value.split(":");
    var target = choice[0] === "custom" ? form.elements.custom.value : choice.slice(1).join(":");
    var save = document.getElementById("assign-save");
    save.disabled = true;
    fsr.api("POST", "/api/v1/routes/assign",
            {numbers: selected(), type: choice[0], target: target || null})
      .then(function (answer) { return done(answer); })
      .catch(function (error) { failed(error); })
      .then(function () { save.disabled = false; });
  });

  // A button, not a submit: Enter in the pop-up's text field must never reset anything.
  resetSelected.addEventListener("click", function () {
    var numbers = selected();
    if (!window.confirm("Reset " + numbers.length + " number(s) to the YAML?")) { return; }
    fsr.api("POST", "/api/v1/routes/reset", {numbers: numbers})
      .then(function (answer) { return done(answer); })
      .catch(function (error) { window.alert((error.lines || [String(error)]).join("\n")); });
  });

  function done(answer) {
    sessionStorage.setItem("fsr-routes-done", JSON.stringify(answer.done || []));
    window.location.reload();
  }
  function failed(error) {
    var lines = (error && error.lines) || [String(error && error.message || error)];
    errors.textContent = "";
    var list = document.createElement("ul");
    lines.forEach(function (line) {
      var item = document.createElement("li");
      item.textContent = line;
      list.appendChild(item);
    });
    errors.appendChild(document.createTextNode("Nothing was changed:"));
    errors.appendChild(list);
  }

  // What the last pop-up change did, shown once after the reload.
  function showDone() {
    var saved = sessionStorage.getItem("fsr-routes-done");
    if (!saved) { return; }
    sessionStorage.removeItem("fsr-routes-done");
    var box = document.createElement("div");
    box.className = "flash info";
    box.setAttribute("role", "status");
    box.id = "routes-done";
    JSON.parse(saved).forEach(function (line) {
      var p = document.createElement("p");
      p.textContent = line;
      box.appendChild(p);
    });
    var main = document.getElementById("main") || table.parentNode;
    main.insertBefore(box, main.firstChild);
  }
  selectionChanged();
})();
