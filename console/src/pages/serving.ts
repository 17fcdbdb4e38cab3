// /console/ml/serving: every session of every serving replica, live from WatchSessions (one stream per replica,
// pinned by Envoy's replica header, since sessions live on one replica), with halt and resume per session.
// One checkbox above the table (off by default) makes every Halt button also fail the batch running now,
// as the kill switch's does (`cancel_running`). Rows are updated in place so a keyboard user's focus stays
// on the button it was on.

import { ApiError, call, path } from "../api/client";
import { config } from "../api/config";
import { watch } from "../api/stream";
import { enumLabel, type ServingSession } from "../api/types";
import { CANCEL_RUNNING_HINT } from "../components/killSwitch";
import { formatNumber, h, replaceChildren } from "../dom";

// [key, header]: the key names each cell (data-col) for scripts and tests.
const COLUMNS: Array<[string, string]> = [["session", "Session"], ["replica", "Replica"], ["model", "Model"],
  ["state", "State"], ["queue", "Queue / running"], ["batches", "Batch sizes (size×count)"],
  ["throughput", "Throughput (req/s)"], ["latency", "p50 / p99 (ms)"], ["requests", "Requests (failed, refused)"],
  ["rules", "Rule trips"], ["breaker", "Breaker"], ["actions", "Actions"]];
const LONG_REF = 28;
const RETRY_MS = 1000;

interface Row { tr: HTMLTableRowElement; cells: HTMLTableCellElement[]; halt: HTMLButtonElement;
  resume: HTMLButtonElement; state: string }

export function servingPage(container: HTMLElement): () => void {
  const aborter = new AbortController();
  const tbody = h("tbody", {});
  const empty = h("p", { class: "empty" }, "No serving session yet (`mlmesh serve ARTIFACT`).");
  const streams = h("ul", { class: "streams", "aria-label": "Watch streams" });
  const announcer = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  const problem = h("p", { class: "error", role: "alert" });
  const cancelRunning = h("input", { type: "checkbox", id: "halt-cancel-running", name: "cancel_running",
    "aria-describedby": "halt-cancel-running-hint" });
  const rows = new Map<string, Row>();
  const sessionsByReplica = new Map<string, ServingSession[]>();

  replaceChildren(container,
    h("h1", {}, "Serving"),
    h("p", {}, "Live from WatchSessions: figures refresh as they change."),
    streams, problem, announcer,
    h("div", { class: "check" }, cancelRunning, h("label", { for: cancelRunning.id },
      "Halt buttons also fail the batch running now (nothing more is answered)")),
    h("p", { id: "halt-cancel-running-hint", class: "hint" }, CANCEL_RUNNING_HINT),
    h("div", { class: "table-scroll" },
      h("table", { "data-table": "sessions", "aria-label": "Serving sessions" },
        h("thead", {}, h("tr", {}, ...COLUMNS.map(([, title]) => h("th", { scope: "col" }, title)))), tbody)),
    empty);

  function render(): void {
    const seen = new Set<string>();
    for (const sessions of sessionsByReplica.values()) {
      for (const session of sessions) {
        const key = `${session.replica}/${session.id}`;
        seen.add(key);
        update(rows.get(key) ?? addRow(key, session), session);
      }
    }
    for (const [key, row] of rows) if (!seen.has(key)) { row.tr.remove(); rows.delete(key); }
    empty.hidden = rows.size > 0;
  }

  function addRow(key: string, session: ServingSession): Row {
    const cells = COLUMNS.map(([key]) => h("td", { "data-col": key }));
    const label = `session ${session.id} on ${session.replica}`;
    const halt = h("button", { type: "button", "aria-label": `Halt ${label}`, class: "danger" }, "Halt");
    const resume = h("button", { type: "button", "aria-label": `Resume ${label}` }, "Resume");
    halt.addEventListener("click", () => act("halt", session, halt));
    resume.addEventListener("click", () => act("resume", session, resume));
    cells[cells.length - 1].append(halt, " ", resume);
    const tr = h("tr", { "data-session": session.id, "data-replica": session.replica }, ...cells);
    tbody.appendChild(tr);
    const row = { tr, cells, halt, resume, state: "" };
    rows.set(key, row);
    return row;
  }

  function update(row: Row, session: ServingSession): void {
    const stats = session.stats;
    const state = enumLabel(session.state, "SESSION_STATE_");
    const batches = Object.entries(stats?.batchSizeCounts ?? {}).sort(([a], [b]) => Number(a) - Number(b))
      .map(([size, count]) => `${size}×${count}`).join(" ");
    const trips = Object.entries(stats?.ruleTrips ?? {}).map(([rule, n]) => `${rule}: ${n}`).join(", ");
    const model = session.model.length > LONG_REF ? `${session.model.slice(0, LONG_REF)}…` : session.model;
    const values = [session.id, session.replica, model,
      state === "halted" && session.haltReason ? `halted: ${session.haltReason}` : state,
      `${stats?.queueDepth ?? 0} / ${stats?.running ?? 0}`,
      `mean ${formatNumber(stats?.batchSizeMean, 2)}${batches ? `; ${batches}` : ""}`,
      formatNumber(stats?.throughputRps),
      `${formatNumber(stats?.latencyP50Ms, 2)} / ${formatNumber(stats?.latencyP99Ms, 2)}`,
      `${stats?.requestsTotal ?? 0} (${stats?.requestsFailed ?? 0}, ${stats?.requestsRefused ?? 0})`,
      trips || "none", enumLabel(stats?.breakerState, "BREAKER_STATE_")];
    values.forEach((text, i) => {
      if (row.cells[i].textContent !== text) row.cells[i].textContent = text;
    });
    row.cells[2].title = session.model;
    row.cells[3].dataset.state = state;
    row.halt.disabled = state !== "ready";
    row.resume.disabled = state !== "halted";
    if (row.state && row.state !== state) {
      announcer.textContent = `Session ${session.id} on ${session.replica}: ${state}`;
    }
    row.state = state;
  }

  async function act(verb: "halt" | "resume", session: ServingSession, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    problem.textContent = "";
    try {
      await call(path(`/ml/serving/sessions/{}/${verb}`, session.id), { method: "POST", replica: session.replica,
        body: verb === "halt" ? { reason: "halted from the console", cancel_running: cancelRunning.checked } : {} });
    } catch (error) {
      problem.textContent = `${verb} ${session.id} on ${session.replica}: ` +
        (error instanceof ApiError ? error.describe() : String(error));
      button.disabled = false;
    }
  }

  async function follow(replica: string): Promise<void> {
    const status = h("li", {}, `${replica || "serving"}: connecting`);
    streams.appendChild(status);
    while (!aborter.signal.aborted) {
      try {
        for await (const update of watch<{ sessions: ServingSession[] }>("/ml/serving/sessions:watch?interval_s=0.5",
          { replica: replica || undefined, signal: aborter.signal })) {
          status.textContent = `${replica || "serving"}: live`;
          sessionsByReplica.set(replica, update.sessions ?? []);
          render();
        }
        status.textContent = `${replica || "serving"}: stream ended, reconnecting`;
      } catch (error) {
        if (aborter.signal.aborted) return;
        const reason = error instanceof ApiError ? error.describe() : String(error);
        status.textContent = `${replica || "serving"}: ${reason}; retrying`;
        if (error instanceof ApiError && error.status === 401) return;
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  const replicas = config().servingReplicas.length > 1 ? config().servingReplicas : [""];
  for (const replica of replicas) void follow(replica);
  render();
  return () => aborter.abort();
}
