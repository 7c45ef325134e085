// The public library surface of circuit.

export { Anchor, type Element, type ListEntry } from "./client/anchor.js";
export { Chan, type ChanStat, type IterateOptions, type MessageWriter, type OpOptions } from "./client/chan.js";
export { Client, DEFAULT_URL, type DialOptions, dial, parseUrl, type ServerInfo } from "./client/client.js";
export { loadKey, newKey, parseGroup } from "./client/keys.js";
export { ServerHandle, type ServerStat } from "./client/server-handle.js";
export { Daemon, type DaemonOptions } from "./daemon/daemon.js";
export {
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
  StreamBroken,
  Timeout,
  WrongKind,
} from "./errors.js";
export { select, type SelectCase, type SelectOptions, type SelectResult } from "./client/select.js";
