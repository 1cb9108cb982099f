// Command bench measures the consumer against a minimal reference client
// doing the same required calls (dequeue, table write, delete) on one fresh
// Azurite, with storage at Azure's distance: every request passes through
// cmd/azproxy (its own process, so its CPU is charged to neither contender),
// which adds a round-trip time and counts the requests by operation.
//
// For each round-trip time (-rtt, default 0, 5, 10 and 20 ms) each round
// refills the queue to -messages and lets one contender drain it; the
// contenders alternate, after one uncounted warm-up round each. For each RTT
// it prints each contender's throughput, storage requests per message, CPU
// per message, the mean requests in flight, the bound and the fraction of it
// reached. The bound is Little's law: with C request slots (the concurrency
// setting: table writes and deletes; both contenders send their dequeues
// from one loop beside the slots) and W the mean time such a request takes
// at that distance (the RTT plus the emulator's own time, measured at the
// proxy), at most C/W requests per second, so C/(W × slot requests per
// message) messages per second. The fraction reached is the mean number of
// slots in use over C. "emu queue" is the CPU time the emulator's queue
// service (one Node.js process every contender shares) used over the same
// interval, in cores.
//
// Then -replicas consumer processes on one queue at -replica-rtt
// (efficiency: the aggregate rate over replicas × one process's rate), and
// the throttled row: that many replicas against a per-queue limit
// (-throttle-rate requests/s) the proxy enforces with Azure's 503
// ServerBusy. It closes with exactly:
//
//	at RTT 10ms: consumer/reference X.XX, consumer/bound X.XX
//	replicas 1,2,4 at RTT 10ms: efficiency X.XX
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/azproxy"
	"github.com/aks-edw/aks-edw/harness/azurite"
	"github.com/aks-edw/aks-edw/harness/procs"
)

