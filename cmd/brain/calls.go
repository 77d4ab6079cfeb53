package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/session"
)

const callsUsage = `usage: brain calls show [-numbers] [PLATFORM:]ID
       brain calls list [-since 24h|2026-11-30T12:00:00Z] [-platform P] [-limit N] [-numbers]

Prints the call records every platform's events built (REDIS_URL): show prints one call as
JSON (transcript, analysis); list prints one line per call first seen since -since (oldest
first). Platforms: saperly, salpre, itellico, speaknode. Phone numbers are masked unless
-numbers is given.
`

// callPlatforms are searched, in order, by "brain calls show ID" without a platform.
var callPlatforms = []string{agent.PlatformSaperly, agent.PlatformSalpre, agent.PlatformItellico, agent.PlatformSpeakNode}

// callsCommand runs "brain calls …" and returns the exit code: 0, 1 for a failure (an
// unknown call, Redis down), 2 for a usage error.
func callsCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "show" && args[0] != "list") {
		fmt.Fprint(stderr, callsUsage)
		return 2
	}
	fs := flag.NewFlagSet("brain calls "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, callsUsage) }
	numbers := fs.Bool("numbers", false, "print phone numbers in full")
	since := fs.String("since", "24h", "a duration back from now, or an RFC 3339 time")
	platform := fs.String("platform", "", "only this platform's calls")
	limit := fs.Int("limit", 100, "at most this many calls (the newest)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	url := getenv("REDIS_URL")
	if url == "" {
		fmt.Fprintln(stderr, "brain calls: REDIS_URL is not set: call records live in Redis")
		return 1
	}
	rdb, err := recordsClient(config{RedisURL: url})
	if err != nil {
		fmt.Fprintln(stderr, "brain calls:", err)
		return 1
	}
	defer rdb.Close() //nolint:errcheck // a CLI on its way out
	recs := session.NewRedisRecords(rdb, "", 0)
	mask := func(n string) string {
		if *numbers {
			return n
		}
		return agent.MaskNumber(n)
	}
	if args[0] == "show" {
		if fs.NArg() != 1 {
			fmt.Fprint(stderr, callsUsage)
			return 2
		}
		rec, err := showCall(ctx, recs, fs.Arg(0))
		if err != nil {
			fmt.Fprintln(stderr, "brain calls show:", err)
			return 1
		}
		rec.From, rec.To = mask(rec.From), mask(rec.To)
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rec); err != nil {
			fmt.Fprintln(stderr, "brain calls show:", err)
			return 1
		}
		return 0
	}
	from, err := parseSince(*since, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "brain calls list: -since:", err)
		return 2
	}
	list, err := recs.Calls(ctx, from, *platform, *limit)
	if err != nil {
		fmt.Fprintln(stderr, "brain calls list:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tPLATFORM\tCALL_ID\tSTATUS\tDIRECTION\tFROM\tTO\tTURNS\tTEST")
	for _, r := range list {
		started := r.StartedAt
		if started.IsZero() {
			started = r.UpdatedAt
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%v\n", started.Format(time.RFC3339), r.Platform, r.CallID,
			dash(r.Status), dash(r.Direction), dash(mask(r.From)), dash(mask(r.To)), len(r.Turns), r.Test)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintln(stderr, "brain calls list:", err)
		return 1
	}
	return 0
}

// showCall finds PLATFORM:ID, or ID on the first platform that has it.
func showCall(ctx context.Context, recs *session.RedisRecords, arg string) (session.CallRecord, error) {
	if p, id, ok := strings.Cut(arg, ":"); ok {
		for _, known := range callPlatforms {
			if p == known {
				return recs.Call(ctx, p, id)
			}
		}
	}
	for _, p := range callPlatforms {
		rec, err := recs.Call(ctx, p, arg)
		if errors.Is(err, session.ErrNotFound) {
			continue
		}
		return rec, err
	}
	return session.CallRecord{}, fmt.Errorf("call %s: no record on any platform", arg)
}

func parseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want a duration such as 2h or an RFC 3339 time", v)
	}
	return t, nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
