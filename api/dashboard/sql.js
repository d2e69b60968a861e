// The overview's SQL box: runs one read-only query through POST /v1/sql and shows the result as
// a table, the error in words, and downloads the result as CSV (Accept: text/csv).
(() => {
  const $ = (id) => document.getElementById(id);
  const text = $("sql-text");
  const status = $("sql-status");
  const error = $("sql-error");
  const table = $("sql-result");
  if (!text) return;

  const post = (accept) => fetch("/v1/sql", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: accept },
    body: JSON.stringify({ sql: text.value }),
  });

  // The API's error body: {"error": {"status", "message"}}.
  const explain = async (res) => {
    let message = `HTTP ${res.status}`;
    try {
      const body = await res.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch { /* not JSON */ }
    const kind = { 400: "The query is not valid", 403: "Not allowed", 404: "SQL is off", 422: "Too slow", 429: "Busy" }[res.status] || "Failed";
    return `${kind}: ${message}`;
  };

  // A new query's answer replaces the previous one: its table is cleared as the query starts, so
  // that an error is never shown over an older result.
  const clearResult = () => {
    table.tHead.replaceChildren();
    table.tBodies[0].replaceChildren();
    status.textContent = "";
  };

  const showError = (message) => {
    clearResult();
    error.textContent = message;
    error.hidden = false;
    status.textContent = "";
    table.dataset.state = "error";
  };

  const cell = (v) => {
    const td = document.createElement("td");
    td.textContent = v === null ? "NULL" : String(v);
    if (v === null) td.className = "muted";
    return td;
  };

  const render = (result) => {
    const head = document.createElement("tr");
    for (const c of result.columns) {
      const th = document.createElement("th");
      th.textContent = c;
      head.append(th);
    }
    table.tHead.replaceChildren(head);
    table.tBodies[0].replaceChildren(...result.rows.map((row) => {
      const tr = document.createElement("tr");
      tr.append(...row.map(cell));
      return tr;
    }));
    status.textContent = `${result.rowCount} row${result.rowCount === 1 ? "" : "s"}${result.truncated ? " (cut at the row cap)" : ""}`;
    table.dataset.state = "ok";
  };

  const run = async () => {
    error.hidden = true;
    clearResult();
    status.textContent = "running…";
    table.dataset.state = "running";
    try {
      const res = await post("application/json");
      if (!res.ok) return showError(await explain(res));
      render(await res.json());
    } catch (e) {
      showError(`Failed: ${e.message}`);
    }
  };

  const download = async () => {
    error.hidden = true;
    try {
      const res = await post("text/csv");
      if (!res.ok) return showError(await explain(res));
      const url = URL.createObjectURL(new Blob([await res.text()], { type: "text/csv" }));
      const a = document.createElement("a");
      a.href = url;
      a.download = "query.csv";
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (e) {
      showError(`Failed: ${e.message}`);
    }
  };

  $("sql-run").addEventListener("click", run);
  $("sql-csv").addEventListener("click", download);
  // Ctrl/Cmd+Enter runs the query.
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); }
  });
})();
