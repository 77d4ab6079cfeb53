package loadgen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/callbrain/callbrain/test/callscript"
	"github.com/callbrain/callbrain/test/saperly"
)

// ScriptOptions tune how ScriptPlayer plays scripts.
type ScriptOptions struct {
	// Line calls this line whatever the scripts say ("" keeps each script's line_id, or the
	// runner's default line).
	Line string
	// TurnTimeout bounds each delivery (DefaultTurnBudget + 15 s when 0): past it the
	// delivery is a timeout.
	TurnTimeout time.Duration
}

// ScriptPlayer plays call n with script order[n % len(order)], where order spreads the
// scripts by weight (Pick; nil weights play them in turn), through the call-script runner
// of test/callscript with client c. Each call gets a fresh call id.
func ScriptPlayer(c *saperly.Client, scripts []*callscript.Script, weights []int, o ScriptOptions) (Player, error) {
	if len(scripts) == 0 {
		return nil, errors.New("no scripts")
	}
	if weights == nil {
		weights = make([]int, len(scripts))
		for i := range weights {
			weights[i] = 1
		}
	}
	if len(weights) != len(scripts) {
		return nil, fmt.Errorf("%d weights for %d scripts", len(weights), len(scripts))
	}
	order, err := Pick(weights)
	if err != nil {
		return nil, err
	}
	if o.TurnTimeout == 0 {
		o.TurnTimeout = DefaultTurnBudget + 15*time.Second
	}
	return func(ctx context.Context, n int, report func(Delivery)) error {
		return playScript(ctx, c, scripts[order[n%len(order)]], o, report)
	}, nil
}

// playScript plays one script as one call and reports each delivery.
func playScript(ctx context.Context, c *saperly.Client, s *callscript.Script, o ScriptOptions, report func(Delivery)) error {
	return errors.New("the call-script runner is not merged yet")
}
