// Key and discovery-address helpers for programs (and the CLI) built on the client.
export { parseGroup } from "../transport/group.js";
export { dashboardToken, loadKey, newKey, parseKey } from "../transport/secure.js";
