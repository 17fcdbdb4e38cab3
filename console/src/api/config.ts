// The console's public configuration, from its own server (services/console): no secret, only where things are.

export interface ConsoleConfig { base: string; servingReplicas: string[]; replicaHeader: string }

let loaded: ConsoleConfig = { base: "/console/", servingReplicas: [], replicaHeader: "x-mlmesh-replica" };

export async function loadConfig(): Promise<ConsoleConfig> {
  const response = await fetch(`${import.meta.env.BASE_URL}config.json`, { cache: "no-store" });
  if (response.ok) loaded = (await response.json()) as ConsoleConfig;
  return loaded;
}

export function config(): ConsoleConfig {
  return loaded;
}
