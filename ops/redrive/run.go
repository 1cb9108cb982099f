package redrive

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/storage"
)

// Options say what Run reads and moves.
type Options struct {
	// Work is the work queue's name (AZURE_QUEUE_NAME); Poison is its poison queue.
	Work       string
	Poison     Queue
	PoisonName string
	// QueueNamed returns a client for a queue redrive may move into.
	QueueNamed func(name string) Queue
	// To, when set, is the queue every selected message goes to, whatever its record names.
	// Otherwise a message goes to the queue its record names, and only when that is Work.
	To string
	// Select picks the messages; Limit (when > 0) caps how many are moved.
	Select Selector
	Limit  int
	// Move moves the selected messages; without it Run only reports.
	Move bool
	// Rate (when > 0) caps the moves per second.
	Rate float64
	// Hold is how long read messages stay invisible (DefaultHold when 0).
	Hold time.Duration
	// Stop, when closed, makes Run finish the message in hand and stop.
	Stop <-chan struct{}
	// Progress, when set, is called about every second while messages are moved.
	Progress func(Summary)
}

// Result is what Run saw and did.
type Result struct {
	Report  Report  `json:"report"`
	Summary Summary `json:"summary"`
}

// Report describes the poison messages read.
type Report struct {
	PoisonQueue string `json:"poisonQueue"`
	WorkQueue   string `json:"workQueue"`
	// Approximate is the service's message count before the run; Read is how many were read (a
	// move with -limit stops reading once it has its messages).
	Approximate int            `json:"approximateCount"`
	Read        int            `json:"read"`
	Reasons     []ReasonCount  `json:"reasons"`
	Sources     []SourceCount  `json:"sources"`
	Unparseable []Listed       `json:"unparseable,omitempty"`
	ByReason    map[string]int `json:"-"`
}

// ReasonCount is one category's count, its oldest and newest poisoning and a few ids.
type ReasonCount struct {
	Reason    string   `json:"reason"`
	Count     int      `json:"count"`
	Oldest    string   `json:"oldest"`
	Newest    string   `json:"newest"`
	SampleIDs []string `json:"sampleIds"`
}

// SourceCount is how many poison messages came from one work queue.
type SourceCount struct {
	Queue string `json:"queue"`
	Count int    `json:"count"`
}

// Listed is a message left where it is, and why.
type Listed struct {
	ID  string `json:"id"`
	Why string `json:"why"`
}

// Summary is what a move did.
type Summary struct {
	// Selected are the messages the selection picked (capped by Limit).
	Selected int `json:"selected"`
	// Moved were put on their queue and deleted from the poison queue.
	Moved int `json:"moved"`
	// Skipped were selected but left on the poison queue, by why.
	Skipped map[string]int `json:"skipped"`
	// SkippedList names them.
	SkippedList []Listed `json:"skippedList,omitempty"`
	// Failed could not be moved (storage kept failing); each stays on the poison queue.
	Failed   int      `json:"failed"`
	Failures []Listed `json:"failures,omitempty"`
	// Stopped says a stop request ended the run early (a report then covers what was read).
	Stopped bool `json:"stopped"`
	// Unreleased are messages redrive could not make visible again; they come back when the
	// hold ends.
	Unreleased int `json:"unreleased"`
	// Elapsed is the run's time in seconds.
	Elapsed float64 `json:"elapsedSeconds"`
}

// Skip reasons.
const (
	skipOtherQueue = "names another queue"
	skipUnsendable = "cannot travel unchanged"
)

// Run reads the whole poison queue (or, when moving with a limit, until the limit is reached),
// reports it and, with Move, moves the selected messages: each is put on its queue first, then
// deleted from the poison queue with its pop receipt. Every message it read and did not move is
// made visible again before it returns. An error means the run could not go on (the poison
// queue unreadable); the result says what had been done by then.
func Run(ctx context.Context, o Options) (Result, error) {
	start := time.Now()
	if o.Hold <= 0 {
		o.Hold = DefaultHold
	}
	res := Result{Report: Report{PoisonQueue: o.PoisonName, WorkQueue: o.Work, ByReason: map[string]int{}}, Summary: Summary{Skipped: map[string]int{}}}
	n, err := Depth(ctx, o.Poison, o.PoisonName)
	if err != nil {
		return res, err
	}
	res.Report.Approximate = n
	var dest Queue
	if o.To != "" {
		dest = o.QueueNamed(o.To)
	}
	if o.Move {
		name := o.To
		if name == "" {
			name = o.Work
			dest = o.QueueNamed(o.Work)
		}
		if _, err := Depth(ctx, dest, name); err != nil {
			return res, err
		}
	}

	rd := newReader(o.Poison, o.Work, o.Hold)
	var (
		mu      sync.Mutex // guards res.Summary for the progress line
		held    []*Entry   // read and not moved: made visible again at the end
		moved   = map[string]bool{}
		stopped = func() bool {
			select {
			case <-o.Stop:
				return true
			default:
				return false
			}
		}
	)
	rep := newTally()
	if o.Move && o.Progress != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					mu.Lock()
					s := res.Summary
					mu.Unlock()
					s.Elapsed = time.Since(start).Seconds()
					o.Progress(s)
				}
			}
		}()
	}
	skip := func(e *Entry, why, detail string) {
		mu.Lock()
		res.Summary.Skipped[why]++
		res.Summary.SkippedList = append(res.Summary.SkippedList, Listed{ID: e.ID(), Why: why + ": " + detail})
		mu.Unlock()
		held = append(held, e)
	}
	var runErr error
	var pace time.Time // when the next move may start (Rate)
	full := func() bool { return o.Limit > 0 && res.Summary.Selected >= o.Limit }
