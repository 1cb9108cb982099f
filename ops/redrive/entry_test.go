package redrive

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/message"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// record is the consumer's poison record of body, from queue.
func record(t *testing.T, queue string, reason message.Decision, id, body string, at time.Time) string {
	t.Helper()
	text, err := message.NewPoisonRecord(queue, id, 6, body, reason, "why", at).Encode()
	require.NoError(t, err)
	return text
}

func TestClassify(t *testing.T) {
	big := strings.Repeat("x", message.MaxQueueMessageBytes-100) // fits a queue message, not a record
	b64 := base64.StdEncoding.EncodeToString([]byte("bytes \x01"))
	cases := []struct {
		name, text, reason, original, id, problem string
	}{
		{"record", record(t, "work", message.PoisonMalformed, "m1", `{"msg":"x"}`, t0), ReasonMalformed, `{"msg":"x"}`, "m1", ""},
		{"over delivered", record(t, "work", message.PoisonOverDelivered, "m2", "a\tb\n", t0), ReasonOverDelivered, "a\tb\n", "m2", ""},
		{"base64 body", `{"reason":"rejected","queue":"work","messageId":"m3","dequeueCount":1,"poisonedAt":"2026-12-01 10:00:00.000000","bodyBase64":"` + b64 + `"}`, ReasonRejected, "bytes \x01", "m3", ""},
		{"too large, unchanged", big, ReasonTooLarge, big, "pid", ""},
		{"small plain text", "hello", ReasonUnparseable, "", "pid", "neither a poison record nor a text too large"},
		{"bad base64", `{"reason":"rejected","queue":"work","messageId":"m4","poisonedAt":"2026-12-01 10:00:00","bodyBase64":"%%%"}`, ReasonUnparseable, "", "pid", "bodyBase64"},
		{"unknown reason", `{"reason":"tired","queue":"work","messageId":"m5","poisonedAt":"2026-12-01 10:00:00","body":"x"}`, ReasonUnparseable, "", "pid", `unknown reason "tired"`},
		{"no body", `{"reason":"rejected","queue":"work","messageId":"m6","poisonedAt":"2026-12-01 10:00:00"}`, ReasonUnparseable, "", "pid", "without its reason or body"},
		{"no queue", `{"reason":"rejected","messageId":"m7","poisonedAt":"2026-12-01 10:00:00","body":"x"}`, ReasonUnparseable, "", "pid", "names no queue"},
		{"bad poisonedAt", `{"reason":"rejected","queue":"work","messageId":"m8","poisonedAt":"yesterday","body":"x"}`, ReasonUnparseable, "", "pid", "poisonedAt"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := Classify("pid", t0, c.text, "work")
			assert.Equal(t, c.reason, e.Reason)
			assert.Equal(t, c.original, e.Original)
			assert.Equal(t, c.id, e.ID())
			if c.problem == "" {
				assert.Empty(t, e.Problem)
				assert.True(t, e.Movable())
			} else {
				assert.Contains(t, e.Problem, c.problem)
				assert.False(t, e.Movable())
			}
		})
	}
}

func TestSendable(t *testing.T) {
	for _, ok := range []string{"", "plain", "tab\tnewline\ncr\r", "ünïcödé ✓ 𝄞", "\uFFFD"} {
		assert.Empty(t, Sendable(ok), "%q", ok)
	}
	assert.Contains(t, Sendable("caf\xe9"), "not valid UTF-8 at byte 3")
	assert.Contains(t, Sendable("nul \x00"), "U+0000 at byte 4")
	assert.Contains(t, Sendable("\uFFFE"), "U+FFFE")
}

func TestSelectorMatch(t *testing.T) {
	mal := Classify("p1", t0, record(t, "work", message.PoisonMalformed, "m1", "x", t0), "work")
	rej := Classify("p2", t0, record(t, "work", message.PoisonRejected, "m2", "y", t0.Add(2*time.Hour)), "work")
	stray := Classify("p3", t0, "hello", "work")
	cases := []struct {
		name string
		sel  Selector
		want []bool // mal, rej, stray
	}{
		{"everything movable", Selector{}, []bool{true, true, false}},
		{"reason", Selector{Reasons: []string{ReasonRejected}}, []bool{false, true, false}},
		{"since", Selector{Since: t0.Add(time.Hour)}, []bool{false, true, false}},
		{"since is inclusive", Selector{Since: t0}, []bool{true, true, false}},
		{"until is exclusive", Selector{Until: t0.Add(2 * time.Hour)}, []bool{true, false, false}},
		{"id", Selector{IDs: map[string]bool{"m2": true}}, []bool{false, true, false}},
		{"poison queue id", Selector{IDs: map[string]bool{"p1": true}}, []bool{true, false, false}},
		{"an unparseable one is never selected", Selector{IDs: map[string]bool{"p3": true}}, []bool{false, false, false}},
		{"all of them at once", Selector{Reasons: []string{ReasonMalformed}, Since: t0, Until: t0.Add(time.Minute), IDs: map[string]bool{"m1": true}}, []bool{true, false, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, []bool{c.sel.Match(mal), c.sel.Match(rej), c.sel.Match(stray)})
		})
	}
}

func TestParseReasons(t *testing.T) {
	got, err := ParseReasons([]string{"rejected,malformed", " rejected ", "too_large"})
	require.NoError(t, err)
	assert.Equal(t, []string{"rejected", "malformed", "too_large"}, got)
	_, err = ParseReasons([]string{"malformed,poisoned"})
	require.Error(t, err)
	assert.Equal(t, `-reason "poisoned": unknown; the reasons are malformed, over_delivered, rejected, too_large`, err.Error())
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-12-01T10:00:00Z":       t0,
		"2026-12-01T11:00:00+01:00":  t0,
		"2026-12-01 10:00:00":        t0,
		"2026-12-01 10:00:00.000000": t0,
		"2026-12-01":                 t0.Add(-10 * time.Hour),
		"36h":                        now.Add(-36 * time.Hour),
	} {
		got, err := ParseTime("-since", in, now)
		require.NoError(t, err, in)
		assert.True(t, want.Equal(got), "%s: %s, want %s", in, got, want)
	}
	for _, bad := range []string{"yesterday", "2026-13-01", "-2h", "0s", ""} {
		_, err := ParseTime("-until", bad, now)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "-until")
	}
}
