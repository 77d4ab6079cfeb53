package session

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Prompt versions shared between replicas: the replica that pins a call to an agent version
// stores the version's file, by its content hash, so a replica that never loaded that version
// can answer the call with it (package prompts rebuilds it and checks the hash).
//
// Key, under Options.Prefix:
//
//	pv:{<version>}  hash: agent (the agent's name), file (the agent file), for the retention
//
// One key per version, in the slot of its own hash tag: cluster-safe.

// PromptVersion is one agent version's file.
type PromptVersion struct {
	Version string // the content hash of File
	Agent   string
	File    []byte
}

// maxPromptFile bounds a stored agent file (agent files are a few kB).
const maxPromptFile = 1 << 20

// SaveVersion stores v for the retention (refreshing it when it is already stored): HSET and
// PEXPIRE in one MULTI, 1 round trip.
func (s *RedisStore) SaveVersion(ctx context.Context, v PromptVersion) error {
	if err := checkVersion(v); err != nil {
		return err
	}
	key := s.key("pv:", v.Version)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "agent", v.Agent, "file", v.File)
		p.PExpire(ctx, key, s.opts.Retention)
		return nil
	})
	if err != nil {
		return fmt.Errorf("save prompt version %s: %w", v.Version, err)
	}
	return nil
}

// LoadVersion returns the stored file of version, or ErrNotFound: HGETALL, 1 round trip.
func (s *RedisStore) LoadVersion(ctx context.Context, version string) (PromptVersion, error) {
	if version == "" || strings.ContainsAny(version, "{}") {
		return PromptVersion{}, fmt.Errorf("load prompt version %q: %w", version, errBadVersion)
	}
	m, err := s.rdb.HGetAll(ctx, s.key("pv:", version)).Result()
	if err != nil {
		return PromptVersion{}, fmt.Errorf("load prompt version %s: %w", version, err)
	}
	file, ok := m["file"]
	if !ok {
		return PromptVersion{}, fmt.Errorf("load prompt version %s: %w", version, ErrNotFound)
	}
	return PromptVersion{Version: version, Agent: m["agent"], File: []byte(file)}, nil
}

// SaveVersion implements the RedisStore method in memory.
func (s *MemoryStore) SaveVersion(_ context.Context, v PromptVersion) error {
	if err := checkVersion(v); err != nil {
		return err
	}
	v.File = append([]byte(nil), v.File...)
	s.versions.Store(v.Version, v)
	return nil
}

// LoadVersion implements the RedisStore method in memory.
func (s *MemoryStore) LoadVersion(_ context.Context, version string) (PromptVersion, error) {
	if version == "" || strings.ContainsAny(version, "{}") {
		return PromptVersion{}, fmt.Errorf("load prompt version %q: %w", version, errBadVersion)
	}
	v, ok := s.versions.Load(version)
	if !ok {
		return PromptVersion{}, fmt.Errorf("load prompt version %s: %w", version, ErrNotFound)
	}
	pv := v.(PromptVersion)
	pv.File = append([]byte(nil), pv.File...)
	return pv, nil
}

var errBadVersion = errors.New("not a prompt version")

func checkVersion(v PromptVersion) error {
	switch {
	case v.Version == "" || strings.ContainsAny(v.Version, "{}"):
		return fmt.Errorf("save prompt version %q: %w", v.Version, errBadVersion)
	case v.Agent == "":
		return fmt.Errorf("save prompt version %s: %w", v.Version, errEmptyID)
	case len(v.File) == 0 || len(v.File) > maxPromptFile:
		return fmt.Errorf("save prompt version %s: the file has %d bytes, want 1 to %d", v.Version, len(v.File), maxPromptFile)
	}
	return nil
}
