package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/itest"
	"github.com/aks-edw/aks-edw/harness/procs"
)

// suite is shared by the tests of this binary: binaries built once; each
// test starts its own Azurite with suite.NewEnv. TestMain fails the run
// (never skips) if Azurite cannot start or the binaries do not build.
var suite *itest.Suite

func TestMain(m *testing.M) { itest.Main(m, &suite) }

const (
	processed = "consumer_messages_processed_total"
	poisonedM = `consumer_messages_poisoned_total{reason="malformed"}`
	poisonedO = `consumer_messages_poisoned_total{reason="over_delivered"}`
)

// storedOnce checks the table holds exactly one entity per expected message
// text and returns the entities.
func storedOnce(t *testing.T, c *storage.Clients, want int) []message.Entity {
	t.Helper()
	ents, err := storage.ListEntities(itest.Ctx(t, 30*time.Second), c.Table)
	require.NoError(t, err)
	require.Len(t, ents, want, "entities in the table")
	texts := map[string]int{}
	for _, e := range ents {
		texts[e.Data]++
		source := e.MessageID
		if e.ID != "" {
			source = "id:" + e.ID
		}
		pk, rk := message.Keys(source)
		assert.Equal(t, pk, e.PartitionKey)
		assert.Equal(t, rk, e.RowKey)
		_, err := message.ParseStamp(e.SrcStamp)
		assert.NoError(t, err)
		_, err = message.ParseStamp(e.DateStamp)
		assert.NoError(t, err)
		assert.GreaterOrEqual(t, e.LatencyMs, 0.0)
	}
	for text, n := range texts {
		assert.Equal(t, 1, n, "message %q stored %d times", text, n)
	}
	require.Len(t, texts, want, "distinct message texts")
	return ents
}

// poisonRecord is one poison queue message decoded: the record and the original text.
type poisonRecord struct {
	message.PoisonRecord
	body string
}

func poisonRecords(t *testing.T, c *storage.Clients) []poisonRecord {
	t.Helper()
	texts, err := storage.PeekTexts(itest.Ctx(t, 10*time.Second), c.Poison)
	require.NoError(t, err)
	var out []poisonRecord
	for _, text := range texts {
		r, body, err := message.DecodePoison(text)
		require.NoError(t, err)
		out = append(out, poisonRecord{r, body})
	}
	return out
}

func depth(t *testing.T, q *azqueue.QueueClient) int {
	t.Helper()
	d, err := storage.Depth(itest.Ctx(t, 10*time.Second), q)
	require.NoError(t, err)
	return d
}

func TestStoresEveryValidMessageOnce(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, tbl)
	const n = 300
	out := e.Produce(t, q, "-count", fmt.Sprint(n), "-concurrency", "8", "-msg", "stored-once")
	require.Contains(t, out, fmt.Sprintf("sent=%d failed=0", n))

	cons := e.StartConsumer(t, e.ConsumerEnv(q, tbl))
	ready, err := cons.WaitReady(itest.Ctx(t, 10*time.Second), 5*time.Second)
	require.NoError(t, err)
	t.Logf("ready %s after process start", ready)
	assert.Less(t, ready, time.Second, "time from process start to /readyz 200")

	_, err = cons.WaitMetric(itest.Ctx(t, 60*time.Second), processed, 50*time.Second, func(v float64) bool { return v >= n })
	require.NoError(t, err)
	storedOnce(t, c, n)
	assert.Equal(t, 0, depth(t, c.Queue), "work queue empty")
	assert.Equal(t, 0, depth(t, c.Poison), "nothing poisoned")

	m, err := cons.Metrics(itest.Ctx(t, 5*time.Second))
	require.NoError(t, err)
	assert.Equal(t, float64(n), m[processed])
	assert.Equal(t, float64(n), m["consumer_message_latency_seconds_count"])
	assert.Zero(t, m[`consumer_messages_failed_total{stage="table"}`]+m[`consumer_messages_failed_total{stage="delete"}`])

	require.NoError(t, cons.Signal(syscall.SIGTERM))
	code, err := cons.Wait(10 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	_, ok := cons.FindLog("drain complete")
	assert.True(t, ok, "drain complete logged")
}

