// Command demo is the one-command local run: it installs Azurite if needed
// (npm ci), starts it in memory on free ports, creates the queue and the
// table, builds and runs the real producer and consumer binaries against it,
// shows live progress and ends with a summary read back from the table. It
// stops everything it started, also on Ctrl-C.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aks-edw/aks-edw/internal/azurite"
	"github.com/aks-edw/aks-edw/internal/message"
	"github.com/aks-edw/aks-edw/internal/procs"
	"github.com/aks-edw/aks-edw/internal/storage"
)

type options struct {
	messages            int
	rate                float64
	producerConcurrency int
	concurrency         int
	batch               int
	malformed           int
	queue, table        string
	timeout             time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var o options
	flag.IntVar(&o.messages, "messages", 2000, "messages the producer sends")
	flag.Float64Var(&o.rate, "rate", 400, "producer rate in messages per second (0 = as fast as possible; Azurite slows down as the queue gets deep)")
	flag.IntVar(&o.producerConcurrency, "producer-concurrency", 8, "producer requests in flight")
	flag.IntVar(&o.concurrency, "concurrency", 16, "consumer requests in flight (CONSUMER_CONCURRENCY)")
	flag.IntVar(&o.batch, "batch", 32, "consumer messages per dequeue (CONSUMER_BATCH_SIZE)")
	flag.IntVar(&o.malformed, "malformed", 3, "malformed messages to add, to show the poison queue")
	flag.StringVar(&o.queue, "queue", "aws2azmsgs", "queue name")
	flag.StringVar(&o.table, "table", "aws2azpmts", "table name")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
	flag.Parse()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(parent context.Context, o options, out io.Writer) error {
	if o.messages < 1 || o.rate < 0 || o.producerConcurrency < 1 || o.concurrency < 1 || o.batch < 1 || o.batch > 32 || o.malformed < 0 {
		return errors.New("invalid flags: messages, concurrencies >= 1, batch 1-32, rate and malformed >= 0")
	}
	ctx, cancel := context.WithTimeout(parent, o.timeout)
	defer cancel()
	root, err := azurite.RepoRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "aks-edw-demo-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)

	fmt.Fprintln(out, "demo: starting Azurite (in memory, free ports) and building the consumer and the producer ...")
	t0 := time.Now()
	bins, az, err := procs.BuildWithAzurite(ctx, root, dir, out)
	if err != nil {
		return err
	}
	defer func() {
		az.Stop()
		fmt.Fprintln(out, "demo: Azurite stopped; nothing left running")
	}()
	fmt.Fprintf(out, "demo: Azurite queue :%d table :%d, binaries built (%s)\n", az.QueuePort, az.TablePort, time.Since(t0).Round(100*time.Millisecond))

	clients, err := storage.NewClients(storage.Settings{QueueName: o.queue, TableName: o.table, ConnectionString: az.ConnectionString()}, storage.NewHTTPClient(8))
	if err != nil {
		return err
	}
	if err := storage.EnsureQueue(ctx, clients.Queue); err != nil {
		return err
	}
	if err := storage.EnsureTable(ctx, clients.Table); err != nil {
		return err
	}
	fmt.Fprintf(out, "demo: created queue %q and table %q\n", o.queue, o.table)

	cons, err := procs.StartConsumer(ctx, bins.Consumer, procs.Env(
		storage.EnvConnectionString+"="+az.ConnectionString(),
		storage.EnvQueueName+"="+o.queue,
		storage.EnvTableName+"="+o.table,
		fmt.Sprintf("CONSUMER_CONCURRENCY=%d", o.concurrency),
		fmt.Sprintf("CONSUMER_BATCH_SIZE=%d", o.batch),
		"CONSUMER_VISIBILITY_TIMEOUT=30s",
	))
	if err != nil {
		return err
	}
	defer func() {
		select {
		case <-cons.Exited():
		default:
			cons.Kill()
		}
	}()
	ready, err := cons.WaitReady(ctx, 10*time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "demo: consumer ready %s after start, health/metrics on http://%s\n", ready.Round(time.Millisecond), cons.Addr)

	// Malformed messages first, so the poison queue has something to show.
	for i := range o.malformed {
		if _, err := clients.Queue.EnqueueMessage(ctx, fmt.Sprintf("not JSON: malformed demo message %d", i+1), nil); err != nil {
			return fmt.Errorf("enqueue malformed message: %w", err)
		}
	}

	fmt.Fprintf(out, "demo: producer sending %d messages at %s with %d in flight\n", o.messages, rateText(o.rate), o.producerConcurrency)
	start := time.Now()
	prod := exec.CommandContext(ctx, bins.Producer, "-count", strconv.Itoa(o.messages), "-rate", strconv.FormatFloat(o.rate, 'f', -1, 64),
		"-concurrency", strconv.Itoa(o.producerConcurrency), "-progress", "500ms", "-msg", "demo message", "-json")
	prod.Env = procs.Env(storage.EnvConnectionString+"="+az.ConnectionString(), storage.EnvQueueName+"="+o.queue)
	prod.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	prodErr, err := prod.StderrPipe()
	if err != nil {
		return fmt.Errorf("producer stderr: %w", err)
	}
	var prodOut safeBuffer
	prod.Stdout = &prodOut
	if err := prod.Start(); err != nil {
		return fmt.Errorf("start producer: %w", err)
	}
	var sent atomic.Int64
	var prodLog safeBuffer
	progressRE := regexp.MustCompile(`producer: sent=(\d+)`)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(prodErr)
		for sc.Scan() {
			prodLog.Write(append(sc.Bytes(), '\n'))
			if m := progressRE.FindStringSubmatch(sc.Text()); m != nil {
				n, _ := strconv.ParseInt(m[1], 10, 64)
				sent.Store(n)
			}
		}
	}()
	prodDone := make(chan error, 1)
	go func() { <-scanned; prodDone <- prod.Wait() }()

	want := float64(o.messages + o.malformed)
	producerFinished := false
	var lastProcessed float64
	lastAt := start
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				fmt.Fprintln(out, "\ndemo: interrupted; stopping the consumer, the producer and Azurite")
			}
			_ = cons.Signal(syscall.SIGTERM)
			_, _ = cons.Wait(25 * time.Second)
			return fmt.Errorf("demo stopped: %w", context.Cause(ctx))
		case err := <-prodDone:
			producerFinished = true
			prodDone = nil
			if err != nil {
				return fmt.Errorf("producer failed: %w\n%s%s", err, prodLog.String(), prodOut.String())
			}
			sent.Store(int64(o.messages))
			fmt.Fprintf(out, "demo: producer done: %s", prodOut.String())
		case now := <-tick.C:
			m, err := cons.Metrics(ctx)
			if err != nil {
				return fmt.Errorf("consumer metrics: %w\n%s", err, cons.Stdout())
			}
			processed := m["consumer_messages_processed_total"]
			poisoned := m[`consumer_messages_poisoned_total{reason="malformed"}`] + m[`consumer_messages_poisoned_total{reason="over_delivered"}`] +
				m[`consumer_messages_poisoned_total{reason="rejected"}`]
			d, _ := storage.Depth(ctx, clients.Queue)
			fmt.Fprintf(out, "  %5s  sent %5d  queue depth %5d  processed %5.0f  poisoned %d  rate %4.0f msg/s\n",
				now.Sub(start).Round(time.Second), sent.Load(), d, processed, int(poisoned), (processed-lastProcessed)/now.Sub(lastAt).Seconds())
			lastProcessed, lastAt = processed, now
			if producerFinished && processed+poisoned >= want && d == 0 {
				return finish(ctx, out, o, cons, clients, start)
			}
		}
	}
}

