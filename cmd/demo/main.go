// Command demo is the one-command local run: it installs Azurite if needed
// (npm ci), starts it on free ports (queue on disk, table in memory: see
// harness/azurite), creates the queue and the table, builds and runs the
// real producer and consumer binaries against it, shows live progress and
// ends with a summary read back from the table: throughput over time, peak
// RSS of every process and Azurite's longest silence. It stops everything it
// started, also on Ctrl-C, and gives up when Azurite stops answering.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/azurite"
	"github.com/aks-edw/aks-edw/harness/procs"
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
	stall               time.Duration
}

// defaultTimeout is -timeout's default: 5 minutes plus 10 ms per message, so a
// long run (-messages 100000) is not cut short while a stuck one still ends.
func defaultTimeout(messages int) time.Duration {
	return 5*time.Minute + time.Duration(messages)*10*time.Millisecond
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
	flag.DurationVar(&o.timeout, "timeout", 0, "give up after this long (0 = 5m plus 10ms per message)")
	flag.DurationVar(&o.stall, "stall", time.Minute, "give up when Azurite has not answered for this long")
	flag.Parse()
	if o.timeout == 0 {
		o.timeout = defaultTimeout(o.messages)
	}
	if _, err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

// result is what a run measured, for the summary and the tests.
type result struct {
	// sent is the producer's messages; stored, missing and duplicates are read
	// back from the table, poisoned from the poison queue.
	sent, stored, missing, duplicates, poisoned int
	// busy is from the producer's start to the last message processed.
	busy time.Duration
	// longestSilence is the longest time between two answers of Azurite's
	// queue service to the demo's once-a-second depth query.
	longestSilence time.Duration
	// samples are the once-a-second progress readings.
	samples []sample
	// peakRSS is each process's peak resident set size, by name.
	peakRSS map[string]int64
	// consumerExit is the consumer's exit code after SIGTERM.
	consumerExit int
}

// sample is one progress reading.
type sample struct {
	at        time.Duration // since the producer started
	processed float64
	// answer is how long Azurite took to answer the depth query (the probe's
	// timeout when it did not).
	answer     time.Duration
	answered   bool
	azuriteRSS int64 // current RSS of Azurite's processes together
}

// probeTimeout bounds each depth query, so a silent Azurite shows in the
// progress lines instead of freezing them.
const probeTimeout = 5 * time.Second

func run(parent context.Context, o options, out io.Writer) (result, error) {
	var res result
	if o.messages < 1 || o.rate < 0 || o.producerConcurrency < 1 || o.concurrency < 1 || o.batch < 1 || o.batch > 32 || o.malformed < 0 {
		return res, errors.New("invalid flags: messages, concurrencies >= 1, batch 1-32, rate and malformed >= 0")
	}
	if o.timeout <= 0 || o.stall <= probeTimeout {
		return res, fmt.Errorf("invalid flags: -timeout must be > 0 and -stall > %s", probeTimeout)
	}
	ctx, cancel := context.WithTimeout(parent, o.timeout)
	defer cancel()
	root, err := azurite.RepoRoot()
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("", "aks-edw-demo-")
	if err != nil {
		return res, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)

	fmt.Fprintln(out, "demo: starting Azurite (queue on disk, table in memory, free ports) and building the consumer and the producer ...")
	t0 := time.Now()
	bins, az, err := procs.BuildWithAzurite(ctx, root, dir, out)
	if err != nil {
		return res, err
	}
	defer func() {
		az.Stop()
		fmt.Fprintln(out, "demo: Azurite stopped; nothing left running")
	}()
	fmt.Fprintf(out, "demo: Azurite queue :%d table :%d, binaries built (%s)\n", az.QueuePort, az.TablePort, time.Since(t0).Round(100*time.Millisecond))

	clients, err := storage.NewClients(storage.Settings{QueueName: o.queue, TableName: o.table, ConnectionString: az.ConnectionString()}, storage.NewHTTPClient(8))
	if err != nil {
		return res, err
	}
	if err := storage.EnsureQueue(ctx, clients.Queue); err != nil {
		return res, err
	}
	if err := storage.EnsureTable(ctx, clients.Table); err != nil {
		return res, err
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
		return res, err
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
		return res, err
	}
	fmt.Fprintf(out, "demo: consumer ready %s after start, health/metrics on http://%s\n", ready.Round(time.Millisecond), cons.Addr)

	// Malformed messages first, so the poison queue has something to show.
	for i := range o.malformed {
		if _, err := clients.Queue.EnqueueMessage(ctx, fmt.Sprintf("not JSON: malformed demo message %d", i+1), nil); err != nil {
			return res, fmt.Errorf("enqueue malformed message: %w", err)
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
		return res, fmt.Errorf("producer stderr: %w", err)
	}
	var prodOut safeBuffer
	prod.Stdout = &prodOut
	if err := prod.Start(); err != nil {
		return res, fmt.Errorf("start producer: %w", err)
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
	res.peakRSS = map[string]int64{}

	want := float64(o.messages + o.malformed)
	producerFinished := false
	var lastProcessed float64
	lastAt, lastAnswer := start, start
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
			return res, fmt.Errorf("demo stopped: %w", context.Cause(ctx))
		case err := <-prodDone:
			producerFinished = true
			prodDone = nil
			if err != nil {
				return res, fmt.Errorf("producer failed: %w\n%s%s", err, prodLog.String(), prodOut.String())
			}
			if ru, ok := prod.ProcessState.SysUsage().(*syscall.Rusage); ok {
				res.peakRSS["producer"] = ru.Maxrss * 1024
			}
			sent.Store(int64(o.messages))
			fmt.Fprintf(out, "demo: producer done: %s", prodOut.String())
		case now := <-tick.C:
			m, err := cons.Metrics(ctx)
			if err != nil {
				return res, fmt.Errorf("consumer metrics: %w\n%s", err, cons.Stdout())
			}
			processed := m["consumer_messages_processed_total"]
			poisoned := m[`consumer_messages_poisoned_total{reason="malformed"}`] + m[`consumer_messages_poisoned_total{reason="over_delivered"}`] +
				m[`consumer_messages_poisoned_total{reason="rejected"}`]
			pctx, pcancel := context.WithTimeout(ctx, probeTimeout)
			asked := time.Now()
			d, derr := storage.Depth(pctx, clients.Queue)
			pcancel()
			s := sample{at: time.Since(start), processed: processed, answer: time.Since(asked), answered: derr == nil, azuriteRSS: rssOf(az.Pids())}
			res.samples = append(res.samples, s)
			depth := fmt.Sprintf("%5d", d)
			if s.answered {
				res.longestSilence = max(res.longestSilence, time.Since(lastAnswer))
				lastAnswer = time.Now()
			} else {
				silent := time.Since(lastAnswer)
				res.longestSilence = max(res.longestSilence, silent)
				depth = fmt.Sprintf("%5s", "?")
				if silent >= o.stall {
					_ = cons.Signal(syscall.SIGTERM)
					_, _ = cons.Wait(25 * time.Second)
					return res, fmt.Errorf("azurite has not answered for %s (the depth query timed out every second since %s): giving up\n%s",
						silent.Round(time.Second), lastAnswer.Sub(start).Round(time.Second), az.Output())
				}
			}
			fmt.Fprintf(out, "  %5s  sent %5d  queue depth %s  processed %5.0f  poisoned %d  rate %4.0f msg/s\n",
				now.Sub(start).Round(time.Second), sent.Load(), depth, processed, int(poisoned), (processed-lastProcessed)/now.Sub(lastAt).Seconds())
			lastProcessed, lastAt = processed, now
			if producerFinished && processed+poisoned >= want && d == 0 && s.answered {
				res.busy = time.Since(start)
				return finish(ctx, out, o, cons, az, clients, res)
			}
		}
	}
}

// rssOf returns the summed current RSS of the processes (0 for any gone).
func rssOf(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		if v, err := procs.RSS(pid); err == nil {
			sum += v
		}
	}
	return sum
}

