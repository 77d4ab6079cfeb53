package agent

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/callbrain/callbrain/session"
)

// Job kinds.
const (
	// JobForward posts a finished call's record to the downstream URL (a CRM).
	JobForward = "forward"
	// JobSummary writes a finished call's summary with the agent's model, then queues the
	// forward.
	JobSummary = "summary"
)

// DefaultSummaryPrompt is the summary job's instruction when PROMPTS_DIR has no summary.txt.
const DefaultSummaryPrompt = "Summarise this phone call for the business's records in two to four sentences: " +
	"who called, what they wanted, and what was agreed or left open. Write plain sentences, no lists."

// JobQueue is the part of the job stream a Worker and the Receiver use.
type JobQueue interface {
	Enqueue(ctx context.Context, kind, key, payload string) error
	Fetch(ctx context.Context, consumer string, wait time.Duration) (session.Job, error)
	Ack(ctx context.Context, j session.Job) error
	Retry(ctx context.Context, j session.Job, at time.Time, cause string) error
	Bury(ctx context.Context, j session.Job, cause string) error
}

// RecordReader reads call records (for jobs about a finished call) and stores summaries.
type RecordReader interface {
	Call(ctx context.Context, platform, callID string) (session.CallRecord, error)
	SetSummary(ctx context.Context, platform, callID, text string) (bool, error)
}

// WorkerConfig sets how background jobs run.
type WorkerConfig struct {
	Consumer    string        // this worker's name in the consumer group (unique per process)
	MaxAttempts int           // a job failing this many times goes to the dead letters
	Backoff     time.Duration // wait before the 2nd attempt; doubled each time after, capped at 64×
	JobTimeout  time.Duration // bound on one attempt
	// ForwardURL, when set, receives each finished call record (POST, JSON), signed with
	// ForwardSecret and carrying an Idempotency-Key, so a job run twice has one effect.
	ForwardURL    string
	ForwardSecret string
	Client        *http.Client
	// LLM writes summaries with the model Model returns for a record (the line's agent's);
	// nil skips the summary. SummaryPrompt is the instruction (DefaultSummaryPrompt if "").
	LLM           LLM
	Model         func(rec session.CallRecord) string
	SummaryPrompt string
	MaxTokens     int
	// Texter, Sender and SMS answer texts (JobSMS); nil when SMS answers are off.
	Texter Texter
	Sender MessageSender
	SMS    SMSState
}

// Worker runs background jobs from the queue: at least once, each handler idempotent.
type Worker struct {
	cfg  WorkerConfig
	q    JobQueue
	recs RecordReader
	log  *zap.Logger
}

// NewWorker returns a worker; Run runs it.
func NewWorker(cfg WorkerConfig, q JobQueue, recs RecordReader, log *zap.Logger) *Worker {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = 30 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.JobTimeout}
	}
	return &Worker{cfg: cfg, q: q, recs: recs, log: log.Named("worker")}
}

// Run fetches and runs jobs until ctx ends. A job in progress when ctx ends is left
// unacknowledged: another worker takes it after the visibility timeout.
func (w *Worker) Run(ctx context.Context) {
	w.log.Info("worker started", zap.String("consumer", w.cfg.Consumer))
	for ctx.Err() == nil {
		j, err := w.q.Fetch(ctx, w.cfg.Consumer, time.Second)
		switch {
		case errors.Is(err, session.ErrNoJob):
			continue
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("job fetch failed", zap.Error(err))
			select { // the store is down: do not spin
			case <-ctx.Done():
			case <-time.After(w.cfg.Backoff):
			}
			continue
		}
		w.runOne(ctx, j)
	}
}

func (w *Worker) runOne(ctx context.Context, j session.Job) {
	start := time.Now()
	jctx, cancel := context.WithTimeout(ctx, w.cfg.JobTimeout)
	err := w.handleSafe(jctx, j)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: unacknowledged, so it runs again elsewhere
	}
	fields := []zap.Field{zap.String("job_id", j.ID), zap.String("kind", j.Kind), zap.String("key", j.Key),
		zap.Int("attempt", j.Attempt), Millis("elapsed_ms", time.Since(start))}
	var qerr error
	switch {
	case err == nil:
		qerr = w.q.Ack(ctx, j)
		w.log.Info("job done", fields...)
	case j.Attempt >= w.cfg.MaxAttempts:
		qerr = w.q.Bury(ctx, j, err.Error())
		w.log.Error("job dead", append(fields, zap.Error(err))...)
	default:
		wait := w.cfg.Backoff << min(j.Attempt-1, 6)
		qerr = w.q.Retry(ctx, j, time.Now().Add(wait), err.Error())
		w.log.Warn("job failed, will retry", append(fields, zap.Error(err), zap.Int64("retry_in_ms", wait.Milliseconds()))...)
	}
	if qerr != nil {
		// Not acknowledged: the job runs again after the visibility timeout.
		w.log.Warn("job state not saved", zap.String("job_id", j.ID), zap.Error(qerr))
	}
}

