package prompts_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/prompts"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestRender compares rendered prompts with testdata/*.golden; -update rewrites them after an
// intended change.
func TestRender(t *testing.T) {
	t.Parallel()
	examples, err := prompts.Load("examples")
	require.NoError(t, err)
	fixtures, err := prompts.Load(filepath.Join("testdata", "agents"))
	require.NoError(t, err)
	everything, ok := fixtures.Agent("everything")
	require.True(t, ok)
	rec, recLine := examples.ForLine("5f0c8e2a-1b3d-4c5e-9f7a-2d4b6c8e0a1f")
	orders, ordersLine := examples.ForLine("9d1e7b3c-2a4f-4e6d-8b0c-5f7a9e1d3c2b")

	summer := time.Date(2026, time.July, 4, 23, 30, 0, 0, time.UTC) // 4:30 PM in Los Angeles
	tests := []struct {
		name  string
		agent *prompts.Agent
		call  prompts.CallData
	}{
		{name: "default", agent: examples.Default(), call: prompts.Sample("", nil)},
		{name: "default_returning", agent: examples.Default(), call: func() prompts.CallData {
			c := prompts.Sample("", nil)
			c.Returning = true
			return c
		}()},
		{name: "receptionist", agent: rec, call: prompts.Sample(recLine.ID, recLine.Vars)},
		{name: "receptionist_returning", agent: rec, call: func() prompts.CallData {
			c := prompts.Sample(recLine.ID, recLine.Vars)
			c.Returning = true
			return c
		}()},
		{name: "orders", agent: orders, call: prompts.Sample(ordersLine.ID, ordersLine.Vars)},
		{name: "fields_inbound", agent: everything, call: prompts.Sample("L1", nil)},
		{name: "fields_outbound", agent: everything, call: prompts.CallData{
			CallID: "c-2", LineID: "L2", Caller: "+15555550100", Called: "+15555550199", Direction: "outbound",
			Returning: true, Vars: map[string]string{"shop": "Line Shop", "note": "Closed on the 4th."}, Now: summer,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.agent.Render(tt.call)
			require.NoError(t, err)
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got+"\n"), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test ./prompts -run TestRender -update to create it")
			assert.Equal(t, string(want), got+"\n")
		})
	}
}

func TestRenderNow(t *testing.T) {
	t.Parallel()
	lib, err := prompts.Load(filepath.Join("testdata", "agents"))
	require.NoError(t, err)
	a, ok := lib.Agent("everything")
	require.True(t, ok)
	got, err := a.Render(prompts.CallData{}) // no Now: the call is now
	require.NoError(t, err)
	assert.Contains(t, got, "Zone: America/Los_Angeles.")
	assert.NotContains(t, got, "Year: 1.", "a zero Now is replaced by the current time")
}

func TestRenderNilAgent(t *testing.T) {
	t.Parallel()
	var a *prompts.Agent
	_, err := a.Render(prompts.Sample("", nil))
	require.Error(t, err)
}

// TestRenderConcurrent renders one agent from many goroutines: calls share agents.
func TestRenderConcurrent(t *testing.T) {
	t.Parallel()
	lib, err := prompts.Load("examples")
	require.NoError(t, err)
	a, ln := lib.ForLine("5f0c8e2a-1b3d-4c5e-9f7a-2d4b6c8e0a1f")
	want, err := a.Render(prompts.Sample(ln.ID, ln.Vars))
	require.NoError(t, err)
	done := make(chan string)
	for range 8 {
		go func() {
			got, _ := a.Render(prompts.Sample(ln.ID, ln.Vars))
			done <- got
		}()
	}
	for range 8 {
		assert.Equal(t, want, <-done)
	}
}
