// Command brain is the callbrain server: the webhook a Saperly line points its webhook_url and
// status_callback_url at. Configuration comes from the environment (see README.md).
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/transport"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 {
		code := command(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	context.AfterFunc(ctx, stop) // a second signal during the drain ends the process at once
	if err := run(ctx, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "brain:", err)
		os.Exit(1)
	}
}

// command runs a subcommand instead of the server, returning the exit code: an unknown one
// prints the usage and fails rather than start a server the operator did not ask for.
func command(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	switch args[0] {
	case "prompts": // brain prompts check [-q] [dir]
		return promptsCommand(args[1:], getenv, stdout, stderr)
	case "calls": // brain calls show|list …
		return callsCommand(ctx, args[1:], getenv, stdout, stderr)
	case "jobs": // brain jobs dead|retry …
		return jobsCommand(ctx, args[1:], getenv, stdout, stderr)
	case "worker": // brain worker: the background jobs only, until a signal
		if err := workerCommand(ctx, getenv); err != nil {
			fmt.Fprintln(stderr, "brain:", err)
			return 1
		}
		return 0
	case "health": // brain health [path]: the image's HEALTHCHECK (distroless has no curl)
		return healthCommand(args[1:], getenv, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "brain: unknown command or flag %q\n\n", args[0])
		usage(stderr)
		return 2
	}
}

