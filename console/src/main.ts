// The console shell: sign-in gate, navigation, the kill switch on every page, and the page for the path.

import "./styles.css";
import { loadConfig } from "./api/config";
import { claimsOf, currentToken, signOut, tokenProblem, whenRefused } from "./auth";
import { killSwitch } from "./components/killSwitch";
import { signInForm } from "./components/signin";
import { h, replaceChildren } from "./dom";
import { pullPage } from "./pages/pull";
import { servingPage } from "./pages/serving";
import { skillsPage } from "./pages/skills";
import { currentPath, href, navigate, type Route } from "./router";

const ROUTES: Route[] = [
  { path: "/ml/skills", title: "Skills", page: skillsPage },
  { path: "/ml/serving", title: "Serving", page: servingPage },
  { path: "/ml/pull", title: "Pull", page: pullPage },
];

const app = document.getElementById("app") as HTMLElement;
let cleanup: () => void = () => undefined;

function who(): string {
  return claimsOf(currentToken())?.sub ?? "unknown";
}

function showSignIn(reason = ""): void {
  cleanup();
  cleanup = () => undefined;
  document.title = "Sign in · mlmesh console";
  replaceChildren(app, h("main", { id: "main", tabindex: -1 }, signInForm(reason, render)));
}

function render(): void {
  cleanup();
  const problem = tokenProblem(currentToken());
  if (problem) return showSignIn(currentToken() ? problem : "");
  const route = ROUTES.find((r) => r.path === currentPath());
  if (!route) return navigate(ROUTES[0].path);
  const nav = h("nav", { "aria-label": "Console" }, h("ul", {}, ...ROUTES.map((r) =>
    h("li", {}, h("a", { href: href(r.path), "aria-current": r === route ? "page" : null }, r.title)))));
  nav.addEventListener("click", (event) => {
    const link = (event.target as HTMLElement).closest("a");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    navigate(new URL(link.href).pathname.replace(href(""), ""));
  });
  const signOutButton = h("button", { type: "button", class: "link" }, "Sign out");
  signOutButton.addEventListener("click", () => { signOut(); showSignIn("Signed out."); });
  const main = h("main", { id: "main", tabindex: -1 });
  replaceChildren(app,
    h("header", { class: "top" },
      h("a", { class: "brand", href: href(ROUTES[0].path) }, "mlmesh console"), nav,
      h("p", { class: "who" }, `Signed in as ${who()} `, signOutButton)),
    killSwitch(who),
    main);
  document.title = `${route.title} · mlmesh console`;
  cleanup = route.page(main);
}

whenRefused((reason) => {
  signOut();
  showSignIn(`The mesh refused the token: ${reason}. Sign in again.`);
});
addEventListener("popstate", () => {
  render();
  document.getElementById("main")?.focus();
});
loadConfig().catch(() => undefined).finally(render);
