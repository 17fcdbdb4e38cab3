// Sign-in with a mesh token (minted by the mesh's issuer: `mlmesh token --console`). The token lives in this
// tab's sessionStorage only and travels as `Authorization: Bearer` to Envoy; the services verify it. The
// console reads the claims only to say who is signed in and to catch an obviously wrong token early.

const STORAGE_KEY = "mlmesh.console.token";
export const REQUIRED_AUDIENCES = ["registry", "serving", "puller"];

export interface Claims { sub: string; aud: string | string[]; exp: number; scope?: string }

let onRefused: (reason: string) => void = () => undefined;

export function currentToken(): string {
  return sessionStorage.getItem(STORAGE_KEY) ?? "";
}

export function signIn(token: string): void {
  sessionStorage.setItem(STORAGE_KEY, token);
}

export function signOut(): void {
  sessionStorage.removeItem(STORAGE_KEY);
}

/** Called when a service refuses the token (401): the shell signs the operator out and says why. */
export function whenRefused(handler: (reason: string) => void): void {
  onRefused = handler;
}

export function tokenRefused(reason: string): void {
  onRefused(reason);
}

export function claimsOf(token: string): Claims | null {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(parts[1].length / 4) * 4, "="));
    const claims = JSON.parse(json) as Claims;
    return typeof claims.sub === "string" && typeof claims.exp === "number" ? claims : null;
  } catch {
    return null;
  }
}

/** Why this token cannot work, named by field, or "" when it looks usable (the services still decide). */
export function tokenProblem(token: string, now = Date.now() / 1000): string {
  if (!token) return "Token: paste a mesh token (`mlmesh token --console` prints one).";
  const claims = claimsOf(token);
  if (!claims) return "Token: not a mesh token (expected a JWT: three dot-separated parts with sub and exp claims).";
  if (claims.exp <= now) return `Token: expired at ${new Date(claims.exp * 1000).toLocaleString()}; mint a new one.`;
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  const missing = REQUIRED_AUDIENCES.filter((a) => !audiences.includes(a));
  if (missing.length) {
    return `Token: its audience lacks ${missing.join(", ")} (mint it with \`mlmesh token --console\`).`;
  }
  return "";
}
