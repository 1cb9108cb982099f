package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/producer"
	"github.com/aks-edw/aks-edw/app/retry"
	"github.com/aks-edw/aks-edw/app/storage"
)

// The storage side of the checks: the burst, point reads, the tag query, the poison queue and
// the clean-up, on the SDK clients app/storage builds.

// Storage error codes verify tells apart (besides the 403s in access.go): the Queue service's
// QueueNotFound (azqueue queueerror.QueueNotFound) and the Table service's TableNotFound and
// ResourceNotFound (aztables.TableNotFound, aztables.ResourceNotFound: the entity is missing).
const (
	codeQueueNotFound = "QueueNotFound"
	codeTableNotFound = "TableNotFound"
)

func responseError(err error) *azcore.ResponseError {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re
	}
	return nil
}

// tagFilter is the OData filter for the entities whose data starts with "<tag> #": the texts the
// producer writes for a burst with Text tag ("<tag> #1", "<tag> #2", ...). The Table service
// has no prefix operator; a range on the string does it ('$' follows '#').
func tagFilter(tag string) string {
	q := strings.ReplaceAll(tag, "'", "''")
	return fmt.Sprintf("data ge '%s #' and data lt '%s $'", q, q)
}

// queryTag returns every entity of the table that carries the run tag. It scans the table (the
// tag is not a key); verify's table is the consumer's, small in a dev stack.
func queryTag(ctx context.Context, t *aztables.Client, tag string) ([]message.Entity, error) {
	out, err := storage.QueryEntities(ctx, t, tagFilter(tag))
	if err != nil {
		return nil, fmt.Errorf("query the table for the run tag: %w", err)
	}
	return out, nil
}

// readEntity point-reads the entity the consumer stores a message with this id under; found is
// false when there is none.
func readEntity(ctx context.Context, t *aztables.Client, id string) (e message.Entity, found bool, err error) {
	pk, rk := entityKeys(id)
	resp, err := t.GetEntity(ctx, pk, rk, nil)
	if err != nil {
		if re := responseError(err); re != nil && re.StatusCode == http.StatusNotFound && re.ErrorCode != codeTableNotFound {
			return message.Entity{}, false, nil
		}
		return message.Entity{}, false, fmt.Errorf("read entity %s/%s: %w", pk, rk, err)
	}
	if err := json.Unmarshal(resp.Value, &e); err != nil {
		return message.Entity{}, false, fmt.Errorf("decode entity %s/%s: %w", pk, rk, err)
	}
	return e, true, nil
}

// readMissing point-reads the entities of the messages not yet in found, concurrently, and
// adds those that exist. It returns the first error.
func readMissing(ctx context.Context, t *aztables.Client, sent []sentMsg, found map[string]message.Entity, concurrency int) error {
	var missing []string
	for _, m := range sent {
		if _, ok := found[m.ID]; !ok {
			missing = append(missing, m.ID)
		}
	}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		got      = map[string]message.Entity{}
	)
	sem := make(chan struct{}, concurrency)
	for _, id := range missing {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			e, ok, err := readEntity(ctx, t, id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if firstErr == nil {
					firstErr = err
				}
			case ok:
				got[id] = e
			}
		})
	}
	wg.Wait()
	maps.Copy(found, got)
	return firstErr
}

// depth is storage.Depth, and whether the queue exists.
func depth(ctx context.Context, q *azqueue.QueueClient) (n int, exists bool, err error) {
	n, err = storage.Depth(ctx, q)
	if err != nil {
		if re := responseError(err); re != nil && re.StatusCode == http.StatusNotFound && re.ErrorCode == codeQueueNotFound {
			return 0, false, nil
		}
		return 0, false, err
	}
	return n, true, nil
}