func TestRedeliveryAfterSIGKILLLosesAndDuplicatesNothing(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, tbl)
	const n = 600
	e.Produce(t, q, "-count", fmt.Sprint(n), "-concurrency", "8", "-msg", "crash")
	env := e.ConsumerEnv(q, tbl, "CONSUMER_VISIBILITY_TIMEOUT=2s")

	first := e.StartConsumer(t, env)
	_, err := first.WaitMetric(itest.Ctx(t, 60*time.Second), processed, 50*time.Second, func(v float64) bool { return v >= 100 })
	require.NoError(t, err)
	m, err := first.Metrics(itest.Ctx(t, 5*time.Second))
	require.NoError(t, err)
	first.Kill() // SIGKILL mid-batch: nothing is drained
	t.Logf("killed with %v messages in flight, %v processed", m["consumer_messages_in_flight"], m[processed])
	require.Positive(t, depth(t, c.Queue), "messages left when the consumer died")

	second := e.StartConsumer(t, env)
	itest.Eventually(t, 60*time.Second, func() (bool, string) {
		d, err := storage.Depth(context.Background(), c.Queue)
		return err == nil && d == 0, fmt.Sprintf("queue depth %d (%v)", d, err)
	})
	ents := storedOnce(t, c, n)
	redelivered := 0
	for _, ent := range ents {
		if ent.DequeueCount > 1 {
			redelivered++
		}
	}
	t.Logf("%d messages were delivered again after the kill", redelivered)
	assert.Positive(t, redelivered, "the kill left messages in flight that came back")
	assert.Equal(t, 0, depth(t, c.Poison))
	require.NoError(t, second.Signal(syscall.SIGTERM))
	code, err := second.Wait(10 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
}

