// Package consumer reads messages from an Azure Storage queue, stores one
// table entity per message and deletes the message only after the entity is
// written (at-least-once). Malformed and over-delivered messages go to the
// poison queue; transient storage errors are retried with backoff; SIGTERM
// (a cancelled context) drains in-flight work within a bounded time.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/redact"
	"github.com/aks-edw/aks-edw/app/retry"
	"github.com/aks-edw/aks-edw/app/storage"
)

const (
	stageTable  = "table"
	stageDelete = "delete"
	stagePoison = "poison"
	// stageDequeue labels throttled dequeues.
	stageDequeue = "dequeue"

	// maxTransaction is the Table service's limit of operations per
	// entity-group transaction.
	maxTransaction = 100
	// minPoll is the first wait after an empty dequeue.
	minPoll = 50 * time.Millisecond
	// OutageGrace is how long storage may be unavailable before /readyz
	// reports it (a short blip does not flap readiness).
	OutageGrace = 10 * time.Second
)

// Consumer is one queue consumer. Create it with New and run it with Run.
type Consumer struct {
	cfg     Config
	clients *storage.Clients
	log     *slog.Logger
	metrics *Metrics
	retry   retry.Policy
	// probeRetry paces the start-up probes: 100 ms doubling up to 2 s.
	probeRetry retry.Policy
	now        func() time.Time

	sem      chan struct{} // bounds storage requests in flight
	freed    chan struct{} // signalled when a batch finishes
	inflight atomic.Int64
	// dequeueTime and slotTime are moving averages (nanoseconds) of a
	// successful dequeue and of a successful request in a slot.
	dequeueTime, slotTime movingAvg
	ready                 atomic.Bool
	draining              atomic.Bool
	// outageSince is when storage became unavailable (UnixNano), 0 while it
	// is available. Dequeuing pauses while it is set.
	outageSince atomic.Int64
}

// New returns a consumer using the given clients, logging to log and
// registering its metrics with reg.
func New(cfg Config, clients *storage.Clients, log *slog.Logger, reg prometheus.Registerer) (*Consumer, error) {
	if clients == nil || clients.Queue == nil || clients.Poison == nil || clients.Table == nil {
		return nil, errors.New("consumer: queue, poison queue and table clients are required")
	}
	m, err := NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	c := &Consumer{
		cfg:        cfg,
		clients:    clients,
		log:        log,
		metrics:    m,
		retry:      retry.Default(),
		probeRetry: retry.Policy{Base: 100 * time.Millisecond, Max: 2 * time.Second},
		now:        time.Now,
		sem:        make(chan struct{}, cfg.Concurrency),
		freed:      make(chan struct{}, 1),
	}
	c.retry.OnRetry = func(attempt int, err error, delay time.Duration) {
		lvl := slog.LevelDebug
		if attempt >= 3 {
			lvl = slog.LevelWarn
		}
		c.log.Log(context.Background(), lvl, "transient storage error, retrying",
			"attempt", attempt, "delay", delay.String(), "status", retry.StatusCode(err), "code", retry.ErrorCode(err), "err", err)
		if retry.Outage(err) {
			c.reportOutage(err)
		}
	}
	return c, nil
}

// Ready reports whether the consumer has reached the queue and the table, is
// not draining, and storage has not been unavailable for longer than
// OutageGrace.
func (c *Consumer) Ready() bool {
	return c.ready.Load() && !c.draining.Load() && !c.outageReported()
}

// reportOutage records that storage is unavailable: dequeuing pauses until
// the probes succeed again (see recover). Only the first report of an outage
// is logged.
func (c *Consumer) reportOutage(err error) {
	if c.outageSince.CompareAndSwap(0, c.now().UnixNano()) {
		c.metrics.StorageAvailable.Set(0)
		c.metrics.Outages.Inc()
		c.log.Warn("storage unavailable: pausing dequeues until it answers again; no message is failed for it",
			"status", retry.StatusCode(err), "code", retry.ErrorCode(err), "err", err)
	}
}

// outageReported is true once an ongoing outage has lasted OutageGrace.
func (c *Consumer) outageReported() bool {
	since := c.outageSince.Load()
	return since != 0 && c.now().Sub(time.Unix(0, since)) >= OutageGrace
}

