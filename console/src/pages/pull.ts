// /console/ml/pull: pull a model from HuggingFace or TorchHub with a progress bar fed by WatchOperation.
// A refusal (allow-list, hash mismatch, offline, pickle) is shown as the puller's own reason.

import { ApiError, call } from "../api/client";
import { follow } from "../api/operations";
import { enumLabel, type Operation } from "../api/types";
import { field, h, replaceChildren, showFieldError } from "../dom";

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

type FieldProblem = { field: string; message: string };

/** The puller's source URI from the form, or the field at fault. */
export function pullSource(hub: string, repo: string, revision: string, entry: string): string | FieldProblem {
  const parts = repo.split("/");
  if (parts.length !== 2 || !parts.every((p) => NAME.test(p))) {
    const [shape, example] = hub === "hf" ? ["ORG/NAME", "org/tiny-mlp"] : ["OWNER/REPO", "pytorch/vision"];
    return { field: "repository", message: `Repository: expected ${shape}, e.g. ${example}.` };
  }
  if (revision && !/^[A-Za-z0-9._/-]+$/.test(revision)) {
    return { field: "revision", message: "Revision: letters, digits, '.', '_', '-' and '/' only." };
  }
  if (hub === "hf") return `hf://${repo}${revision ? `@${revision}` : ""}`;
  if (!NAME.test(entry)) return { field: "entry", message: "Entry: the hubconf entry point to pull, e.g. resnet18." };
  return `torchhub://${repo}${revision ? `:${revision}` : ""}/${entry}`;
}

export function pullPage(container: HTMLElement): () => void {
  const aborter = new AbortController();
  const hub = h("select", { name: "hub" }, h("option", { value: "hf" }, "HuggingFace"),
    h("option", { value: "torchhub" }, "TorchHub"));
  const repo = h("input", { name: "repository", type: "text", autocomplete: "off", required: true });
  const revision = h("input", { name: "revision", type: "text", autocomplete: "off" });
  const entry = h("input", { name: "entry", type: "text", autocomplete: "off" });
  const name = h("input", { name: "name", type: "text", autocomplete: "off" });
  const aliases = h("input", { name: "aliases", type: "text", autocomplete: "off" });
  const fields = {
    hub: field("Hub", hub),
    repository: field("Repository", repo, "HuggingFace: ORG/NAME. TorchHub: OWNER/REPO (allow-listed entries only)."),
    revision: field("Revision (optional)", revision, "A tag, branch or commit; pinned to its commit when pulled."),
    entry: field("Entry", entry, "TorchHub: the allow-listed entry point."),
    name: field("Registry name (optional)", name, "Defaults to the source's name."),
    aliases: field("Aliases (optional)", aliases, "Comma-separated, e.g. prod, candidate."),
  };
  const controls: Record<string, HTMLInputElement | HTMLSelectElement> = {
    hub, repository: repo, revision, entry, name, aliases };
  const submit = h("button", { type: "submit" }, "Pull");
  const form = h("form", { class: "pull-form", "aria-labelledby": "pull-title" },
    ...Object.values(fields).map((f) => f.wrapper), submit);
  const bar = h("progress", { id: "pull-progress", max: 1, value: 0, "aria-labelledby": "pull-progress-label" });
  const barLabel = h("span", { id: "pull-progress-label" }, "Progress");
  const status = h("p", { class: "pull-status", role: "status", "aria-live": "polite" });
  const outcome = h("div", { class: "pull-outcome", "aria-live": "polite" });
  const progress = h("div", { class: "progress", hidden: true }, barLabel, bar, status);

  replaceChildren(container, h("h1", { id: "pull-title" }, "Pull a model"),
    h("section", { class: "panel" }, form, progress, outcome));

  const syncHub = () => { fields.entry.wrapper.hidden = hub.value !== "torchhub"; };
  hub.addEventListener("change", syncHub);
  syncHub();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const [key, f] of Object.entries(fields)) showFieldError(controls[key], f.error, "");
    const source = pullSource(hub.value, repo.value.trim(), revision.value.trim(), entry.value.trim());
    const aliasList = aliases.value.split(",").map((a) => a.trim()).filter(Boolean);
    const badAlias = aliasList.find((a) => !NAME.test(a));
    const badName = name.value.trim() && !/^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(name.value.trim());
    const problem = typeof source !== "string" ? source
      : badName ? { field: "name", message: "Registry name: letters, digits, '.', '_', '-' and '/' only." }
        : badAlias ? { field: "aliases", message: `Aliases: '${badAlias}' is not a valid alias name.` } : null;
    if (problem) {
      showFieldError(controls[problem.field], fields[problem.field as keyof typeof fields].error, problem.message);
      return controls[problem.field].focus();
    }
    submit.disabled = true;
    replaceChildren(outcome);
    progress.hidden = false;
    bar.value = 0;
    bar.max = 1;
    status.textContent = `Starting ${source}…`;
    try {
      const started = await call<Operation>("/ml/pull", { method: "POST", signal: aborter.signal,
        body: { source, name: name.value.trim(), aliases: aliasList } });
      const final = await follow(started.id, show, aborter.signal);
      report(final, source as string);
    } catch (error) {
      report(null, source as string, error instanceof ApiError ? error : new ApiError(0, "UNKNOWN", String(error)));
    } finally {
      submit.disabled = false;
    }
  });

  function show(op: Operation): void {
    const p = op.progress;
    const done = Number(p?.done ?? 0);
    const total = Number(p?.total ?? 0);
    if (total > 0) {
      bar.max = total;
      bar.value = Math.min(done, total);
    } else {
      bar.removeAttribute("value");        // indeterminate while the total is unknown
    }
    const amount = total > 0 ? ` ${Math.round((100 * done) / total)}% (${done}/${total} ${p?.unit})` : "";
    status.textContent = `${enumLabel(op.state, "OPERATION_STATE_")}${p?.stage ? `, ${p.stage}` : ""}${amount}` +
      `${p?.message ? `: ${p.message}` : ""}`;
  }

  function report(final: Operation | null, source: string, error?: ApiError): void {
    if (final?.state === "OPERATION_STATE_SUCCEEDED") {
      bar.max = 1;
      bar.value = 1;
      const artifact = final.result as { id?: string; name?: string } | undefined;
      replaceChildren(outcome, h("div", { class: "ok", "data-outcome": "succeeded" },
        h("p", {}, `Pulled ${source} as ${artifact?.name ?? "?"}`), h("code", {}, artifact?.id ?? "")));
      return;
    }
    const code = error ? error.code : final?.error?.code ?? enumLabel(final?.state, "OPERATION_STATE_");
    const message = error ? error.message : final?.error?.message || "no reason given";
    const where = error?.field || final?.error?.field;
    status.textContent = `Refused: ${code}`;
    replaceChildren(outcome, h("div", { class: "refused", role: "alert", "data-outcome": "refused" },
      h("p", {}, h("strong", {}, `The pull of ${source} was refused`), ` (${code}${where ? `, field ${where}` : ""})`),
      h("p", { class: "reason", "data-testid": "refusal-reason" }, message)));
  }

  return () => aborter.abort();
}
