// Every limit in paxlock in one place (STYLE.md, from ws and pino: every limit explicit). The
// validators in shared/ enforce them on input; the state machine relies on them for its sizes.
// Changing a limit that the state machine enforces changes which commands succeed, so every
// replica of a cell must run with the same values.

export const LIMITS = {
  /** Chubby's figure: files are small and written whole. */
  fileContentsMaxBytes: 256 * 1024,
  /** A whole name, `/ls/<cell>/...`, in bytes (names are ASCII). */
  pathMaxBytes: 1024,
  /** One component of a name (also the cell name), in bytes. */
  componentMaxBytes: 255,
  /** Components below the cell root: a bound on tree depth so that walks stay cheap. */
  pathDepthMax: 64,
  /** A client's self-chosen name, recorded with its session, in UTF-16 code units. */
  clientNameMaxChars: 256,
  /** CreateSession's nonce, in characters of [A-Za-z0-9_-]. */
  sessionNonceMaxChars: 64,
  /** An ACL name (read, write, change-ACL), in bytes. */
  aclNameMaxBytes: 255,
  /** A WebSocket frame, in bytes; a file's contents plus headers must fit in one. */
  frameMaxBytes: 1024 * 1024,
  /** Chubby's cap on lock-delay. */
  lockDelayMaxMs: 60_000,
  /** Chubby's default lock-delay, used by the client when the caller does not set one. */
  lockDelayDefaultMs: 60_000,
  /** Session lease bounds and default (DESIGN.md, Sessions). */
  sessionLeaseMinMs: 1_000,
  sessionLeaseMaxMs: 300_000,
  sessionLeaseDefaultMs: 12_000,
  /** Client-side grace period after the local lease runs out. */
  graceDefaultMs: 45_000,
  /** Open handles per session; a runaway client cannot fill the database. */
  handlesPerSessionMax: 10_000,
  /** Commands in one log entry; a batch larger than this is a bug in the master. */
  commandsPerEntryMax: 10_000,
  /** The largest staleness a stale read may ask for (an hour). */
  staleReadMaxMs: 3_600_000,
  /** A sequencer string, in bytes: path plus a few numbers. */
  sequencerMaxBytes: 1024 + 64,
} as const;
