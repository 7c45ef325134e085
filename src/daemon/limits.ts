// Every input a peer controls is bounded. The defaults are here, in one place; each has a flag on
// `circuit start` (see src/cli/start.ts) and a field in DaemonOptions.limits.

export interface Limits {
  /** Blocked sends, receiver ids and selects one connection may have waiting at a time. */
  pending: number;
  /** Receives one receiver id may have outstanding plus values handed to it and not yet acked. */
  credits: number;
  /** Stream messages one connection may be sending at a time (and byte streams it may open). */
  streams: number;
  /** Channels one connection may have open. */
  handles: number;
  /** Cases in one select. */
  selectCases: number;
  /** Names in a path, the server ID included. */
  depth: number;
  /** Characters in one anchor name (at most 128, the name syntax's own bound). */
  nameLength: number;
  /** Events a subscription keeps before dropping the oldest. */
  subBuffer: number;
  /** Bytes waiting to be sent to a peer that does not read, before it is cut off. */
  unsent: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = {
  pending: 65_536,
  credits: 65_536,
  streams: 1024,
  handles: 65_536,
  selectCases: 1024,
  depth: 64,
  nameLength: 128,
  subBuffer: 1024,
  unsent: 64 * 1024 * 1024,
};