func run(ctx context.Context, getenv func(string) string) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr cannot be synced on some systems; nothing to do about it

	// The metrics registry is this run's own (no global registration); its listener is off
	// unless BRAIN_METRICS_ADDR is set.
	reg := prometheus.NewRegistry()
	met := newMetrics(reg)
	if cfg.MetricsAddr != "" {
		_, stopMetrics, err := serveMetrics(cfg.MetricsAddr, reg, cfg.Pprof, log)
		if err != nil {
			return err
		}
		defer stopMetrics() // last: the drain is still observable
	}
	tracer, stopTracer, err := newTracer(ctx, &cfg)
	if err != nil {
		return err
	}
	defer stopTracer() // after the drain: the last deliveries' spans are exported

	rawStore, closeStore, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeStore()
	store := meteredStore{s: rawStore, m: met}

	lib, err := loadPrompts(cfg, log)
	if err != nil {
		return err
	}
	lib.OnReload(met.onReload)
	warnLineSecrets(lib.Current(), getenv, log)

	rec, stopRecorder, err := startRecorder(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopRecorder() // after the drain below: the last deliveries are captured first
	onDelivery := met.onDelivery
	cfg.Agent.OnTurn = chainTurn(cfg.Agent.OnTurn, met.onTurn)
	if rec != nil {
		onDelivery = func(d agent.DeliveryRecord) { met.onDelivery(d); rec.OnDelivery(d) }
		cfg.Agent.OnTurn = chainTurn(cfg.Agent.OnTurn, rec.OnTurn)
	}

	primary, fallback := models(cfg, log)
	primary = meteredLLM{LLM: primary, role: "primary", m: met}
	if fallback != nil {
		fallback = meteredLLM{LLM: fallback, role: "fallback", m: met}
	}
	cfg.Agent.Getenv = getenv // tool headers name the variables that hold their values
	control, lookup := saperlyAPI(cfg, lib.Current(), log)
	ag := agent.New(cfg.Agent, agent.Deps{
		Primary: primary, Fallback: fallback, Store: store, Prompts: lib,
		Control: control, Lookup: lookup, Log: log, Tracer: tracer,
	})

	if cfg.DevSecret {
		log.Warn("SAPERLY_WEBHOOK_SECRET is not set: accepting the development secret, on loopback only; never expose this server",
			zap.String("addr", cfg.Addr))
	}
	global := cfg.secrets(transport.DevSecret)
	hooks, dedupeTTL, err := loadHooks(cfg.PromptsDir, getenv)
	if err != nil {
		return err
	}
	recRDB, err := recordsClient(cfg)
	if err != nil {
		return err
	}
	if recRDB != nil {
		defer recRDB.Close() //nolint:errcheck // closing on the way out; nothing to do about an error
	}
	logHooks(hooks, log)
	js := cfg.Jobs
	records := openRecords(recRDB, cfg.CallsRetention)
	receiver := agent.NewReceiver(records, dedupeTTL)
	if recRDB != nil && js.enabled() {
		jobs := session.NewRedisJobs(recRDB, "", js.Visibility)
		receiver.WithJobs(jobs)
		if js.SMS {
			ag.AnswerSMS(jobs)
		}
		if js.Inline() {
			stopWorker := startWorker(ctx, newWorker(js, jobs, records.(agent.RecordReader), cfg, lib, primary, ag, recRDB, log))
			defer stopWorker()
		}
	} else if js.enabled() {
		log.Warn("BRAIN_FORWARD_URL or BRAIN_SUMMARY is set but REDIS_URL is not: background jobs need Redis, they are off")
	}
	saperlyRecs := agent.NewSaperlyRecords(receiver, log)
	defer closeRecords(saperlyRecs) // after the drain's own close below, a no-op
	onDelivery = chainDelivery(onDelivery, saperlyRecs.Offer)
	srv := transport.New(transport.Config{
		Signers:    func(lineID string) (string, []string) { return lineSecrets(lib.Current(), lineID, global, getenv) },
		Ready:      store.Ping,
		LogText:    cfg.LogText,
		MaxIDLen:   cfg.MaxIDLen,
		MaxConns:   cfg.MaxConns,
		OnDelivery: onDelivery,
		OnResult:   met.onResult,
		// The replay check is a store operation like those of a turn.
		StoreTimeout: cfg.Agent.StoreTimeout,
		// A message's replay check rides on the turn's first round trip (BeginTurnOnce).
		ReplayInTurn: true,
		Hooks:        hooks,
		HookReceiver: receiver,
		Tracer:       tracer,
	}, meteredResponder{Responder: ag, m: met}, store, log)

	// The prompt watcher, and SIGHUP for a reload on demand, live as long as the server:
	// stopped and waited for on the way out.
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	watchers.Go(func() {
		if err := lib.Watch(watchCtx); err != nil {
			log.Error("prompt watcher stopped: edits need SIGHUP or a restart", zap.Error(err))
		}
	})
	watchers.Go(func() {
		for {
			select {
			case <-hup:
				lib.Reload()
			case <-watchCtx.Done():
				return
			}
		}
	})
	defer func() {
		signal.Stop(hup)
		stopWatch()
		watchers.Wait()
	}()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on BRAIN_ADDR %s: %w", cfg.Addr, err)
	}
	log.Info("listening", zap.String("addr", ln.Addr().String()))
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// /readyz answers 503 from now on. For BRAIN_DRAIN_DELAY the brain keeps accepting (new
	// deliveries, retries of calls in progress) so a balancer sees it unready and stops
	// sending before the listener closes; a second signal cuts the wait short.
	srv.Drain()
	if cfg.DrainDelay > 0 {
		log.Info("draining: unready, still serving", agent.Millis("drain_delay_ms", cfg.DrainDelay))
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		delay := time.NewTimer(cfg.DrainDelay)
		select {
		case <-delay.C:
		case <-again:
		case err := <-serveErr:
			delay.Stop()
			signal.Stop(again)
			return fmt.Errorf("serve: %w", err)
		}
		delay.Stop()
		signal.Stop(again)
	}
	log.Info("shutting down", agent.Millis("drain_timeout_ms", cfg.DrainTimeout))
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.DrainTimeout)
	defer cancel()
	shutErr := srv.Shutdown(drainCtx)
	// Turns the store did not take (an outage) are written now, within what is left of the
	// drain timeout; whatever still cannot be written is logged as lost.
	ag.Close(drainCtx)
	saperlyRecs.Close(drainCtx)
	if shutErr != nil {
		return fmt.Errorf("shutdown: %w", shutErr)
	}
	if err := <-serveErr; err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// chainTurn calls prev, when set, then next.
