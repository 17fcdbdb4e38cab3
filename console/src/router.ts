// Client-side routes under the console's base path; the server answers index.html for each of them.

export type Page = (container: HTMLElement) => () => void;   // mounts, returns its cleanup

export interface Route { path: string; title: string; page: Page }

const base = import.meta.env.BASE_URL.replace(/\/$/, "");   // "/console"

export function href(path: string): string {
  return `${base}${path}`;
}

export function currentPath(): string {
  const path = location.pathname.startsWith(base) ? location.pathname.slice(base.length) : location.pathname;
  return path.replace(/\/$/, "") || "/";
}

export function navigate(path: string): void {
  history.pushState({}, "", href(path));
  dispatchEvent(new PopStateEvent("popstate"));
}
