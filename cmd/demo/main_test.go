package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLongRunKeepsAzuriteAnswering runs the demo's whole load, on the embedded
// Azurite, for more than three minutes: 36,000 messages at 200 msg/s, with the
// producer's, the consumer's and the demo's own polling. Azurite's in-memory
// queue stopped answering for a minute or more once a minute at this rate (its
// queue garbage collector, harness/azurite); every message must be stored once,
// and Azurite must answer every depth query of the run within the stall limit
// and still answer at the end (the summary reads the table and the poison
// queue back).
func TestLongRunKeepsAzuriteAnswering(t *testing.T) {
	const messages, rate = 36000, 200
	o := options{
		messages: messages, rate: rate, producerConcurrency: 8, concurrency: 16, batch: 32, malformed: 3,
		queue: "longrun", table: "longrun",
		timeout: 12 * time.Minute, // 3 minutes at the nominal rate; a loaded CI machine may be slower
		stall:   45 * time.Second,
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 13*time.Minute)
	defer cancel()
	res, err := run(ctx, o, &out)
	require.NoError(t, err, "the demo must complete; its output:\n%s", tail(out.String(), 60))

	assert.GreaterOrEqual(t, res.busy, 3*time.Minute, "the load lasted at least three minutes")
	assert.Equal(t, messages, res.stored, "one entity per message")
	assert.Zero(t, res.missing, "no message missing")
	assert.Zero(t, res.duplicates, "no message stored twice")
	assert.Equal(t, 3, res.poisoned, "only the malformed messages poisoned")
	assert.Less(t, res.longestSilence, 15*time.Second,
		"Azurite answered the once-a-second depth query at least every 15 s; the longest silence was %s", res.longestSilence)
	for _, name := range []string{"consumer", "producer", "azurite queue", "azurite table"} {
		assert.Positive(t, res.peakRSS[name], "peak RSS of the %s", name)
	}
	assert.Contains(t, out.String(), "over time", "the summary shows the throughput over time")
	t.Logf("longest silence %s, busy %s; summary:\n%s", res.longestSilence, res.busy, out.String()[strings.LastIndex(out.String(), "summary"):])
}

func TestTimeline(t *testing.T) {
	var samples []sample
	for i := 1; i <= 95; i++ {
		s := sample{at: time.Duration(i) * time.Second, processed: float64(100 * i), answer: 2 * time.Millisecond, answered: true, azuriteRSS: int64(i) << 20}
		if i >= 31 && i <= 40 { // ten seconds without progress or answers
			s.processed, s.answer, s.answered = 3000, probeTimeout, false
		}
		samples = append(samples, s)
	}
	rows := timeline(samples, 4)
	require.Len(t, rows, 5, "a header and four 30 s windows for 95 s at most 4 rows:\n%s", strings.Join(rows, "\n"))
	assert.Regexp(t, `^0s-30s\s+100\s+30 MiB\s+2ms$`, rows[1])
	assert.Regexp(t, `^30s-1m0s\s+100\s+60 MiB\s+none in 5s$`, rows[2], "the silent window says so")
	assert.Regexp(t, `^1m30s-1m35s\s+100\s+95 MiB\s+2ms$`, rows[4], "the last window ends with the run")
}

func TestDefaultTimeoutGrowsWithMessages(t *testing.T) {
	assert.Equal(t, 5*time.Minute+20*time.Second, defaultTimeout(2000))
	assert.Equal(t, 5*time.Minute+1000*time.Second, defaultTimeout(100000))
}

func TestRunRefusesBadFlags(t *testing.T) {
	good := options{messages: 1, producerConcurrency: 1, concurrency: 1, batch: 1, timeout: time.Minute, stall: time.Minute}
	for name, mutate := range map[string]func(*options){
		"batch over 32":      func(o *options) { o.batch = 33 },
		"no messages":        func(o *options) { o.messages = 0 },
		"stall within probe": func(o *options) { o.stall = probeTimeout },
		"no timeout":         func(o *options) { o.timeout = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			o := good
			mutate(&o)
			_, err := run(context.Background(), o, &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "invalid flags")
		})
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
