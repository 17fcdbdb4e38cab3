// REST calls through Envoy's gRPC-JSON transcoder (/ml/*), with the signed-in operator's bearer token.
// Errors keep what the service said: the gRPC status name, its message and the field at fault.

import { currentToken, tokenRefused } from "../auth";
import { config } from "./config";

const GRPC_CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
  "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly field = "") {
    super(message);
  }

  /** "NOT_FOUND: no skill 'x'", as an operator reads it. */
  describe(): string {
    return `${this.code}: ${this.message}`;
  }
}

export interface CallOptions {
  method?: "GET" | "POST" | "PUT" | "DELETE";
  body?: unknown;
  replica?: string;          // pin the call to one serving replica (Envoy routes on the header)
  signal?: AbortSignal;
}

export async function send(path: string, options: CallOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json" };
  const token = currentToken();
  if (token) headers.authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  if (options.replica) headers[config().replicaHeader] = options.replica;
  let response: Response;
  try {
    response = await fetch(path, { method: options.method ?? "GET", headers, cache: "no-store",
      body: options.body === undefined ? undefined : JSON.stringify(options.body), signal: options.signal });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    throw new ApiError(0, "UNAVAILABLE", "the mesh did not answer (is `make run` still running?)");
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function call<T>(path: string, options: CallOptions = {}): Promise<T> {
  return (await (await send(path, options)).json()) as T;
}

async function errorOf(response: Response): Promise<ApiError> {
  let body: { code?: number; message?: string } = {};
  try {
    body = await response.json();
  } catch {
    // not JSON: Envoy's own answer (no route, upstream down)
  }
  const code = typeof body.code === "number" ? GRPC_CODES[body.code] ?? `HTTP_${response.status}`
    : `HTTP_${response.status}`;
  const field = response.headers.get("mlmesh-error-field") ?? "";
  const error = new ApiError(response.status, code, body.message || response.statusText || "no details", field);
  if (response.status === 401) tokenRefused(error.message);
  return error;
}

export function path(template: string, ...parts: string[]): string {
  let i = 0;
  return template.replace(/\{\}/g, () => encodeURIComponent(parts[i++] ?? ""));
}
