// Package transport is the brain's HTTP face toward Saperly (PROTOCOL §1): the Echo server
// with the webhook and status callback endpoints and the health probes, the v1 signature check
// (Sign, Verify), the tolerant decoding of webhook bodies into agent.Event (DecodeEvent), the
// NDJSON writer that streams spoken lines, the replay check against a shared DeliveryCache,
// and the one error handler that maps errors to a status and a safe JSON message.
//
// Every POST is read once, verified on its raw bytes, checked for replay, decoded, and then
// either answered (a message on /webhook, streamed through the Responder) or recorded
// (everything else). Each delivery is logged on exactly one line.
//
// transport imports agent and nothing else of callbrain: never session or prompts (the agent
// owns them, and its errors are the only ones transport sees). Only cmd imports transport, and
// Echo is imported by no other package.
package transport
