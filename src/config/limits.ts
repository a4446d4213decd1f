import { KiB, MiB } from "../util/bytes.js";

/**
 * The byte-count ceilings against hostile or broken servers and archives, in one place. Each is
 * far above what a real GitHub, GitLab or registry sends for this workflow, and low enough that
 * a server sending without end cannot exhaust memory or disk. Sizes a server or an archive
 * declares (an artifact's `size_in_bytes`, a zip entry's size) are ceilings of their own: a
 * download stops at the declared size, an entry stops inflating at its declared size.
 */

/** One API answer read into memory: a GitHub API answer, a GitLab API page, a token. */
export const API_BODY_LIMIT = 16 * MiB;

/** One image manifest: the distribution spec's own suggestion for what a registry accepts. */
export const MANIFEST_BODY_LIMIT = 4 * MiB;

/** What is read of an error answer for its message; the rest is not worth waiting for. */
export const ERROR_BODY_LIMIT = 64 * KiB;

/** Pages of one listing (100 items each): beyond this a pager is taken to be looping. */
export const MAX_LISTING_PAGES = 1000;

/** Bytes read of one job log (or one log file of the run-log zip) while looking for the block. */
export const JOB_LOG_LIMIT = 256 * MiB;

/** The run-log zip spooled to the temporary directory by the fallback route. */
export const RUN_LOG_ZIP_LIMIT = 512 * MiB;

/** Free space kept beyond a download or an extraction, so the host is not driven to 0 bytes. */
export const DISK_MARGIN = 64 * MiB;