// recover probes the storage until it answers, then ends the outage. It
// returns false when ctx ends first.
func (c *Consumer) recover(ctx context.Context) bool {
	for attempt := 1; ; attempt++ {
		err := c.probeOnce(ctx)
		if err == nil {
			since := time.Unix(0, c.outageSince.Swap(0))
			c.metrics.StorageAvailable.Set(1)
			if !c.draining.Load() {
				c.metrics.Ready.Set(1)
			}
			c.log.Info("storage available again: resuming", "pausedFor", c.now().Sub(since).Round(time.Millisecond).String())
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if c.outageReported() {
			c.metrics.Ready.Set(0)
		}
		delay := c.probeRetry.Backoff(attempt)
		c.log.Debug("storage still unavailable", "attempt", attempt, "retryIn", delay.String(),
			"status", retry.StatusCode(err), "code", retry.ErrorCode(err), "err", err)
		if !sleep(ctx, delay) {
			return false
		}
	}
}

// Handler serves /healthz (liveness: the process answers), /readyz (ready
// once the queue and table were reached, 503 while draining) and /metrics
// from gatherer.
func (c *Consumer) Handler(gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch {
		case c.draining.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("draining\n"))
		case !c.ready.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("starting: queue and table not reached yet\n"))
		case c.outageReported():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("storage unavailable: dequeuing paused\n"))
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return mux
}

// Run checks that the queue, poison queue and table are reachable (retrying
// until they are; the consumer is ready then), consumes until ctx is done
// (or, with ExitWhenEmpty, until the queue is empty), then drains: it takes no new messages and lets in-flight ones finish for
// at most DrainTimeout. Whatever is unfinished then reappears on the queue
// after its visibility timeout. Run returns nil after a drain; it does not
// fail on storage errors, which are retried.
func (c *Consumer) Run(ctx context.Context) error {
	// Work outlives ctx (SIGTERM) until the drain deadline.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	start := c.now()
	if err := c.probe(ctx); err != nil {
		c.log.Info("stopped before the storage was reached", "err", err)
		return nil
	}
	c.ready.Store(true)
	c.metrics.Ready.Set(1)
	c.log.Info("ready", "queue", c.cfg.Storage.QueueName, "poisonQueue", c.cfg.Storage.PoisonQueueName(),
		"table", c.cfg.Storage.TableName, "auth", c.cfg.Storage.Auth(), "sinceStart", c.now().Sub(start).String())

	// The drain deadline runs from the end of ctx (SIGTERM), not from the end of fetch: a
	// dequeue sent just before SIGTERM to a storage that stopped answering must not hold the
	// exit for its own 30 s timeout on top of the drain timeout.
	drainStart := c.now()
	var arm sync.Once
	deadline := func() {
		arm.Do(func() {
			drainStart = c.now()
			time.AfterFunc(c.cfg.DrainTimeout, cancelWork)
		})
	}
	stopClock := context.AfterFunc(ctx, deadline)
	defer stopClock()

	var batches sync.WaitGroup
	c.fetch(ctx, workCtx, &batches)
	deadline() // ExitWhenEmpty: fetch returned with ctx still running

	c.draining.Store(true)
	c.metrics.Ready.Set(0)
	c.log.Info("draining: no new messages, finishing in-flight ones",
		"inFlight", c.inflight.Load(), "drainTimeout", c.cfg.DrainTimeout.String())
	done := make(chan struct{})
	go func() { batches.Wait(); close(done) }()
	select {
	case <-done:
		c.log.Info("drain complete", "took", c.now().Sub(drainStart).String())
	case <-workCtx.Done():
		left := c.inflight.Load()
		<-done
		c.log.Warn("drain timeout: unfinished messages reappear after their visibility timeout",
			"unfinished", left, "visibilityTimeout", c.cfg.VisibilityTimeout.String())
	}
	return nil
}

