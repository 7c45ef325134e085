// Runs the membership state machine against the real world: a clock, a timer, and the links to
// other servers. The daemon sees only the resulting view and its join/leave events.

import type { SwimConfig } from "./config.js";
import { DEFAULT_SWIM } from "./config.js";
import { Membership, type MembershipEvent, type MemberView } from "./membership.js";
import { PeerLinks } from "./peer-links.js";

export interface ClusterNodeOptions {
  id: string;
  url: string;
  meta?: Record<string, unknown>;
  maxFrame: number;
  key?: Buffer;
  config?: Partial<SwimConfig>;
  log(line: string): void;
  onEvent(e: MembershipEvent): void;
}

const TICK_MS = 20;

export class ClusterNode {
  readonly membership: Membership;
  readonly links: PeerLinks;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: ClusterNodeOptions) {
    this.membership = new Membership(
      { id: o.id, addr: o.url, meta: o.meta },
      { ...DEFAULT_SWIM, ...o.config },
      { now: () => performance.now(), random: Math.random },
    );
    this.links = new PeerLinks({
      self: { id: o.id, url: o.url },
      maxFrame: o.maxFrame,
      key: o.key,
      log: o.log,
      onMessage: (from, msg) => this.after(() => this.membership.receive(from, msg as never)),
      onUnreachable: (id) => this.after(() => this.membership.unreachable(id)),
      onConnectionLost: (id) => this.after(() => this.membership.connectionLost(id)),
    });
    this.timer = setInterval(() => this.after(() => this.membership.tick()), TICK_MS);
    this.timer.unref();
  }

  /** Contacts a member of an existing circuit. */
  join(url: string): void {
    this.after(() => this.membership.join(url));
  }

  /** Live members (alive or suspect), this server included. */
  members(): MemberView[] {
    return this.membership.members();
  }

  get(id: string): MemberView | undefined {
    return this.membership.get(id);
  }

  /** Leaves gracefully: tells the others, gives the message a moment to go out, then closes. */
  async leave(graceMs = 300): Promise<void> {
    this.after(() => this.membership.leave());
    await new Promise((r) => setTimeout(r, graceMs));
    this.close();
  }

  close(): void {
    clearInterval(this.timer);
    this.links.close();
  }

  /** Applies an input, then carries out what the state machine decided. */
  private after(input: () => void): void {
    input();
    for (const m of this.membership.drainOutbox()) this.links.send(m.to, m.addr, m.msg);
    for (const e of this.membership.drainEvents()) {
      if (e.kind === "leave") this.links.forget(e.member.id);
      this.o.onEvent(e);
    }
  }
}
