// One select case on a /@ replicated channel (docs/select.md, "Replicated channels"). It plays a
// server's part towards the select (src/client/select.ts: offers, POLLED, the answer to a commit)
// and runs the case against the channel's host with requests:
//
//   {act: "case", opid, dir, sel, value?, id?, once?}  registers it; answers its offer or null
//   {act: "watch", opid}                         waits for the offer of a registered case
//   {act: "commit", opid}                        the case happens (value, closed, or stored send)
//   {act: "cancel", opid}                        releases it (a reserved value goes back in order)
//   {act: "ack", seq}                            the value a recv case took is ours
//
// The host may die or be replaced while the select waits: a registration or watch that fails with
// ServerGone/Moved is registered again through another daemon (ReplicatedChan.op follows the
// lease), with a new opid. An offer from a host that has gone is answered FAILED when committed.
// A committed send case whose outcome is unknown (the host died during the append) is finished
// as a plain send with the same id: the new host stores it unless it is already stored, never twice.

import { type CircuitError, toWire } from "../errors.js";
import { ALL_CASES, encode, F } from "../wire/protocol.js";
import type { Connection, SelectSink } from "./connection.js";
import type { SelectTarget } from "./select.js";

/** How long a select waits for a /@ case's first answer before deciding without it. */
const POLL_MS = 500;

/** What the case needs from its channel handle. */
export interface CaseChannel {
  readonly names: readonly string[];
  op(req: Record<string, unknown>, signal?: AbortSignal): Promise<{ r: unknown; conn: Connection }>;
  nextOpid(): number;
  sendId(): string;
}

type Offer = "value" | "closed" | "room" | "error";

/** Errors after which the case is registered again (its host is gone or moved). */
function carriedOver(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === "ServerGone" || code === "Moved";
}

function moved(r: unknown): boolean {
  const x = r as { moved?: unknown; retry?: unknown } | null;
  return typeof x?.moved === "string" || typeof x?.retry === "string";
}

export class ReplicatedCase implements SelectTarget {
  private sink: SelectSink | undefined;
  private idx = 0;
  private sel = 0;
  private once = false;
  private readonly ac = new AbortController();
  /** The registration in force: its opid and the connection to the host that holds it. */
  private opid = 0;
  private conn: Connection | undefined;
  private state: "registering" | "waiting" | "offered" | "committing" | "ended" = "registering";
  private polled = false;
  private pollTimer: NodeJS.Timeout | undefined;
  /** The value a committed recv case took, to acknowledge once the select has returned it. */
  private taken: { conn: Connection; seq: number } | undefined;
  private readonly id: string | undefined;

  constructor(
    private readonly ch: CaseChannel,
    private readonly dir: "recv" | "send",
    private readonly bytes?: Buffer,
  ) {
    // One id per select: a send case that happens is stored once, whatever hosts it passes through.
    this.id = dir === "send" ? ch.sendId() : undefined;
  }

  openSelect(sel: number, _poll: boolean, cases: unknown[], sink: SelectSink, once = false): void {
    this.sink = sink;
    this.sel = sel;
    this.idx = (cases[0] as [number])[0];
    this.once = once;
    // A takeover can hold a registration up for seconds: the select does not wait for it that long.
    this.pollTimer = setTimeout(() => this.poll(), POLL_MS);
    this.register();
  }

  decide(_sel: number, idx: number): void {
    if (idx === ALL_CASES) this.end();
    else this.commit().catch((err) => this.happened(F.ERROR, err));
  }

  closeSelect(): void {}

  private poll(): void {
    clearTimeout(this.pollTimer);
    if (this.polled) return;
    this.polled = true;
    this.sink?.polled();
  }

  private req(act: string, fields: Record<string, unknown>): Record<string, unknown> {
    return { op: "@", path: this.ch.names, act, ...fields };
  }

  /** Registers the case with whichever daemon hosts the channel now. */
  private register(): void {
    const opid = this.ch.nextOpid();
    this.opid = opid;
    this.conn = undefined;
    this.state = "registering";
    const fields: Record<string, unknown> = { opid, dir: this.dir, once: this.once, sel: this.sel };
    if (this.dir === "send") Object.assign(fields, { value: this.bytes, id: this.id });
    this.ch.op({ act: "case", ...fields }, this.ac.signal).then(
      ({ r, conn }) => {
        if (this.state === "ended" || opid !== this.opid) {
          conn.request(this.req("cancel", { opid }) as never).catch(() => {});
          return;
        }
        this.conn = conn;
        const offer = (r as { offer?: Offer | null }).offer ?? undefined;
        if (offer) this.offered(offer);
        else this.state = "waiting";
        this.poll();
        if (!offer && !this.once) this.watch(opid, conn);
      },
      (err) => {
        if (this.state === "ended" || opid !== this.opid) return;
        // ReplicatedChan.op carried it over for its whole bound: the select fails with the error.
        this.poll();
        this.fail(err);
      },
    );
  }