// deliverAgain dequeues text's message and makes it visible again at once,
// so its dequeue count grows without waiting for a visibility timeout.
func deliverAgain(t *testing.T, q *azqueue.QueueClient, times int) {
	t.Helper()
	ctx := itest.Ctx(t, 10*time.Second)
	for range times {
		resp, err := q.DequeueMessage(ctx, nil)
		require.NoError(t, err)
		require.Len(t, resp.Messages, 1)
		m := resp.Messages[0]
		_, err = q.UpdateMessage(ctx, *m.MessageID, *m.PopReceipt, *m.MessageText, &azqueue.UpdateMessageOptions{VisibilityTimeout: ptr(int32(0))})
		require.NoError(t, err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestPoisonMessagesMovedAndNeverLoop(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, tbl)
	ctx := itest.Ctx(t, 60*time.Second)
	enqueue := func(text string) {
		_, err := c.Queue.EnqueueMessage(ctx, text, nil)
		require.NoError(t, err)
	}
	valid := func(s string) string {
		text, err := message.New(s, time.Now()).Encode()
		require.NoError(t, err)
		return text
	}
	// The over-delivered message goes first, alone, so deliverAgain finds it.
	over := valid("delivered too often")
	enqueue(over)
	deliverAgain(t, c.Queue, 2) // dequeue count 3 on the consumer's delivery > max 2

	malformed := []string{
		"not json at all",
		`{"msg":"no stamp"}`,
		`{"srcStamp":"2025-01-02 03:04:05.000006"}`,
		`{"msg":"bad stamp","srcStamp":"yesterday"}`,
		`{"msg":42,"srcStamp":"2025-01-02 03:04:05.000006"}`,
		`["msg","srcStamp"]`,
	}
	for _, m := range malformed {
		enqueue(m)
	}
	const goodN = 5
	for i := range goodN {
		enqueue(valid(fmt.Sprintf("good %d", i)))
	}
	// The SDKs' base64 message encoding is understood too.
	enqueue(base64.StdEncoding.EncodeToString([]byte(valid("good base64"))))

	cons := e.StartConsumer(t, e.ConsumerEnv(q, tbl, "CONSUMER_MAX_DELIVERIES=2", "CONSUMER_VISIBILITY_TIMEOUT=1s"))
	_, err := cons.WaitMetric(ctx, poisonedM, 20*time.Second, func(v float64) bool { return v >= float64(len(malformed)) })
	require.NoError(t, err)
	_, err = cons.WaitMetric(ctx, poisonedO, 20*time.Second, func(v float64) bool { return v >= 1 })
	require.NoError(t, err)
	_, err = cons.WaitMetric(ctx, processed, 20*time.Second, func(v float64) bool { return v >= goodN+1 })
	require.NoError(t, err)

	assert.Equal(t, 0, depth(t, c.Queue), "poison messages left the work queue")
	records := poisonRecords(t, c)
	var texts []string
	for _, r := range records {
		texts = append(texts, r.body)
		want := "malformed"
		if r.body == over {
			want = "over_delivered"
		}
		assert.Equal(t, want, r.Reason, "reason recorded for %q", r.body)
		assert.Equal(t, q, r.Queue)
		assert.NotEmpty(t, r.MessageID)
		if want == "malformed" {
			assert.NotEmpty(t, r.Detail, "the parse error is recorded for %q", r.body)
		}
	}
	assert.ElementsMatch(t, append(malformed, over), texts, "poison queue holds each bad message once, unchanged, with its reason")
	storedOnce(t, c, goodN+1)

	// Never loops: after more than a visibility timeout nothing came back.
	time.Sleep(1500 * time.Millisecond) // waiting out the 1 s visibility timeout is the point here
	m, err := cons.Metrics(ctx)
	require.NoError(t, err)
	assert.Equal(t, float64(len(malformed)), m[poisonedM])
	assert.Equal(t, 1.0, m[poisonedO])
	assert.Equal(t, float64(goodN+len(malformed)+1+1), m["consumer_messages_dequeued_total"], "each message dequeued exactly once by the consumer")
	assert.Equal(t, 0, depth(t, c.Queue))
	assert.Equal(t, len(malformed)+1, depth(t, c.Poison))
	require.NoError(t, cons.Signal(syscall.SIGTERM))
	code, err := cons.Wait(10 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
}

func TestSIGTERMDrainsInFlightAndExitsZero(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, tbl)
	const n = 600
	e.Produce(t, q, "-count", fmt.Sprint(n), "-concurrency", "8", "-msg", "drain")
	cons := e.StartConsumer(t, e.ConsumerEnv(q, tbl, "CONSUMER_VISIBILITY_TIMEOUT=30s", "CONSUMER_DRAIN_TIMEOUT=15s"))
	_, err := cons.WaitMetric(itest.Ctx(t, 60*time.Second), processed, 50*time.Second, func(v float64) bool { return v >= 100 })
	require.NoError(t, err)

	sent := time.Now()
	require.NoError(t, cons.Signal(syscall.SIGTERM))
	code, err := cons.Wait(20 * time.Second)
	require.NoError(t, err)
	took := time.Since(sent)
	assert.Equal(t, 0, code, "exit status after SIGTERM")
	t.Logf("exited %s after SIGTERM", took)

	draining, ok := cons.FindLog("draining: no new messages, finishing in-flight ones")
	require.True(t, ok, "draining logged")
	t.Logf("in flight at SIGTERM: %v", draining["inFlight"])
	_, ok = cons.FindLog("drain complete")
	assert.True(t, ok, "drain completed within the drain timeout")
	_, timedOut := cons.FindLog("drain timeout: unfinished messages reappear after their visibility timeout")
	assert.False(t, timedOut)

	// Finished means: every message is either stored (and deleted) or still
	// on the queue, never both. With a 30 s visibility timeout, a message
	// abandoned mid-way would still count in the queue depth.
	ents, err := storage.ListEntities(itest.Ctx(t, 30*time.Second), c.Table)
	require.NoError(t, err)
	d := depth(t, c.Queue)
	t.Logf("stored %d, left on the queue %d", len(ents), d)
	assert.Equal(t, n, len(ents)+d, "stored + queued == sent: in-flight work was finished, not abandoned")
	assert.Positive(t, d, "SIGTERM stopped the consumer before the queue was empty")
}

// A graceful stop (KEDA scaling in, Karpenter consolidating or replacing a node) gives the pod its
// terminationGracePeriodSeconds. With dev's 30 s (so CONSUMER_DRAIN_TIMEOUT 20 s, components'
// DrainTimeout) and the default batch and concurrency, SIGTERM with a batch in flight ends in a
// finished drain and exit 0 well inside the grace period, and nothing is lost or stored twice.
// (A spot eviction on NAP gives no such drain: the pod gets 1 s, and its in-flight messages come
// back after the visibility timeout; docs/cloud-notes.md.)
func TestSIGTERMDrainsWithinTheGracePeriod(t *testing.T) {
	const notice = 30 * time.Second
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, tbl)
	const n = 2000
	e.Produce(t, q, "-count", fmt.Sprint(n), "-concurrency", "8", "-msg", "graceful")
	cons := e.StartConsumer(t, e.ConsumerEnv(q, tbl, "CONSUMER_DRAIN_TIMEOUT=20s"))
	_, err := cons.WaitMetric(itest.Ctx(t, 60*time.Second), processed, 50*time.Second, func(v float64) bool { return v >= 100 })
	require.NoError(t, err)

	sent := time.Now()
	require.NoError(t, cons.Signal(syscall.SIGTERM))
	code, err := cons.Wait(notice)
	require.NoError(t, err, "the consumer must exit before the kubelet's SIGKILL (%s)", notice)
	took := time.Since(sent)
	assert.Equal(t, 0, code)
	draining, ok := cons.FindLog("draining: no new messages, finishing in-flight ones")
	require.True(t, ok, "draining logged")
	_, ok = cons.FindLog("drain complete")
	assert.True(t, ok, "drain completed within the 20 s drain timeout")
	t.Logf("graceful stop: %v messages in flight at SIGTERM, exited %s later (grace %s)", draining["inFlight"], took.Round(time.Millisecond), notice)

	ents, err := storage.ListEntities(itest.Ctx(t, 30*time.Second), c.Table)
	require.NoError(t, err)
	d := depth(t, c.Queue)
	assert.Equal(t, n, len(ents)+d, "stored + queued == sent: nothing lost, nothing stored twice")
	assert.Positive(t, d, "SIGTERM came before the queue was empty")
}

func TestSIGTERMBoundedWhenStorageHangs(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	e.Clients(t, q, tbl)
	e.Produce(t, q, "-count", "200", "-concurrency", "8", "-msg", "hang")
	cons := e.StartConsumer(t, e.ConsumerEnv(q, tbl, "CONSUMER_DRAIN_TIMEOUT=1s", "CONSUMER_VISIBILITY_TIMEOUT=5s"))
	_, err := cons.WaitMetric(itest.Ctx(t, 30*time.Second), processed, 20*time.Second, func(v float64) bool { return v >= 1 })
	require.NoError(t, err)

	// Freeze Azurite: requests in flight now hang until the drain deadline.
	require.NoError(t, e.Azurite.Signal(syscall.SIGSTOP))
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = e.Azurite.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	time.Sleep(200 * time.Millisecond) // let the consumer's next requests reach the frozen server

	sent := time.Now()
	require.NoError(t, cons.Signal(syscall.SIGTERM))
	code, err := cons.Wait(10 * time.Second)
	took := time.Since(sent)
	resume()
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.Less(t, took, 5*time.Second, "exit bounded by the 1 s drain timeout")
	t.Logf("exited %s after SIGTERM with storage frozen", took)
}

func TestWaitsForStorageInsteadOfCrashing(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, "") // the table does not exist yet
	cons := e.StartConsumer(t, e.ConsumerEnv(q, tbl))
	ctx := itest.Ctx(t, 30*time.Second)

	// Not ready while the table is missing, but alive and not exiting.
	itest.Eventually(t, 5*time.Second, func() (bool, string) {
		_, ok := cons.FindLog("storage not reachable yet")
		return ok, "a 'storage not reachable yet' warning"
	})
	assert.False(t, cons.Ready(ctx))
	select {
	case <-cons.Exited():
		t.Fatalf("consumer exited while the table was missing:\n%s", cons.Stdout())
	default:
	}

	tc, err := storage.NewClients(storage.Settings{QueueName: q, TableName: tbl, ConnectionString: e.Azurite.ConnectionString()}, storage.NewHTTPClient(4))
	require.NoError(t, err)
	require.NoError(t, storage.EnsureTable(ctx, tc.Table))
	t.Cleanup(func() { _, _ = tc.Table.Delete(context.Background(), nil) })
	_, err = cons.WaitReady(ctx, 20*time.Second)
	require.NoError(t, err, "ready once the table exists")
	assert.Equal(t, 0, depth(t, c.Queue))
	require.NoError(t, cons.Signal(syscall.SIGTERM))
	code, err := cons.Wait(10 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
}

func TestExitWhenEmptyDrainsTheQueueAndExitsZero(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, tbl)
	const n = 150
	e.Produce(t, q, "-count", fmt.Sprint(n), "-concurrency", "8", "-msg", "job")
	cons := e.StartConsumer(t, e.ConsumerEnv(q, tbl, "CONSUMER_EXIT_WHEN_EMPTY=true"))
	code, err := cons.Wait(60 * time.Second)
	require.NoError(t, err, "exits by itself once the queue is empty (KEDA ScaledJob mode)")
	assert.Equal(t, 0, code)
	storedOnce(t, c, n)
	assert.Equal(t, 0, depth(t, c.Queue))
	_, ok := cons.FindLog("queue empty and nothing in flight: stopping")
	assert.True(t, ok)
}

