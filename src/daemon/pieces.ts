// A big value as the pieces its bytes arrived in (FrameDecoder.gather): the daemon keeps it and
// passes it on that way, never copying it into one buffer of its own. Fresh memory for a 16 MiB
// copy costs this daemon more than reading and writing the value (README, Performance).

/** A value's encoded bytes: one buffer, or for a big one the pieces it arrived in. */
export type Value = Buffer | Pieces;

export class Pieces {
  constructor(
    /** The value's encoded bytes, one piece after another (none empty). */
    readonly parts: readonly Buffer[],
    /** Their total length. */
    readonly length: number,
  ) {}

  /** The bytes in one buffer, for what needs them whole (a durable channel's store). */
  join(): Buffer {
    return Buffer.concat(this.parts as Buffer[], this.length);
  }
}
