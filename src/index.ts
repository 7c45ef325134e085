// The public library surface of circuit ("circuit-ts"): the client API and the daemon. Programs that
// only talk to a circuit can import "circuit-ts/client" instead, which loads no daemon code.

export * from "./client.js";
export { Daemon, type DaemonOptions } from "./daemon/daemon.js";
