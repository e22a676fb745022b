// @paxlock/client: the minimal client of the cell issue. The full library comes with issue 5.
export { Connection, ConnectionError } from './connection.ts';
export { findMaster, PaxlockClient } from './client.ts';
export type { ClientOptions, SessionCommandInput } from './client.ts';
