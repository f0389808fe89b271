// An incremental Server-Sent Events parser (the WHATWG event-stream rules),
// fed with the byte chunks a fetch body delivers. Used instead of
// EventSource so that requests can carry an Authorization header and a
// Last-Event-ID of our choosing, in Node and in browsers alike.

/** Longest line accepted: a snapshot is one data line holding every flag. */
export const MAX_LINE = 64 * 1024 * 1024;

export class SseParser {
  constructor() {
    this.decoder = new TextDecoder("utf-8");
    this.buffer = "";
    this.afterCr = false;
    this.started = false;
    this.event = "";
    this.data = [];
    this.hasData = false;
    this.lastId = null;
  }

  /**
   * Feeds a chunk (Uint8Array or string). Returns {events, retry, comment}:
   * events are {event, data, id}.
   */
  feed(chunk) {
    const out = { events: [], retry: null, comment: false };
    let text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (this.afterCr && text.startsWith("\n")) text = text.slice(1);
    this.afterCr = false;
    this.buffer += text;
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", start);
      const lf = this.buffer.indexOf("\n", start);
      const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      if (end < 0) break;
      const line = this.buffer.slice(start, end);
      start = end + 1;
      if (this.buffer[end] === "\r") {
        if (start === this.buffer.length) this.afterCr = true;
        else if (this.buffer[start] === "\n") start++;
      }
      this.line(line, out);
    }
    this.buffer = this.buffer.slice(start);
    if (this.buffer.length > MAX_LINE) throw new Error("event stream: line too long");
    return out;
  }

  line(raw, out) {
    let line = raw;
    if (!this.started) {
      this.started = true;
      if (line.startsWith("\ufeff")) line = line.slice(1);
    }
    if (line === "") {
      const event = this.event;
      this.event = "";
      if (this.hasData) {
        out.events.push({ event: event || "message", data: this.data.join("\n"), id: this.lastId });
      }
      this.data = [];
      this.hasData = false;
      return;
    }
    if (line.startsWith(":")) {
      out.comment = true;
      return;
    }
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (name) {
      case "event":
        this.event = value;
        break;
      case "data":
        this.data.push(value);
        this.hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) out.retry = Number(value);
        break;
    }
  }
}