// probe retries until the queue and the table answer and the poison queue
// exists (it is created if missing). It returns only nil or ctx's error.
func (c *Consumer) probe(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := c.probeOnce(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("probe: %w", context.Cause(ctx))
		}
		// Permanent errors (missing queue or table, bad credentials) are
		// retried too: restarting would not fix them faster, and a pod that
		// crash-loops backs off far longer. The backoff is capped low so the
		// consumer turns ready soon after a role assignment has propagated.
		delay := c.probeRetry.Backoff(attempt)
		c.log.Warn("storage not reachable yet", "attempt", attempt, "retryIn", delay.String(),
			"status", retry.StatusCode(err), "code", retry.ErrorCode(err), "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("probe: %w", context.Cause(ctx))
		case <-t.C:
		}
	}
}

func (c *Consumer) probeOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	errs := make([]error, 3)
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := c.clients.Queue.GetProperties(ctx, nil); err != nil {
			errs[0] = fmt.Errorf("queue %s: %w", c.cfg.Storage.QueueName, err)
		}
	})
	wg.Go(func() {
		_, err := c.clients.Poison.GetProperties(ctx, nil)
		if retry.ErrorCode(err) == "QueueNotFound" || retry.StatusCode(err) == http.StatusNotFound {
			c.log.Info("creating poison queue", "queue", c.cfg.Storage.PoisonQueueName())
			err = storage.EnsureQueue(ctx, c.clients.Poison)
		}
		if err != nil {
			errs[1] = fmt.Errorf("poison queue %s: %w", c.cfg.Storage.PoisonQueueName(), err)
		}
	})
	wg.Go(func() {
		top := int32(1)
		pager := c.clients.Table.NewListEntitiesPager(&aztables.ListEntitiesOptions{Top: &top, Select: ptr("PartitionKey")})
		if _, err := pager.NextPage(ctx); err != nil {
			errs[2] = fmt.Errorf("table %s: %w", c.cfg.Storage.TableName, err)
		}
	})
	wg.Wait()
	return errors.Join(errs...)
}

func ptr[T any](v T) *T { return &v }

// maxInFlight is the most messages one consumer holds dequeued and
// unfinished: max(concurrency, batch) + 3 × batch. How much of it is used
// follows the observed latencies (see readAhead).
func (c *Consumer) maxInFlight() int64 {
	return int64(max(c.cfg.Concurrency, c.cfg.BatchSize) + 3*c.cfg.BatchSize)
}

// readAhead is how many messages the consumer wants in hand (dequeued,
// unfinished) before it sends another dequeue: enough to keep the
// Concurrency request slots busy while that dequeue is answered. With a slot
// request taking S and a dequeue D, the slots get through Concurrency × D/S
// requests while a dequeue is answered, and each message in hand is held for
// about three slot-request times (its table write, its wait for a delete
// slot, its delete): readAhead = Concurrency × (3 + D/S), with D and S moving
// averages of the observed times (D/S taken as 1 until both are known, at
// most 8). Against Azure, where a dequeue costs about what a delete costs,
// that is four times the concurrency; against the emulator, whose dequeues
// of 32 messages take 2-4 times as long, 5-7 times. maxInFlight caps it.
// (Measured with make bench: with one dequeue at a time and at most
// max(concurrency, batch) + batch messages held, the consumer kept 0.6 of its
// slots busy at 10 ms; see docs/programs.md.)
func (c *Consumer) readAhead() int64 {
	return int64(float64(c.cfg.Concurrency) * (3 + c.latencyRatio()))
}

// latencyRatio is D/S: a dequeue's moving-average time over a slot
// request's, 1 until both are known, between 1 and 8.
func (c *Consumer) latencyRatio() float64 {
	if d, s := c.dequeueTime.load(), c.slotTime.load(); d > 0 && s > 0 {
		return min(8, max(1, float64(d)/float64(s)))
	}
	return 1
}

// dequeuesAhead is how many dequeues may be in flight at once while the
// queue answers full batches: the slots use up to Concurrency messages per
// S, and a dequeue brings Batch per D, so ceil(Concurrency × D/S / Batch)
// dequeues keep up on average; one more covers a slow one (at most 4). More
// would only load the queue: the emulator's dequeues slow down as they pile
// up (make bench: 4 small replicas at 0.47-0.76 efficiency without this
// bound, 0.85-0.99 with it).
func (c *Consumer) dequeuesAhead() int {
	n := int(math.Ceil(float64(c.cfg.Concurrency)*c.latencyRatio()/float64(c.cfg.BatchSize))) + 1
	return min(4, n)
}

