// One labelled control per input the skill version declares, parsed by its declared type with a message that
// names the input when the value does not fit.

import type { SkillInputSpec } from "../api/types";
import { field, h, showFieldError } from "../dom";

const HINTS: Record<string, string> = {
  features: "Numbers separated by commas or spaces, e.g. 0.1, -0.2, 0.3 (or a JSON list).",
  series: "Numbers, oldest first, separated by commas or spaces (or a JSON list).",
  texts: "One text per line.",
  number: "A number.",
  integer: "A whole number.",
  string: "Text.",
};

export interface InputControl { name: string; read(): { ok: true; value: unknown } | { ok: false } }

export function inputControls(inputs: Record<string, SkillInputSpec>, parent: HTMLElement): InputControl[] {
  return Object.entries(inputs).map(([name, spec]) => {
    const multiline = ["features", "series", "texts"].includes(spec.type);
    const control = multiline
      ? h("textarea", { name, rows: spec.type === "texts" ? 3 : 2, "data-input": name })
      : h("input", { name, type: "text", "data-input": name });
    const hint = [spec.description, HINTS[spec.type]].filter(Boolean).join(" ");
    const { wrapper, error } = field(`${name} (${spec.type})`, control, hint);
    parent.appendChild(wrapper);
    return {
      name,
      read() {
        const parsed = parse(name, spec.type, control.value);
        showFieldError(control, error, parsed.ok ? "" : parsed.message);
        return parsed.ok ? parsed : { ok: false };
      },
    };
  });
}

type Parsed = { ok: true; value: unknown } | { ok: false; message: string };

export function parse(name: string, type: string, raw: string): Parsed {
  const text = raw.trim();
  if (!text) return { ok: false, message: `${name}: required.` };
  if (type === "features" || type === "series") {
    const parts = text.startsWith("[") ? jsonList(text) : text.split(/[\s,]+/).filter(Boolean);
    const numbers = parts?.map((p) => (typeof p === "number" ? p : Number(p)));
    if (!numbers || !numbers.length || numbers.some((n) => !Number.isFinite(n))) {
      return { ok: false, message: `${name}: expected a list of numbers, e.g. 0.1, 0.2, 0.3.` };
    }
    return { ok: true, value: numbers };
  }
  if (type === "texts") return { ok: true, value: text.split("\n").map((t) => t.trim()).filter(Boolean) };
  if (type === "number" || type === "integer") {
    const n = Number(text);
    if (!Number.isFinite(n) || (type === "integer" && !Number.isInteger(n))) {
      return { ok: false, message: `${name}: expected ${type === "integer" ? "a whole number" : "a number"}.` };
    }
    return { ok: true, value: n };
  }
  return { ok: true, value: text };
}

function jsonList(text: string): unknown[] | null {
  try {
    const value = JSON.parse(text);
    return Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}
