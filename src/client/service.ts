// A handle on a service element (DESIGN.md §3.7): replicas of a command, supervised, placed by load
// and scaled by the server that hosts the service.

import { checkServiceSpec, type ServiceSpec, type ServiceStat } from "../wire/svc-spec.js";
import type { OpOptions } from "./chan.js";
import type { Connection } from "./connection.js";
import { checkCommand } from "./proc.js";

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
    private readonly c: Connection,
    /** The service's anchor path. */
    readonly path: string,
    private readonly names: readonly string[],
  ) {}

  /** Spec, replicas (full path, server, phase, restarts), desired count, state, last decision. */
  async peek(opts?: OpOptions): Promise<ServiceStat> {
    return (await this.c.request({ op: "svc", path: this.names, do: "peek" }, opts?.signal)) as ServiceStat;
  }

  /**
   * Sets the desired number of replicas (clamped to the spec's min…max); resolves with the state
   * right after the decision, before new replicas have started. An autoscaled service keeps
   * following its metric afterwards.
   */
  async scale(n: number, opts?: OpOptions): Promise<ServiceStat> {
    if (!Number.isInteger(n) || n < 0) throw new RangeError("scale takes a whole number ≥ 0");
    return (await this.c.request({ op: "svc", path: this.names, do: "scale", n }, opts?.signal)) as ServiceStat;
  }

  /** Stops every replica and removes the service; resolves once the replicas are gone. */
  async scrub(opts?: OpOptions): Promise<void> {
    await this.c.request({ op: "scrub", path: this.names }, opts?.signal);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.scrub().catch(() => {});
  }
}
