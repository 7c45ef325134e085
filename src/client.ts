// The client-only entry point ("circuit-ts/client"): dial a circuit and use its elements. It loads
// no daemon code, so a program that only talks to a circuit stays small and starts fast.

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
export { dashboardToken, loadKey, newKey, parseGroup } from "./client/keys.js";
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
export {
  type SelectCase,
  type SelectDefault,
  type SelectOptions,
  type SelectResult,
  select,
} from "./client/select.js";
export {
  type ObservedElement,
  type ObserveOptions,
  ServerHandle,
  type ServerObservation,
  type ServerStat,
} from "./client/server-handle.js";
export {
  type ChanAutoscale,
  type CpuAutoscale,
  type FullServiceSpec,
  type ReplicaStat,
  type RestartPolicy,
  Service,
  type ServiceSpec,
  type ServiceStat,
} from "./client/service.js";
export { type ServiceConnection, serviceConnector } from "./client/service-remote.js";
export { Subscription, type SubscriptionStat } from "./client/subscription.js";
export {
  AccessDenied,
  AddressInUse,
  AnchorBusy,
  AuthFailed,
  BadAddress,
  BadSignal,
  ChannelAborted,
  ChannelClosed,
  CircuitError,
  ERROR_CODES,
  type ErrorCode,
  MessageTooLarge,
  NoCapacity,
  NotFound,
  ProtocolError,
  ServerGone,
  SpawnFailed,
  StorageFull,
  StoreUnavailable,
  StreamBroken,
  Timeout,
  Unsupported,
  WrongKind,
} from "./errors.js";
export { VERSION } from "./version.js";