// movingAvg is a moving average of durations: the mean of the samples so
// far for the first eight, then each new one weighs 1/8. (A plain 1/8 weight
// from the first sample would take a few dozen samples to forget where it
// started: against the emulator about a second of dequeues, longer than a
// bench round, with the read-ahead sized for a dequeue as fast as a delete
// meanwhile.) Two goroutines observing at once may lose one sample: an
// estimate, not a count.
type movingAvg struct{ mean, n atomic.Int64 }

func (m *movingAvg) observe(d time.Duration) {
	n := min(m.n.Add(1), 8)
	old := m.mean.Load()
	m.mean.Store(old + (int64(d)-old)/n)
}

// load is the average, 0 before any sample.
func (m *movingAvg) load() time.Duration { return time.Duration(m.mean.Load()) }

// answer is a dequeue's result.
type answer struct {
	msgs []*azqueue.DequeuedMessage
	err  error
	at   time.Time
}

// fetch dequeues batches until ctx is done (or, with ExitWhenEmpty, until the
// queue is empty) and starts a goroutine per batch. It sends a dequeue while
// fewer than readAhead messages are in hand (and maxInFlight, which counts
// the batches asked for too, leaves room for a full batch). While the queue
// answers full batches, up to dequeuesAhead dequeues may be in flight, so the
// request slots are not left idle for a dequeue's round trip; after a short
// or empty answer dequeues are sent one at a time, with the poll backoff.
// Dequeue requests use workCtx, so a request already sent when ctx ends
// completes and its messages are processed rather than left invisible.
func (c *Consumer) fetch(ctx, workCtx context.Context, batches *sync.WaitGroup) {
	poll := minPoll
	failures, empties := 0, 0
	batch := int64(c.cfg.BatchSize)
	answers := make(chan answer, 4)
	outstanding := 0   // dequeues sent and not answered
	var reserved int64 // in-flight room kept for the outstanding dequeues
	full := false      // the last answer was a full batch
	take := func(a answer) {
		outstanding--
		reserved -= batch
		if len(a.msgs) == 0 {
			return
		}
		c.metrics.Dequeued.Add(float64(len(a.msgs)))
		c.inflight.Add(int64(len(a.msgs)))
		c.metrics.InFlight.Add(float64(len(a.msgs)))
		batches.Go(func() { c.processBatch(workCtx, a.msgs, a.at) })
	}
	defer func() {
		// Messages of dequeues already sent are processed, not left invisible.
		for outstanding > 0 {
			take(<-answers)
		}
	}()
	for {
		if ctx.Err() != nil {
			return
		}
		// Room for a full batch more, and fewer messages in hand than it takes
		// to keep the slots busy until that batch arrives.
		inHand := c.inflight.Load()
		room := inHand+reserved+batch <= c.maxInFlight() && inHand < c.readAhead()
		overlap := outstanding == 0 || (full && outstanding < c.dequeuesAhead())
		if room && overlap && c.outageSince.Load() == 0 {
			outstanding++
			reserved += batch
			at := c.now()
			go func() {
				msgs, err := c.dequeue(workCtx)
				answers <- answer{msgs: msgs, err: err, at: at}
			}()
			continue
		}
		if outstanding == 0 {
			// An outage pauses dequeuing, so no delivery count is spent on it.
			if c.outageSince.Load() != 0 {
				if !c.recover(ctx) {
					return
				}
				failures = 0
				continue
			}
			select { // no room: wait for messages to finish
			case <-ctx.Done():
				return
			case <-c.freed:
			}
			continue
		}
		var a answer
		select {
		case <-ctx.Done():
			return
		case <-c.freed:
			continue
		case a = <-answers:
		}
		take(a)
		err := a.err
		full = err == nil && int64(len(a.msgs)) == batch
		if err != nil && retry.Throttled(err) {
			c.metrics.Throttled.WithLabelValues(stageDequeue).Inc()
		}
		if err != nil && retry.Outage(err) {
			c.reportOutage(err)
			continue
		}
		if err != nil {
			failures++
			delay := c.retry.Backoff(failures)
			lvl := slog.LevelWarn
			switch {
			case retry.Throttled(err) && failures < 3:
				lvl = slog.LevelDebug
			case !retry.Transient(err):
				lvl = slog.LevelError
			}
			c.log.Log(ctx, lvl, "dequeue failed", "attempt", failures, "retryIn", delay.String(),
				"status", retry.StatusCode(err), "code", retry.ErrorCode(err), "err", err)
			if !sleep(ctx, delay) {
				return
			}
			continue
		}
		failures = 0
		if len(a.msgs) == 0 {
			if c.cfg.ExitWhenEmpty && c.inflight.Load() == 0 && outstanding == 0 {
				// Two empty answers in a row with nothing in flight: done.
				if empties++; empties >= 2 {
					c.log.Info("queue empty and nothing in flight: stopping", "setting", EnvExitWhenEmpty)
					return
				}
			}
			if !sleep(ctx, poll) {
				return
			}
			poll = min(poll*2, c.cfg.MaxPollInterval)
			continue
		}
		poll = minPoll
		empties = 0
	}
}

