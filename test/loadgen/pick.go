package loadgen

import (
	"errors"
	"fmt"
)

// MaxWeight bounds one weight of Pick, so its cycle stays small.
const MaxWeight = 1000

// Pick returns the order in which weighted items are played, one cycle of it: item i
// appears weights[i] times, spread out as evenly as smooth weighted round-robin spreads
// them (weights 3 and 1 give 0 0 1 0, not 0 0 0 1). Call n plays cycle[n % len(cycle)].
func Pick(weights []int) ([]int, error) {
	if len(weights) == 0 {
		return nil, errors.New("nothing to pick from")
	}
	total := 0
	for i, w := range weights {
		if w < 1 || w > MaxWeight {
			return nil, fmt.Errorf("weight %d of item %d: want 1 to %d", w, i+1, MaxWeight)
		}
		total += w
	}
	cycle := make([]int, 0, total)
	current := make([]int, len(weights))
	for range total {
		best := 0
		for i, w := range weights {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		cycle = append(cycle, best)
	}
	return cycle, nil
}
