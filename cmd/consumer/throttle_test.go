package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/azproxy"
	"github.com/aks-edw/aks-edw/harness/itest"
	"github.com/aks-edw/aks-edw/harness/procs"
)

// Azure's per-queue target (2,000 messages/s), scaled down to what Azurite
// sustains here: 4 consumers that do about 180 msg/s together at 10 ms
// against a limit of 60 queue requests/s (headroom for a loaded CI machine, where
// they attempted only 80/s), which the proxy enforces with
// Azure's 503 ServerBusy.
func TestThrottledConsumersKeepToTheLimitAndLoseNothing(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, tbl)
	const n, replicas, limit = 600, 4, 60.0
	e.Produce(t, q, "-count", fmt.Sprint(n), "-concurrency", "8", "-msg", "throttled")

	p, err := azproxy.New(azproxy.Options{RTT: 10 * time.Millisecond, QueueRate: limit})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	qu, err := p.Listen(azproxy.Queue, fmt.Sprintf("http://127.0.0.1:%d", e.Azurite.QueuePort))
	require.NoError(t, err)
	tu, err := p.Listen(azproxy.Table, fmt.Sprintf("http://127.0.0.1:%d", e.Azurite.TablePort))
	require.NoError(t, err)
	env := procs.Env(storage.EnvConnectionString+"="+e.Azurite.ConnectionStringVia(qu, tu),
		storage.EnvQueueName+"="+q, storage.EnvTableName+"="+tbl, "CONSUMER_CONCURRENCY=1")
	ctx := itest.Ctx(t, 2*time.Minute)
	var cons []*procs.Consumer
	for range replicas {
		cons = append(cons, e.StartConsumer(t, env))
	}
	for _, k := range cons {
		_, err := k.WaitReady(ctx, 15*time.Second)
		require.NoError(t, err)
	}

	// The served rate while the backlog lasts: from 10% to 90% of the
	// messages gone (the tail, when the last messages sit in backoff, is
	// left out).
	var t10, t90 time.Time
	var c10, c90 azproxy.Counts
	itest.Eventually(t, 90*time.Second, func() (bool, string) {
		d, err := storage.Depth(ctx, c.Queue)
		if err != nil {
			return false, err.Error()
		}
		if t10.IsZero() && d <= n-n/10 {
			t10, c10 = time.Now(), p.Counts()
		}
		if t90.IsZero() && d <= n/10 {
			t90, c90 = time.Now(), p.Counts()
		}
		return d == 0, fmt.Sprintf("queue depth %d", d)
	})
	window := c90.Sub(c10)
	served := float64(window.Served("queue/")) / t90.Sub(t10).Seconds()
	attempted := float64(window.Except("queue/properties").Total()-window.Served("table/")) / t90.Sub(t10).Seconds()
	total := p.Counts()
	t.Logf("queue requests served %.1f/s (limit %.0f), attempted %.1f/s; %d answered 503 ServerBusy; requests %v",
		served, limit, attempted, total.TotalThrottled(), total.Requests)
	assert.InDelta(t, limit, served, limit/10, "the consumers use the queue's capacity: within 10 percent of the limit")
	assert.Positive(t, total.TotalThrottled(), "the limit was reached")
	// Backing off: without it each of the 4 consumers retries at once, every
	// round trip, and the attempts run at several times the limit.
	assert.Less(t, attempted, 2*limit, "throttled requests are retried with backoff, not at once")

	storedOnce(t, c, n)
	assert.Equal(t, 0, depth(t, c.Poison), "throttling never poisons a message")
	var counted, outages float64
	for _, k := range cons {
		m, err := k.Metrics(ctx)
		require.NoError(t, err)
		for name, v := range m {
			if strings.HasPrefix(name, "consumer_storage_throttled_total") {
				counted += v
			}
		}
		outages += m["consumer_storage_outages_total"]
		assert.True(t, k.Ready(ctx), "throttling is not an outage: ready throughout")
	}
	assert.EqualValues(t, p.Counts().TotalThrottled(), counted, "consumer_storage_throttled_total counts every 503")
	assert.Zero(t, outages, "throttling never pauses the consumer as an outage")
	for _, k := range cons {
		require.NoError(t, k.Signal(syscall.SIGTERM))
		code, err := k.Wait(15 * time.Second)
		require.NoError(t, err)
		assert.Equal(t, 0, code)
	}
}
