// Package mockllm is an OpenAI-compatible stand-in model for tests, end-to-end runs and
// trying callbrain without a model account. By default it answers like the brain's offline
// demo model (agent.DemoReply, streamed token by token as agent.DemoTokens splits it), and
// calls tools by a few simple rules when the request offers some (below). A Behavior scripts
// the words or the tool calls and adds latency, stalls, error statuses, broken streams or a
// hang, per request from a FIFO script or for every request by default. Every request is
// recorded for inspection, with the tools it offered and every message of its history,
// assistant tool calls and tool results included.
//
// It serves POST /v1/chat/completions (streamed as server-sent events exactly as OpenAI does,
// or as one JSON completion), GET /v1/models, and a control API for out-of-process use:
// POST /mock/script, GET /mock/requests, POST /mock/reset. Any bearer key is accepted.
//
// # Tool calls
//
// An answer with tool calls is streamed as OpenAI streams it: the words first, if any; then,
// for each call, a delta with its index, id ("call_…"), type "function", name and empty
// arguments, followed by deltas carrying fragments of the arguments; the last chunk has
// finish_reason "tool_calls". An answer that is only tool calls carries the role (and a null
// content) on the first call's delta, as OpenAI does. Without streaming, the calls are in
// message.tool_calls and the content is null unless there are words too.
//
// # Default answer with tools
//
// When no behaviour scripts the words or the calls (Behavior.Reply and Behavior.ToolCalls
// both empty), the mock answers from the request, so an example agent with tools works
// locally without a script. The first rule that applies wins:
//
//  1. The messages end with tool results (role "tool"): it answers in words from them, one
//     sentence per result. A JSON object reads as its string and number fields, in order,
//     leaving out "id" and "…_id" (they echo the question):
//     {"order_id":"12345","status":"shipped","carrier":"UPS","eta":"Thursday"} becomes
//     "I checked that for you: status shipped, carrier UPS, eta Thursday." An object with an
//     "error" field becomes "I'm sorry, I couldn't check that: <error>."; any other result is
//     read as it is. The result of end_call gets no sentence (the goodbye came before the
//     call), so after end_call alone the answer is empty.
//  2. A tool is offered whose parameters have an "order_id" property, and the caller's last
//     words contain a number of 3 or more digits (which may be grouped with spaces or
//     hyphens): it calls the first such tool with {"order_id":"<the digits>"}.
//  3. end_call is offered and the caller's last words say goodbye ("bye", "goodbye", "that's
//     all", "thank you, bye"): it says GoodbyeReply, then calls end_call with {} (or
//     {"reason":"caller said goodbye"} when its parameters have a "reason" property).
//  4. Otherwise, the demo reply.
//
// It imports agent (for the demo answer), test/serve (for its JSON answers) and nothing else
// of callbrain, and never go-openai:
// the wire format is written by hand, and the tests check it with the real go-openai client.
package mockllm
