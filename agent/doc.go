// Package agent is the brain's turn logic: it records call events, and answers each caller
// utterance by streaming a model's reply as speakable lines, inside Saperly's budgets, so the
// caller never hears silence and never hears the same answer twice.
//
// It holds the LLM interface with its go-openai adapter and the offline demo model. It imports
// session and prompts, and never transport or Echo.
package agent
