/* fsrouter console: the helpers every page uses (no inline script: CSP script-src 'self'). */
"use strict";
var fsr = (function () {
  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  /* fsr.api("POST", "/api/v1/routes", {...}) -> Promise of the JSON answer. A refusal rejects
     with an Error whose .lines are the server's {"errors": [...]} and .status the HTTP code. */
  function api(method, url, body) {
    var options = { method: method, credentials: "same-origin",
                    headers: { "Accept": "application/json" } };
    if (method !== "GET" && method !== "HEAD") {
      options.headers["X-CSRF-Token"] = csrf();
    }
    if (body !== undefined && body !== null) {
      if (typeof FormData !== "undefined" && body instanceof FormData) {
        options.body = body;
      } else {
        options.headers["Content-Type"] = "application/json";
        options.body = JSON.stringify(body);
      }
    }
    return fetch(url, options).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      var parsed = type.indexOf("application/json") === 0 ? response.json() : response.text();
      return parsed.then(function (data) {
        if (response.ok) { return data; }
        if (response.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(location.pathname)); }
        var lines = (data && data.errors) || [response.status + " " + response.statusText];
        var error = new Error(lines.join("\n"));
        error.lines = lines;
        error.status = response.status;
        throw error;
      });
    });
  }

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ""; }
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  }

  function compare(a, b) {
    var x = parseFloat(a), y = parseFloat(b);
    if (!isNaN(x) && !isNaN(y) && String(x) === a.replace(/^\+/, "") && String(y) === b.replace(/^\+/, "")) {
      return x - y;
    }
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }

  /* fsr.table(tableElement): headers become sort buttons (keyboard too); an
     <input data-filter-for="TABLE-ID"> filters the rows by their text. A <td data-sort="...">
     sorts by that value instead of its text. Returns {sort(index), filter(text)}. */
  function table(el) {
    var body = el.tBodies[0];
    var headers = el.tHead ? el.tHead.rows[0].cells : [];
    function sort(index, descending) {
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (r1, r2) {
        var order = compare(cellValue(r1, index), cellValue(r2, index));
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
      Array.prototype.forEach.call(headers, function (th, i) {
        if (i === index) { th.setAttribute("aria-sort", descending ? "descending" : "ascending"); }
        else { th.removeAttribute("aria-sort"); }
      });
    }
    Array.prototype.forEach.call(headers, function (th, index) {
      if (th.hasAttribute("data-nosort")) { return; }
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (th.firstChild) { button.appendChild(th.firstChild); }
      th.appendChild(button);
      button.addEventListener("click", function () {
        sort(index, th.getAttribute("aria-sort") === "ascending");
      });
    });
    function filter(text) {
      var wanted = text.trim().toLowerCase();
      Array.prototype.forEach.call(body.rows, function (row) {
        row.classList.toggle("hidden", wanted !== "" && row.textContent.toLowerCase().indexOf(wanted) < 0);
      });
    }
    if (el.id) {
      document.querySelectorAll('input[data-filter-for="' + el.id + '"]').forEach(function (input) {
        input.addEventListener("input", function () { filter(input.value); });
      });
    }
    return { sort: sort, filter: filter };
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table[data-table]").forEach(table);
  });

  return { api: api, table: table, csrf: csrf };
})();
