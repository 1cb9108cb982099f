// Package producer sends messages in the original format, plus an
// idempotency id, to the queue at a given rate, for a count or a duration,
// with bounded concurrency, reporting progress while it runs.
package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/retry"
)

// Options say what to send.
type Options struct {
	// Count is how many messages to send; 0 means no limit (Duration must be
	// set then).
	Count int
	// Duration stops sending after this long; 0 means no limit.
	Duration time.Duration
	// Rate is the target messages per second over the whole run; 0 means as
	// fast as Concurrency allows.
	Rate float64
	// Concurrency is the number of enqueue requests in flight.
	Concurrency int
	// Text is the msg text prefix; each message gets " #<n>" appended so
	// every message is unique.
	Text string
	// ProgressInterval is how often progress is written; 0 disables it.
	ProgressInterval time.Duration
	// TTL is the messages' time to live on the queue, in whole seconds: 0
	// leaves the queue's default (7 days), NeverExpires (-1s) keeps them
	// until they are deleted, at most MaxTTL.
	TTL time.Duration
	// MaxConsecutiveFailures stops the run (no new message is started) once
	// this many messages in a row, in the order they finish, have failed after
	// their retries; 0 never stops.
	MaxConsecutiveFailures int
}

// TTL limits of the Queue service's Put Message messagettl parameter (whole
// seconds; since service version 2017-07-29 any positive number or -1, and
// the SDK carries it as an int32).
const (
	// NeverExpires is the TTL of a message that never expires (messagettl=-1).
	NeverExpires = -time.Second
	// MaxTTL is the largest TTL the SDK can send: math.MaxInt32 seconds
	// (about 68 years).
	MaxTTL = math.MaxInt32 * time.Second
)

// validTTL reports whether d is 0, NeverExpires, or whole seconds in
// [1s, MaxTTL].
func validTTL(d time.Duration) bool {
	return d == 0 || d == NeverExpires || (d > 0 && d <= MaxTTL && d%time.Second == 0)
}

// Validate reports every problem with the options at once; each names the
// producer flag it comes from.
func (o Options) Validate() error {
	var errs []error
	if o.Count < 0 {
		errs = append(errs, fmt.Errorf("-count=%d: must be >= 0", o.Count))
	}
	if o.Duration < 0 {
		errs = append(errs, fmt.Errorf("-duration=%s: must be >= 0", o.Duration))
	}
	if o.Count == 0 && o.Duration == 0 {
		errs = append(errs, errors.New("-count and -duration are both 0: set at least one"))
	}
	if math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) || o.Rate < 0 {
		errs = append(errs, fmt.Errorf("-rate=%g: must be a finite number >= 0 (0 = as fast as -concurrency allows)", o.Rate))
	}
	if o.Concurrency < 1 || o.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("-concurrency=%d: must be between 1 and 1024", o.Concurrency))
	}
	if o.ProgressInterval < 0 {
		errs = append(errs, fmt.Errorf("-progress=%s: must be >= 0", o.ProgressInterval))
	}
	if !validTTL(o.TTL) {
		errs = append(errs, fmt.Errorf("-ttl=%s: must be 0 (queue default), -1s (never expires) or a whole number of seconds from 1s to %ds (messagettl is whole seconds, at most the int32 limit)",
			o.TTL, int64(MaxTTL/time.Second)))
	}
	if o.MaxConsecutiveFailures < 0 {
		errs = append(errs, fmt.Errorf("-max-consecutive-failures=%d: must be >= 0 (0 = never stop)", o.MaxConsecutiveFailures))
	}
	return errors.Join(errs...)
}

// ConsecutiveFailuresError is returned by Run, together with the summary,
// when the run stopped because MaxConsecutiveFailures messages in a row
// failed.
type ConsecutiveFailuresError struct {
	// Failures is how many messages in a row had failed.
	Failures int
	// Last is the last of those messages' error.
	Last error
}

// Error says how many messages failed in a row and the last error.
func (e *ConsecutiveFailuresError) Error() string {
	return fmt.Sprintf("%d messages in a row failed after their retries; last error: %v", e.Failures, e.Last)
}

// Unwrap returns the last error.
func (e *ConsecutiveFailuresError) Unwrap() error { return e.Last }

// Enqueuer is the one queue operation the producer uses;
// *azqueue.QueueClient implements it.
type Enqueuer interface {
	EnqueueMessage(ctx context.Context, content string, o *azqueue.EnqueueMessageOptions) (azqueue.EnqueueMessagesResponse, error)
}

// enqueuePolicy is the retry policy of one message: up to 8 attempts with
// backoff 100 ms doubling up to 2 s (at most 7.1 s of waiting in all), each
// attempt bounded to 20 s. Short enough that a queue nobody answers on is
// given up on within seconds per message, so MaxConsecutiveFailures stops
// the run quickly; long enough to ride out a short throttling burst.
func enqueuePolicy() retry.Policy {
	pol := retry.Default()
	pol.Attempts = 8
	pol.Max = 2 * time.Second
	pol.AttemptTimeout = 20 * time.Second
	return pol
}

// Summary is the outcome of a run.
type Summary struct {
	// Sent counts messages the queue accepted.
	Sent int64 `json:"sent"`
	// Failed counts messages given up on after retries.
	Failed int64 `json:"failed"`
	// Elapsed is the run's wall time.
	Elapsed time.Duration `json:"elapsedNs"`
	// Rate is Sent per second of Elapsed.
	Rate float64 `json:"rate"`
}

