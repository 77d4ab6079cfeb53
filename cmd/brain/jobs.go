package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// jobSettings configures the background jobs (BRAIN_JOBS*, BRAIN_FORWARD_*), read by their
// rows of settings and checked by checkJobs.
type jobSettings struct {
	Mode       string // BRAIN_JOBS: "inline" (the brain runs a worker itself) or "worker"
	Summary    bool   // BRAIN_SUMMARY: the model writes each finished call's summary
	SMS        bool   // BRAIN_SMS_ANSWER: texts to a line are answered by its agent
	Attempts   int
	Backoff    time.Duration
	Visibility time.Duration
	Timeout    time.Duration
	ForwardURL string
	ForwardKey string
}

// Inline reports whether the brain runs a job worker itself.
func (js jobSettings) Inline() bool { return js.Mode == "inline" }

// checkJobs checks the job settings together, once all are read.
func checkJobs(c *config) error {
	js := c.Jobs
	switch {
	case js.Mode != "inline" && js.Mode != "worker":
		return fmt.Errorf("BRAIN_JOBS=%q: want inline (the brain runs the jobs) or worker (a separate `brain worker` runs them)", js.Mode)
	case js.SMS && c.SaperlyAPIKey == "":
		return errors.New("BRAIN_SMS_ANSWER=1 needs SAPERLY_API_KEY: replies are sent through Saperly's API")
	case js.Summary && js.Timeout < 5*time.Second:
		return fmt.Errorf("BRAIN_JOB_TIMEOUT=%s: a summary is written by the model, allow it at least 5s", js.Timeout)
	case js.Timeout >= js.Visibility:
		return fmt.Errorf("BRAIN_JOB_TIMEOUT=%s: must be shorter than BRAIN_JOB_VISIBILITY=%s, or a slow job is handed to a second worker while it runs", js.Timeout, js.Visibility)
	case js.ForwardURL != "" && len(js.ForwardKey) < 16:
		return errors.New("BRAIN_FORWARD_URL is set: BRAIN_FORWARD_SECRET must be at least 16 characters to sign what is forwarded")
	}
	return nil
}

// enabled reports whether any background job has work to do: jobs are queued only then.
func (js jobSettings) enabled() bool { return js.Summary || js.SMS || js.ForwardURL != "" }

// consumerName names this process in the job group: host and pid, unique while it lives.
func consumerName() string {
	host, _ := os.Hostname()
	return host + "-" + strconv.Itoa(os.Getpid())
}

// summaryFile is the summary job's instruction in PROMPTS_DIR (agent.DefaultSummaryPrompt
// when absent). Not .md: every .md file there is an agent.
const summaryFile = "summary.txt"

func newWorker(js jobSettings, q *session.RedisJobs, recs agent.RecordReader, cfg config, lib *prompts.Live, llm agent.LLM,
	ag *agent.Agent, rdb redis.UniversalClient, log *zap.Logger) *agent.Worker {
	var texter agent.Texter
	var sender agent.MessageSender
	var sms agent.SMSState
	if js.SMS {
		texter, sender = ag, agent.NewSaperlyAPI(cfg.SaperlyAPIBase, cfg.SaperlyAPIKey)
		sms = session.NewRedisSMS(rdb, "", cfg.Retention*30, 2*cfg.Agent.HistoryLimit)
	}
	if !js.Summary {
		llm = nil // no summaries: the summary job only queues the forward
	}
	prompt := ""
	if raw, err := os.ReadFile(filepath.Join(cfg.PromptsDir, summaryFile)); err == nil {
		prompt = strings.TrimSpace(string(raw))
	}
	return agent.NewWorker(agent.WorkerConfig{
		Consumer: consumerName(), MaxAttempts: js.Attempts, Backoff: js.Backoff, JobTimeout: js.Timeout,
		ForwardURL: js.ForwardURL, ForwardSecret: js.ForwardKey,
		LLM: llm, SummaryPrompt: prompt, MaxTokens: cfg.Agent.MaxTokens,
		Texter: texter, Sender: sender, SMS: sms,
		// The line's agent's model for a Saperly call; the default agent's for the others.
		Model: func(rec session.CallRecord) string {
			l := lib.Current()
			a := l.Default()
			if rec.Platform == agent.PlatformSaperly {
				a, _ = l.ForLine(rec.Source)
			}
			return or(a.Settings.Model, cfg.Model)
		},
	}, q, recs, log)
}

// workerCommand runs `brain worker`: the background jobs only, until a signal.
func workerCommand(ctx context.Context, getenv func(string) string) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	js := cfg.Jobs
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // as in run
	rdb, err := recordsClient(cfg)
	if err != nil {
		return err
	}
	if rdb == nil {
		return errors.New("brain worker: REDIS_URL is required (the jobs live in Redis)")
	}
	defer rdb.Close() //nolint:errcheck // on the way out
	lib, err := loadPrompts(cfg, log)
	if err != nil {
		return err
	}
	primary, fallback := models(cfg, log)
	store, closeStore, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeStore()
	cfg.Agent.Getenv = getenv
	ag := agent.New(cfg.Agent, agent.Deps{Primary: primary, Fallback: fallback, Store: store, Prompts: lib, Log: log})
	recs := session.NewRedisRecords(rdb, "", cfg.CallsRetention) // the receivers' settings are not the worker's
	newWorker(js, session.NewRedisJobs(rdb, "", js.Visibility), recs, cfg, lib, primary, ag, rdb, log).Run(ctx)
	log.Info("worker stopped")
	return nil
}

const jobsUsage = `usage: brain jobs dead
       brain jobs retry ID

dead lists the jobs that failed every attempt (REDIS_URL); retry puts one back for a fresh set
of attempts.
`

// jobsCommand runs "brain jobs …" and returns the exit code.
func jobsCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "dead" && args[0] != "retry") || (args[0] == "retry") != (len(args) == 2) {
		fmt.Fprint(stderr, jobsUsage)
		return 2
	}
	rdb, err := recordsClient(config{RedisURL: getenv("REDIS_URL")})
	if err != nil || rdb == nil {
		fmt.Fprintln(stderr, "brain jobs: REDIS_URL must be set to a redis:// URL: the jobs live in Redis")
		return 1
	}
	defer rdb.Close() //nolint:errcheck // a CLI on its way out
	q := session.NewRedisJobs(rdb, "", time.Minute)
	if args[0] == "retry" {
		j, err := q.Redrive(ctx, args[1])
		if err != nil {
			fmt.Fprintln(stderr, "brain jobs retry:", err)
			return 1
		}
		fmt.Fprintf(stdout, "requeued %s job %s\n", j.Kind, j.Key)
		return 0
	}
	dead, err := q.Dead(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "brain jobs dead:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tKEY\tATTEMPTS\tLAST ERROR")
	for _, j := range dead {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", j.ID, j.Kind, j.Key, j.Attempt, j.Error)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintln(stderr, "brain jobs dead:", err)
		return 1
	}
	return 0
}

// startWorker runs w until the returned stop is called (it waits for w to return).
func startWorker(ctx context.Context, w *agent.Worker) func() {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); w.Run(wctx) }()
	return func() { cancel(); <-done }
}