func TestInvalidSettingsFailFast(t *testing.T) {
	cases := []struct {
		name string
		env  []string
		want []string
	}{
		{
			name: "nothing set",
			env:  nil,
			want: []string{"AZURE_STORAGE_ACCOUNT_NAME: required", "AZURE_QUEUE_NAME: required", "AZURE_TABLE_NAME: required"},
		},
		{
			name: "every tuning setting wrong at once",
			env: []string{
				"AZURE_STORAGE_ACCOUNT_NAME=Bad_Account", "AZURE_QUEUE_NAME=Q", "AZURE_TABLE_NAME=1table",
				"CONSUMER_VISIBILITY_TIMEOUT=soon", "CONSUMER_CONCURRENCY=0", "CONSUMER_BATCH_SIZE=33",
				"CONSUMER_MAX_DELIVERIES=-1", "CONSUMER_HTTP_ADDR=8080", "CONSUMER_DRAIN_TIMEOUT=0s",
				"CONSUMER_TABLE_BATCH=maybe", "LOG_LEVEL=loud",
			},
			want: []string{
				"AZURE_STORAGE_ACCOUNT_NAME=\"Bad_Account\"", "AZURE_QUEUE_NAME=\"Q\"", "AZURE_TABLE_NAME=\"1table\"",
				"CONSUMER_VISIBILITY_TIMEOUT=\"soon\"", "CONSUMER_CONCURRENCY=\"0\"", "CONSUMER_BATCH_SIZE=\"33\": must be between 1 and 32",
				"CONSUMER_MAX_DELIVERIES=\"-1\"", "CONSUMER_HTTP_ADDR=\"8080\"", "CONSUMER_DRAIN_TIMEOUT=\"0s\"",
				"CONSUMER_TABLE_BATCH=\"maybe\"", "LOG_LEVEL=\"loud\"",
			},
		},
		{
			name: "visibility timeout not whole seconds",
			env:  []string{"AZURE_STORAGE_CONNECTION_STRING=UseDevelopmentStorage=true", "AZURE_QUEUE_NAME=work", "AZURE_TABLE_NAME=records", "CONSUMER_VISIBILITY_TIMEOUT=1500ms"},
			want: []string{"CONSUMER_VISIBILITY_TIMEOUT=\"1500ms\": must be whole seconds"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, suite.Bins.Consumer)
			cmd.Env = procs.Env(tc.env...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			err := cmd.Run()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "must exit non-zero")
			assert.Equal(t, 2, exit.ExitCode())
			assert.Less(t, time.Since(start), 2*time.Second, "fails fast")
			assert.Contains(t, stderr.String(), "invalid configuration")
			for _, w := range tc.want {
				assert.Contains(t, stderr.String(), w)
			}
			assert.Empty(t, stdout.String(), "nothing started")
		})
	}
}