// finish stops the consumer with SIGTERM, reads the table and the poison
// queue back (Azurite must still answer) and prints the summary.
func finish(ctx context.Context, out io.Writer, o options, cons *procs.Consumer, az *azurite.Instance, clients *storage.Clients, res result) (result, error) {
	res.sent = o.messages
	if rss, err := procs.PeakRSS(cons.Cmd.Process.Pid); err == nil {
		res.peakRSS["consumer"] = rss
	}
	for name, pid := range az.NamedPids() {
		if rss, err := procs.PeakRSS(pid); err == nil {
			res.peakRSS["azurite "+name] = rss
		}
	}
	if err := cons.Signal(syscall.SIGTERM); err != nil {
		return res, err
	}
	code, err := cons.Wait(25 * time.Second)
	if err != nil {
		return res, err
	}
	res.consumerExit = code
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer rcancel()
	ents, err := storage.ListEntities(rctx, clients.Table)
	if err != nil {
		return res, fmt.Errorf("read the table back: %w", err)
	}
	poisoned, err := storage.Depth(rctx, clients.Poison)
	if err != nil {
		return res, fmt.Errorf("read the poison queue back: %w", err)
	}
	res.poisoned = poisoned
	texts := map[string]bool{}
	lat := make([]float64, 0, len(ents))
	for _, e := range ents {
		texts[e.Data] = true
		lat = append(lat, e.LatencyMs)
	}
	for i := 1; i <= o.messages; i++ {
		if !texts[fmt.Sprintf("demo message #%d", i)] {
			res.missing++
		}
	}
	res.stored, res.duplicates = len(ents), len(ents)-len(texts)
	slices.Sort(lat)
	fmt.Fprintln(out)
	fmt.Fprintln(out, "summary")
	fmt.Fprintf(out, "  sent              %d (+%d malformed)\n", o.messages, o.malformed)
	fmt.Fprintf(out, "  stored            %d entities (%d of the sent messages missing)\n", res.stored, res.missing)
	fmt.Fprintf(out, "  duplicates        %d\n", res.duplicates)
	fmt.Fprintf(out, "  poisoned          %d (in %s)\n", poisoned, o.queue+storage.PoisonSuffix)
	bound := ""
	if o.rate > 0 {
		bound = fmt.Sprintf(" (paced by the producer's %s; -rate 0 for full speed)", rateText(o.rate))
	}
	fmt.Fprintf(out, "  throughput        %.0f msg/s from the producer's start to the last message%s\n",
		float64(len(ents))/math.Max(res.busy.Seconds(), 0.001), bound)
	fmt.Fprintf(out, "  e2e latency       p50 %s  p99 %s  max %s (srcStamp to processing; includes time waiting in the queue)\n",
		ms(quantile(lat, 0.50)), ms(quantile(lat, 0.99)), ms(quantile(lat, 1)))
	fmt.Fprintf(out, "  azurite answers   longest silence %s (its depth query, once a second)\n", res.longestSilence.Round(time.Millisecond))
	fmt.Fprintf(out, "  peak RSS          %s\n", peakText(res.peakRSS))
	fmt.Fprintf(out, "  consumer          exit %d after SIGTERM\n", code)
	fmt.Fprintln(out, "  over time")
	for _, row := range timeline(res.samples, 12) {
		fmt.Fprintf(out, "    %s\n", row)
	}
	if res.missing > 0 || res.duplicates != 0 || code != 0 || poisoned != o.malformed {
		return res, fmt.Errorf("unexpected result: %d missing, %d duplicates, %d poisoned, consumer exit %d", res.missing, res.duplicates, poisoned, code)
	}
	return res, nil
}

