// @paxlock/shared: what the server and the client both need, with no Node I/O.
export * from './assert.ts';
