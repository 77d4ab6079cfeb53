package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/callbrain/callbrain/session"
)

const recordUsage = `Usage:
  callsim record pull [--redis URL] [--since ID|TIME|AGE] [--out DIR] [--prefix P] [--max N]

pull fetches the call scripts a deployment recorded (BRAIN_RECORD=…,redis) from the
recordings stream in its Redis, and writes each to DIR as <time>-<call id>.yaml. It prints the
position of the last one; pass it as --since next time to fetch only newer scripts.

  --since 1764504000000-3         after this stream position (as printed by the last pull)
  --since 2026-11-30T09:00:00Z    recorded at or after this time
  --since 2h                      recorded in the last two hours
`

// record dispatches the record subcommands.
func record(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "pull" {
		fmt.Fprint(stderr, recordUsage)
		if len(args) == 0 {
			return usagef("record: missing subcommand: pull")
		}
		return usagef("record: unknown subcommand %q: want pull", args[0])
	}
	return recordPull(ctx, args[1:], getenv, stdout, stderr)
}

func recordPull(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("record pull", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, recordUsage)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	url := fs.String("redis", getenv("REDIS_URL"), "the deployment's Redis `URL` (env REDIS_URL)")
	since := fs.String("since", "", "fetch scripts after a stream `position`, from a time (RFC 3339) or an age (2h)")
	out := fs.String("out", "recordings", "the `directory` to write the scripts to (made when missing)")
	prefix := fs.String("prefix", "callbrain:", "the brain's key `prefix` in Redis")
	maxN := fs.Int("max", 10000, "fetch at most `N` scripts")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		fs.Usage()
		return usagef("record pull: unexpected argument %q", pos[0])
	case *url == "":
		fs.Usage()
		return usagef("record pull: --redis (or REDIS_URL) is required")
	case *maxN <= 0:
		return usagef("record pull: --max %d: want a positive number", *maxN)
	}
	after, err := sincePosition(*since, time.Now())
	if err != nil {
		return usagef("record pull: --since %q: %v", *since, err)
	}
	target, err := session.ParseRedisURL(*url)
	if err != nil {
		return usagef("record pull: --redis: %v", err) // the error never echoes the URL, which may hold a password
	}
	if err := os.MkdirAll(*out, 0o750); err != nil {
		return fmt.Errorf("record pull: %w", err)
	}
	rdb := target.Client(session.RedisTuning{})
	defer rdb.Close()
	store := session.NewRedisStore(rdb, session.Options{Prefix: *prefix})

	written, last := 0, after
	for written < *maxN {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		recs, err := store.Recordings(rctx, last, int64(min(100, *maxN-written)))
		cancel()
		if err != nil {
			return fmt.Errorf("record pull: %w", err)
		}
		for _, r := range recs {
			if err := writePulled(*out, r); err != nil {
				return fmt.Errorf("record pull: %w (%d written; resume with --since %s)", err, written, or(last, `""`))
			}
			written++
			last = r.ID
		}
		if len(recs) == 0 {
			break
		}
	}
	fmt.Fprintf(stdout, "%s written to %s\n", plural(written, "script"), *out)
	if last != "" {
		fmt.Fprintf(stdout, "next: callsim record pull --since %s\n", last)
	}
	return nil
}

// sincePosition turns --since into the stream position to read after ("" for the start).
func sincePosition(since string, now time.Time) (string, error) {
	since = strings.TrimSpace(since)
	if since == "" {
		return "", nil
	}
	if ms, seq, ok := strings.Cut(since, "-"); ok && digits(ms) && digits(seq) {
		return since, nil
	}
	from, err := time.Parse(time.RFC3339, since)
	if n, perr := strconv.ParseInt(since, 10, 64); perr == nil && n > 0 {
		from, err = time.UnixMilli(n), nil // a bare position: that millisecond on
	}
	if err != nil {
		age, derr := time.ParseDuration(since)
		if derr != nil || age <= 0 {
			return "", errors.New("want a stream position (<ms>-<seq>), a time (2026-11-30T09:00:00Z) or an age (2h)")
		}
		from = now.Add(-age)
	}
	// Just before the first entry of that millisecond.
	ms := from.UnixMilli() - 1
	if ms < 0 {
		return "", nil
	}
	return strconv.FormatInt(ms, 10) + "-" + strconv.FormatUint(math.MaxUint64, 10), nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// writePulled writes one recording as <time>-<call id>.yaml, the name the brain's directory
// sink gives it, so pulling twice overwrites rather than duplicates.
func writePulled(dir string, r session.Recording) error {
	ms, _, _ := strings.Cut(r.ID, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	id := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			return c
		}
		return '_'
	}, r.CallID)
	if id == "" {
		id = "call"
	}
	name := time.UnixMilli(n).UTC().Format("20060102-150405") + "-" + id + ".yaml"
	if err := os.WriteFile(filepath.Join(dir, name), r.Script, 0o640); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
