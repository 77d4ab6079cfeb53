package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/transport"
)

// loadHooks reads PROMPTS_DIR/sources.yaml and the secrets it names into the receivers'
// settings. A platform whose variables are unset stops the start-up: a receiver configured
// but unable to authenticate would refuse every delivery.
func loadHooks(dir string, getenv func(string) string) (transport.Hooks, time.Duration, error) {
	src, err := prompts.LoadSources(dir)
	if err != nil {
		return transport.Hooks{}, 0, fmt.Errorf("PROMPTS_DIR: %w", err)
	}
	var h transport.Hooks
	if src == nil {
		return h, transport.DefaultHookDedupeTTL, nil
	}
	value := func(where, name string) (string, error) {
		v := secretEnv(getenv, name)
		if v == "" {
			return "", fmt.Errorf("%s: %s names %s, which is not set", prompts.SourcesFile, where, name)
		}
		return v, nil
	}
	if s := src.Salpre; s != nil {
		cfg := &transport.SalpreConfig{MaxAge: s.MaxAge}
		for i, hd := range s.Headers {
			v, err := value(fmt.Sprintf("salpre.headers[%d].value_env", i), hd.ValueEnv)
			if err != nil {
				return h, 0, err
			}
			cfg.Headers = append(cfg.Headers, transport.Header{Name: hd.Name, Value: v})
		}
		h.Salpre = cfg
	}
	hmacCfg := func(name string, s *prompts.HMACSource, sigHeader, tsHeader string) (*transport.HMACConfig, error) {
		if s == nil {
			return nil, nil
		}
		cur, err := value(name+".secret_env", s.SecretEnv)
		if err != nil {
			return nil, err
		}
		cfg := &transport.HMACConfig{
			Secrets:         []string{cur},
			SignatureHeader: or(s.SignatureHeader, sigHeader),
			TimestampHeader: or(s.TimestampHeader, tsHeader),
			Encoding:        or(s.Encoding, transport.EncodingHex),
			MaxSkew:         s.MaxSkew,
		}
		if s.SecretNextEnv != "" {
			if next := strings.TrimSpace(getenv(s.SecretNextEnv)); next != "" {
				cfg.Secrets = append(cfg.Secrets, next)
			}
		}
		return cfg, nil
	}
	if h.Itellico, err = hmacCfg("itellico", src.Itellico, transport.DefaultItellicoSignatureHeader, transport.DefaultItellicoTimestampHeader); err != nil {
		return h, 0, err
	}
	if h.SpeakNode, err = hmacCfg("speaknode", src.SpeakNode, transport.DefaultSpeakNodeHeader, ""); err != nil {
		return h, 0, err
	}
	ttl := src.DedupeTTL
	if ttl == 0 {
		ttl = transport.DefaultHookDedupeTTL
	}
	return h, ttl, nil
}

// openRecords returns the call records: in Redis beside the store, else in this process.
func openRecords(rdb redis.UniversalClient, retention time.Duration) agent.CallRecords {
	if rdb == nil {
		return session.NewMemoryRecords()
	}
	return session.NewRedisRecords(rdb, "", retention)
}

// logHooks says which receivers are on.
func logHooks(h transport.Hooks, log *zap.Logger) {
	var on []string
	if h.Salpre != nil {
		on = append(on, transport.RouteSalpre)
	}
	if h.Itellico != nil {
		on = append(on, transport.RouteItellico)
	}
	if h.SpeakNode != nil {
		on = append(on, transport.RouteSpeakNode)
	}
	if len(on) > 0 {
		log.Info("receivers on", zap.Strings("routes", on))
	}
}

// recordsClient opens the Redis client of the call records (REDIS_URL: a node, a Sentinel
// group or a Cluster), tuned as the store's, or nil without one.
func recordsClient(cfg config) (redis.UniversalClient, error) {
	if cfg.RedisURL == "" {
		return nil, nil
	}
	target, err := session.ParseRedisURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err) // the error never echoes the URL, which may hold a password
	}
	return target.Client(storeTuning(cfg)), nil
}

// chainDelivery calls both delivery hooks, first then next; either may be nil.
func chainDelivery(first, next func(agent.DeliveryRecord)) func(agent.DeliveryRecord) {
	if first == nil {
		return next
	}
	return func(d agent.DeliveryRecord) { first(d); next(d) }
}

// closeRecords stops the Saperly call records' writer on an early return from run.
func closeRecords(s *agent.SaperlyRecords) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.Close(ctx)
}
