// /console/ml/skills: the registry browser (skills, versions and their hashes, the locked model references,
// recent runs from the ledger) and a form that runs the chosen version and shows its outputs step by step.
// Skills and versions are chosen from pickers filled from the registry, never typed.

import { ApiError, call, path } from "../api/client";
import { follow } from "../api/operations";
import { enumLabel, type Skill, type SkillRun, type SkillVersion } from "../api/types";
import { field, h, replaceChildren, shortHash } from "../dom";
import { inputControls, type InputControl } from "./skillInputs";

export function skillsPage(container: HTMLElement): () => void {
  const aborter = new AbortController();
  const skillPicker = h("select", { name: "skill" });
  const versionPicker = h("select", { name: "version", disabled: true });
  const details = h("div", { class: "details", "aria-live": "polite" });
  const runs = h("div", { class: "runs" });
  const runForm = h("form", { class: "run-form", "aria-labelledby": "run-title" });
  const runStatus = h("div", { class: "run-status", role: "status", "aria-live": "polite" });
  const runResult = h("div", { class: "run-result" });
  const problem = h("p", { class: "error", role: "alert" });
  let versions: SkillVersion[] = [];

  replaceChildren(container,
    h("h1", {}, "Skills"),
    problem,
    h("section", { "aria-labelledby": "registry-title", class: "panel" },
      h("h2", { id: "registry-title" }, "Registry"),
      h("div", { class: "pickers" },
        field("Skill", skillPicker, "Published skills in the registry.").wrapper,
        field("Version", versionPicker, "Hash-locked versions, newest first.").wrapper),
      details),
    h("section", { "aria-labelledby": "run-title", class: "panel" },
      h("h2", { id: "run-title" }, "Run this version"), runForm, runStatus, runResult),
    h("section", { "aria-labelledby": "runs-title", class: "panel" },
      h("h2", { id: "runs-title" }, "Recent runs"), runs));

  const fail = (error: unknown) => {
    if (aborter.signal.aborted) return;
    problem.textContent = error instanceof ApiError ? error.describe() : String(error);
  };

  async function loadSkills(): Promise<void> {
    const reply = await call<{ skills: Skill[] }>("/ml/skills?page_size=200", { signal: aborter.signal });
    replaceChildren(skillPicker, ...reply.skills.map((s) => h("option", { value: s.name }, s.name)));
    if (!reply.skills.length) {
      replaceChildren(details, h("p", {}, "No skill is published yet (`mlmesh skills publish FILE`)."));
      return;
    }
    await loadVersions(reply.skills[0].name);
  }

  async function loadVersions(name: string): Promise<void> {
    const reply = await call<{ versions: SkillVersion[] }>(path("/ml/skills/{}/versions?page_size=50", name),
      { signal: aborter.signal });
    versions = [...reply.versions].sort((a, b) => b.number - a.number);
    replaceChildren(versionPicker, ...versions.map((v) =>
      h("option", { value: v.version }, `#${v.number} ${shortHash(v.version)}`)));
    versionPicker.disabled = !versions.length;
    showVersion();
    await loadRuns(name);
  }

  function selected(): SkillVersion | undefined {
    return versions.find((v) => v.version === versionPicker.value);
  }

  function showVersion(): void {
    const version = selected();
    replaceChildren(runResult);
    runStatus.textContent = "";
    if (!version) return replaceChildren(details);
    replaceChildren(details,
      h("p", {}, version.spec.description ?? ""),
      h("dl", { class: "facts" },
        h("dt", {}, "Version"), h("dd", {}, h("code", { "data-testid": "version-hash" }, version.version)),
        h("dt", {}, "Number"), h("dd", {}, `#${version.number}`),
        h("dt", {}, "Published by"), h("dd", {}, version.createdBy)),
      h("h3", {}, "Locked model references"),
      table(["Reference", "Locked to"], Object.entries(version.lock).sort().map(([ref, hash]) =>
        [ref, h("code", { title: hash }, hash)]), "lock"),
      h("h3", {}, "Steps"),
      h("ol", {}, ...(version.spec.steps ?? []).map((s) =>
        h("li", {}, h("strong", {}, s.id), ` (${s.interface})${s.description ? `: ${s.description}` : ""}`))));
    buildRunForm(version);
  }

  function buildRunForm(version: SkillVersion): void {
    replaceChildren(runForm);
    const controls: InputControl[] = inputControls(version.spec.inputs ?? {}, runForm);
    const reresolve = h("input", { type: "checkbox", name: "reresolve", id: "reresolve" });
    const submit = h("button", { type: "submit" }, `Run ${version.name} #${version.number}`);
    runForm.append(h("div", { class: "check" }, reresolve,
      h("label", { for: "reresolve" }, "Re-resolve aliases now instead of using the lock (recorded in the ledger)")),
      submit);
    runForm.onsubmit = async (event) => {
      event.preventDefault();
      const values = controls.map((c) => [c.name, c.read()] as const);
      const invalid = values.find(([, v]) => !v.ok);
      if (invalid) {
        (runForm.querySelector(`[data-input="${invalid[0]}"]`) as HTMLElement | null)?.focus();
        return;
      }
      const inputs = Object.fromEntries(values.map(([name, v]) => [name, v.ok ? v.value : null]));
      submit.disabled = true;
      replaceChildren(runResult);
      try {
        await run(version, inputs, reresolve.checked);
      } catch (error) {
        runStatus.textContent = `Run failed: ${error instanceof ApiError ? error.describe() : String(error)}`;
      } finally {
        submit.disabled = false;
      }
    };
  }

  async function run(version: SkillVersion, inputs: Record<string, unknown>, reresolve: boolean): Promise<void> {
    const ref = `${version.name}@${version.version}`;
    runStatus.textContent = `Starting ${version.name} #${version.number}…`;
    const started = await call<{ id: string }>(path("/ml/skills/{}/runs", ref), {
      method: "POST", body: { inputs, reresolveAliases: reresolve }, signal: aborter.signal });
    const final = await follow(started.id, (op) => {
      const p = op.progress;
      runStatus.textContent = `Run ${enumLabel(op.state, "OPERATION_STATE_")}${p?.stage ? `: ${p.stage}` : ""}` +
        `${p && Number(p.total) ? ` (${p.done}/${p.total} ${p.unit})` : ""}`;
    }, aborter.signal);
    const result = final.result as unknown as SkillRun | undefined;
    if (final.state !== "OPERATION_STATE_SUCCEEDED" || !result) {
      runStatus.textContent = `Run failed: ${final.error?.code}: ${final.error?.message}`;
    } else {
      runStatus.textContent = `Run ${enumLabel(result.status, "SKILL_RUN_STATUS_")}: ${result.id}`;
    }
    if (result?.steps) showRun(result);
    await loadRuns(version.name);
  }

  function showRun(run: SkillRun): void {
    replaceChildren(runResult,
      h("h3", {}, "Steps"),
      table(["Step", "Interface", "Model", "Resolved to", "Output", "Time"], run.steps.map((s) => [
        s.stepId, s.interface, s.model, h("code", { title: s.resolvedModel }, shortHash(s.resolvedModel)),
        s.error ? h("span", { class: "error" }, s.error) : h("code", {}, JSON.stringify(s.output)),
        `${s.durationMs.toFixed(1)} ms`]), "steps"),
      h("h3", {}, "Outputs"),
      table(["Output", "Value"], Object.entries(run.outputs ?? {}).map(([k, v]) => [k,
        h("code", { "data-output": k }, JSON.stringify(v))]), "outputs"),
      run.error ? h("p", { class: "error" }, `Failed at ${run.failedStep}: ${run.error}`) : null);
  }

  async function loadRuns(name: string): Promise<void> {
    const reply = await call<{ runs: SkillRun[] }>(path("/ml/skill-runs?skill_name={}&page_size=10", name),
      { signal: aborter.signal });
    replaceChildren(runs, reply.runs.length
      ? table(["Run", "Version", "Status", "Started", "Outputs"], reply.runs.map((r) => [
        h("code", {}, r.id), h("code", { title: r.skillVersion }, shortHash(r.skillVersion)),
        enumLabel(r.status, "SKILL_RUN_STATUS_"), r.startedAt ? new Date(r.startedAt).toLocaleString() : "",
        h("code", {}, JSON.stringify(r.outputs ?? {}))]), "runs")
      : h("p", {}, "No run of this skill yet."));
  }

  skillPicker.addEventListener("change", () => loadVersions(skillPicker.value).catch(fail));
  versionPicker.addEventListener("change", showVersion);
  loadSkills().catch(fail);
  return () => aborter.abort();
}

export function table(headers: string[], rows: Array<Array<Node | string>>, name: string): HTMLTableElement {
  return h("table", { "data-table": name },
    h("thead", {}, h("tr", {}, ...headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...rows.map((cells) => h("tr", {}, ...cells.map((c) => h("td", {}, c))))));
}
