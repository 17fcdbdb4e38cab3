// The kill switch, on every page: one press halts every serving replica (POST /ml/serving/halt-all: the replica
// that answers halts the others too) and lists each replica's answer. The checkbox before it (off by default,
// and off again each time a page is drawn) adds `cancel_running`: the batches models are running fail too, whole.

import { ApiError, call } from "../api/client";
import type { HaltResult } from "../api/types";
import { h, replaceChildren } from "../dom";

export const CANCEL_RUNNING_HINT = "Without it, each batch a model is running now finishes and is answered in full; " +
  "with it, its callers get UNAVAILABLE too. For an emergency, when no more outputs may reach anyone.";

export function killSwitch(who: () => string): HTMLElement {
  const results = h("div", { class: "kill-results", role: "status", "aria-live": "assertive", id: "kill-results" });
  const cancelRunning = h("input", { type: "checkbox", id: "kill-cancel-running", name: "cancel_running",
    "aria-describedby": "kill-cancel-running-hint" });
  const button = h("button", { type: "button", class: "kill", "aria-describedby": "kill-results",
    title: "Halts every session on every serving replica; resume sessions one by one on the Serving page." },
    "Kill switch: halt every replica");
  button.addEventListener("click", async () => {
    button.disabled = true;
    const cancel = cancelRunning.checked;
    replaceChildren(results, h("p", {}, "Halting every serving replica…"));
    try {
      const reply = await call<{ results: HaltResult[]; halted: number }>("/ml/serving/halt-all", {
        method: "POST", body: { reason: `kill switch pressed in the console by ${who()}`, cancel_running: cancel } });
      replaceChildren(results, report(reply.results, reply.halted, cancel));
    } catch (error) {
      const message = error instanceof ApiError ? error.describe() : String(error);
      replaceChildren(results, h("p", { class: "error" }, `The kill switch was not confirmed: ${message}`));
    } finally {
      button.disabled = false;
    }
  });
  const option = h("div", { class: "check" }, cancelRunning,
    h("label", { for: cancelRunning.id, title: CANCEL_RUNNING_HINT },
      "Also fail the batches running now (nothing more is answered)"),
    h("span", { id: "kill-cancel-running-hint", class: "visually-hidden" }, CANCEL_RUNNING_HINT));
  return h("section", { class: "kill-switch", "aria-label": "Kill switch" }, option, button, results);
}

function report(results: HaltResult[], halted: number, cancelRunning: boolean): HTMLElement {
  const byReplica = new Map<string, HaltResult[]>();
  for (const result of results) byReplica.set(result.replica, [...(byReplica.get(result.replica) ?? []), result]);
  const items = [...byReplica].map(([replica, answers]) => {
    const failed = answers.filter((a) => !a.halted || a.error);
    const sessions = answers.filter((a) => a.sessionId);
    const text = failed.length
      ? `NOT CONFIRMED: ${failed.map((a) => a.error || `${a.sessionId} not halted`).join("; ")}`
      : sessions.length ? `halted ${sessions.map((a) => a.sessionId).join(", ")}` : "halted (no sessions)";
    return h("li", { class: failed.length ? "error" : "ok", "data-replica": replica },
      h("strong", {}, replica), `: ${text}`);
  });
  const running = cancelRunning ? "the batches that were running failed too" : "batches already running finish";
  return h("div", {},
    h("p", {}, `Kill switch: ${halted} session(s) halted on ${byReplica.size} replica(s); ${running}.`),
    h("ul", { class: "replica-answers" }, ...items));
}
