package agent

import "testing"

// RecordedTestCall assembles and encodes, as the recorder writes it, the call fullCall
// describes (two replicas, every kind of turn), with or without the caller's text.
func RecordedTestCall(t *testing.T, keepText bool) []byte {
	t.Helper()
	c := newCallRig()
	a, b := fullCall(c)
	sc, ok := assembleScript(c.callID, append(stored(t, keepText, a), stored(t, keepText, b)...))
	if !ok {
		t.Fatal("the test call assembled to nothing")
	}
	data, err := sc.encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}