// consumer -h lists every setting with its default and exits 0 with nothing set: it reads no
// setting and starts nothing. An unknown CONSUMER_* variable is named with the closest real one.
func TestHelpAndUnknownSettings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, arg := range []string{"-h", "--help"} {
		cmd := exec.CommandContext(ctx, suite.Bins.Consumer, arg)
		cmd.Env = procs.Env()
		out, err := cmd.Output()
		require.NoError(t, err, "%s exits 0", arg)
		for _, want := range []string{"AZURE_STORAGE_CONNECTION_STRING", "AZURE_QUEUE_NAME", "CONSUMER_BATCH_SIZE", "CONSUMER_VISIBILITY_TIMEOUT",
			"CONSUMER_MAX_DELIVERIES", "UseDevelopmentStorage=true"} {
			assert.Contains(t, string(out), want, "%s output", arg)
		}
	}

	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	e.Clients(t, q, tbl)
	cons := e.StartConsumer(t, e.ConsumerEnv(q, tbl, "CONSUMER_BATCHSIZE=8"))
	_, err := cons.WaitReady(ctx, 10*time.Second)
	require.NoError(t, err)
	line, ok := cons.FindLog("unknown setting ignored")
	require.True(t, ok, "a warning for CONSUMER_BATCHSIZE")
	assert.Equal(t, "CONSUMER_BATCHSIZE", line["name"])
	assert.Equal(t, "CONSUMER_BATCH_SIZE", line["didYouMean"])
	require.NoError(t, cons.Signal(syscall.SIGTERM))
	_, err = cons.Wait(10 * time.Second)
	require.NoError(t, err)
}