// String formats the summary on one line.
func (s Summary) String() string {
	return fmt.Sprintf("sent=%d failed=%d elapsed=%s rate=%.1f msg/s", s.Sent, s.Failed, s.Elapsed.Round(time.Millisecond), s.Rate)
}

// JSON returns the summary as one JSON line.
func (s Summary) JSON() string {
	b, _ := json.Marshal(struct {
		Sent      int64   `json:"sent"`
		Failed    int64   `json:"failed"`
		ElapsedMs float64 `json:"elapsedMs"`
		Rate      float64 `json:"rate"`
	}{s.Sent, s.Failed, float64(s.Elapsed.Microseconds()) / 1000, s.Rate})
	return string(b)
}

// Run sends messages to q until the count is reached, the duration has
// passed or ctx is done, writing progress lines to progress. Every message
// carries a random UUID as its idempotency id, the same on every retry of
// its enqueue. Transient errors are retried (bounded per message); a message
// still failing counts as failed. Once opts.MaxConsecutiveFailures messages
// in a row have failed, no new message is started: the messages in flight
// finish, and Run returns the summary with a *ConsecutiveFailuresError.
// Otherwise the error is non-nil only for invalid options.
func Run(ctx context.Context, q Enqueuer, opts Options, progress io.Writer, log *slog.Logger) (Summary, error) {
	return run(ctx, q, opts, progress, log, enqueuePolicy())
}

func run(ctx context.Context, q Enqueuer, opts Options, progress io.Writer, log *slog.Logger, pol retry.Policy) (Summary, error) {
	if err := opts.Validate(); err != nil {
		return Summary{}, err
	}
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	// sending ends when no new message may start; messages in flight keep
	// ctx, so they finish their retries.
	sending, stopSending := context.WithCancel(ctx)
	defer stopSending()

	var (
		next   atomic.Int64 // index of the next message to send
		sent   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup

		mu          sync.Mutex
		consecutive int // failures in a row, in the order messages finish
		stopped     *ConsecutiveFailuresError
	)
	outcome := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			consecutive = 0
			return
		}
		consecutive++
		if opts.MaxConsecutiveFailures > 0 && consecutive >= opts.MaxConsecutiveFailures && stopped == nil {
			stopped = &ConsecutiveFailuresError{Failures: consecutive, Last: err}
			stopSending()
		}
	}
	start := time.Now()
	var ttl *int32
	if opts.TTL != 0 { // Validate keeps it whole seconds within int32, or -1s
		v := int32(opts.TTL / time.Second)
		ttl = &v
	}
	for range opts.Concurrency {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if opts.Count > 0 && i >= int64(opts.Count) {
					return
				}
				if opts.Rate > 0 {
					due := start.Add(time.Duration(float64(i) / opts.Rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						t := time.NewTimer(d)
						select {
						case <-sending.Done():
							t.Stop()
							return
						case <-t.C:
						}
					}
				}
				if sending.Err() != nil {
					return
				}
				// One id per message, made before the retries: a retry after a
				// lost response carries the same id, so the consumer stores
				// the message once.
				id := newUUID()
				text, err := message.NewWithID(id, fmt.Sprintf("%s #%d", opts.Text, i+1), time.Now()).Encode()
				if err == nil {
					err = pol.Do(ctx, func(ctx context.Context) error {
						_, err := q.EnqueueMessage(ctx, text, &azqueue.EnqueueMessageOptions{TimeToLive: ttl})
						return err
					})
				}
				if err != nil {
					if ctx.Err() != nil && opts.Duration > 0 && errors.Is(err, context.DeadlineExceeded) {
						return // the duration ended mid-request: not a failure
					}
					failed.Add(1)
					if ctx.Err() == nil { // failures caused by an interrupt do not count
						outcome(err)
					}
					if log != nil {
						log.Warn("enqueue failed", "n", i+1, "id", id, "status", retry.StatusCode(err), "code", retry.ErrorCode(err), "err", err)
					}
					continue
				}
				sent.Add(1)
				outcome(nil)
			}
		})
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if opts.ProgressInterval > 0 && progress != nil {
		tick := time.NewTicker(opts.ProgressInterval)
		defer tick.Stop()
		last, lastAt := int64(0), start
	loop:
		for {
			select {
			case <-done:
				break loop
			case now := <-tick.C:
				s := sent.Load()
				rate := float64(s-last) / now.Sub(lastAt).Seconds()
				total := "∞"
				if opts.Count > 0 {
					total = fmt.Sprint(opts.Count)
				}
				fmt.Fprintf(progress, "producer: sent=%d/%s failed=%d elapsed=%s rate=%.0f msg/s\n",
					s, total, failed.Load(), now.Sub(start).Round(time.Second), rate)
				last, lastAt = s, now
			}
		}
	}
	<-done
	el := time.Since(start)
	sum := Summary{Sent: sent.Load(), Failed: failed.Load(), Elapsed: el}
	if el > 0 {
		sum.Rate = float64(sum.Sent) / el.Seconds()
	}
	if stopped != nil {
		return sum, stopped
	}
	return sum, nil
}
