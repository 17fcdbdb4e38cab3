// The kill switch, on every page: one press halts every serving replica (POST /ml/serving/halt-all: the replica
// that answers halts the others too) and lists each replica's answer.

import { ApiError, call } from "../api/client";
import type { HaltResult } from "../api/types";
import { h, replaceChildren } from "../dom";

export function killSwitch(who: () => string): HTMLElement {
  const results = h("div", { class: "kill-results", role: "status", "aria-live": "assertive", id: "kill-results" });
  const button = h("button", { type: "button", class: "kill", "aria-describedby": "kill-results",
    title: "Halts every session on every serving replica; resume sessions one by one on the Serving page." },
    "Kill switch: halt every replica");
  button.addEventListener("click", async () => {
    button.disabled = true;
    replaceChildren(results, h("p", {}, "Halting every serving replica…"));
    try {
      const reply = await call<{ results: HaltResult[]; halted: number }>("/ml/serving/halt-all", {
        method: "POST", body: { reason: `kill switch pressed in the console by ${who()}` } });
      replaceChildren(results, report(reply.results, reply.halted));
    } catch (error) {
      const message = error instanceof ApiError ? error.describe() : String(error);
      replaceChildren(results, h("p", { class: "error" }, `The kill switch was not confirmed: ${message}`));
    } finally {
      button.disabled = false;
    }
  });
  return h("section", { class: "kill-switch", "aria-label": "Kill switch" }, button, results);
}

function report(results: HaltResult[], halted: number): HTMLElement {
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
  return h("div", {}, h("p", {}, `Kill switch: ${halted} session(s) halted on ${byReplica.size} replica(s).`),
    h("ul", { class: "replica-answers" }, ...items));
}
