// How an Anchor (and a replicated channel's handle) reaches the server that hosts it: the Client
// implements it. Its own module so that the handles need not import one another.

import type { OpOptions } from "./chan.js";
import type { Connection } from "./connection.js";

/** How an Anchor reaches the server that hosts it. */
export interface Router {
  connFor(serverId: string): Promise<Connection>;
  /** The anchors of every live server, for a recursive listing from the root. */
  servers(opts?: OpOptions): Promise<{ id: string }[]>;
  /** Adds members the dial-in server knows and the view lacks. */
  learnServers?(): Promise<void>;
}
