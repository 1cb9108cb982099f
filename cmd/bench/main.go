// Command bench compares the consumer with a minimal reference client doing
// the same required calls (dequeue, table write, delete) on one fresh
// Azurite, with the same batch size and concurrency, at the same shallow
// queue depth: each round refills the queue to N messages and lets one
// contender drain it, and the contenders alternate so that neither gets the
// luckier queue state. The consumer runs as a real process, so its peak RSS
// (VmHWM) and its time to ready (process start to /readyz 200) are real too.
// The last line is exactly "consumer/reference throughput ratio: X.XX".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/aks-edw/aks-edw/internal/azurite"
	"github.com/aks-edw/aks-edw/internal/message"
	"github.com/aks-edw/aks-edw/internal/procs"
	"github.com/aks-edw/aks-edw/internal/storage"
)

type options struct {
	messages    int
	rounds      int
	batch       int
	concurrency int
	noBatch     bool
	timeout     time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var o options
	flag.IntVar(&o.messages, "messages", 400, "messages per round (the queue depth each round starts from; Azurite slows as depth grows)")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds per contender (contenders alternate)")
	flag.IntVar(&o.batch, "batch", 32, "batch size (messages per dequeue) for both contenders")
	flag.IntVar(&o.concurrency, "concurrency", 16, "storage requests in flight for both contenders")
	flag.BoolVar(&o.noBatch, "compare-unbatched", true, "also run the consumer with CONSUMER_TABLE_BATCH=false (one upsert per message, like the reference)")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
	flag.Parse()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

type contender struct {
	name  string
	kind  string // "consumer" or "reference"
	env   []string
	times []time.Duration
	ready []time.Duration
	rss   int64
	cpu   time.Duration // CPU time over the measured rounds (consumer: from ready to done)
	whole time.Duration // consumer: process CPU time from start to done
}

func run(ctx context.Context, o options, out io.Writer) error {
	if o.messages < 1 || o.rounds < 1 || o.batch < 1 || o.batch > 32 || o.concurrency < 1 {
		return errors.New("messages, rounds and concurrency must be >= 1 and batch 1-32")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	root, err := azurite.RepoRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "aks-edw-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)

	fmt.Fprintln(out, "bench: starting Azurite and building the consumer ...")
	bins, az, err := procs.BuildWithAzurite(ctx, root, dir, os.Stderr)
	if err != nil {
		return err
	}
	defer az.Stop()

	const queue, table = "benchq", "benchtable"
	clients, err := storage.NewClients(storage.Settings{QueueName: queue, TableName: table, ConnectionString: az.ConnectionString()}, storage.NewHTTPClient(o.concurrency))
	if err != nil {
		return err
	}
	if err := storage.EnsureQueue(ctx, clients.Queue); err != nil {
		return err
	}
	if err := storage.EnsureQueue(ctx, clients.Poison); err != nil {
		return err
	}
	if err := storage.EnsureTable(ctx, clients.Table); err != nil {
		return err
	}

	baseEnv := []string{
		storage.EnvConnectionString + "=" + az.ConnectionString(),
		storage.EnvQueueName + "=" + queue,
		storage.EnvTableName + "=" + table,
		fmt.Sprintf("CONSUMER_BATCH_SIZE=%d", o.batch),
		fmt.Sprintf("CONSUMER_CONCURRENCY=%d", o.concurrency),
	}
	contenders := []*contender{
		{name: "consumer", kind: "consumer", env: procs.Env(baseEnv...)},
		{name: "reference", kind: "reference"},
	}
	if o.noBatch {
		contenders = append(contenders, &contender{name: "consumer (CONSUMER_TABLE_BATCH=false)", kind: "consumer", env: procs.Env(append(baseEnv, "CONSUMER_TABLE_BATCH=false")...)})
	}
	fmt.Fprintf(out, "bench: Azurite 3.37.0 (queue on disk, table in memory); %d rounds x %d messages per contender; the queue is refilled to %d before every round; contenders alternate\n",
		o.rounds, o.messages, o.messages)
	fmt.Fprintf(out, "bench: same settings for every contender: batch size %d (messages per dequeue), concurrency %d (storage requests in flight)\n", o.batch, o.concurrency)
	fmt.Fprintln(out, "bench: reference = minimal client: dequeue, one upsert per message, delete; consumer = the real binary (parsing, poison checks, metrics, logs; entity-group transactions per partition)")

	// A warm-up round per contender (not counted) so the first measured
	// round does not pay for Azurite's JIT warm-up.
	for round := 0; round <= o.rounds; round++ {
		for _, c := range contenders {
			if err := fill(ctx, clients.Queue, o.messages, fmt.Sprintf("%s r%d", c.name, round)); err != nil {
				return err
			}
			var took, ready, cpu, whole time.Duration
			var rss int64
			if c.kind == "consumer" {
				took, ready, rss, cpu, whole, err = runConsumer(ctx, bins.Consumer, c.env, clients.Queue, o.messages)
			} else {
				before := selfCPU()
				took, err = runReference(ctx, az.ConnectionString(), queue, table, o, o.messages)
				cpu = selfCPU() - before
			}
			if err != nil {
				return fmt.Errorf("round %d %s: %w", round, c.name, err)
			}
			if d, err := storage.Depth(ctx, clients.Queue); err != nil || d != 0 {
				return fmt.Errorf("round %d %s: queue not drained (depth %d, %v)", round, c.name, d, err)
			}
			label := fmt.Sprintf("round %d", round)
			if round == 0 {
				label = "warm-up"
			} else {
				c.times = append(c.times, took)
				if c.kind == "consumer" {
					c.ready = append(c.ready, ready)
					c.rss = max(c.rss, rss)
				}
				c.cpu += cpu
				c.whole += whole
			}
			extra := ""
			if c.kind == "consumer" {
				extra = fmt.Sprintf(" (ready %s after start, peak RSS %.1f MiB)", ready.Round(time.Millisecond), mib(rss))
			}
			fmt.Fprintf(out, "%-9s %-38s %4d msgs in %7s = %6.1f msg/s%s\n", label, c.name, o.messages, took.Round(time.Millisecond),
				float64(o.messages)/took.Seconds(), extra)
		}
	}

	ents, err := storage.ListEntities(ctx, clients.Table)
	if err != nil {
		return err
	}
	want := o.messages * (o.rounds + 1) * len(contenders)
	if len(ents) != want {
		return fmt.Errorf("table holds %d entities, want %d (one per message)", len(ents), want)
	}

	rate := func(c *contender) float64 {
		var total time.Duration
		for _, t := range c.times {
			total += t
		}
		return float64(o.messages*len(c.times)) / total.Seconds()
	}
	cons, ref := contenders[0], contenders[1]
	fmt.Fprintln(out)
	fmt.Fprintf(out, "table check: %d entities for %d messages (one each, no duplicates)\n", len(ents), want)
	for _, c := range contenders {
		fmt.Fprintf(out, "throughput %-38s %7.1f msg/s (%d msgs over %d rounds; batch %d, concurrency %d)\n", c.name+":", rate(c), o.messages*len(c.times), len(c.times), o.batch, o.concurrency)
	}
	allRSS := int64(0)
	var readies []time.Duration
	for _, c := range contenders {
		if c.kind == "consumer" {
			allRSS = max(allRSS, c.rss)
			readies = append(readies, c.ready...)
		}
	}
	slices.Sort(readies)
	fmt.Fprintf(out, "consumer peak RSS (VmHWM): %.1f MiB (target: within 64 MiB)\n", mib(allRSS))
	fmt.Fprintf(out, "consumer time to ready (process start to /readyz 200): median %s, max %s over %d starts (target: within 1 s)\n",
		readies[len(readies)/2].Round(time.Millisecond), readies[len(readies)-1].Round(time.Millisecond), len(readies))
	perK := func(d time.Duration, c *contender) time.Duration {
		return d * 1000 / time.Duration(o.messages*len(c.times))
	}
	cpuPerK, refPerK := perK(cons.cpu, cons), perK(ref.cpu, ref)
	fmt.Fprintf(out, "CPU per 1,000 messages: consumer %s (ready to done), reference %s: consumer/reference %.2f -> consumer CPU-bound ceiling at a 500m limit: ~%.0f msg/s\n",
		cpuPerK.Round(time.Millisecond), refPerK.Round(time.Millisecond), cpuPerK.Seconds()/refPerK.Seconds(), 0.5*1000/cpuPerK.Seconds())
	fmt.Fprintf(out, "consumer CPU per 1,000 messages with its start-up and probes (one %d-message round per process start): %s\n",
		o.messages, perK(cons.whole, cons).Round(time.Millisecond))
	perReplica := rate(cons)
	fmt.Fprintf(out, "consumer per-replica throughput on Azurite here: %.0f msg/s; replicas for Azure's ~2,000 msg/s per-queue ceiling at this rate: %d\n",
		perReplica, int((2000+perReplica-1)/perReplica))
	fmt.Fprintf(out, "consumer/reference throughput ratio: %.2f\n", rate(cons)/rate(ref))
	return nil
}

// selfCPU returns this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// fill enqueues n messages with 16 requests in flight.
func fill(ctx context.Context, q *azqueue.QueueClient, n int, tag string) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				text, _ := message.New(fmt.Sprintf("%s #%d", tag, i), time.Now()).Encode()
				if _, err := q.EnqueueMessage(ctx, text, nil); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("fill queue: %w", err) })
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// runConsumer starts the consumer process, measures from /readyz 200 until the
// work queue is empty (Azurite counts invisible messages too, so an empty
// queue means every message was deleted after its entity was written), reads
// its VmHWM and CPU time and stops it with SIGTERM. Completion is watched on
// the queue, not by scraping the consumer's /metrics: a scrape costs the
// consumer about 1.7 ms of CPU, and a 10 ms scrape loop would be most of
// what the CPU figure measured. cpu is the process's CPU from ready to done
// (start-up and probes excluded, as they are once per replica), whole is
// from process start.
func runConsumer(ctx context.Context, bin string, env []string, q *azqueue.QueueClient, n int) (took, ready time.Duration, rss int64, cpu, whole time.Duration, err error) {
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := procs.StartConsumer(sctx, bin, env)
	if err != nil {
		return 0, 0, 0, 0, 0, err
	}
	defer func() {
		select {
		case <-c.Exited():
		default:
			c.Kill()
		}
	}()
	ready, err = c.WaitReady(ctx, 10*time.Second)
	if err != nil {
		return 0, 0, 0, 0, 0, err
	}
	atReady, err := procs.CPUTime(c.Cmd.Process.Pid)
	if err != nil {
		return 0, 0, 0, 0, 0, err
	}
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	for {
		d, err := storage.Depth(ctx, q)
		if err == nil && d == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, 0, 0, 0, fmt.Errorf("consumer did not empty the queue in 2 minutes (depth %d, %v)\n%s", d, err, c.Stdout())
		}
		time.Sleep(10 * time.Millisecond)
	}
	took = time.Since(start)
	rss, err = procs.PeakRSS(c.Cmd.Process.Pid)
	if err != nil {
		return 0, 0, 0, 0, 0, err
	}
	whole, err = procs.CPUTime(c.Cmd.Process.Pid)
	if err != nil {
		return 0, 0, 0, 0, 0, err
	}
	m, err := c.Metrics(ctx)
	if err != nil {
		return 0, 0, 0, 0, 0, err
	}
	if err := c.Signal(syscall.SIGTERM); err != nil {
		return 0, 0, 0, 0, 0, err
	}
	code, err := c.Wait(30 * time.Second)
	if err != nil || code != 0 {
		return 0, 0, 0, 0, 0, fmt.Errorf("consumer exit %d after SIGTERM: %v", code, err)
	}
	if m["consumer_messages_processed_total"] < float64(n) {
		return 0, 0, 0, 0, 0, fmt.Errorf("queue empty but only %v of %d messages processed", m["consumer_messages_processed_total"], n)
	}
	return took, ready, rss, whole - atReady, whole, nil
}