// handleSafe is handle, with a panic (a bug in a job) turned into a failed attempt: retried,
// then buried like any other failure, and the worker goes on.
func (w *Worker) handleSafe(ctx context.Context, j session.Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("job panicked", zap.String("job_id", j.ID), zap.String("kind", j.Kind), zap.Any("panic", p), zap.Stack("stack"))
			err = fmt.Errorf("job %s panicked: %v", j.Kind, p)
		}
	}()
	return w.handle(ctx, j)
}

func (w *Worker) handle(ctx context.Context, j session.Job) error {
	switch j.Kind {
	case JobForward:
		return w.forward(ctx, j)
	case JobSummary:
		return w.summary(ctx, j)
	case JobSMS:
		return w.sms(ctx, j)
	}
	return fmt.Errorf("unknown job kind %q", j.Kind)
}

// HeaderForwardSignature carries "t=<unix s>,v1=<hex HMAC-SHA256 of t + "." + body>" on a
// forwarded record.
const HeaderForwardSignature = "X-Callbrain-Signature"

// forward posts the call's record to the downstream URL. The Idempotency-Key is the call's
// platform:id, so a downstream that honours it applies a record sent twice (a retry, a
// worker killed after sending) once.
func (w *Worker) forward(ctx context.Context, j session.Job) error {
	if w.cfg.ForwardURL == "" {
		return nil
	}
	platform, id, ok := strings.Cut(j.Key, ":")
	if !ok {
		return fmt.Errorf("forward: bad key %q", j.Key)
	}
	rec, err := w.recs.Call(ctx, platform, id)
	if err != nil {
		return fmt.Errorf("forward %s: %w", j.Key, err)
	}
	body, err := jsonRecord(rec)
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	m := hmac.New(sha256.New, []byte(w.cfg.ForwardSecret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.ForwardURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("forward %s: %w", j.Key, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "call:"+j.Key)
	req.Header.Set(HeaderForwardSignature, "t="+ts+",v1="+hex.EncodeToString(m.Sum(nil)))
	res, err := w.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("forward %s: %w", j.Key, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("forward %s: downstream answered %d", j.Key, res.StatusCode)
	}
	return nil
}

// summary writes the call's summary once (a summary already stored is kept), then queues the
// forward, so the record forwarded carries it. Run twice, it queues the forward twice: the
// forward's Idempotency-Key makes that one effect downstream.
func (w *Worker) summary(ctx context.Context, j session.Job) error {
	platform, id, ok := strings.Cut(j.Key, ":")
	if !ok {
		return fmt.Errorf("summary: bad key %q", j.Key)
	}
	rec, err := w.recs.Call(ctx, platform, id)
	if err != nil {
		return fmt.Errorf("summary %s: %w", j.Key, err)
	}
	if rec.Summary == "" && w.cfg.LLM != nil && len(rec.Turns) > 0 {
		var b strings.Builder
		for _, t := range rec.Turns {
			fmt.Fprintf(&b, "%s: %s\n", t.Role, t.Text)
		}
		text, err := complete(ctx, w.cfg.LLM, Request{
			Model: w.cfg.Model(rec), MaxTokens: w.cfg.MaxTokens,
			Messages: []Message{{Role: "system", Text: or(w.cfg.SummaryPrompt, DefaultSummaryPrompt)}, {Role: "user", Text: b.String()}},
		})
		if err != nil {
			return fmt.Errorf("summary %s: %w", j.Key, err)
		}
		if _, err := w.recs.SetSummary(ctx, platform, id, strings.TrimSpace(text)); err != nil {
			return err
		}
	}
	if err := w.q.Enqueue(ctx, JobForward, j.Key, ""); err != nil {
		return fmt.Errorf("summary %s: %w", j.Key, err)
	}
	return nil
}

// complete runs one completion to its end and returns its text.
func complete(ctx context.Context, llm LLM, req Request) (string, error) {
	st, err := llm.Stream(ctx, req)
	if err != nil {
		return "", err
	}
	defer st.Close() //nolint:errcheck // the text is read; nothing to do about a close error
	var b strings.Builder
	for {
		d, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return b.String(), nil
		}
		if err != nil {
			return "", err
		}
		b.WriteString(d)
	}
}
