package agent

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

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
	if ag == nil || len(ag.Raw()) == 0 {
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
	err := a.store.SaveVersion(sctx, session.PromptVersion{Version: ag.Version, Agent: ag.Name, File: ag.Raw()})
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
	lctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	pv, err := a.store.LoadVersion(lctx, version)
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
