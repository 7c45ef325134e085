// Key and discovery-address helpers for programs (and the CLI) built on the client.
export { parseGroup } from "../transport/discovery.js";
export { dashboardToken, loadKey, newKey, parseKey } from "../transport/secure.js";