func chainTurn(prev, next func(agent.TurnStats)) func(agent.TurnStats) {
	if prev == nil {
		return next
	}
	return func(s agent.TurnStats) { prev(s); next(s) }
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("BRAIN_LOG_LEVEL=%q: %w", level, err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.EncoderConfig.TimeKey = "ts"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	// Milliseconds with microseconds: the brain's own share of a turn is well under a
	// millisecond, and whole milliseconds would log it as 0.
	zc.EncoderConfig.EncodeDuration = func(d time.Duration, enc zapcore.PrimitiveArrayEncoder) {
		enc.AppendFloat64(float64(d.Microseconds()) / 1000)
	}
	zc.Sampling = nil // every turn line matters
	// Errors the brain expects (a rejected prompt file, a refused delivery, a store outage) are
	// described by their message; the one stack worth logging, a recovered panic's, is logged
	// explicitly (the event line's "stack").
	zc.DisableStacktrace = true
	// Each message is unique to one place in the code; walking the stack for it on every
	// line cost a third of the logging CPU.
	zc.DisableCaller = true
	log, err := zc.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return log.Named("brain"), nil
}

// openStore connects to Redis when REDIS_URL is set, else uses the in-process store.
func openStore(ctx context.Context, cfg config, log *zap.Logger) (session.Store, func(), error) {
	opts := session.Options{Retention: cfg.Retention, TurnLease: cfg.Agent.TurnLease}
	if cfg.RedisURL == "" {
		log.Warn("REDIS_URL is not set: using the in-process store, fit for one instance only (state is lost on restart and not shared between replicas)")
		return session.NewMemoryStore(opts), func() {}, nil
	}
	target, err := session.ParseRedisURL(cfg.RedisURL)
	if err != nil {
		return nil, nil, fmt.Errorf("REDIS_URL: %w", err) // the error never echoes the URL, which may hold a password
	}
	// go-redis logs through a package-level logger of its own: send it to ours, so stderr stays
	// JSON during an outage.
	redis.SetLogger(redisLog{log.Named("redis")})
	rdb := target.Client(storeTuning(cfg))
	where := []zap.Field{zap.String("redis_kind", string(target.Kind)), zap.Strings("redis_addrs", target.Addrs), zap.Int("redis_db", target.DB)}
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		// Start anyway: /readyz reports it, and turns answer without history until it is back.
		log.Error("redis unreachable at start-up", append(where, zap.Error(err))...)
	} else {
		log.Info("store: redis", where...)
	}
	return session.NewRedisStore(rdb, opts), func() { _ = rdb.Close() }, nil
}

// storeTuning bounds the Redis clients' waits. Short: during an outage a turn must go on
// without state quickly rather than keep the caller waiting; the agent bounds each operation by
// its own deadline as well. Operations with a deadline (every one on a turn's path,
// BRAIN_STORE_TIMEOUT) end by it; these bound the others (recording, pending commits' retries,
// call records, jobs) and connection set-up, derived from the same setting: 2.5 × and 1.25 ×
// it (1 s and 500 ms by default).
func storeTuning(cfg config) session.RedisTuning {
	st := cfg.Agent.StoreTimeout
	if st <= 0 {
		st = agent.Defaults().StoreTimeout // a command that reads no settings (brain calls, jobs)
	}
	return session.RedisTuning{
		DialTimeout:   st * 5 / 4,
		DialerRetries: 1, // go-redis would try 5 times, holding every turn of an outage ~1.2 s
		ReadTimeout:   st * 5 / 2,
		WriteTimeout:  st * 5 / 2,
		PoolTimeout:   st * 5 / 2,
		MaxRetries:    1,
	}
}

// redisLog carries go-redis's own messages (dial failures, pool trouble) into the zap log.
type redisLog struct{ log *zap.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn("redis client", zap.String("detail", fmt.Sprintf(format, v...)))
}

func loadPrompts(cfg config, log *zap.Logger) (*prompts.Live, error) {
	if cfg.PromptsDirSet {
		if st, err := os.Stat(cfg.PromptsDir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("PROMPTS_DIR=%s: not a readable directory", cfg.PromptsDir)
		}
	}
	live, err := prompts.NewLive(cfg.PromptsDir, log)
	if err != nil {
		return nil, fmt.Errorf("PROMPTS_DIR: %w", err)
	}
	lib := live.Current()
	if lib.Embedded() {
		log.Warn("no default agent in PROMPTS_DIR: using the embedded default prompt", zap.String("prompts_dir", cfg.PromptsDir))
	}
	def := lib.Default()
	log.Info("prompts loaded", zap.Strings("agents", lib.Names()), zap.Int("lines", len(lib.Lines())),
		zap.String("default_source", def.Source), zap.String("prompt_version", def.Version))
	return live, nil
}

