package procs

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseMetrics(t *testing.T) {
	m := ParseMetrics(`# HELP consumer_messages_processed_total Messages stored.
# TYPE consumer_messages_processed_total counter
consumer_messages_processed_total 42
consumer_messages_poisoned_total{reason="malformed"} 3
consumer_message_latency_seconds_bucket{le="0.005"} 1
consumer_message_latency_seconds_sum 1.5e-02
garbage line
`)
	assert.Equal(t, 42.0, m["consumer_messages_processed_total"])
	assert.Equal(t, 3.0, m[`consumer_messages_poisoned_total{reason="malformed"}`])
	assert.Equal(t, 1.0, m[`consumer_message_latency_seconds_bucket{le="0.005"}`])
	assert.InDelta(t, 0.015, m["consumer_message_latency_seconds_sum"], 1e-9)
	assert.Len(t, m, 4)
}

func TestPeakRSSOfThisProcess(t *testing.T) {
	rss, err := PeakRSS(os.Getpid())
	require.NoError(t, err)
	assert.Greater(t, rss, int64(1<<20))
	_, err = PeakRSS(1 << 30)
	assert.Error(t, err)
}

func TestEnvIsMinimal(t *testing.T) {
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "leak")
	env := Env("A=1")
	assert.Contains(t, env, "A=1")
	for _, kv := range env {
		assert.NotContains(t, kv, "leak")
	}
}

func TestCPUTimeOfThisProcess(t *testing.T) {
	// Burn CPU until the kernel's tick-grained counter moves (a fixed loop was sometimes done
	// before the first 10 ms tick on a loaded machine), bounded in time.
	deadline := time.Now().Add(5 * time.Second)
	var d time.Duration
	for x := 0; time.Now().Before(deadline); x++ {
		if x%1_000_000 == 0 {
			var err error
			d, err = CPUTime(os.Getpid())
			require.NoError(t, err)
			if d > 0 {
				break
			}
		}
	}
	assert.Positive(t, d, "CPU time of a process that has been computing")
}
