// Server streams (WatchSessions, WatchOperation) through Envoy's transcoder arrive as one JSON array whose
// elements are written as each message comes. The reader splits complete top-level objects out of the text
// as it arrives, so each update reaches the page at once, whatever the chunking.

import { ApiError, send, type CallOptions } from "./client";

/** Feeds text, returns each complete top-level JSON object parsed (array brackets and commas are skipped). */
export class JsonObjectSplitter {
  private buffer = "";
  private depth = 0;
  private inString = false;
  private escaped = false;
  private start = -1;
  private scanned = 0;

  feed(text: string): unknown[] {
    this.buffer += text;
    const found: unknown[] = [];
    for (let i = this.scanned; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === "\\") this.escaped = true;
        else if (c === '"') this.inString = false;
      } else if (c === '"') {
        this.inString = this.depth > 0;
      } else if (c === "{") {
        if (this.depth === 0) this.start = i;
        this.depth += 1;
      } else if (c === "}") {
        this.depth -= 1;
        if (this.depth === 0) {
          found.push(JSON.parse(this.buffer.slice(this.start, i + 1)));
          this.buffer = this.buffer.slice(i + 1);
          i = -1;
          this.start = -1;
        }
      }
    }
    this.scanned = this.buffer.length;
    return found;
  }
}

/** Each message of the stream at `path`, as it comes; ends when the server ends the stream. */
export async function* watch<T>(path: string, options: CallOptions = {}): AsyncGenerator<T> {
  const response = await send(path, options);
  if (!response.body) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const splitter = new JsonObjectSplitter();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const message of splitter.feed(value)) {
        if (isStatus(message)) throw new ApiError(200, "STREAM_ERROR", message.message);
        yield message as T;
      }
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
}

/** A google.rpc.Status the transcoder may write into the stream when it fails after it started. */
function isStatus(message: unknown): message is { code: number; message: string } {
  if (typeof message !== "object" || message === null) return false;
  const keys = Object.keys(message);
  return typeof (message as { code?: unknown }).code === "number"
    && keys.every((k) => ["code", "message", "details"].includes(k));
}
