// The public library surface of circuit.

export { Anchor, type Element, type ListEntry, type MakeChanOptions } from "./client/anchor.js";
export { Chan, type ChanStat, type IterateOptions, type MessageWriter, type OpOptions } from "./client/chan.js";
export {
  Client,
  DEFAULT_URL,
  type DialOptions,
  dial,
  type FailoverEvent,
  parseUrl,
  parseUrlList,
  type ServerInfo,
} from "./client/client.js";
export type { FileInfo, FileStat, FileWriter, ListeningPort, ReservePortOptions } from "./client/host.js";
export { loadKey, newKey, parseGroup } from "./client/keys.js";
export {
  type DnsRecord,
  type MxData,
  Nameserver,
  type NameserverStat,
  type RecordType,
  type SrvData,
} from "./client/nameserver.js";
export {
  type MakeProcOptions,
  Proc,
  type ProcCommand,
  type ProcLimits,
  type ProcPhase,
  type ProcStat,
  type ScrubOptions,
} from "./client/proc.js";
export { ReplicatedChan, type ReplicatedChanStat } from "./client/replicated-chan.js";
export { type SelectCase, type SelectOptions, type SelectResult, select } from "./client/select.js";
export { ServerHandle, type ServerStat } from "./client/server-handle.js";
export { Subscription, type SubscriptionStat } from "./client/subscription.js";
export { Daemon, type DaemonOptions } from "./daemon/daemon.js";
export {
  AccessDenied,
  AnchorBusy,
  AuthFailed,
  BadSignal,
  ChannelAborted,
  ChannelClosed,
  CircuitError,
  MessageTooLarge,
  NotFound,
  ProtocolError,
  ServerGone,
  SpawnFailed,
  StoreUnavailable,
  StreamBroken,
  Timeout,
  Unsupported,
  WrongKind,
} from "./errors.js";