// runReference is the minimal client: one loop dequeues batches into a
// channel, `concurrency` workers each upsert the entity and delete the
// message. No poison handling, metrics or retries beyond the SDK defaults.
func runReference(ctx context.Context, connStr, queue, table string, o options, n int) (time.Duration, error) {
	// Same connection pool settings as the consumer, so neither is starved of
	// connections; a fresh pool each round, as the consumer process has.
	co := policy.ClientOptions{Transport: storage.NewHTTPClient(o.concurrency)}
	qs, err := azqueue.NewServiceClientFromConnectionString(connStr, &azqueue.ClientOptions{ClientOptions: co})
	if err != nil {
		return 0, fmt.Errorf("reference queue client: %w", err)
	}
	ts, err := aztables.NewServiceClientFromConnectionString(connStr, &aztables.ClientOptions{ClientOptions: co})
	if err != nil {
		return 0, fmt.Errorf("reference table client: %w", err)
	}
	q := qs.NewQueueClient(queue)
	t := ts.NewClient(table)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	fail := func(err error) { once.Do(func() { firstErr = err; cancel() }) }
	msgs := make(chan *azqueue.DequeuedMessage, o.batch)
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(msgs)
		num, vis := int32(o.batch), int32(30)
		for done.Load() < int64(n) && ctx.Err() == nil {
			resp, err := q.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: &num, VisibilityTimeout: &vis})
			if err != nil {
				fail(fmt.Errorf("dequeue: %w", err))
				return
			}
			if len(resp.Messages) == 0 {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			for _, m := range resp.Messages {
				select {
				case msgs <- m:
				case <-ctx.Done():
					return
				}
			}
		}
	})
	for range o.concurrency {
		wg.Go(func() {
			for m := range msgs {
				var body struct {
					Msg      string `json:"msg"`
					SrcStamp string `json:"srcStamp"`
				}
				if err := json.Unmarshal([]byte(*m.MessageText), &body); err != nil {
					fail(fmt.Errorf("decode: %w", err))
					return
				}
				pk, rk := message.Keys(*m.MessageID)
				b, _ := json.Marshal(map[string]any{"PartitionKey": pk, "RowKey": rk, "data": body.Msg, "srcStamp": body.SrcStamp,
					"dateStamp": message.FormatStamp(time.Now()), "messageId": *m.MessageID})
				if _, err := t.UpsertEntity(ctx, b, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace}); err != nil {
					fail(fmt.Errorf("upsert: %w", err))
					return
				}
				if _, err := q.DeleteMessage(ctx, *m.MessageID, *m.PopReceipt, nil); err != nil {
					fail(fmt.Errorf("delete: %w", err))
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	if done.Load() < int64(n) {
		return 0, fmt.Errorf("reference processed %d of %d: %w", done.Load(), n, ctx.Err())
	}
	return time.Since(start), nil
}
