package agent

// MaskNumber hides a phone number for logs, keeping the country prefix and the last two
// digits ("+1415*****23"), which is enough to tell calls apart without identifying a caller.
func MaskNumber(n string) string {
	if len(n) <= 4 {
		if n == "" {
			return ""
		}
		return "***"
	}
	keep := 2
	if n[0] == '+' {
		keep = 4
	}
	b := []byte(n)
	for i := keep; i < len(b)-2; i++ {
		if b[i] >= '0' && b[i] <= '9' {
			b[i] = '*'
		}
	}
	return string(b)
}
