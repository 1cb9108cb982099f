// Package producer sends messages in the original format to the queue at a
// given rate, for a count or a duration, with bounded concurrency, reporting
// progress while it runs.
package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/aks-edw/aks-edw/internal/message"
	"github.com/aks-edw/aks-edw/internal/retry"
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
	// TTL is the messages' time to live on the queue; 0 leaves the queue's
	// default (7 days).
	TTL time.Duration
}

// Validate reports every problem with the options at once.
func (o Options) Validate() error {
	var errs []error
	if o.Count < 0 {
		errs = append(errs, fmt.Errorf("count=%d: must be >= 0", o.Count))
	}
	if o.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration=%s: must be >= 0", o.Duration))
	}
	if o.Count == 0 && o.Duration == 0 {
		errs = append(errs, errors.New("count and duration are both 0: set at least one"))
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate=%g: must be >= 0 (0 = unlimited)", o.Rate))
	}
	if o.Concurrency < 1 || o.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("concurrency=%d: must be between 1 and 1024", o.Concurrency))
	}
	if o.ProgressInterval < 0 {
		errs = append(errs, fmt.Errorf("progress interval=%s: must be >= 0", o.ProgressInterval))
	}
	return errors.Join(errs...)
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
// passed or ctx is done, writing progress lines to progress. Transient errors
// are retried (bounded per message); a message still failing counts as
// failed. Run returns the summary; the error is non-nil only for invalid
// options.
func Run(ctx context.Context, q *azqueue.QueueClient, opts Options, progress io.Writer, log *slog.Logger) (Summary, error) {
	if err := opts.Validate(); err != nil {
		return Summary{}, err
	}
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	pol := retry.Default()
	pol.Attempts = 8
	pol.AttemptTimeout = 20 * time.Second

	var (
		next   atomic.Int64 // index of the next message to send
		sent   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	start := time.Now()
	var ttl *int32
	if opts.TTL > 0 {
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
						case <-ctx.Done():
							t.Stop()
							return
						case <-t.C:
						}
					}
				}
				if ctx.Err() != nil {
					return
				}
				text, err := message.New(fmt.Sprintf("%s #%d", opts.Text, i+1), time.Now()).Encode()
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
					if log != nil {
						log.Warn("enqueue failed", "n", i+1, "status", retry.StatusCode(err), "code", retry.ErrorCode(err), "err", err)
					}
					continue
				}
				sent.Add(1)
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
	return sum, nil
}
