package prompts

import (
	"fmt"
	"math"
	"strings"
	"unicode"
)

// Files in the prompts directory name the variables that hold secrets; they never hold a
// secret themselves, and a value that looks like one is refused without being echoed in
// the error (which is logged, and printed by `brain prompts check`).

// Thresholds of looksLikeSecret.
const (
	// minHexSecret: a run of hex digits this long is a key or a digest (Saperly's signing
	// secrets are 64 hex characters).
	minHexSecret = 32
	// minTokenLen and the entropies: a long unbroken string of letters and digits that looks
	// random, like an API token, rather than a name, a word or a sentence.
	minTokenLen      = 24
	minTokenEntropy  = 4.3 // bits per character
	minMixedEntropy  = 4.0 // with lower case, upper case and digits all present
	secretValueError = "looks like a secret (%s); secrets never live in these files: put it in an environment variable and name that variable here"
)

// looksLikeSecret reports whether s looks like a secret rather than a name or a text, and
// says why in words that do not repeat it.
func looksLikeSecret(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) >= minHexSecret && isHex(s) {
		return fmt.Sprintf("a string of %d hex characters", len(s)), true
	}
	if len(s) < minTokenLen || strings.ContainsFunc(s, unicode.IsSpace) ||
		strings.Contains(s, "://") || strings.Contains(s, "@") {
		return "", false
	}
	var lower, upper, digit bool
	for _, r := range s {
		switch {
		case unicode.IsLower(r):
			lower = true
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsDigit(r):
			digit = true
		}
	}
	if !digit || !(lower || upper) {
		return "", false
	}
	e := entropy(s)
	if e >= minTokenEntropy || (lower && upper && e >= minMixedEntropy) {
		return "a long random-looking token", true
	}
	return "", false
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// entropy is the Shannon entropy of s's characters, in bits per character.
func entropy(s string) float64 {
	counts := make(map[rune]int)
	n := 0
	for _, r := range s {
		counts[r]++
		n++
	}
	e := 0.0
	for _, c := range counts {
		p := float64(c) / float64(n)
		e -= p * math.Log2(p)
	}
	return e
}
