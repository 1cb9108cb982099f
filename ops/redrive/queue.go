package redrive

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/aks-edw/aks-edw/app/retry"
	"github.com/aks-edw/aks-edw/app/storage"
)

// Queue is what redrive does with a queue; *azqueue.QueueClient implements it.
type Queue interface {
	GetProperties(ctx context.Context, o *azqueue.GetQueuePropertiesOptions) (azqueue.GetQueuePropertiesResponse, error)
	DequeueMessages(ctx context.Context, o *azqueue.DequeueMessagesOptions) (azqueue.DequeueMessagesResponse, error)
	EnqueueMessage(ctx context.Context, content string, o *azqueue.EnqueueMessageOptions) (azqueue.EnqueueMessagesResponse, error)
	UpdateMessage(ctx context.Context, messageID, popReceipt, content string, o *azqueue.UpdateMessageOptions) (azqueue.UpdateMessageResponse, error)
	DeleteMessage(ctx context.Context, messageID, popReceipt string, o *azqueue.DeleteMessageOptions) (azqueue.DeleteMessageResponse, error)
}

// DefaultHold is how long a message read from the poison queue stays invisible while redrive has
// it: longer than a scan of a large poison queue takes. Redrive makes the ones it does not move
// visible again when it ends; after a crash they come back by themselves when the hold ends.
const DefaultHold = 10 * time.Minute

// maxBatch is the most messages one Get Messages returns.
const maxBatch = 32

// policy retries transient storage errors a few times; redrive is run by hand and says what failed.
func policy() retry.Policy {
	p := retry.Default()
	p.Attempts = 6
	return p
}

// ErrQueueMissing is returned when a queue redrive needs does not exist.
var ErrQueueMissing = errors.New("queue missing")

// Depth returns the queue's approximate message count, or an error wrapping ErrQueueMissing.
// It is storage.Depth, retried, with a missing queue told apart.
func Depth(ctx context.Context, q storage.PropertiesGetter, name string) (int, error) {
	var n int
	err := policy().Do(ctx, func(ctx context.Context) error {
		var err error
		n, err = storage.Depth(ctx, q)
		return err
	})
	if notFound(err) {
		return 0, fmt.Errorf("%w: %s does not exist", ErrQueueMissing, name)
	}
	if err != nil {
		return 0, fmt.Errorf("queue %s: %w", name, err)
	}
	return n, nil
}

// Denied reports a 403 from the service: the caller lacks a data role, or the storage firewall
// refuses its address (the error code says which).
func Denied(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// notFound reports a 404 from the service (queue, message or pop receipt gone).
func notFound(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// reader reads the poison queue in batches, holding what it read invisible, and remembers what it
// holds so that it can make it visible again.
type reader struct {
	q    Queue
	work string
	hold time.Duration

	mu   sync.Mutex
	seen map[string]*Entry // by poison id: every entry read, with its latest pop receipt
}

func newReader(q Queue, work string, hold time.Duration) *reader {
	return &reader{q: q, work: work, hold: hold, seen: map[string]*Entry{}}
}

// next reads up to 32 messages. Those read before (their hold ran out during a long run) come back
// in again with their new pop receipt. An empty batch means the queue has nothing visible left.
func (r *reader) next(ctx context.Context) (fresh, again []*Entry, err error) {
	var resp azqueue.DequeueMessagesResponse
	err = policy().Do(ctx, func(ctx context.Context) error {
		var err error
		resp, err = r.q.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{
			NumberOfMessages: ptr(int32(maxBatch)), VisibilityTimeout: ptr(int32(r.hold / time.Second)),
		})
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read the poison queue: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range resp.Messages {
		if m == nil || m.MessageID == nil || m.PopReceipt == nil {
			continue
		}
		if e, ok := r.seen[*m.MessageID]; ok {
			e.popReceipt = *m.PopReceipt
			again = append(again, e)
			continue
		}
		var text string
		if m.MessageText != nil {
			text = *m.MessageText
		}
		var inserted time.Time
		if m.InsertionTime != nil {
			inserted = m.InsertionTime.UTC()
		}
		e := Classify(*m.MessageID, inserted, text, r.work)
		e.popReceipt = *m.PopReceipt
		r.seen[e.PoisonID] = &e
		fresh = append(fresh, &e)
	}
	return fresh, again, nil
}

// release makes held entries visible again, their text unchanged (Update Message with a visibility
// timeout of 0), a few at a time. An entry whose hold already ended, or that is gone, is fine.
// It returns how many could not be released (they come back when their hold ends).
func (r *reader) release(ctx context.Context, held []*Entry) int {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
		sem    = make(chan struct{}, 8)
	)
	for _, e := range held {
		r.mu.Lock()
		id, pop, text := e.PoisonID, e.popReceipt, e.Text
		r.mu.Unlock()
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := policy().Do(ctx, func(ctx context.Context) error {
				_, err := r.q.UpdateMessage(ctx, id, pop, text, &azqueue.UpdateMessageOptions{VisibilityTimeout: ptr(int32(0))})
				return err
			})
			// 404: gone; 400 PopReceiptMismatch: its hold ended and it was read again (by another
			// redrive): either way it is not ours to give back.
			if err != nil && !notFound(err) && retry.ErrorCode(err) != "PopReceiptMismatch" {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed
}

func ptr[T any](v T) *T { return &v }
