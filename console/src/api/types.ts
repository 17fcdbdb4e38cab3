// The JSON shapes Envoy's transcoder prints for the mlmesh.v1 messages the console uses
// (lowerCamelCase names, enums as their names, int64 as strings, every primitive field present).

export interface Skill { name: string; description: string; latestVersion: string; versionCount: number;
  updatedAt?: string }
export interface SkillInputSpec { type: string; description?: string }
export interface SkillSpec { name: string; description?: string; inputs?: Record<string, SkillInputSpec>;
  steps?: Array<{ id: string; interface: string; description?: string }>; outputs?: Record<string, unknown> }
export interface SkillVersion { name: string; version: string; number: number; lock: Record<string, string>;
  spec: SkillSpec; specYaml: string; createdBy: string; createdAt?: string }
export interface SkillStepResult { stepId: string; interface: string; model: string; resolvedModel: string;
  output: Record<string, unknown> | null; startedMs: number; durationMs: number; error: string }
export interface SkillRun { id: string; skillName: string; skillVersion: string; status: string;
  inputs: Record<string, unknown>; outputs: Record<string, unknown> | null; steps: SkillStepResult[];
  resolved: Record<string, string>; reresolvedAliases: boolean; error: string; failedStep: string;
  createdBy: string; startedAt?: string }

export interface Progress { done: string; total: string; unit: string; stage: string; message: string }
export interface OperationError { code: string; message: string; field: string }
export interface Operation { id: string; kind: string; service: string; state: string; progress?: Progress;
  result?: Record<string, unknown> & { "@type"?: string }; error?: OperationError; createdBy: string;
  request?: Record<string, unknown> }

export interface SessionStats { queueDepth: number; running: number; requestsTotal: string; requestsFailed: string;
  requestsRefused: string; throughputRps: number; latencyP50Ms: number; latencyP99Ms: number; batchSizeMean: number;
  batchSizeCounts: Record<string, string>; ruleTrips: Record<string, string>; breakerState: string }
export interface ServingSession { id: string; model: string; artifactId: string; interface: string; state: string;
  executor: string; stats?: SessionStats; haltReason: string; replica: string }
export interface HaltResult { replica: string; sessionId: string; halted: boolean; error: string }

export const TERMINAL_STATES = new Set(["OPERATION_STATE_SUCCEEDED", "OPERATION_STATE_FAILED",
  "OPERATION_STATE_CANCELLED"]);

/** "SESSION_STATE_READY" -> "ready". */
export function enumLabel(value: string | undefined, prefix: string): string {
  return (value ?? "").replace(prefix, "").toLowerCase().replace(/_/g, " ") || "unknown";
}
