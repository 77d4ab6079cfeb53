package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// JobSMS answers one inbound text with the line's agent and sends the reply.
const JobSMS = "sms"

// smsJob is the payload of a JobSMS.
type smsJob struct {
	LineID string    `json:"line_id"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Text   string    `json:"text"`
	SID    string    `json:"message_sid,omitempty"`
	At     time.Time `json:"at"`
}

// AnswerSMS makes the agent queue a reply job for every sms_received it records. Call it
// before serving.
func (a *Agent) AnswerSMS(q JobQueue) { a.smsJobs = q }

// queueSMSAnswer queues the reply to one inbound text. The job key names the text (its
// message_sid, else its event), so the reply is sent once whatever the retries.
func (a *Agent) queueSMSAnswer(ctx context.Context, ev Event, text string, at time.Time) error {
	id := ev.MessageID
	if id == "" {
		id = ev.ID
	}
	if id == "" {
		sum := sha256.Sum256([]byte(ev.LineID + "\x00" + ev.From + "\x00" + text + "\x00" + at.String()))
		id = "h" + hex.EncodeToString(sum[:8])
	}
	payload, err := json.Marshal(smsJob{LineID: ev.LineID, From: ev.From, To: ev.To, Text: text, SID: ev.MessageID, At: at})
	if err != nil {
		return fmt.Errorf("encode sms job: %w", err)
	}
	if err := a.smsJobs.Enqueue(ctx, JobSMS, ev.LineID+":"+id, string(payload)); err != nil {
		return fmt.Errorf("queue sms answer: %w", err)
	}
	return nil
}

// AnswerText writes the line's agent's reply to an inbound text: the same prompt file as its
// calls, rendered with Channel "sms", and the thread so far.
func (a *Agent) AnswerText(ctx context.Context, lineID, from, to string, thread []session.ThreadMessage, text string) (string, error) {
	ag, line := a.prompts.Current().ForLine(lineID)
	system, err := ag.Render(prompts.CallData{LineID: lineID, Caller: from, Called: to, Direction: "inbound", Channel: "sms", Vars: line.Vars})
	if err != nil {
		return "", err
	}
	cfg := a.cfg.forAgent(ag.Settings)
	msgs := []Message{{Role: "system", Text: system}}
	if n := cfg.HistoryLimit; len(thread) > n {
		thread = thread[len(thread)-n:]
	}
	for _, m := range thread {
		msgs = append(msgs, Message{Role: m.Role, Text: m.Text})
	}
	msgs = append(msgs, Message{Role: "user", Text: text})
	reply, err := complete(ctx, a.primary, Request{Model: cfg.Model, Messages: msgs, MaxTokens: cfg.MaxTokens, Temperature: cfg.Temperature})
	if err != nil {
		return "", fmt.Errorf("answer text: %w", err)
	}
	if reply = strings.TrimSpace(reply); reply == "" {
		return "", errors.New("answer text: the model said nothing")
	}
	return reply, nil
}

// SendMessage sends an SMS from the line: POST /messages (PROTOCOL §1.5). key goes out as
// Idempotency-Key, for an API that honours it.
func (s *SaperlyAPI) SendMessage(ctx context.Context, lineID, to, text, key string) error {
	body, err := json.Marshal(map[string]string{"line_id": lineID, "to": to, "text": text})
	if err != nil {
		return fmt.Errorf("send sms: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/messages", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("send sms: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "sms:"+key)
	res, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("send sms: %w", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("send sms: HTTP %d", res.StatusCode)
	}
	return nil
}

// Texter writes replies to texts (the Agent).
type Texter interface {
	AnswerText(ctx context.Context, lineID, from, to string, thread []session.ThreadMessage, text string) (string, error)
}

// MessageSender sends an SMS (the SaperlyAPI).
type MessageSender interface {
	SendMessage(ctx context.Context, lineID, to, text, key string) error
}

// SMSState is the SMS bookkeeping in the store (session.RedisSMS).
type SMSState interface {
	Thread(ctx context.Context, line, number string) ([]session.ThreadMessage, error)
	ChooseReply(ctx context.Context, key, text string) (string, error)
	Reply(ctx context.Context, key string) (string, error)
	Sent(ctx context.Context, key string) (bool, error)
	MarkSent(ctx context.Context, key, line, number string, in, out session.ThreadMessage) error
}

// sms answers one text: a reply already sent is never sent again; the reply's words are
// chosen once (a retry sends the same ones); the thread gains both messages once.
func (w *Worker) sms(ctx context.Context, j session.Job) error {
	if w.cfg.Texter == nil || w.cfg.Sender == nil || w.cfg.SMS == nil {
		return errors.New("sms answers are not configured in this worker (BRAIN_SMS_ANSWER, SAPERLY_API_KEY)")
	}
	var p smsJob
	if err := json.Unmarshal([]byte(j.Payload), &p); err != nil {
		return fmt.Errorf("sms job %s: %w", j.Key, err)
	}
	if sent, err := w.cfg.SMS.Sent(ctx, j.Key); err != nil || sent {
		return err
	}
	reply, err := w.cfg.SMS.Reply(ctx, j.Key)
	if errors.Is(err, session.ErrNotFound) {
		thread, terr := w.cfg.SMS.Thread(ctx, p.LineID, p.From)
		if terr != nil {
			return terr
		}
		text, aerr := w.cfg.Texter.AnswerText(ctx, p.LineID, p.From, p.To, thread, p.Text)
		if aerr != nil {
			return aerr
		}
		reply, err = w.cfg.SMS.ChooseReply(ctx, j.Key, text)
	}
	if err != nil {
		return err
	}
	if err := w.cfg.Sender.SendMessage(ctx, p.LineID, p.From, reply, j.Key); err != nil {
		return err
	}
	return w.cfg.SMS.MarkSent(ctx, j.Key, p.LineID, p.From,
		session.ThreadMessage{Role: "user", Text: p.Text, At: p.At},
		session.ThreadMessage{Role: "assistant", Text: reply, At: time.Now()})
}
