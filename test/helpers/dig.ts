// The real dig (Debian's bind9-dnsutils) as a test's DNS client: asks one question and parses the
// header and answer section of what it printed.

import { execFile } from "node:child_process";

export interface DigAnswer {
  name: string;
  ttl: number;
  type: string;
  data: string;
}

export interface DigResult {
  /** NOERROR, NXDOMAIN, FORMERR, … */
  status: string;
  /** Header flags: qr, aa, tc, rd, … */
  flags: string[];
  answers: DigAnswer[];
  /** dig saw TC over UDP and asked again over TCP. */
  retriedOverTcp: boolean;
  out: string;
}

/** `dig @HOST -p PORT name type …extra`; addr is "HOST:PORT". */
export function dig(addr: string, name: string, type: string, extra: string[] = []): Promise<DigResult> {
  const host = addr.slice(0, addr.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  const port = addr.slice(addr.lastIndexOf(":") + 1);
  const args = [`@${host}`, "-p", port, name, type, "+noall", "+comments", "+answer", "+time=3", "+tries=2", ...extra];
  return new Promise((resolve, reject) => {
    execFile("dig", args, { timeout: 20_000 }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`;
      const status = /status: ([A-Z]+)/.exec(stdout)?.[1];
      if (!status) {
        reject(new Error(`dig ${args.join(" ")} gave no answer (${err?.message ?? "no error"}): ${out}`));
        return;
      }
      const flags = (/;; flags: ([a-z ]*);/.exec(stdout)?.[1] ?? "").split(" ").filter(Boolean);
      const answers: DigAnswer[] = [];
      for (const line of stdout.split("\n")) {
        if (line.startsWith(";") || line.trim() === "") continue;
        const m = /^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.*)$/.exec(line);
        if (m) answers.push({ name: m[1] as string, ttl: Number(m[2]), type: m[3] as string, data: m[4] as string });
      }
      resolve({ status, flags, answers, retriedOverTcp: stdout.includes("Truncated, retrying in TCP mode"), out });
    });
  });
}