// finish releases k messages' in-flight capacity. It is called as each
// message ends (not when its whole batch ends), so one slow message does not
// hold back the next dequeue.
func (c *Consumer) finish(k int) {
	c.inflight.Add(-int64(k))
	c.metrics.InFlight.Sub(float64(k))
	select {
	case c.freed <- struct{}{}:
	default:
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (c *Consumer) dequeue(ctx context.Context) ([]*azqueue.DequeuedMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n := int32(c.cfg.BatchSize)
	vis := int32(c.cfg.VisibilityTimeout / time.Second)
	start := time.Now()
	resp, err := c.clients.Queue.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: &n, VisibilityTimeout: &vis})
	if err != nil {
		return nil, fmt.Errorf("dequeue from %s: %w", c.cfg.Storage.QueueName, err)
	}
	if len(resp.Messages) > 0 {
		c.dequeueTime.observe(time.Since(start))
	}
	return resp.Messages, nil
}

// item is one dequeued message on its way through a batch.
type item struct {
	id, popReceipt, text string
	dequeueCount         int64
	parsed               message.Parsed
	entity               message.Entity
}

func newItem(m *azqueue.DequeuedMessage) item {
	it := item{}
	if m.MessageID != nil {
		it.id = *m.MessageID
	}
	if m.PopReceipt != nil {
		it.popReceipt = *m.PopReceipt
	}
	if m.MessageText != nil {
		it.text = *m.MessageText
	}
	if m.DequeueCount != nil {
		it.dequeueCount = *m.DequeueCount
	}
	return it
}

// processBatch handles one dequeued batch: poison messages are moved, valid
// ones are written to the table (grouped by partition when TableBatch is on)
// and deleted once their write succeeded. Work stops at the batch's lease
// deadline: past it the pop receipts are stale and the messages are already
// visible to other consumers.
func (c *Consumer) processBatch(ctx context.Context, msgs []*azqueue.DequeuedMessage, dequeuedAt time.Time) {
	margin := min(c.cfg.VisibilityTimeout/10, 2*time.Second)
	ctx, cancel := context.WithDeadline(ctx, dequeuedAt.Add(c.cfg.VisibilityTimeout-margin))
	defer cancel()

	var wg sync.WaitGroup
	var valid []item
	for _, m := range msgs {
		it := newItem(m)
		parsed, perr := message.Parse(it.text)
		switch d := message.Decide(it.dequeueCount, c.cfg.MaxDeliveries, perr); d {
		case message.Process:
			it.parsed = parsed
			valid = append(valid, it)
		default:
			wg.Go(func() {
				defer c.finish(1)
				c.poison(ctx, it, d, perr)
			})
		}
	}
	for _, group := range c.group(valid) {
		wg.Go(func() {
			now := c.now()
			for i := range group {
				group[i].entity = message.NewEntity(group[i].id, group[i].dequeueCount, group[i].parsed, now)
			}
			results := c.write(ctx, group)
			for i, it := range group {
				switch err := results[i]; {
				case err == nil:
					wg.Go(func() { defer c.finish(1); c.deleteStored(ctx, it, now) })
				case retry.Rejected(err):
					// The table refuses this entity for good: only this message is poison.
					wg.Go(func() { defer c.finish(1); c.poison(ctx, it, message.PoisonRejected, err) })
				default:
					c.finish(1)
					c.metrics.Failed.WithLabelValues(stageTable).Inc()
					if retry.Outage(err) {
						c.reportOutage(err)
						c.log.Info("table unavailable; the message is delivered again once storage answers",
							"messageId", it.id, "code", retry.ErrorCode(err))
					} else {
						c.log.Warn("table write failed; the message will be delivered again", "messageId", it.id, "err", err)
					}
				}
			}
		})
	}
	wg.Wait()
	c.log.Debug("batch done", "messages", len(msgs), "took", c.now().Sub(dequeuedAt).String())
}