read:
	for !(o.Move && full()) && !stopped() {
		fresh, again, err := rd.next(ctx)
		if err != nil {
			runErr = err
			break
		}
		if len(fresh)+len(again) == 0 {
			break
		}
		for _, e := range again {
			// Read again (its hold ran out during a long run; its new pop receipt is in place for
			// the release). A message this run already put on its queue is the copy whose delete
			// failed: delete it now, never send it twice.
			if moved[e.PoisonID] {
				_ = deletePoison(ctx, o.Poison, e)
			}
		}
		for i, e := range fresh {
			rep.add(e, o.Work)
			if !o.Select.Match(*e) || full() {
				held = append(held, e)
				continue
			}
			mu.Lock()
			res.Summary.Selected++
			mu.Unlock()
			if !o.Move {
				held = append(held, e)
				continue
			}
			target, q := o.To, dest
			if target == "" {
				if src := e.Source(o.Work); src != o.Work {
					skip(e, skipOtherQueue, fmt.Sprintf("its record names queue %s, not %s (-to %s moves it there)", src, o.Work, src))
					continue
				}
				target = o.Work
			}
			if why := Sendable(e.Original); why != "" {
				skip(e, skipUnsendable, why+" (left on the poison queue: moving it would change it)")
				continue
			}
			if o.Rate > 0 {
				if wait := time.Until(pace); wait > 0 {
					select {
					case <-o.Stop:
					case <-time.After(wait):
					}
				}
			}
			if stopped() {
				held = append(held, fresh[i:]...)
				break read
			}
			// The message in hand: finished even if a stop comes now.
			if o.Rate > 0 {
				pace = time.Now().Add(time.Duration(float64(time.Second) / o.Rate))
			}
			err := moveOne(ctx, q, o.Poison, e)
			mu.Lock()
			switch {
			case Denied(err) && !errors.Is(err, errEnqueued):
				// Not allowed to put messages there: no point trying the others.
				mu.Unlock()
				held = append(held, fresh[i:]...)
				runErr = fmt.Errorf("queue %s: %w", target, err)
				break read
			case err == nil:
				res.Summary.Moved++
				moved[e.PoisonID] = true
			case errors.Is(err, errEnqueued):
				// On both queues: the consumer stores it once; the poison copy stays visible.
				moved[e.PoisonID] = true
				res.Summary.Failed++
				res.Summary.Failures = append(res.Summary.Failures, Listed{ID: e.ID(), Why: fmt.Sprintf("put on %s, but %v", target, err)})
				held = append(held, e)
			default:
				res.Summary.Failed++
				res.Summary.Failures = append(res.Summary.Failures, Listed{ID: e.ID(), Why: err.Error()})
				held = append(held, e)
			}
			mu.Unlock()
		}
	}
	if stopped() {
		res.Summary.Stopped = true
	}
	// Released with a context of its own: a cancelled run still gives back what it holds.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	res.Summary.Unreleased = rd.release(rctx, held)
	res.Report = rep.report(res.Report)
	res.Summary.Elapsed = time.Since(start).Seconds()
	return res, runErr
}

// errEnqueued marks a move whose enqueue succeeded and whose delete did not.
var errEnqueued = errors.New("not deleted from the poison queue")

// moveOne puts e's original text on q (never expiring, as on the poison queue: nothing is lost
// to a TTL while the consumer is down), then deletes e from the poison queue with its pop
// receipt. The order is what makes a crash safe: in between, the message is on both queues.
func moveOne(ctx context.Context, q, poison Queue, e *Entry) error {
	ttl := int32(-1)
	err := policy().Do(ctx, func(ctx context.Context) error {
		_, err := q.EnqueueMessage(ctx, e.Original, &azqueue.EnqueueMessageOptions{TimeToLive: &ttl})
		return err
	})
	if err != nil {
		if notFound(err) {
			return fmt.Errorf("enqueue: %w: %v", ErrQueueMissing, err)
		}
		return fmt.Errorf("enqueue: %w", err)
	}
	if err := deletePoison(ctx, poison, e); err != nil && !notFound(err) {
		// A 404 means the poison copy is gone already (another redrive took it after its hold
		// ran out): the work queue may hold it twice, and the consumer stores it once.
		return fmt.Errorf("%w: %v", errEnqueued, err)
	}
	return nil
}

func deletePoison(ctx context.Context, poison Queue, e *Entry) error {
	return policy().Do(ctx, func(ctx context.Context) error {
		_, err := poison.DeleteMessage(ctx, e.PoisonID, e.popReceipt, nil)
		return err
	})
}