// peakText lists the peak RSS of each process, in a stable order.
func peakText(peaks map[string]int64) string {
	names := slices.Sorted(maps.Keys(peaks))
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.1f MiB", n, float64(peaks[n])/(1<<20)))
	}
	return strings.Join(parts, ", ")
}

// timeline turns the once-a-second samples into at most rows windows of equal
// length (whole 10 s multiples): the throughput in each, Azurite's RSS at its
// end and its slowest answer to the depth query, so a slowdown, a stall or a
// leak shows.
func timeline(samples []sample, rows int) []string {
	if len(samples) == 0 {
		return nil
	}
	total := samples[len(samples)-1].at
	width := 10 * time.Second
	for time.Duration(rows)*width < total {
		width += 10 * time.Second
	}
	out := []string{fmt.Sprintf("%-15s %8s %13s %15s", "window", "msg/s", "azurite RSS", "slowest answer")}
	var prev sample
	for from := time.Duration(0); from < total; from += width {
		to := min(from+width, total)
		var last sample
		var slowest time.Duration
		silent := false
		for _, s := range samples {
			if s.at <= from || s.at > to {
				continue
			}
			last = s
			slowest = max(slowest, s.answer)
			silent = silent || !s.answered
		}
		if last.at == 0 {
			continue
		}
		answer := slowest.Round(time.Millisecond).String()
		if silent {
			answer = "none in " + probeTimeout.String()
		}
		out = append(out, fmt.Sprintf("%-15s %8.0f %9.0f MiB %15s", fmt.Sprintf("%s-%s", from, to.Round(time.Second)),
			(last.processed-prev.processed)/(last.at-prev.at).Seconds(), float64(last.azuriteRSS)/(1<<20), answer))
		prev = last
	}
	return out
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
