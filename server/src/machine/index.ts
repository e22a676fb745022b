// The state machine's public surface for the rest of the server: the StateMachine class and its
// entry/outcome types. Everything else in this folder is internal.
export { StateMachine } from './machine.ts';
export type { ApplyOutcome, Entry, MachineOptions, PendingLockDelay } from './machine.ts';
