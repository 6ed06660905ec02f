// What crash-child.ts and crash.test.ts agree on.

import type { DiskStorageOptions } from "../../services/node/storage/disk-storage.js";
import { payload } from "../../services/node/storage/testutil.js";

/** Small segments and snapshots so kills land in segment cuts, compaction and deletion too. */
export const CRASH_OPTIONS: DiskStorageOptions = {
  segmentBytes: 48 * 1024,
  keepEntries: 40,
  initialVoters: ["n1"],
};

/** Entry size: mostly small, sometimes 40 KiB so a kill can land inside a long write. */
export function entryBytes(index: number, term: number, big: boolean): number {
  return big ? 40_000 + ((index + term) % 997) : 20 + ((index * 31 + term) % 180);
}

export function snapshotPayload(index: number): Uint8Array {
  return payload(index, 424242, 5000 + (index % 3000));
}