// poisonOf peeks the poison queue (up to 32 messages, the service's most) and describes the
// ones of this burst: a poison record or original text carrying one of the burst's ids or the
// run tag.
func poisonOf(ctx context.Context, poison *azqueue.QueueClient, tag string, ids map[string]bool) (peeked int, ours []string, err error) {
	texts, err := storage.PeekTexts(ctx, poison)
	if err != nil {
		if re := responseError(err); re != nil && re.StatusCode == http.StatusNotFound && re.ErrorCode == codeQueueNotFound {
			return 0, nil, nil
		}
		return 0, nil, err
	}
	for _, text := range texts {
		rec, original, err := message.DecodePoison(text)
		if err != nil {
			original = text
		}
		p, perr := message.Parse(original)
		if (perr == nil && ids[p.ID]) || strings.Contains(original, tag+" #") {
			desc := fmt.Sprintf("%q", original)
			if perr == nil {
				desc = fmt.Sprintf("%q (id %s)", p.Msg, p.ID)
			}
			if rec.Reason != "" {
				desc += " reason " + rec.Reason
				if rec.Detail != "" {
					desc += ": " + rec.Detail
				}
			}
			ours = append(ours, desc)
		}
	}
	return len(texts), ours, nil
}

// recordingEnqueuer passes the producer's enqueues through to the queue and keeps the id and
// text of every message the queue accepted, and the id of every message tried.
type recordingEnqueuer struct {
	q producer.Enqueuer

	mu        sync.Mutex
	sent      []sentMsg
	accepted  map[string]bool
	attempted map[string]bool
	lastErr   error
}

func newRecordingEnqueuer(q producer.Enqueuer) *recordingEnqueuer {
	return &recordingEnqueuer{q: q, accepted: map[string]bool{}, attempted: map[string]bool{}}
}

// EnqueueMessage implements producer.Enqueuer.
func (r *recordingEnqueuer) EnqueueMessage(ctx context.Context, content string, o *azqueue.EnqueueMessageOptions) (azqueue.EnqueueMessagesResponse, error) {
	p, perr := message.Parse(content)
	r.mu.Lock()
	if perr == nil {
		r.attempted[p.ID] = true
	}
	r.mu.Unlock()
	resp, err := r.q.EnqueueMessage(ctx, content, o)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.lastErr = err
		return resp, err
	}
	// The producer retries a message with the same id; record it once.
	if perr == nil && !r.accepted[p.ID] {
		r.accepted[p.ID] = true
		r.sent = append(r.sent, sentMsg{ID: p.ID, Text: p.Msg})
	}
	return resp, nil
}

// result returns the accepted messages, the ids tried, and the last enqueue error.
func (r *recordingEnqueuer) result() ([]sentMsg, []string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.attempted))
	for id := range r.attempted {
		ids = append(ids, id)
	}
	return append([]sentMsg(nil), r.sent...), ids, r.lastErr
}

// cleanup deletes the burst's entities: every entity carrying the run tag (duplicates under
// other keys included) and the entity at the keys of every id tried (in case its data lost the
// tag). An entity already gone is not counted. It returns how many it deleted and every error.
func cleanup(ctx context.Context, t *aztables.Client, tag string, ids []string, concurrency int) (int, error) {
	keys := map[[2]string]bool{}
	var order [][2]string
	add := func(pk, rk string) {
		k := [2]string{pk, rk}
		if !keys[k] {
			keys[k] = true
			order = append(order, k)
		}
	}
	tagged, qerr := queryTag(ctx, t, tag)
	for _, e := range tagged {
		add(e.PartitionKey, e.RowKey)
	}
	for _, id := range ids {
		add(entityKeys(id))
	}
	pol := retry.Default()
	pol.Attempts, pol.Max = 5, 2*time.Second
	var (
		mu      sync.Mutex
		deleted int
		errs    []error
		wg      sync.WaitGroup
	)
	sem := make(chan struct{}, concurrency)
	for _, k := range order {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := pol.Do(ctx, func(ctx context.Context) error {
				_, err := t.DeleteEntity(ctx, k[0], k[1], nil)
				return err
			})
			gone := false
			if re := responseError(err); re != nil && re.StatusCode == http.StatusNotFound {
				gone, err = true, nil
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("delete entity %s/%s: %w", k[0], k[1], err))
			case !gone:
				deleted++
			}
		})
	}
	wg.Wait()
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more delete errors", len(errs)-3))
	}
	return deleted, errors.Join(append([]error{qerr}, errs...)...)
}
