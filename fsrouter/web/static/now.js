// The Now page, live: asks the page's JSON (/api/v1/now) every few seconds and redraws the
// on-call table, the queues and the other calls. Values go in with textContent only (caller
// names are hostile). Same layout and time format as templates/now/now.html.
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script.getAttribute("data-url");
  var every = Math.max(1, parseInt(script.getAttribute("data-poll"), 10) || 3) * 1000;
  var live = document.getElementById("now-live");
  var busy = false;

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }
  function when(moment, at) {
    return moment.slice(0, 10) === at.slice(0, 10) ? moment.slice(11, 16)
      : moment.slice(5, 10) + " " + moment.slice(11, 16);
  }
  function two(n) { return (n < 10 ? "0" : "") + n; }
  function duration(s) {
    if (s >= 3600) return Math.floor(s / 3600) + ":" + two(Math.floor(s % 3600 / 60)) + ":" + two(s % 60);
    return Math.floor(s / 60) + ":" + two(s % 60);
  }
  function who(cell, segment) {
    if (segment.gap) { cell.appendChild(el("strong", "GAP", "gap-word")); cell.appendChild(document.createTextNode(" ")); }
    cell.appendChild(document.createTextNode(segment.who));
  }
  function oncallRow(option, at) {
    var row = el("tr", null, option.now.gap ? "gap" : "");
    var head = el("th", option.number + (option.name ? " (" + option.name + ")" : "") + " ");
    head.scope = "row";
    head.appendChild(el("span", String(option.digit), "key"));
    head.appendChild(document.createTextNode(" " + option.label));
    row.appendChild(head);
    var now = el("td"); who(now, option.now); row.appendChild(now);
    row.appendChild(el("td", option.next ? when(option.next.from, at) : "no change in 8 days"));
    var next = el("td", null, option.next && option.next.gap ? "gap" : "");
    if (option.next) who(next, option.next); else next.textContent = "-";
    row.appendChild(next);
    return row;
  }
  function callText(call, waiting) {
    var caller = call.caller || "unknown";
    if (waiting) return "waiting " + duration(call.seconds) + ": " + caller +
      (call.caller_name ? " (" + call.caller_name + ")" : "") + " on " + call.number;
    return "talking " + duration(call.seconds) + ": " + caller + " with " + (call.with || "?");
  }
  function queueBox(queue) {
    var box = el("div", null, "queue" + (queue.waiting.length ? " has-waiting" : ""));
    box.appendChild(el("h3", queue.name + ": " + queue.waiting.length + " waiting, " +
      queue.talking.length + " talking"));
    if (queue.waiting.length || queue.talking.length) {
      var list = el("ul");
      queue.waiting.forEach(function (c) { list.appendChild(el("li", callText(c, true), "waiting")); });
      queue.talking.forEach(function (c) { list.appendChild(el("li", callText(c, false))); });
      box.appendChild(list);
    }
    return box;
  }
  function replace(id, nodes) {
    var target = document.getElementById(id);
    while (target.firstChild) target.removeChild(target.firstChild);
    nodes.forEach(function (n) { target.appendChild(n); });
  }
  function draw(data) {
    var at = document.getElementById("now-at");
    at.textContent = when(data.at, data.at);
    at.setAttribute("datetime", data.at);
    document.getElementById("now-waiting").textContent = data.waiting;
    document.getElementById("now-calls").textContent = data.calls;
    var rows = data.hotlines.map(function (o) { return oncallRow(o, data.at); });
    if (!rows.length) { var r = el("tr"); var c = el("td", "No hotline numbers configured."); c.colSpan = 4; r.appendChild(c); rows = [r]; }
    replace("oncall-body", rows);
    replace("queues", data.queues.length ? data.queues.map(queueBox) : [el("p", "No queues.")]);
    var others = data.other_calls.map(function (c) {
      return el("li", c.state.replace("_", " ") + " " + duration(c.seconds) + ": " + (c.caller || "unknown") +
        " on " + c.number + (c.with ? " with " + c.with : ""));
    });
    replace("other-calls", others.length ? others : [el("li", "none")]);
    var agents = data.agents.map(function (a) {
      var item = el("li", a.user + ": " + (a.state === "logged_in" ? "logged in, " +
        (a.busy ? "busy" : "free") : "logged out"), a.state + (a.busy ? " busy" : ""));
      item.id = "now-agent-" + a.user;
      return item;
    });
    replace("now-agents", agents.length ? agents : [el("li", "no agents")]);
  }
  function poll() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}, cache: "no-store"})
      .then(function (response) {
        if (response.status === 401) { live.textContent = "logged out: reload to log in"; return null; }
        if (!response.ok) { live.textContent = "update failed (" + response.status + "), retrying"; return null; }
        return response.json();
      })
      .then(function (data) {
        if (data) { draw(data); live.textContent = "live, updated every " + every / 1000 + " s"; }
      })
      .catch(function () { live.textContent = "console unreachable, retrying"; })
      .then(function () { busy = false; });
  }
  setInterval(poll, every);
  document.addEventListener("visibilitychange", poll);
})();