// deleteStored deletes a message whose entity is written, and counts it.
func (c *Consumer) deleteStored(ctx context.Context, it item, now time.Time) {
	if err := c.delete(ctx, c.clients.Queue, it); err != nil {
		c.metrics.Failed.WithLabelValues(stageDelete).Inc()
		if retry.Outage(err) {
			c.reportOutage(err)
		}
		c.log.Warn("delete failed after the entity was written; the redelivery will upsert the same entity",
			"messageId", it.id, "err", err)
		return
	}
	c.metrics.Processed.Inc()
	// A stamp far in the future or past would distort the latency histogram.
	if it.parsed.Plausible(now) {
		c.metrics.Latency.Observe(it.entity.Latency().Seconds())
	} else {
		c.metrics.ImplausibleStamp.Inc()
	}
}

// group splits valid messages into write units: with TableBatch, the messages
// sharing a PartitionKey (at most 100 per transaction); otherwise one each.
func (c *Consumer) group(valid []item) [][]item {
	if len(valid) == 0 {
		return nil
	}
	if !c.cfg.TableBatch {
		out := make([][]item, len(valid))
		for i := range valid {
			out[i] = valid[i : i+1]
		}
		return out
	}
	var order []string
	byPK := map[string][]item{}
	for _, it := range valid {
		pk, _ := message.Keys(it.parsed.KeySource(it.id))
		if _, ok := byPK[pk]; !ok {
			order = append(order, pk)
		}
		byPK[pk] = append(byPK[pk], it)
	}
	var out [][]item
	for _, pk := range order {
		g := byPK[pk]
		for len(g) > maxTransaction {
			out = append(out, g[:maxTransaction])
			g = g[maxTransaction:]
		}
		out = append(out, g)
	}
	return out
}

// acquire takes a request slot; it fails only when ctx ends first.
func (c *Consumer) acquire(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (c *Consumer) release() { <-c.sem }

// call runs op through the retry policy and counts the attempts storage
// throttled under stage. It holds one request slot from the first attempt to
// the last, backoffs included: a consumer whose requests are throttled then
// sends fewer of them, which is the point of backing off (Azure's guidance
// for 503 ServerBusy), instead of filling the slot with another message's
// request meanwhile.
func (c *Consumer) call(ctx context.Context, stage string, op func(ctx context.Context) error) error {
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.release()
	return c.retry.Do(ctx, func(ctx context.Context) error {
		start := time.Now()
		err := op(ctx)
		if err == nil {
			c.slotTime.observe(time.Since(start))
		}
		if retry.Throttled(err) {
			c.metrics.Throttled.WithLabelValues(stage).Inc()
		}
		return err
	})
}

// write upserts the group's entities and returns one result per entity (nil:
// stored): one entity-group transaction for a group of several, a plain
// upsert for one. Upsert (insert-or-replace) keyed by the key source makes a
// redelivery overwrite the same entity.
func (c *Consumer) write(ctx context.Context, group []item) []error {
	results := make([]error, len(group))
	if len(group) == 1 {
		results[0] = c.upsert(ctx, group[0])
		return results
	}
	actions := make([]aztables.TransactionAction, 0, len(group))
	for _, it := range group {
		b, err := it.entity.Marshal()
		if err != nil {
			for i := range results {
				results[i] = err
			}
			return results
		}
		actions = append(actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeInsertReplace, Entity: b})
	}
	err := c.call(ctx, stageTable, func(ctx context.Context) error {
		_, err := c.clients.Table.SubmitTransaction(ctx, actions, nil)
		return err
	})
	if err == nil {
		return results
	}
	if ctx.Err() != nil || retry.Outage(err) {
		// The table is unavailable (or the lease is over): every entity failed alike.
		err = fmt.Errorf("table transaction of %d entities: %w", len(group), err)
		for i := range results {
			results[i] = err
		}
		return results
	}
	// A permanent transaction failure names no entity reliably: write them one
	// by one, so a single bad entity cannot hold back (or poison) the others.
	c.log.Info("table transaction refused; writing its entities one by one", "entities", len(group),
		"status", retry.StatusCode(err), "code", retry.ErrorCode(err))
	var wg sync.WaitGroup
	for i, it := range group {
		wg.Go(func() { results[i] = c.upsert(ctx, it) })
	}
	wg.Wait()
	return results
}

