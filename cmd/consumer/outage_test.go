package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/consumer"
	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/azurite"
	"github.com/aks-edw/aks-edw/harness/itest"
	"github.com/aks-edw/aks-edw/harness/procs"
)

// Storage faults (issue 9): the poison queue means "this message is bad", never "storage was sick".

const (
	poisonedR        = `consumer_messages_poisoned_total{reason="rejected"}`
	storageAvailable = "consumer_storage_available"
)

func validText(t *testing.T, s string) string {
	t.Helper()
	text, err := message.New(s, time.Now()).Encode()
	require.NoError(t, err)
	return text
}

func stopConsumer(t *testing.T, cons *procs.Consumer) {
	t.Helper()
	require.NoError(t, cons.Signal(syscall.SIGTERM))
	code, err := cons.Wait(20 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
}

func noPoison(t *testing.T, cons *procs.Consumer, c *storage.Clients) {
	t.Helper()
	m, err := cons.Metrics(itest.Ctx(t, 10*time.Second))
	require.NoError(t, err)
	for _, series := range []string{poisonedM, poisonedO, poisonedR} {
		assert.Zero(t, m[series], series)
	}
	assert.Equal(t, 0, depth(t, c.Poison), "no valid message in the poison queue")
}

// The table disappears for much longer than the visibility timeout times the delivery limit: the
// consumer pauses instead of burning deliveries, reports not-ready after the grace period, and
// stores every message once when the table is back. Nothing is poisoned.
func TestTableOutagePoisonsNothing(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, tbl)
	ctx := itest.Ctx(t, 120*time.Second)
	// Without the pause, 2 s leases and 2 deliveries would poison every message in 4-6 s.
	cons := e.StartConsumer(t, e.ConsumerEnv(q, tbl, "CONSUMER_VISIBILITY_TIMEOUT=2s", "CONSUMER_MAX_DELIVERIES=2",
		"CONSUMER_BATCH_SIZE=16", "CONSUMER_MAX_POLL_INTERVAL=100ms"))
	_, err := cons.WaitReady(ctx, 15*time.Second)
	require.NoError(t, err)

	_, err = c.Table.Delete(ctx, nil)
	require.NoError(t, err, "delete the table")
	const n = 200
	e.Produce(t, q, "-count", fmt.Sprint(n), "-concurrency", "8", "-msg", "outage")

	_, err = cons.WaitMetric(ctx, storageAvailable, 15*time.Second, func(v float64) bool { return v == 0 })
	require.NoError(t, err, "the consumer notices the outage")
	outageAt := time.Now()
	itest.Eventually(t, consumer.OutageGrace+5*time.Second, func() (bool, string) {
		return !cons.Ready(ctx), "still ready during the outage"
	})
	// outageAt is when the test saw the outage, up to a poll later than the consumer did: the
	// bound is loose, but a consumer that turned not-ready at once would fail it.
	assert.GreaterOrEqual(t, time.Since(outageAt), consumer.OutageGrace/2, "not-ready only after the grace period")
	time.Sleep(16*time.Second - time.Since(outageAt)) // the outage lasts ~16 s: eight leases
	assert.False(t, cons.Ready(ctx), "not ready while the table is missing")
	assert.Positive(t, depth(t, c.Queue), "messages wait on the work queue")
	noPoison(t, cons, c)

	require.NoError(t, storage.EnsureTable(ctx, c.Table), "recreate the table")
	_, err = cons.WaitReady(ctx, 20*time.Second)
	require.NoError(t, err, "ready again once the table is back")
	itest.Eventually(t, 60*time.Second, func() (bool, string) {
		d, err := storage.Depth(ctx, c.Queue)
		return err == nil && d == 0, fmt.Sprintf("queue depth %d (%v)", d, err)
	})
	storedOnce(t, c, n)
	noPoison(t, cons, c)
	_, paused := cons.FindLog("storage unavailable: pausing dequeues until it answers again; no message is failed for it")
	assert.True(t, paused, "the outage is logged")
	_, resumed := cons.FindLog("storage available again: resuming")
	assert.True(t, resumed)
	m, err := cons.Metrics(ctx)
	require.NoError(t, err)
	assert.LessOrEqual(t, m["consumer_messages_dequeued_total"], float64(2*n), "dequeuing paused: at most one extra delivery per message")
	stopConsumer(t, cons)
}

