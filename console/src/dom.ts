// A tiny element builder: the console needs no framework, only labelled controls and text.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K, attrs: Attrs = {}, ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, ...children);
  return element;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replaceChildren(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, ...children);
}

let ids = 0;
/** A document-unique id, for label `for` and aria-describedby links. */
export function uid(prefix: string): string {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled control with a hint and a slot for its error, linked by aria-describedby. */
export function field(label: string, control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
                      hint = ""): { wrapper: HTMLElement; error: HTMLElement } {
  control.id ||= uid("field");
  const hintId = `${control.id}-hint`;
  const errorId = `${control.id}-error`;
  const error = h("p", { id: errorId, class: "field-error", role: "alert" });
  control.setAttribute("aria-describedby", hint ? `${hintId} ${errorId}` : errorId);
  const wrapper = h("div", { class: "field" }, h("label", { for: control.id }, label), control,
    hint ? h("p", { id: hintId, class: "hint" }, hint) : null, error);
  return { wrapper, error };
}

export function showFieldError(control: HTMLElement, error: HTMLElement, message: string): void {
  error.textContent = message;
  if (message) control.setAttribute("aria-invalid", "true");
  else control.removeAttribute("aria-invalid");
}

export function shortHash(hash: string, length = 12): string {
  const bare = hash.replace(/^sha256:/, "");
  return bare.length > length ? `${bare.slice(0, length)}…` : bare;
}

export function formatNumber(value: number | string | undefined, digits = 1): string {
  const n = typeof value === "string" ? Number(value) : value ?? 0;
  return Number.isFinite(n) ? n.toFixed(digits) : "–";
}
