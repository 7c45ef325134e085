// A handle on a service element (DESIGN.md §3.7): replicas of a command, supervised, placed by load
// and scaled by the server that hosts the service.

import { StoreUnavailable } from "../errors.js";
import { monotonicMs } from "../util/clock.js";
import type { Request } from "../wire/requests.js";
import { checkServiceSpec, type ServiceSpec, type ServiceStat } from "../wire/svc-spec.js";
import type { OpOptions } from "./chan.js";
import type { Connection } from "./connection.js";
import { checkCommand } from "./proc.js";
import type { Router } from "./router.js";

/** Sends one request to whoever serves the service, and resolves with the answer. */
export type ServiceRequester = (req: Request, signal?: AbortSignal) => Promise<unknown>;

/** How long a request on a service under /@ keeps looking for its supervisor. */
const CARRY_MS = 20_000;

/** Requests to the server hosting an ordinary service. */
export function direct(c: Connection): ServiceRequester {
  return (req, signal) => c.request(req, signal);
}

/**
 * Requests to the supervisor of a service under /@ (DESIGN §12): asked through the dial-in server,
 * following `{moved: XID}` to the lease holder, and asked again (`retry`, or its server gone) while
 * another daemon takes the service over.
 */
export function viaStore(router: Router): ServiceRequester {
  let host = "";
  return async (req, signal) => {
    const deadline = monotonicMs() + CARRY_MS;
    let last: unknown;
    for (let hops = 0; ; hops++) {
      if (signal?.aborted) throw signal.reason;
      if (monotonicMs() > deadline) throw last ?? new StoreUnavailable("no daemon supervises the service");
      let r: unknown;
      try {
        r = await (await router.connFor(host)).request(req, signal);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (signal?.aborted || (code !== "ServerGone" && code !== "NotFound") || host === "") throw err;
        // The supervisor we were sent to is gone (or unknown to our view): ask the dial-in server
        // again, and which members it knows.
        last = err;
        host = "";
        if (code === "NotFound") await router.learnServers?.().catch(() => {});
        await new Promise((res) => setTimeout(res, 100));
        continue;
      }
      const o = r as { moved?: unknown; retry?: unknown } | null;
      if (typeof o?.retry === "string") {
        last = new StoreUnavailable(o.retry);
        await new Promise((res) => setTimeout(res, 250));
      } else if (typeof o?.moved === "string") {
        host = o.moved;
        if (hops > 0) await new Promise((res) => setTimeout(res, Math.min(100 * hops, 500)));
      } else return r;
    }
  };
}

export type {
  ChanAutoscale,
  CpuAutoscale,
  FullServiceSpec,
  ReplicaStat,
  RestartPolicy,
  ServiceSpec,
  ServiceStat,
} from "../wire/svc-spec.js";

/** Checks a spec before any I/O (TypeError/RangeError say what is wrong). */
export function checkSpec(spec: ServiceSpec): void {
  checkServiceSpec(spec, (cmd) => {
    checkCommand(cmd as never);
    return cmd as never;
  });
}

export class Service implements AsyncDisposable {
  readonly kind = "svc";

  /** @internal */
  constructor(
    private readonly send: ServiceRequester,
    /** The service's anchor path. */
    readonly path: string,
    private readonly names: readonly string[],
  ) {}

  /**
   * Spec, replicas (full path, server, phase, restarts), desired count, state, last decision;
   * under /@ also the supervising daemon (`supervisor`).
   */
  async peek(opts?: OpOptions): Promise<ServiceStat> {
    return (await this.send({ op: "svc", path: this.names, do: "peek" }, opts?.signal)) as ServiceStat;
  }

  /**
   * Sets the desired number of replicas (clamped to the spec's min…max); resolves with the state
   * right after the decision, before new replicas have started. An autoscaled service keeps
   * following its metric afterwards.
   */
  async scale(n: number, opts?: OpOptions): Promise<ServiceStat> {
    if (!Number.isInteger(n) || n < 0) throw new RangeError("scale takes a whole number ≥ 0");
    return (await this.send({ op: "svc", path: this.names, do: "scale", n }, opts?.signal)) as ServiceStat;
  }

  /** Stops every replica and removes the service; resolves once the replicas are gone. */
  async scrub(opts?: OpOptions): Promise<void> {
    // Under /@ the supervisor answers, wherever it is; elsewhere the server hosting the service.
    const req: Request =
      this.names[0] === "@" ? { op: "svc", path: this.names, do: "scrub" } : { op: "scrub", path: this.names };
    await this.send(req, opts?.signal);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.scrub().catch(() => {});
  }
}