// tally counts entries for the report.
type tally struct {
	reasons map[string]*ReasonCount
	oldest  map[string]time.Time
	newest  map[string]time.Time
	sources map[string]int
	stray   []Listed
	read    int
}

func newTally() *tally {
	return &tally{reasons: map[string]*ReasonCount{}, oldest: map[string]time.Time{}, newest: map[string]time.Time{}, sources: map[string]int{}}
}

// sampleIDs is how many ids the report shows per reason.
const sampleIDs = 3

func (t *tally) add(e *Entry, work string) {
	t.read++
	if !e.Movable() {
		t.stray = append(t.stray, Listed{ID: e.PoisonID, Why: e.Problem})
		return
	}
	rc := t.reasons[e.Reason]
	if rc == nil {
		rc = &ReasonCount{Reason: e.Reason}
		t.reasons[e.Reason] = rc
	}
	rc.Count++
	if len(rc.SampleIDs) < sampleIDs {
		rc.SampleIDs = append(rc.SampleIDs, e.ID())
	}
	at := e.At()
	if o, ok := t.oldest[e.Reason]; !ok || at.Before(o) {
		t.oldest[e.Reason] = at
	}
	if n, ok := t.newest[e.Reason]; !ok || at.After(n) {
		t.newest[e.Reason] = at
	}
	t.sources[e.Source(work)]++
}

func (t *tally) report(r Report) Report {
	r.Read = t.read
	r.Reasons, r.Sources, r.Unparseable = nil, nil, t.stray
	for _, reason := range Reasons {
		if rc := t.reasons[reason]; rc != nil {
			rc.Oldest, rc.Newest = message.FormatStamp(t.oldest[reason]), message.FormatStamp(t.newest[reason])
			r.Reasons = append(r.Reasons, *rc)
			r.ByReason[reason] = rc.Count
		}
	}
	if len(t.stray) > 0 {
		r.ByReason[ReasonUnparseable] = len(t.stray)
	}
	for q, n := range t.sources {
		r.Sources = append(r.Sources, SourceCount{Queue: q, Count: n})
	}
	sort.Slice(r.Sources, func(i, j int) bool {
		if r.Sources[i].Count != r.Sources[j].Count {
			return r.Sources[i].Count > r.Sources[j].Count
		}
		return r.Sources[i].Queue < r.Sources[j].Queue
	})
	return r
}

// Line is the report in one line, for verify: "3 messages: malformed 2, rejected 1".
func (r Report) Line() string {
	if r.Read == 0 {
		return fmt.Sprintf("poison queue %s: empty", r.PoisonQueue)
	}
	return fmt.Sprintf("poison queue %s: %d messages: %s", r.PoisonQueue, r.Read, r.reasons())
}

// reasons is "malformed 2, rejected 1".
func (r Report) reasons() string {
	var parts []string
	for _, reason := range append(slices.Clone(Reasons), ReasonUnparseable) {
		if n := r.ByReason[reason]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", reason, n))
		}
	}
	return strings.Join(parts, ", ")
}

// Peeker is a read-only look at a queue: what Storage Queue Data Reader allows (verify's role).
type Peeker interface {
	storage.PropertiesGetter
	PeekMessages(ctx context.Context, o *azqueue.PeekMessagesOptions) (azqueue.PeekMessagesResponse, error)
}

// Summarize says in one line what the poison queue of work holds, by reason, for verify. It only
// peeks (Storage Queue Data Reader is enough, and nothing changes), so past the 32 messages a
// peek returns the counts by reason are of the first 32; redrive's report reads them all.
func Summarize(ctx context.Context, poison Peeker, work string) string {
	name := work + "-poison"
	n, err := Depth(ctx, poison, name)
	switch {
	case errors.Is(err, ErrQueueMissing):
		return fmt.Sprintf("poison queue %s: not there yet (the consumer creates it when it starts)", name)
	case err != nil:
		return fmt.Sprintf("poison queue %s: could not be read: %v", name, err)
	}
	var resp azqueue.PeekMessagesResponse
	err = policy().Do(ctx, func(ctx context.Context) error {
		var err error
		resp, err = poison.PeekMessages(ctx, &azqueue.PeekMessagesOptions{NumberOfMessages: ptr(int32(maxBatch))})
		return err
	})
	if err != nil {
		return fmt.Sprintf("poison queue %s: about %d messages; a peek failed: %v", name, n, err)
	}
	t := newTally()
	for _, m := range resp.Messages {
		if m == nil || m.MessageText == nil || m.MessageID == nil {
			continue
		}
		var inserted time.Time
		if m.InsertionTime != nil {
			inserted = *m.InsertionTime
		}
		e := Classify(*m.MessageID, inserted, *m.MessageText, work)
		t.add(&e, work)
	}
	r := t.report(Report{PoisonQueue: name, ByReason: map[string]int{}})
	if r.Read == 0 {
		return fmt.Sprintf("poison queue %s: empty", name)
	}
	if n <= r.Read {
		return r.Line()
	}
	return fmt.Sprintf("poison queue %s: about %d messages; the first %d by reason: %s", name, n, r.Read, r.reasons())
}
