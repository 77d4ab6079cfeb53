// Package callscript reads, writes and plays call scripts: one recorded or hand-written
// Saperly call (the caller's turns with their think times, barge-ins, retries, duplicates,
// status callbacks, SMS and the hang-up), with optional expectations per turn and the answer
// recorded for reference. The format is documented in docs/scripts.md.
//
// Parse and ParseFile read a script (YAML, or JSON, which is read as YAML) and report every
// mistake as "file:line: problem"; Marshal writes one back. A Runner plays a script against a
// brain, signing as Saperly does (package test/saperly), and returns what the caller heard
// per turn with its timing, errors by kind and the expectations checked. A Runner holds no
// global state, so a load generator can play many scripts concurrently with one Runner.
//
// It imports test/saperly (and through it transport, for signing) and nothing else of
// callbrain.
package callscript
