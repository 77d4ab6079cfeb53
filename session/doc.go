// Package session keeps what the brain remembers about calls: each call's record and history,
// the shared delivery-id cache that rejects replays, and the per-event turn logs that let a
// retried message replay the answer already given instead of asking the model again.
//
// Two stores implement the Store contract: RedisStore (shared by every replica) and
// MemoryStore (one process, for development). The contract suite in store_test.go runs
// against both. This package imports none of callbrain's other packages.
package session
