package agent

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// versionStore is a store that shares prompt versions between replicas (session.RedisStore
// and session.MemoryStore are).
type versionStore interface {
	SaveVersion(ctx context.Context, v session.PromptVersion) error
	LoadVersion(ctx context.Context, version string) (session.PromptVersion, error)
}

// shareRefresh is how often a replica stores again a version it keeps pinning calls to, so
// the stored copy (kept for the store's retention) outlives every call pinned to it.
const shareRefresh = time.Hour

// sharedVersions remembers which versions this replica has stored, and when.
type sharedVersions struct {
	mu    sync.Mutex
	saved map[string]time.Time
}

// shareVersion stores ag's file when this replica pins a call to ag for the first time (or
// the first time in shareRefresh), so any replica can answer the call with it. A failure is
// logged and tried again on the next pin: the call goes on either way.
func (a *Agent) shareVersion(ctx context.Context, ag *prompts.Agent, log *zap.Logger) {
	vs, ok := a.store.(versionStore)
	if !ok || ag == nil || len(ag.Raw()) == 0 {
		return
	}
	a.shared.mu.Lock()
	if a.shared.saved == nil {
		a.shared.saved = make(map[string]time.Time)
	}
	last, seen := a.shared.saved[ag.Version]
	fresh := seen && time.Since(last) < shareRefresh
	a.shared.mu.Unlock()
	if fresh {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	err := vs.SaveVersion(sctx, session.PromptVersion{Version: ag.Version, Agent: ag.Name, File: ag.Raw()})
	cancel()
	if err != nil {
		log.Warn("prompt version not shared", zap.String("prompt_version", ag.Version), zap.Error(err))
		return
	}
	a.shared.mu.Lock()
	a.shared.saved[ag.Version] = time.Now()
	a.shared.mu.Unlock()
}

// fetchVersion loads a version another replica stored, checks it against its hash, and keeps
// it for the next turns.
func (a *Agent) fetchVersion(ctx context.Context, version string) (*prompts.Agent, error) {
	vs, ok := a.store.(versionStore)
	if !ok {
		return nil, session.ErrNotFound
	}
	lctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	pv, err := vs.LoadVersion(lctx, version)
	cancel()
	if err != nil {
		return nil, err
	}
	ag, err := prompts.ParseVersion(pv.Agent, "store", version, pv.File)
	if err != nil {
		return nil, err
	}
	a.prompts.Adopt(ag)
	return ag, nil
}
