// eddy console: the live tail of the messages page. Records arrive as server-sent events (JSON
// arrays) and are added with textContent only, so stored bytes never become markup.
"use strict";
(function () {
  const button = document.getElementById("tail");
  const body = document.querySelector("#messages tbody");
  if (!button || !body) return;
  const MAX_ROWS = 500;
  let source = null;
  function cell(row, text, cls) {
    const td = row.insertCell();
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }
  function shown(rendered, absent, td) {
    if (rendered === null) { td.textContent = absent; td.classList.add("muted"); return; }
    const pre = document.createElement("pre");
    pre.className = "value " + rendered.kind;
    pre.textContent = rendered.text;
    td.appendChild(pre);
  }
  function add(m) {
    const row = body.insertRow();
    row.className = "new";
    cell(row, String(m.partition), "num");
    cell(row, String(m.offset), "num");
    cell(row, new Date(m.timestamp).toISOString(), "time");
    const key = row.insertCell();
    key.className = "key";
    shown(m.key, "no key", key);
    shown(m.value, "tombstone", row.insertCell());
    const headers = row.insertCell();
    for (const [k, v] of m.headers) {
      const div = document.createElement("div");
      div.textContent = k + ": " + (v === null ? "null" : v.text);
      headers.appendChild(div);
    }
    while (body.rows.length > MAX_ROWS) body.deleteRow(0);
  }
  button.addEventListener("click", function () {
    if (source) { source.close(); source = null; button.classList.remove("active"); button.textContent = "Live tail"; return; }
    const params = new URLSearchParams();
    if (button.dataset.partition) params.set("partition", button.dataset.partition);
    if (button.dataset.key) params.set("key", button.dataset.key);
    source = new EventSource("/api/topics/" + encodeURIComponent(button.dataset.topic) + "/tail?" + params);
    source.onmessage = function (e) { for (const m of JSON.parse(e.data)) add(m); };
    source.onopen = function () { button.dataset.open = "1"; };
    button.classList.add("active");
    button.textContent = "Stop tail";
  });
})();