func (c *Consumer) upsert(ctx context.Context, it item) error {
	b, err := it.entity.Marshal()
	if err != nil {
		return err
	}
	err = c.call(ctx, stageTable, func(ctx context.Context) error {
		_, err := c.clients.Table.UpsertEntity(ctx, b, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace})
		return err
	})
	if err != nil {
		return fmt.Errorf("upsert entity for message %s: %w", it.id, err)
	}
	return nil
}

func (c *Consumer) delete(ctx context.Context, q *azqueue.QueueClient, it item) error {
	err := c.call(ctx, stageDelete, func(ctx context.Context) error {
		_, err := q.DeleteMessage(ctx, it.id, it.popReceipt, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete message %s: %w", it.id, err)
	}
	return nil
}

// poison moves a message to the poison queue (never expiring), as a
// message.PoisonRecord that carries the original text unchanged and the
// reason, then deletes it from the work queue. A missing poison queue is
// created again. If the delete fails the message comes back and is moved
// again: the poison queue may then hold it twice, but it never loops on the
// work queue.
func (c *Consumer) poison(ctx context.Context, it item, d message.Decision, cause error) {
	reason := d.String()
	detail := ""
	if cause != nil {
		detail = redact.String(cause.Error())
	}
	text, err := message.NewPoisonRecord(c.cfg.Storage.QueueName, it.id, it.dequeueCount, it.text, d, detail, c.now()).Encode()
	if err != nil {
		// Too large to wrap: move the original text unchanged; the reason is in the log.
		text = it.text
	}
	ttl := int32(-1)
	enqueue := func() error {
		return c.call(ctx, stagePoison, func(ctx context.Context) error {
			_, err := c.clients.Poison.EnqueueMessage(ctx, text, &azqueue.EnqueueMessageOptions{TimeToLive: &ttl})
			return err
		})
	}
	err = enqueue()
	if retry.ErrorCode(err) == "QueueNotFound" {
		c.log.Warn("poison queue missing: creating it again", "queue", c.cfg.Storage.PoisonQueueName())
		if err = storage.EnsureQueue(ctx, c.clients.Poison); err == nil {
			err = enqueue()
		}
	}
	if err == nil {
		err = c.delete(ctx, c.clients.Queue, it)
	} else {
		err = fmt.Errorf("copy message %s to the poison queue: %w", it.id, err)
	}
	if err != nil {
		c.metrics.Failed.WithLabelValues(stagePoison).Inc()
		if retry.Outage(err) {
			c.reportOutage(err)
		}
		c.log.Warn("moving a message to the poison queue failed; it will be tried again", "messageId", it.id, "reason", reason, "err", err)
		return
	}
	c.metrics.Poisoned.WithLabelValues(reason).Inc()
	attrs := []any{"messageId", it.id, "reason", reason, "dequeueCount", it.dequeueCount, "poisonQueue", c.cfg.Storage.PoisonQueueName()}
	if detail != "" {
		attrs = append(attrs, "cause", detail)
	}
	c.log.Info("message moved to the poison queue", attrs...)
}
