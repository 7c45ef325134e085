// What the daemon hosts at its anchors. Channels and subscriptions share the channel state
// machine; a subscription is receive-only and never blocks the daemon that feeds it.

import type { Channel } from "../element/channel.js";
import type { DurableChan } from "./durable-chan.js";
import type { HostedNameserver } from "./nameserver.js";
import type { HostedProc } from "./proc.js";
import type { Item } from "./stream-pipe.js";
import type { ServiceHost } from "./svc-host.js";

export type { Item } from "./stream-pipe.js";

export interface ChanElement {
  kind: "chan";
  chan: Channel<Item>;
  names: string[];
  /**
   * The highest send sequence number stored, per client id (PROTOCOL: SEND/CSEND `seq`): a send
   * a client repeats after reconnecting is stored once. Entries of clients that said BYE go.
   */
  stored?: Map<string, number>;
  /** A durable channel's buffer and store (DESIGN §3.6); absent for a channel in memory. */
  durable?: DurableChan;
}

/** `@join` / `@leave`: a receive-only channel of server paths, oldest dropped on overflow. */
export interface SubElement {
  kind: "@join" | "@leave";
  chan: Channel<Item>;
  names: string[];
  lost: number;
}

export type ChannelLike = ChanElement | SubElement;

/** A process this server started (src/daemon/proc.ts). */
export interface ProcElement {
  kind: "proc";
  proc: HostedProc;
  names: string[];
}

/** A nameserver: a DNS server on this host answering from records set through the circuit. */
export interface DnsElement {
  kind: "dns";
  ns: HostedNameserver;
  names: string[];
  /** Element id: a handle keeps addressing this nameserver, not a later one at the same anchor. */
  eid: number;
}

/** A service: supervises replicas (proc elements on any server) from here. */
export interface SvcElement {
  kind: "svc";
  svc: ServiceHost;
  names: string[];
}

export type Element = ChannelLike | ProcElement | DnsElement | SvcElement;
