// Package prompts loads the agents an operator defines in PROMPTS_DIR and keeps them current
// while the brain runs.
//
// The directory holds one file per agent, <name>.md: an optional YAML front matter between
// "---" lines (the agent's settings and tools) and the system prompt below it, a Go
// text/template over the call (CallData). lines.yaml maps each Saperly line to an agent, the
// names of the environment variables holding that line's signing secrets, and per-line template
// variables. Lines it does not list use the agent named "default"; a directory without
// default.md gets the built-in default agent embedded in the binary.
//
// Everything is checked when it is loaded, never when a call arrives: the front matter's keys
// and types, the tools, and every template, rendered with sample values for each line that uses
// it. Load is strict. Live reloads the directory when a file changes, keeps the last good version
// of any agent whose new file is broken, and remembers the versions it has loaded (by content
// hash) so a call in progress keeps the prompt it started with.
//
// docs/agents.md is the operator's reference for the file formats.
//
// Package prompts imports none of callbrain's other packages and reads no environment
// variables: files name the variables that hold secrets, and cmd resolves them.
package prompts