type options struct {
	messages           int
	rounds             int
	batch              int
	concurrency        int
	rtts               []time.Duration
	jitter             time.Duration
	replicas           []int
	replicaRTT         time.Duration
	replicaMessages    int
	replicaConcurrency int
	replicaRounds      int
	replicaBatch       int
	throttleRate       float64
	throttleMessages   int
	timeout            time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var o options
	var rtts, replicas string
	flag.IntVar(&o.messages, "messages", 400, "messages per round (the queue depth each round starts from; Azurite slows as depth grows)")
	flag.IntVar(&o.rounds, "rounds", 3, "measured rounds per contender and RTT (contenders alternate)")
	flag.IntVar(&o.batch, "batch", 32, "batch size (messages per dequeue) for every contender")
	flag.IntVar(&o.concurrency, "concurrency", 8, "storage requests in flight for both contenders, besides the dequeues sent beside them (8, not the consumer's default 16: at 16 on 2 cores the consumer waits for the emulator's dequeues, whose queue service is then on the CPU most of the time; docs/programs.md)")
	flag.StringVar(&rtts, "rtt", "0ms,5ms,10ms,20ms", "round-trip times to measure at, comma-separated")
	flag.DurationVar(&o.jitter, "jitter", 0, "each request's added time is spread over rtt ± jitter")
	flag.StringVar(&replicas, "replicas", "1,2,4", "consumer processes on one queue for the efficiency line, comma-separated, starting with 1")
	flag.DurationVar(&o.replicaRTT, "replica-rtt", 10*time.Millisecond, "round-trip time of the replica and throttling runs, and of the closing lines (must be one of -rtt)")
	flag.IntVar(&o.replicaMessages, "replica-messages", 400, "messages per replica round (the depth each round starts from, as -messages: Azurite's every queue request scans all the queue's messages)")
	flag.IntVar(&o.replicaConcurrency, "replica-concurrency", 1, "CONSUMER_CONCURRENCY of each replica in the replica and throttling runs (kept low so that the largest count stays under this machine's emulator ceiling, the RTT 0 row)")
	flag.IntVar(&o.replicaRounds, "replica-rounds", 3, "rounds per replica count")
	flag.IntVar(&o.replicaBatch, "replica-batch", 8, "CONSUMER_BATCH_SIZE of each replica in the replica and throttling runs (the emulator's dequeue slows as more messages are invisible; smaller replicas hold fewer)")
	flag.IntVar(&o.throttleMessages, "throttle-messages", 2000, "messages in the throttled run")
	flag.Float64Var(&o.throttleRate, "throttle-rate", 120, "per-queue limit (requests/s) of the throttled run, with the largest replica count; 0 skips it")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up after this long")
	flag.Parse()
	var err error
	if o.rtts, err = parseList(rtts, time.ParseDuration); err == nil {
		o.replicas, err = parseList(replicas, strconv.Atoi)
	}
	if err == nil {
		err = o.validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(s, ",") {
		v, err := parse(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", s, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func (o options) validate() error {
	for _, f := range []struct {
		flag string
		v    int
	}{
		{"messages", o.messages}, {"rounds", o.rounds}, {"concurrency", o.concurrency},
		{"replica-messages", o.replicaMessages}, {"replica-concurrency", o.replicaConcurrency},
		{"replica-rounds", o.replicaRounds}, {"throttle-messages", o.throttleMessages},
	} {
		if f.v < 1 {
			return fmt.Errorf("-%s %d must be >= 1", f.flag, f.v)
		}
	}
	switch {
	case o.batch < 1 || o.batch > 32 || o.replicaBatch < 1 || o.replicaBatch > 32:
		return fmt.Errorf("batch %d, replica batch %d: the queue hands out 1-32 messages per dequeue", o.batch, o.replicaBatch)
	case !slices.Contains(o.rtts, o.replicaRTT):
		return fmt.Errorf("-replica-rtt %s is not among -rtt %v: the closing lines compare the two", o.replicaRTT, o.rtts)
	case len(o.replicas) == 0 || o.replicas[0] != 1:
		return fmt.Errorf("-replicas %v must start with 1 (efficiency is relative to one process)", o.replicas)
	case o.throttleRate < 0:
		return fmt.Errorf("-throttle-rate %v is negative", o.throttleRate)
	}
	for _, r := range o.rtts {
		if r < 0 {
			return fmt.Errorf("rtt %s is negative", r)
		}
	}
	for _, k := range o.replicas {
		if k < 1 {
			return fmt.Errorf("replica count %d must be >= 1", k)
		}
	}
	return nil
}

// sample is what one contender did over its measured rounds at one RTT:
// whole rounds, and their steady part (10% to 90% of the messages gone).
type sample struct {
	messages int
	took     time.Duration
	cpu      time.Duration
	counts   azproxy.Counts

	steadyMessages int
	steady         time.Duration
	steadyCounts   azproxy.Counts
	steadyQueueCPU time.Duration
}

func (s *sample) add(n int, r result) {
	s.messages += n
	s.took += r.took
	s.cpu += r.cpu
	s.counts.Add(r.counts)
	s.steadyMessages += r.steadyMessages
	s.steady += r.steady
	s.steadyCounts.Add(r.steadyCounts)
	s.steadyQueueCPU += r.steadyQueueCPU
}

// queueBusy is the fraction of the steady drain during which the emulator's
// queue service was on the CPU.
func (s sample) queueBusy() float64 { return s.steadyQueueCPU.Seconds() / s.steady.Seconds() }

// rate is the steady throughput: without the ramp and the tail of a round.
func (s sample) rate() float64 { return float64(s.steadyMessages) / s.steady.Seconds() }

// roundRate is the throughput over whole rounds.
func (s sample) roundRate() float64 { return float64(s.messages) / s.took.Seconds() }

// perMessage is the storage requests per message.
func (s sample) perMessage() float64 { return float64(s.counts.Total()) / float64(s.messages) }

// slots are the requests that take one of the C request slots: all but the
// dequeues, which both contenders send from one loop beside the slots.
func slots(c azproxy.Counts) azproxy.Counts { return c.Except("queue/dequeue") }

// inFlight is the mean number of slot requests in flight at the proxy.
func (s sample) inFlight() float64 {
	return slots(s.steadyCounts).BusyTotal().Seconds() / s.steady.Seconds()
}

// meanRequest is the mean time a slot request took at the proxy (the RTT
// plus the emulator's own time).
func (s sample) meanRequest() time.Duration {
	sl := slots(s.steadyCounts)
	return sl.BusyTotal() / time.Duration(max(1, sl.Total()))
}

// bound is Little's law's ceiling for c slots: c requests in flight, each
// taking meanRequest, allow c/meanRequest requests/s, and a message needs
// that many slot requests.
func (s sample) bound(c int) float64 {
	perMessage := float64(slots(s.counts).Total()) / float64(s.messages)
	return float64(c) / (s.meanRequest().Seconds() * perMessage)
}

type contender struct {
	name    string
	kind    string // "consumer" or "reference"
	env     []string
	samples map[time.Duration]*sample
	ready   []time.Duration
	rss     int64
}

func run(ctx context.Context, o options, out io.Writer) error {
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

	fmt.Fprintln(out, "bench: starting Azurite and building the consumer and azproxy ...")
	bins, az, err := procs.BuildWithAzurite(ctx, root, dir, os.Stderr)
	if err != nil {
		return err
	}
	defer az.Stop()
	proxy, err := procs.StartProxy(ctx, bins.Proxy, az, azproxy.Options{})
	if err != nil {
		return err
	}
	defer proxy.Stop()

	const queue, table = "benchq", "benchtable"
	// The bench's own clients (filling, depth, checks) reach Azurite directly.
	clients, err := storage.NewClients(storage.Settings{QueueName: queue, TableName: table, ConnectionString: az.ConnectionString()}, storage.NewHTTPClient(16))
	if err != nil {
		return err
	}
	for _, q := range []*azqueue.QueueClient{clients.Queue, clients.Poison} {
		if err := storage.EnsureQueue(ctx, q); err != nil {
			return err
		}
	}
	if err := storage.EnsureTable(ctx, clients.Table); err != nil {
		return err
	}

	via := proxy.ConnectionString()
	m := meter{Remote: proxy.Remote, queuePid: az.NamedPids()["queue"]}
	if _, err := procs.CPUTime(m.queuePid); err != nil {
		return fmt.Errorf("emulator queue service (pid %d): %w", m.queuePid, err)
	}
	consumerEnv := func(concurrency, batch int) []string {
		return procs.Env(
			storage.EnvConnectionString+"="+via,
			storage.EnvQueueName+"="+queue,
			storage.EnvTableName+"="+table,
			fmt.Sprintf("CONSUMER_BATCH_SIZE=%d", batch),
			fmt.Sprintf("CONSUMER_CONCURRENCY=%d", concurrency),
		)
	}
	contenders := []*contender{
		{name: "consumer", kind: "consumer", env: consumerEnv(o.concurrency, o.batch), samples: map[time.Duration]*sample{}},
		{name: "reference", kind: "reference", samples: map[time.Duration]*sample{}},
	}
	fmt.Fprintf(out, "bench: Azurite 3.37.0 (queue on disk, table in memory) behind azproxy (its own process); RTT %v (jitter %s); %d rounds x %d messages per contender and RTT; the queue is refilled before every round; contenders alternate\n",
		o.rtts, o.jitter, o.rounds, o.messages)
	fmt.Fprintf(out, "bench: same settings for both: batch size %d, concurrency C = %d request slots (table writes, deletes), with the dequeues sent beside them from one loop\n", o.batch, o.concurrency)
	fmt.Fprintln(out, "bench: reference = minimal client: dequeue, one upsert per message, delete; consumer = the real binary (parsing, poison checks, metrics, logs; entity-group transactions per partition)")

	stored := 0 // messages the table must hold
	for _, rtt := range o.rtts {
		if err := proxy.Remote.Set(ctx, azproxy.Options{RTT: rtt, Jitter: o.jitter}); err != nil {
			return err
		}
		// A warm-up round per contender (not counted) so the first measured
		// round does not pay for Azurite's JIT warm-up or a cold connection pool.
		for round := 0; round <= o.rounds; round++ {
			for _, c := range contenders {
				if err := fill(ctx, clients.Queue, o.messages, fmt.Sprintf("%s %s r%d", c.name, rtt, round)); err != nil {
					return err
				}
				stored += o.messages
				var r result
				if c.kind == "consumer" {
					r, err = runConsumers(ctx, bins.Consumer, c.env, 1, clients.Queue, m, o.messages)
				} else {
					r, err = runReference(ctx, via, queue, table, o, clients.Queue, m, o.messages)
				}
				if err != nil {
					return fmt.Errorf("rtt %s round %d %s: %w", rtt, round, c.name, err)
				}
				if d, err := storage.Depth(ctx, clients.Queue); err != nil || d != 0 {
					return fmt.Errorf("rtt %s round %d %s: queue not drained (depth %d, %v)", rtt, round, c.name, d, err)
				}
				if round == 0 {
					continue
				}
				if c.samples[rtt] == nil {
					c.samples[rtt] = &sample{}
				}
				c.samples[rtt].add(o.messages, r)
				if c.kind == "consumer" {
					c.ready = append(c.ready, r.ready...)
					c.rss = max(c.rss, r.rss)
				}
			}
		}
		fmt.Fprintf(out, "\nRTT %s\n", rtt)
		fmt.Fprintf(out, "  %-10s %8s %8s %8s %9s %9s %10s %11s %8s %9s\n", "contender", "msg/s", "(rounds)", "req/msg", "CPU/msg", "in flight", "mean req", "bound msg/s", "of bound", "emu queue")
		for _, c := range contenders {
			s := c.samples[rtt]
			fmt.Fprintf(out, "  %-10s %8.0f %8.0f %8.2f %9s %9.1f %10s %11.0f %8.2f %9.2f\n", c.name, s.rate(), s.roundRate(), s.perMessage(),
				(s.cpu / time.Duration(s.messages)).Round(time.Microsecond), s.inFlight(), s.meanRequest().Round(10*time.Microsecond),
				s.bound(o.concurrency), s.rate()/s.bound(o.concurrency), s.queueBusy())
		}
		cons := contenders[0].samples[rtt]
		fmt.Fprintf(out, "  requests by operation, consumer: %s\n  requests by operation, reference: %s\n", perMessage(*cons), perMessage(*contenders[1].samples[rtt]))
	}

	ents, err := storage.ListEntities(ctx, clients.Table)
	if err != nil {
		return err
	}
	if len(ents) != stored {
		return fmt.Errorf("table holds %d entities, want %d (one per message)", len(ents), stored)
	}
	fmt.Fprintf(out, "\ntable check: %d entities for %d messages (one each, no duplicates)\n", len(ents), stored)
	cons, ref := contenders[0], contenders[1]
	slices.Sort(cons.ready)
	fmt.Fprintf(out, "consumer peak RSS (VmHWM): %.1f MiB (target: within 64 MiB)\n", mib(cons.rss))
	fmt.Fprintf(out, "consumer time to ready (process start to /readyz 200): median %s, max %s over %d starts (target: within 1 s)\n",
		cons.ready[len(cons.ready)/2].Round(time.Millisecond), cons.ready[len(cons.ready)-1].Round(time.Millisecond), len(cons.ready))

	// Replicas on one queue.
	if err := proxy.Remote.Set(ctx, azproxy.Options{RTT: o.replicaRTT, Jitter: o.jitter}); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nreplicas on one queue at RTT %s: %d messages per round, CONSUMER_CONCURRENCY=%d and CONSUMER_BATCH_SIZE=%d each, %d rounds per count (counts alternate)\n",
		o.replicaRTT, o.replicaMessages, o.replicaConcurrency, o.replicaBatch, o.replicaRounds)
	rates := map[int]*sample{}
	for round := 0; round < o.replicaRounds; round++ {
		for _, k := range o.replicas {
			if err := fill(ctx, clients.Queue, o.replicaMessages, fmt.Sprintf("replicas %d r%d", k, round)); err != nil {
				return err
			}
			r, err := runConsumers(ctx, bins.Consumer, consumerEnv(o.replicaConcurrency, o.replicaBatch), k, clients.Queue, m, o.replicaMessages)
			if err != nil {
				return fmt.Errorf("%d replicas: %w", k, err)
			}
			if rates[k] == nil {
				rates[k] = &sample{}
			}
			rates[k].add(o.replicaMessages, r)
		}
	}
	one := rates[1]
	var eff float64
	for _, k := range o.replicas {
		r := rates[k]
		eff = r.rate() / (float64(k) * one.rate())
		fmt.Fprintf(out, "  %d replica(s): %6.0f msg/s aggregate, %5.2f req/msg, %4.1f requests in flight, mean request %s, emulator queue busy %.2f, efficiency %.2f\n",
			k, r.rate(), r.perMessage(), r.inFlight(), r.meanRequest().Round(100*time.Microsecond), r.queueBusy(), eff)
		// Little's law splits the efficiency: slots in use per replica, relative to one
		// replica's; request time, one replica's over k's (the emulator slowing under load);
		// requests per message, one replica's over k's (contention: empty or short dequeues).
		fmt.Fprintf(out, "     = slots in use %.2f x request time %.2f x requests per message %.2f; %s\n",
			(r.inFlight()/float64(k))/one.inFlight(), one.meanRequest().Seconds()/r.meanRequest().Seconds(),
			float64(slots(one.counts).Total())/float64(one.messages)/(float64(slots(r.counts).Total())/float64(r.messages)), perMessage(*r))
	}

	// Throttled: the largest replica count against a per-queue limit.
	if o.throttleRate > 0 {
		k := slices.Max(o.replicas)
		if err := proxy.Remote.Set(ctx, azproxy.Options{RTT: o.replicaRTT, Jitter: o.jitter, QueueRate: o.throttleRate}); err != nil {
			return err
		}
		t, err := throttled(ctx, bins.Consumer, consumerEnv(o.replicaConcurrency, o.replicaBatch), k, clients, m, o.throttleMessages)
		if err != nil {
			return fmt.Errorf("throttled run: %w", err)
		}
		fmt.Fprintf(out, "\nthrottled: %d replicas at RTT %s, per-queue limit %.0f requests/s (Azure: 2,000 messages/s per queue, scaled to this emulator)\n", k, o.replicaRTT, o.throttleRate)
		fmt.Fprintf(out, "  queue requests served %.0f/s while the backlog lasted (10%% to 90%% gone) = %.2f of the limit (%.0f/s over the whole drain, its tail included); %d answered 503 ServerBusy (%.0f counted by the consumers' consumer_storage_throttled_total); %.0f msg/s\n",
			t.servedRate, t.servedRate/o.throttleRate, t.wholeServed, t.busy, t.counted, t.rate)
		fmt.Fprintf(out, "  %d messages sent, %d stored (one entity each), %d poisoned, %d left on the queue\n", t.sent, t.stored, t.poisoned, t.left)
		if t.stored != t.sent || t.poisoned != 0 || t.left != 0 {
			return fmt.Errorf("throttled run lost or poisoned messages: sent %d, stored %d, poisoned %d, left %d", t.sent, t.stored, t.poisoned, t.left)
		}
	}

	c10, r10 := cons.samples[o.replicaRTT], ref.samples[o.replicaRTT]
	fmt.Fprintln(out)
	fmt.Fprintf(out, "at RTT %s: consumer/reference %.2f, consumer/bound %.2f\n", o.replicaRTT, c10.rate()/r10.rate(), c10.rate()/c10.bound(o.concurrency))
	fmt.Fprintf(out, "replicas %s at RTT %s: efficiency %.2f\n", joinInts(o.replicas), o.replicaRTT, eff)
	return nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// perMessage lists a sample's requests per message by operation.
func perMessage(s sample) string {
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range s.counts.Requests {
			if !yield(k) {
				return
			}
		}
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		n := s.counts.Requests[k]
		parts = append(parts, fmt.Sprintf("%s %.3f (%s each)", k, float64(n)/float64(s.messages), (s.counts.Busy[k]/time.Duration(n)).Round(100*time.Microsecond)))
	}
	return strings.Join(parts, ", ")
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

// result is one contender's round.
type result struct {
	took   time.Duration
	cpu    time.Duration   // consumer: the processes' CPU from ready to done; reference: this process's
	ready  []time.Duration // consumer: process start to /readyz 200, per process
	rss    int64           // consumer: the largest VmHWM
	counts azproxy.Counts  // the proxy's counts over the round
	// steady, steadyMessages and steadyCounts cover the drain from 10% to
	// 90% of the messages gone: the ramp at the start and the tail at the
	// end, which depend on the round's size, are left out.
	steady         time.Duration
	steadyMessages int
	steadyCounts   azproxy.Counts
	steadyQueueCPU time.Duration
	// processed and throttled sum the consumers' metrics.
	processed, throttled float64
}

// runConsumers starts k consumer processes on a filled queue, clocks from
// the first /readyz 200 until the work queue is empty (Azurite counts
// invisible messages too, so an empty queue means every message was deleted
// after its entity was written), reads their VmHWM, CPU time and metrics and
// stops them with SIGTERM. The proxy's counts cover the same interval.
// Completion is watched on the queue, not by scraping the consumer's
// /metrics: a scrape costs the consumer about 1.7 ms of CPU, and a 10 ms
// scrape loop would be most of what the CPU figure measured.
func runConsumers(ctx context.Context, bin string, env []string, k int, q *azqueue.QueueClient, proxy meter, n int) (result, error) {
	var r result
	cs := make([]*procs.Consumer, k)
	defer func() {
		for _, c := range cs {
			if c == nil {
				continue
			}
			select {
			case <-c.Exited():
			default:
				c.Kill()
			}
		}
	}()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for i := range cs {
		c, err := procs.StartConsumer(sctx, bin, env)
		if err != nil {
			return r, err
		}
		cs[i] = c
	}
	var before azproxy.Counts
	var start time.Time
	atReady := make([]time.Duration, k)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			ready, err := c.WaitReady(ctx, 10*time.Second)
			if err == nil {
				atReady[i], err = procs.CPUTime(c.Cmd.Process.Pid)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			r.ready = append(r.ready, ready)
			if start.IsZero() {
				start = time.Now()
				before, err = proxy.Counts(ctx)
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return r, err
	}
	w, err := watch(ctx, q, n, proxy, start, before)
	if err != nil {
		return r, fmt.Errorf("%d consumer(s): %w\n%s", k, err, cs[0].Stdout())
	}
	r.took, r.counts, r.steady, r.steadyMessages, r.steadyCounts, r.steadyQueueCPU = w.took, w.counts, w.steady, w.steadyMessages, w.steadyCounts, w.steadyQueueCPU
	// The queue empties when storage has done the last delete; the consumer
	// counts it once the answer is back, half a round trip later.
	if err := waitProcessed(ctx, cs, n); err != nil {
		return r, err
	}
	for i, c := range cs {
		rss, err := procs.PeakRSS(c.Cmd.Process.Pid)
		if err != nil {
			return r, err
		}
		r.rss = max(r.rss, rss)
		whole, err := procs.CPUTime(c.Cmd.Process.Pid)
		if err != nil {
			return r, err
		}
		r.cpu += whole - atReady[i]
		m, err := c.Metrics(ctx)
		if err != nil {
			return r, err
		}
		r.processed += m["consumer_messages_processed_total"]
		for name, v := range m {
			if strings.HasPrefix(name, "consumer_storage_throttled_total") {
				r.throttled += v
			}
		}
	}
	for _, c := range cs {
		if err := c.Signal(syscall.SIGTERM); err != nil {
			return r, err
		}
	}
	for _, c := range cs {
		code, err := c.Wait(30 * time.Second)
		if err != nil || code != 0 {
			return r, fmt.Errorf("consumer exit %d after SIGTERM: %v", code, err)
		}
	}
	return r, nil
}

// waitProcessed waits (up to 5 s) until the consumers' processed counters add
// up to at least n.
func waitProcessed(ctx context.Context, cs []*procs.Consumer, n int) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		total := 0.0
		for _, c := range cs {
			m, err := c.Metrics(ctx)
			if err != nil {
				return err
			}
			total += m["consumer_messages_processed_total"]
		}
		if total >= float64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("queue empty but only %v of %d messages processed", total, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// throttle is the outcome of the throttled run.
type throttle struct {
	sent, stored, poisoned, left  int
	busy                          int64
	counted                       float64
	servedRate, wholeServed, rate float64
}

// throttled drains n messages with k consumers while the proxy enforces a
// per-queue limit, then checks that every message was stored once and none
// was poisoned or left behind.
func throttled(ctx context.Context, bin string, env []string, k int, clients *storage.Clients, proxy meter, n int) (throttle, error) {
	t := throttle{sent: n}
	before, err := storage.ListEntities(ctx, clients.Table)
	if err != nil {
		return t, err
	}
	if err := fill(ctx, clients.Queue, n, "throttled"); err != nil {
		return t, err
	}
	r, err := runConsumers(ctx, bin, env, k, clients.Queue, proxy, n)
	if err != nil {
		return t, err
	}
	after, err := storage.ListEntities(ctx, clients.Table)
	if err != nil {
		return t, err
	}
	t.stored = len(after) - len(before)
	if t.poisoned, err = storage.Depth(ctx, clients.Poison); err != nil {
		return t, err
	}
	if t.left, err = storage.Depth(ctx, clients.Queue); err != nil {
		return t, err
	}
	t.busy = r.counts.TotalThrottled()
	t.counted = r.throttled
	if r.steady <= 0 {
		return t, fmt.Errorf("the drain was too short to measure (%s)", r.took)
	}
	t.servedRate = float64(r.steadyCounts.Served("queue/")) / r.steady.Seconds()
	t.wholeServed = float64(r.counts.Served("queue/")) / r.took.Seconds()
	t.rate = float64(r.steadyMessages) / r.steady.Seconds()
	return t, nil
}

// runReference is the minimal client: one loop dequeues batches into a
// channel, `concurrency` workers each upsert the entity and delete the
// message. No poison handling, metrics or retries beyond the SDK defaults.
func runReference(ctx context.Context, connStr, queue, table string, o options, q *azqueue.QueueClient, proxy meter, n int) (result, error) {
	var r result
	before, err := proxy.Counts(ctx)
	if err != nil {
		return r, err
	}
	cpu0 := selfCPU()
	start := time.Now()
	var refErr error
	done := make(chan struct{})
	go func() { defer close(done); _, refErr = reference(ctx, connStr, queue, table, o, n) }()
	w, err := watch(ctx, q, n, proxy, start, before)
	<-done
	if err := errors.Join(refErr, err); err != nil {
		return r, err
	}
	r.cpu = selfCPU() - cpu0
	r.took, r.counts, r.steady, r.steadyMessages, r.steadyCounts, r.steadyQueueCPU = w.took, w.counts, w.steady, w.steadyMessages, w.steadyCounts, w.steadyQueueCPU
	return r, nil
}

// meter is what a round is measured with: the proxy's counts, and the CPU
// time of the emulator's queue service (one Node.js thread), which every
// contender and replica shares: once it is busy most of the time, requests
// wait for it and the rates measure it rather than the client.
type meter struct {
	azproxy.Remote
	queuePid int
}

// queueCPU is the queue service's CPU time so far (0 if it cannot be read).
func (m meter) queueCPU() time.Duration {
	d, _ := procs.CPUTime(m.queuePid)
	return d
}

// watched is what watch saw.
type watched struct {
	took, steady   time.Duration
	counts         azproxy.Counts
	steadyMessages int
	steadyCounts   azproxy.Counts
	steadyQueueCPU time.Duration
}

// watch polls the queue's depth every 10 ms (50 ms for 2,000 messages or more) from start until it is empty
// (Azurite counts invisible messages too, so an empty queue means every
// message was deleted after its entity was written) and takes the proxy's
// counts when 10% and 90% of the n messages are gone, and at the end.
func watch(ctx context.Context, q *azqueue.QueueClient, n int, proxy meter, start time.Time, before azproxy.Counts) (watched, error) {
	// A depth query is a request to the emulator too: every 10 ms for a
	// 400-message round, less often for longer ones.
	every := min(50*time.Millisecond, max(10*time.Millisecond, time.Duration(n)*25*time.Microsecond))
	var w watched
	var t10, t90 time.Time
	var c10, c90 azproxy.Counts
	var d10, d90 int
	var q10, q90 time.Duration
	deadline := start.Add(3 * time.Minute)
	for {
		d, err := storage.Depth(ctx, q)
		if err == nil {
			if t10.IsZero() && d <= n-n/10 {
				if c10, err = proxy.Counts(ctx); err != nil {
					return w, err
				}
				t10, d10, q10 = time.Now(), d, proxy.queueCPU()
			}
			if t90.IsZero() && d <= n/10 {
				if c90, err = proxy.Counts(ctx); err != nil {
					return w, err
				}
				t90, d90, q90 = time.Now(), d, proxy.queueCPU()
			}
			if d == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			return w, fmt.Errorf("the queue was not emptied in 3 minutes (depth %d, %v)", d, err)
		}
		time.Sleep(every)
	}
	w.took = time.Since(start)
	after, err := proxy.Counts(ctx)
	if err != nil {
		return w, err
	}
	w.counts = after.Sub(before)
	if !t10.IsZero() && t90.After(t10) {
		w.steady, w.steadyMessages, w.steadyCounts, w.steadyQueueCPU = t90.Sub(t10), d10-d90, c90.Sub(c10), q90-q10
	}
	return w, nil
}

// reference drains n messages and returns how long it took.
func reference(ctx context.Context, connStr, queue, table string, o options, n int) (time.Duration, error) {
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
