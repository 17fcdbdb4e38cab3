// The sign-in form: a token, checked for shape here and then by the registry itself before it is kept.

import { call, ApiError } from "../api/client";
import { signIn, signOut, tokenProblem } from "../auth";
import { field, h, showFieldError } from "../dom";

export function signInForm(reason: string, onSignedIn: () => void): HTMLElement {
  const input = h("textarea", { name: "token", rows: 4, autocomplete: "off", spellcheck: "false",
    class: "token-input", required: true });
  const token = field("Mesh token", input,
    "Mint one with `.venv/bin/mlmesh token --console`. It stays in this browser tab only.");
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to the mlmesh console"),
    reason ? h("p", { class: "notice", role: "alert" }, reason) : null,
    token.wrapper, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    const problem = tokenProblem(value);
    showFieldError(input, token.error, problem);
    if (problem) return input.focus();
    submit.disabled = true;
    signIn(value);
    try {
      await call("/ml/skills?page_size=1");     // the registry verifies the token; a refusal is its answer
      onSignedIn();
    } catch (error) {
      signOut();
      const message = error instanceof ApiError ? error.describe() : String(error);
      showFieldError(input, token.error, `Token: refused by the mesh (${message}).`);
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  queueMicrotask(() => input.focus());
  return form;
}