// lineSecrets returns the secrets a delivery for lineID is verified with, and their signing
// scope: the line's own (PROTOCOL §1.3), read from the variables lines.yaml names, scoped to
// the line; or the global ones, scoped transport.OwnerGlobal, for a line that is not listed
// or whose variable is empty. lineID is not verified yet: it only selects.
func lineSecrets(lib *prompts.Library, lineID string, global []string, getenv func(string) string) (string, []string) {
	line, ok := lib.Line(lineID)
	if !ok || line.SecretEnv == "" {
		return transport.OwnerGlobal, global
	}
	cur := secretEnv(getenv, line.SecretEnv)
	if cur == "" {
		return transport.OwnerGlobal, global
	}
	if line.SecretNextEnv != "" {
		if next := secretEnv(getenv, line.SecretNextEnv); next != "" {
			return line.ID, []string{cur, next}
		}
	}
	return line.ID, []string{cur}
}

// warnLineSecrets names every line whose secret variable is unset (its deliveries are
// verified with the global secret until it is set) or holds a value too short to be a real
// signing secret. Values are never logged.
func warnLineSecrets(lib *prompts.Library, getenv func(string) string, log *zap.Logger) {
	for _, l := range lib.Lines() {
		for _, name := range []string{l.SecretEnv, l.SecretNextEnv} {
			if name == "" {
				continue
			}
			switch v := secretEnv(getenv, name); {
			case v == "" && name == l.SecretEnv:
				log.Warn("line secret variable is not set: verifying with the global secret",
					zap.String("line_id", l.ID), zap.String("variable", name))
			case v != "" && len(v) < minSecretLen:
				log.Warn("line secret is too short to be a signing secret",
					zap.String("line_id", l.ID), zap.String("variable", name), zap.Int("min_chars", minSecretLen))
			}
		}
	}
}

// saperlyAPI returns the Saperly API client that ends calls and looks up calls the brain has
// no record of, or nils when no API key is set (then no agent is offered end_call, and such
// calls are taken on trust).
func saperlyAPI(cfg config, lib *prompts.Library, log *zap.Logger) (agent.CallControl, agent.CallLookup) {
	if cfg.SaperlyAPIKey == "" {
		for _, name := range lib.Names() {
			if a, _ := lib.Agent(name); a.Settings.EndCall {
				log.Warn("SAPERLY_API_KEY is not set: agents cannot end calls", zap.String("agent", name))
			}
		}
		return nil, nil
	}
	log.Info("call control and call lookup: saperly api", zap.String("base_url", or(cfg.SaperlyAPIBase, agent.DefaultSaperlyAPI)))
	api := agent.NewSaperlyAPI(cfg.SaperlyAPIBase, cfg.SaperlyAPIKey)
	return api, api
}

// models builds the primary model and the optional fallback.
func models(cfg config, log *zap.Logger) (agent.LLM, agent.LLM) {
	if cfg.demo() {
		log.Warn("OPENAI_API_KEY and OPENAI_BASE_URL are not set: answering with the built-in offline demo model",
			agent.Millis("token_delay_ms", cfg.DemoDelay))
		return &agent.DemoLLM{TokenDelay: cfg.DemoDelay}, nil
	}
	log.Info("model", zap.String("model", cfg.Model), zap.String("base_url", or(cfg.OpenAIBaseURL, "https://api.openai.com/v1")))
	primary := agent.NewOpenAI(cfg.OpenAIBaseURL, cfg.OpenAIKey)
	if cfg.FallbackModel == "" {
		return primary, nil
	}
	fallback := primary
	if cfg.FallbackBase != "" || cfg.FallbackKey != "" {
		fallback = agent.NewOpenAI(or(cfg.FallbackBase, cfg.OpenAIBaseURL), or(cfg.FallbackKey, cfg.OpenAIKey))
	}
	log.Info("fallback model", zap.String("model", cfg.FallbackModel))
	return primary, fallback
}
