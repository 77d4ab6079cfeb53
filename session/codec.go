package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"
)

// Both stores keep a call's record as a hash of strings and its history as a list of JSON
// entries, encoded by the functions below. MemoryStore round-trips through the same encoding
// as Redis, so it loses what Redis loses (times below a millisecond) and the stores agree.

// Fields of a call's record hash. Times are Unix milliseconds.
const (
	fieldID        = "id"
	fieldLineID    = "line_id"
	fieldFrom      = "from"
	fieldTo        = "to"
	fieldDirection = "direction"
	fieldStatus    = "status"
	fieldStartedAt = "started_at"
	fieldEndedAt   = "ended_at"
	fieldDuration  = "duration"
	fieldReturning = "returning"
	// Pins: written only while unset. line_id is one too: no event moves a call to a line.
	fieldAgent         = "agent"
	fieldPromptVersion = "prompt_version"
	// fieldOwner is the call's signing scope (Call.Owner), written once.
	fieldOwner = "owner"
	// fieldTurns counts the message turns begun (State.Turns); only BeginTurn writes it.
	fieldTurns = "turns"
)

// smsKeep is how many messages AddSMS keeps per line, newest first.
const smsKeep = 1000

// claimDone is the value of a committed turn's claim: no lease, nothing left to answer.
const claimDone = "done"

// errEmptyID reports a write whose key would be empty, which would mix unrelated calls.
var errEmptyID = errors.New("empty id")

// callFields returns the record fields of c's non-zero values, with its id.
func callFields(c Call) map[string]string {
	f := map[string]string{fieldID: c.ID}
	set := func(k, v string) {
		if v != "" {
			f[k] = v
		}
	}
	set(fieldFrom, c.From)
	set(fieldTo, c.To)
	set(fieldDirection, c.Direction)
	set(fieldStatus, c.Status)
	if !c.StartedAt.IsZero() {
		f[fieldStartedAt] = strconv.FormatInt(c.StartedAt.UnixMilli(), 10)
	}
	if !c.EndedAt.IsZero() {
		f[fieldEndedAt] = strconv.FormatInt(c.EndedAt.UnixMilli(), 10)
	}
	if c.Duration != 0 {
		f[fieldDuration] = strconv.FormatFloat(c.Duration, 'g', -1, 64)
	}
	if c.Returning {
		f[fieldReturning] = "1"
	}
	return f
}

// blankFields returns the record fields BeginTurn fills when the record lacks them: the id,
// the start time, c's non-zero fields and its pins.
func blankFields(c Call, now time.Time) map[string]string {
	f := callFields(c)
	maps.Copy(f, pinFields(c)) // the owner among them
	if _, ok := f[fieldStartedAt]; !ok {
		f[fieldStartedAt] = strconv.FormatInt(now.UnixMilli(), 10)
	}
	return f
}

// pinFields returns the record fields of c that are written only while unset.
func pinFields(c Call) map[string]string {
	f := make(map[string]string, 4)
	if c.Owner != "" {
		f[fieldOwner] = c.Owner
	}
	if c.LineID != "" {
		f[fieldLineID] = c.LineID
	}
	if c.Agent != "" {
		f[fieldAgent] = c.Agent
	}
	if c.PromptVersion != "" {
		f[fieldPromptVersion] = c.PromptVersion
	}
	return f
}

// callerKey is the hash under which SeenCaller remembers a caller: the number itself is
// personal data and never needs to be read back.
func callerKey(lineID, number string) string {
	sum := sha256.Sum256([]byte(lineID + "\x00" + number))
	return hex.EncodeToString(sum[:12])
}

// parseCall decodes a record hash. Unknown fields are ignored, so an older replica can read
// what a newer one wrote.
func parseCall(id string, f map[string]string) (Call, error) {
	c := Call{
		ID:        id,
		LineID:    f[fieldLineID],
		From:      f[fieldFrom],
		To:        f[fieldTo],
		Direction: f[fieldDirection],
		Status:    f[fieldStatus],
		Returning: f[fieldReturning] == "1",

		Agent:         f[fieldAgent],
		PromptVersion: f[fieldPromptVersion],
		Owner:         f[fieldOwner],
	}
	var err error
	if c.StartedAt, err = parseMillis(f[fieldStartedAt]); err != nil {
		return Call{}, fmt.Errorf("decode call %s %s: %w", id, fieldStartedAt, err)
	}
	if c.EndedAt, err = parseMillis(f[fieldEndedAt]); err != nil {
		return Call{}, fmt.Errorf("decode call %s %s: %w", id, fieldEndedAt, err)
	}
	if v := f[fieldDuration]; v != "" {
		if c.Duration, err = strconv.ParseFloat(v, 64); err != nil {
			return Call{}, fmt.Errorf("decode call %s %s: %w", id, fieldDuration, err)
		}
	}
	return c, nil
}

// parseMillis decodes Unix milliseconds; "" is the zero time.
func parseMillis(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms).UTC(), nil
}

// encodeEntries returns each entry as JSON, the form history lists hold.
func encodeEntries(callID string, entries []Entry) ([]string, error) {
	out := make([]string, len(entries))
	for i, e := range entries {
		b, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("encode entry for call %s: %w", callID, err)
		}
		out[i] = string(b)
	}
	return out, nil
}

// decodeState builds a State from a record hash and a raw history list. It reports
// ErrNotFound when both are empty.
func decodeState(callID string, rec map[string]string, hist []string) (State, error) {
	if len(rec) == 0 && len(hist) == 0 {
		return State{}, ErrNotFound
	}
	c, err := parseCall(callID, rec)
	if err != nil {
		return State{}, err
	}
	turns := 0
	if v := rec[fieldTurns]; v != "" {
		if turns, err = strconv.Atoi(v); err != nil {
			return State{}, fmt.Errorf("decode call %s %s: %w", callID, fieldTurns, err)
		}
	}
	log, err := decodeEntries(callID, hist)
	if err != nil {
		return State{}, err
	}
	return State{Call: c, History: Fold(log), Turns: turns}, nil
}

// decodeEntries decodes JSON entries, as history lists and turn logs hold them.
func decodeEntries(callID string, raw []string) ([]Entry, error) {
	out := make([]Entry, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal([]byte(r), &out[i]); err != nil {
			return nil, fmt.Errorf("decode history of call %s entry %d: %w", callID, i, err)
		}
	}
	return out, nil
}

// turnKey is the key of ref's claim and log within its call: the line id's length first,
// so no line and event ids run together into another pair's key.
func turnKey(ref TurnRef) string {
	return strconv.Itoa(len(ref.Line)) + ":" + ref.Line + ":" + ref.Event
}

// tailStart is the index LRANGE starts at for the last tail entries (0: all of them).
func tailStart(tail int) int64 {
	if tail <= 0 {
		return 0
	}
	return -int64(tail)
}

// encodeSMS returns s as JSON, the form SMS lists hold.
func encodeSMS(lineID string, s SMS) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode sms for line %s: %w", lineID, err)
	}
	return string(b), nil
}

// newToken returns a fresh lease token: 26 random base32 characters (130 bits).
func newToken() string { return rand.Text() }
