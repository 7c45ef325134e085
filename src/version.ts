// The release of this package. A leaf: the CLI prints it without loading anything else, and the
// daemon reports it in its server stat. test/package.test.ts checks it against package.json.

export const VERSION = "0.1.0";
