// Channel capacity bounds, apart from the codec so that the command line can check them without
// loading it.

/** Largest channel capacity (the channel element enforces the same bound). */
export const MAX_CAP = 1_000_000;
/** The largest capacity of a durable channel (its backlog lives on disk). */
export const MAX_DURABLE_CAP = 2 ** 31 - 1;
