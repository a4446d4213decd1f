/** Byte counts as people read them. Binary units throughout, as the original printed MiB and GiB. */

export const KiB = 1024;
export const MiB = 1024 ** 2;
export const GiB = 1024 ** 3;

/** `812 B`, `12.5 KiB`, `1.5 MiB`, `11.02 GiB`: the unit that keeps the number short. */
export function formatBytes(bytes: number): string {
  const n = Math.max(0, bytes);
  if (n < KiB) return `${Math.round(n)} B`;
  if (n < MiB) return `${(n / KiB).toFixed(1)} KiB`;
  if (n < GiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${(n / GiB).toFixed(2)} GiB`;
}

/** Always in MiB, with `digits` decimals: for lines that compare sizes (`~812.40 MiB`). */
export function formatMiB(bytes: number, digits = 1): string {
  return `${(bytes / MiB).toFixed(digits)} MiB`;
}

/** A rate such as `48.2 MiB/s`. */
export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}