// finish stops the consumer with SIGTERM and prints the summary read back
// from the table and the poison queue.
func finish(ctx context.Context, out io.Writer, o options, cons *procs.Consumer, clients *storage.Clients, start time.Time) error {
	wall := time.Since(start)
	rss, _ := procs.PeakRSS(cons.Cmd.Process.Pid)
	if err := cons.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	code, err := cons.Wait(25 * time.Second)
	if err != nil {
		return err
	}
	ents, err := storage.ListEntities(ctx, clients.Table)
	if err != nil {
		return err
	}
	poisoned, err := storage.Depth(ctx, clients.Poison)
	if err != nil {
		return err
	}
	texts := map[string]bool{}
	lat := make([]float64, 0, len(ents))
	var first, last time.Time
	for _, e := range ents {
		texts[e.Data] = true
		lat = append(lat, e.LatencyMs)
		if p, err := message.ParseStamp(e.DateStamp); err == nil {
			if first.IsZero() || p.Before(first) {
				first = p
			}
			if p.After(last) {
				last = p
			}
		}
	}
	missing := 0
	for i := 1; i <= o.messages; i++ {
		if !texts[fmt.Sprintf("demo message #%d", i)] {
			missing++
		}
	}
	slices.Sort(lat)
	busy := last.Sub(first)
	fmt.Fprintln(out)
	fmt.Fprintln(out, "summary")
	fmt.Fprintf(out, "  sent              %d (+%d malformed)\n", o.messages, o.malformed)
	fmt.Fprintf(out, "  stored            %d entities (%d of the sent messages missing)\n", len(ents), missing)
	fmt.Fprintf(out, "  duplicates        %d\n", len(ents)-len(texts))
	fmt.Fprintf(out, "  poisoned          %d (in %s)\n", poisoned, o.queue+storage.PoisonSuffix)
	bound := ""
	if o.rate > 0 {
		bound = fmt.Sprintf(" (paced by the producer's %s; -rate 0 for full speed)", rateText(o.rate))
	}
	fmt.Fprintf(out, "  throughput        %.0f msg/s while busy%s; %d in %s overall\n",
		float64(len(ents))/math.Max(busy.Seconds(), 0.001), bound, len(ents), wall.Round(100*time.Millisecond))
	fmt.Fprintf(out, "  e2e latency       p50 %s  p99 %s  max %s (srcStamp to processing; includes time waiting in the queue)\n",
		ms(quantile(lat, 0.50)), ms(quantile(lat, 0.99)), ms(quantile(lat, 1)))
	fmt.Fprintf(out, "  consumer          exit %d after SIGTERM, peak RSS %.1f MiB\n", code, float64(rss)/(1<<20))
	if missing > 0 || len(ents) != len(texts) || code != 0 || poisoned != o.malformed {
		return fmt.Errorf("unexpected result: %d missing, %d duplicates, %d poisoned, consumer exit %d", missing, len(ents)-len(texts), poisoned, code)
	}
	return nil
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(v float64) string {
	return time.Duration(v * float64(time.Millisecond)).Round(time.Millisecond).String()
}

func rateText(r float64) string {
	if r == 0 {
		return "full speed"
	}
	return fmt.Sprintf("%.0f msg/s", r)
}

// safeBuffer is a goroutine-safe append-only text buffer.
type safeBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}