// One message whose entity the table refuses for good (a property over the 64 KiB limit) goes
// to the poison queue at once, with the reason; its 31 batch-mates are stored once and deleted.
func TestOneRejectedEntitySpoilsNothingElse(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, tbl)
	ctx := itest.Ctx(t, 60*time.Second)
	big := validText(t, strings.Repeat("x", 40000))
	var texts []string
	for i := range 31 {
		texts = append(texts, validText(t, fmt.Sprintf("batch-mate %d", i)))
	}
	texts = append(texts[:13], append([]string{big}, texts[13:]...)...)
	for _, text := range texts {
		_, err := c.Queue.EnqueueMessage(ctx, text, nil)
		require.NoError(t, err)
	}
	cons := e.StartConsumer(t, e.ConsumerEnv(q, tbl, "CONSUMER_BATCH_SIZE=32"))
	_, err := cons.WaitMetric(ctx, poisonedR, 20*time.Second, func(v float64) bool { return v >= 1 })
	require.NoError(t, err, "the oversized message is poisoned as rejected")
	_, err = cons.WaitMetric(ctx, processed, 20*time.Second, func(v float64) bool { return v >= 31 })
	require.NoError(t, err)

	storedOnce(t, c, 31)
	records := poisonRecords(t, c)
	require.Len(t, records, 1, "only the bad message is poisoned")
	assert.Equal(t, "rejected", records[0].Reason)
	assert.Equal(t, big, records[0].body, "the original text, unchanged")
	assert.NotEmpty(t, records[0].Detail, "the table's refusal is recorded")
	assert.Equal(t, 0, depth(t, c.Queue))
	m, err := cons.Metrics(ctx)
	require.NoError(t, err)
	assert.Equal(t, 32.0, m["consumer_messages_dequeued_total"], "each message dequeued once: nothing was redelivered")
	assert.Zero(t, m[poisonedO])
	log, ok := cons.FindLog("message moved to the poison queue")
	require.True(t, ok)
	assert.Equal(t, "rejected", log["reason"])
	stopConsumer(t, cons)
}

// The poison queue deleted after start is created again on first use, and bad messages end in it.
func TestPoisonQueueRecreatedWhenMissing(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, tbl)
	ctx := itest.Ctx(t, 60*time.Second)
	cons := e.StartConsumer(t, e.ConsumerEnv(q, tbl))
	_, err := cons.WaitReady(ctx, 15*time.Second)
	require.NoError(t, err)
	_, err = c.Poison.Delete(ctx, nil)
	require.NoError(t, err, "delete the poison queue")

	bad := []string{"not json", `{"msg":"no stamp"}`, `{"srcStamp":"2025-01-02 03:04:05"}`}
	for _, text := range bad {
		_, err := c.Queue.EnqueueMessage(ctx, text, nil)
		require.NoError(t, err)
	}
	_, err = cons.WaitMetric(ctx, poisonedM, 20*time.Second, func(v float64) bool { return v >= float64(len(bad)) })
	require.NoError(t, err, "bad messages are poisoned although the poison queue was gone")
	var bodies []string
	for _, r := range poisonRecords(t, c) {
		bodies = append(bodies, r.body)
	}
	assert.ElementsMatch(t, bad, bodies, "in the recreated poison queue")
	assert.Equal(t, 0, depth(t, c.Queue), "no loop on the work queue")
	_, recreated := cons.FindLog("poison queue missing: creating it again")
	assert.True(t, recreated)
	stopConsumer(t, cons)
}

