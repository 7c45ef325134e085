// Types of bundle-stamp.mjs, for the tests that stamp a bundle as the build does.
export declare const STAMP_PREFIX: string;
export declare function stampBundle(file: string): string;
