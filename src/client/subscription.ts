// @join / @leave: receive-only channels of server paths ("/XID").

import type { Chan, IterateOptions, OpOptions } from "./chan.js";
import type { Connection } from "./connection.js";
import type { SelectCase } from "./select.js";

export interface SubscriptionStat {
  /** "@join" or "@leave". */
  source: string;
  /** Events waiting to be received. */
  pending: number;
  /** Events dropped because more than 1,024 were waiting. */
  lost: number;
}

export class Subscription implements AsyncIterable<string>, AsyncDisposable {
  /** @internal */
  constructor(
    readonly kind: "@join" | "@leave",
    private readonly c: Connection,
    private readonly ch: Chan<string>,
  ) {}

  get path(): string {
    return this.ch.path;
  }

  /** The next server path; waits while there is none. */
  recv(opts?: OpOptions): Promise<string> {
    return this.ch.recv(opts);
  }

  /** A receive, as a case of `select`. */
  recvCase(): SelectCase<string, "recv"> {
    return this.ch.recvCase();
  }

  iterate(opts?: IterateOptions): AsyncIterableIterator<string> {
    return this.ch.iterate(opts);
  }

  /** Calls `fn` with each message until the subscription ends (Chan.consume). */
  consume(fn: (message: string) => unknown, opts?: IterateOptions): Promise<void> {
    return this.ch.consume(fn, opts);
  }

  [Symbol.asyncIterator](): AsyncIterator<string> {
    return this.ch.iterate();
  }

  async peek(opts?: OpOptions): Promise<SubscriptionStat> {
    return (await this.c.request(
      { op: "peek", path: this.ch.path.slice(1).split("/") },
      opts?.signal,
    )) as SubscriptionStat;
  }

  /** Removes the subscription; a waiting recv fails with ChannelAborted. */
  scrub(opts?: OpOptions): Promise<void> {
    return this.ch.scrub(opts);
  }

  /** `await using sub = await anchor.makeOnLeave()` scrubs the subscription when the scope ends (if still there). */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.scrub();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== "NotFound" && code !== "ChannelAborted" && code !== "ServerGone") throw err;
    }
  }
}
