// Following a long-running operation (pull, skill run) with WatchOperation through Envoy.

import { path } from "./client";
import { watch } from "./stream";
import { TERMINAL_STATES, type Operation } from "./types";

/** Calls `onUpdate` with each update until a terminal state; returns the last one. */
export async function follow(id: string, onUpdate: (operation: Operation) => void,
                             signal?: AbortSignal): Promise<Operation> {
  let last: Operation | undefined;
  for await (const update of watch<Operation>(path("/ml/operations/{}:watch", id), { signal })) {
    last = update;
    onUpdate(update);
    if (TERMINAL_STATES.has(update.state)) break;
  }
  if (!last) throw new Error(`operation ${id}: the watch ended without an update`);
  return last;
}
