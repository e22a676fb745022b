// @paxlock/shared: what the server and the client both need, with no Node I/O.
export * from './assert.ts';
export * from './errors.ts';
export * from './limits.ts';
export * from './paths.ts';
export * from './sequencer.ts';
export * from './checksum.ts';
export * from './commands.ts';
export * from './validate-commands.ts';
export * from './protocol.ts';
export * from './codec.ts';
export * from './validate.ts';