  /** Waits on the host for the registered case's offer. */
  private watch(opid: number, conn: Connection): void {
    conn.request(this.req("watch", { opid }) as never, this.ac.signal).then(
      (r) => {
        if (this.state === "ended" || opid !== this.opid) return;
        const offer = (r as { offer?: Offer | null } | null)?.offer;
        if (offer && !moved(r)) return this.offered(offer);
        // Another daemon hosts the channel now (or the case is gone): register it there.
        this.again(conn, opid);
      },
      (err) => {
        if (this.state === "ended" || opid !== this.opid) return;
        if (carriedOver(err)) this.again(conn, opid);
        else this.fail(err);
      },
    );
  }

  /** Drops the registration `opid` (best effort) and registers the case again. */
  private again(conn: Connection, opid: number): void {
    conn.request(this.req("cancel", { opid }) as never).catch(() => {});
    this.register();
  }

  private offered(offer: Offer): void {
    this.state = "offered";
    const flags = offer === "value" ? F.VALUE : offer === "closed" ? F.CLOSED : offer === "error" ? F.ERROR : 0;
    this.sink?.offer(this.idx, flags, Buffer.alloc(0));
  }

  /** The select commits this case: the host makes it happen, or says it cannot. */
  private async commit(): Promise<void> {
    const sink = this.sink as SelectSink;
    const conn = this.conn;
    const opid = this.opid;
    if (this.state !== "offered" || !conn) return sink.done(this.idx, F.FAILED, 0, Buffer.alloc(0));
    this.state = "committing";
    let r: unknown;
    try {
      // Not abortable: once asked, the case may be happening; the answer decides.
      r = await conn.request(this.req("commit", { opid }) as never);
      if (moved(r)) throw Object.assign(new Error("the channel moved"), { code: "Moved" });
    } catch (err) {
      if (!carriedOver(err)) return this.happened(F.ERROR, err);
      if (this.dir === "recv") {
        // Nothing was acknowledged: a value the old host handed out is still in the log, and the
        // next host delivers it again. The case did not happen; it waits again.
        sink.done(this.idx, F.FAILED, 0, Buffer.alloc(0));
        return this.register();
      }
      // The append may or may not have been stored: finish it as a plain send with the same id.
      try {
        await this.ch.op({ act: "send", opid: this.ch.nextOpid(), id: this.id, value: this.bytes });
        return this.happened(F.OK);
      } catch (e) {
        return this.happened(F.ERROR, e);
      }
    }
    if ((r as { failed?: unknown } | null)?.failed) {
      // No reservation there any more (its host was replaced): the case waits again.
      sink.done(this.idx, F.FAILED, 0, Buffer.alloc(0));
      return this.register();
    }
    if ((r as { closed?: unknown } | null)?.closed) return this.happened(F.CLOSED);
    const got = r as { seq?: number; value?: Uint8Array } | null;
    if (this.dir === "recv" && got && typeof got.seq === "number" && got.value instanceof Uint8Array) {
      this.taken = { conn, seq: got.seq };
      return this.happened(F.VALUE, undefined, Buffer.from(got.value));
    }
    this.happened(F.OK);
  }

  private happened(flags: number, err?: unknown, value?: Buffer): void {
    this.state = "ended";
    const t = err !== undefined ? encode(toWire(err)) : (value ?? Buffer.alloc(0));
    this.sink?.done(this.idx, err !== undefined ? F.ERROR : flags, 0, t);
  }

  /** The case fails the select (its channel was scrubbed, or no daemon could host it). */
  private fail(err: unknown): void {
    this.sink?.done(this.idx, F.ERROR, 0, encode(toWire(err as CircuitError)));
  }

  /** The select is over: release the case, or acknowledge the value it took. */
  private end(): void {
    const was = this.state;
    this.state = "ended";
    clearTimeout(this.pollTimer);
    this.ac.abort(new Error("select ended"));
    const taken = this.taken;
    this.taken = undefined;
    if (taken) {
      // Leaves as the select resolves (as DECIDE ALL does on a server connection, and ahead of a
      // close of the client): should the host die before it is stored, the value is delivered again.
      taken.conn.request(this.req("ack", { seq: taken.seq }) as never).catch(() => {});
      return;
    }
    if (this.conn && was !== "ended")
      this.conn.request(this.req("cancel", { opid: this.opid }) as never).catch(() => {});
  }
}
