// Keeping freed memory for reuse. A process that moves frames receives its bytes in buffers that
// live until the garbage collector finds them dead (a received value is a view of the bytes it came
// in), and the collector frees them in bulk, megabytes at a time. glibc's malloc starts out giving
// memory back to the system whenever 128 KiB or more lie free at the top of its heap, so after
// each collection the heap shrinks and the next reads refill fresh pages, each a page fault: a
// consumer of 1 KiB values took about one fault per 4 KiB received, and spent more than half of its
// CPU on them (2026-12-07, on a VM where a fault costs about 11 µs).
//
// glibc adapts by itself (mallopt(3), M_MMAP_THRESHOLD): once a block it had mapped on its own is
// freed, blocks up to that size come from the heap, and the heap keeps up to twice that free. Most
// programs get there by accident (the first big file read); a process of ours gets there on
// purpose, by allocating one such block at the start and dropping it. That costs no memory (the
// block's pages are never touched), changes nothing where the allocator is not glibc, and nothing
// where the user has set malloc's thresholds (MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_ or
// GLIBC_TUNABLES): glibc stops adapting once they are set, which is how to choose otherwise.

/**
 * The dropped block's size: glibc adapts to freed blocks of at most 32 MiB, its chunk header and
 * the rounding to pages included, so just under that, and the heap may then keep twice this much
 * free. The largest value a channel carries is 16 MiB, and the collector frees several at once: with
 * a 16 MiB block the heap kept 32 MiB, less than one collection frees, and a consumer of 16 MiB
 * values faulted in about a third of every value afresh (2026-12-07).
 */
const BLOCK_BYTES = 32 * 1024 * 1024 - 64 * 1024;

let hinted = false;

/** Lets the process's allocator keep freed memory for reuse (see above); once per process. */
export function keepFreedMemory(): void {
  if (hinted) return;
  hinted = true;
  if (process.platform !== "linux") return;
  // Freed by the first collection after this; never written, so never resident.
  Buffer.allocUnsafeSlow(BLOCK_BYTES);
}