// A SAS connection string's signature never reaches the output, although the SDK's transport
// errors carry the full request URL, query included: the queue refuses the (invalid) signature
// with 403 and nothing listens on the table endpoint, so the consumer logs warnings with such
// errors for as long as it runs.
func TestSASSignatureNeverLogged(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadPort := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	const sig = "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
	conn := fmt.Sprintf("AccountName=%s;QueueEndpoint=http://127.0.0.1:%d/%s;TableEndpoint=http://127.0.0.1:%d/%s;SharedAccessSignature=sv=2023-01-03&ss=qt&srt=sco&sp=rwdlacup&se=2099-01-01T00:00:00Z&sig=%s",
		azurite.AccountName, e.Azurite.QueuePort, azurite.AccountName, deadPort, azurite.AccountName, sig)
	cons := e.StartConsumer(t, procs.Env(storage.EnvConnectionString+"="+conn, storage.EnvQueueName+"="+q,
		storage.EnvTableName+"="+tbl, "LOG_LEVEL=debug"))
	itest.Eventually(t, 20*time.Second, func() (bool, string) {
		_, ok := cons.FindLog("storage not reachable yet")
		return ok, "no warning logged yet"
	})
	time.Sleep(2 * time.Second) // a few more probe rounds
	require.NoError(t, cons.Signal(syscall.SIGTERM))
	_, err = cons.Wait(15 * time.Second)
	require.NoError(t, err)
	out := cons.Stdout() + cons.Stderr()
	assert.NotContains(t, out, sig, "the SAS signature leaked into the output")
	assert.NotContains(t, out, "c2VjcmV0LXNpZ25hdHVyZQ", "no part of the signature either")
	assert.Contains(t, out, "sig=REDACTED", "the URL was logged, redacted")
	assert.Contains(t, out, fmt.Sprintf("127.0.0.1:%d", deadPort), "the table requests went to the connection string's endpoint")
}

// lossyEnqueueProxy forwards every request to the queue service but, for every third enqueue,
// drops storage's answer and returns a 500: the message is on the queue, the producer does not
// know it and sends again.
func lossyEnqueueProxy(target string, lost *atomic.Int64) http.Handler {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	var enqueues atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/messages") && enqueues.Add(1)%3 == 0 {
			rp.ServeHTTP(&discard{header: http.Header{}}, r)
			lost.Add(1)
			storageError(w, http.StatusInternalServerError, "InternalError")
			return
		}
		rp.ServeHTTP(w, r)
	})
}

// A retried send after a lost enqueue response puts the message on the queue twice; the
// producer's idempotency id makes the consumer store it once.
func TestProducerRetryAfterLostResponseStoresOneEntity(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, tbl)
	var lost atomic.Int64
	qp := serveProxy(t, lossyEnqueueProxy(fmt.Sprintf("http://127.0.0.1:%d", e.Azurite.QueuePort), &lost))
	conn := fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;QueueEndpoint=http://127.0.0.1:%d/%s",
		azurite.AccountName, azurite.AccountKey, qp, azurite.AccountName)
	const n = 60
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.Bins.Producer, "-count", fmt.Sprint(n), "-concurrency", "4", "-msg", "lossy")
	cmd.Env = procs.Env(storage.EnvConnectionString+"="+conn, storage.EnvQueueName+"="+q)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "producer: %s", out)
	require.Positive(t, lost.Load(), "responses were dropped")
	queued := depth(t, c.Queue)
	assert.Equal(t, n+int(lost.Load()), queued, "every lost response became a second copy on the queue")

	cons := e.StartConsumer(t, e.ConsumerEnv(q, tbl))
	itest.Eventually(t, 30*time.Second, func() (bool, string) {
		d, err := storage.Depth(ctx, c.Queue)
		return err == nil && d == 0, fmt.Sprintf("queue depth %d (%v)", d, err)
	})
	ents := storedOnce(t, c, n)
	for _, ent := range ents {
		assert.NotEmpty(t, ent.ID, "the producer sets an idempotency id")
	}
	noPoison(t, cons, c)
	stopConsumer(t, cons)
}
