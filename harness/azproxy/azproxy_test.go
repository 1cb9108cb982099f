package azproxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// upstream is a stand-in for the emulator: it answers with an empty body and
// the status the SDK expects for the method, and counts what reached it.
func upstream(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.Method {
		case http.MethodDelete, http.MethodPut, http.MethodPatch:
			w.WriteHeader(http.StatusNoContent)
		case http.MethodPost:
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(s.Close)
	return s, &n
}

func start(t *testing.T, o Options, svc Service, up string) (*Proxy, string) {
	p, err := New(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	u, err := p.Listen(svc, up)
	require.NoError(t, err)
	return p, u
}

// timed returns how long one GET through the proxy takes.
func timed(t *testing.T, url string) time.Duration {
	t0 := time.Now()
	resp, err := http.Get(url + "/devstoreaccount1/q/messages?numofmessages=1")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return time.Since(t0)
}

func TestProxyAddsTheRoundTripTime(t *testing.T) {
	up, reached := upstream(t)
	_, direct := start(t, Options{}, Queue, up.URL)
	_, far := start(t, Options{RTT: 40 * time.Millisecond}, Queue, up.URL)
	timed(t, direct) // warm both connections
	timed(t, far)
	var near, distant time.Duration
	for range 5 {
		near = max(near, timed(t, direct))
		d := timed(t, far)
		assert.GreaterOrEqual(t, d, 40*time.Millisecond, "every request pays the round trip")
		distant = max(distant, d)
	}
	assert.Less(t, near, 20*time.Millisecond, "without rtt the proxy adds next to nothing")
	assert.Less(t, distant, 80*time.Millisecond, "the round trip is added once, not per direction")
	assert.EqualValues(t, 12, reached.Load())
}

func TestProxyJitterSpreadsAroundTheRoundTrip(t *testing.T) {
	up, _ := upstream(t)
	_, u := start(t, Options{RTT: 30 * time.Millisecond, Jitter: 20 * time.Millisecond}, Queue, up.URL)
	timed(t, u)
	lo, hi := time.Hour, time.Duration(0)
	for range 30 {
		d := timed(t, u)
		lo, hi = min(lo, d), max(hi, d)
	}
	assert.GreaterOrEqual(t, lo, 10*time.Millisecond)
	assert.Less(t, lo, 28*time.Millisecond, "some requests are faster than the rtt")
	assert.Greater(t, hi, 34*time.Millisecond, "some are slower")
}

// sdkClients are the real SDK clients pointed at the proxies, retries off.
func sdkClients(t *testing.T, queueURL, tableURL string) (*azqueue.QueueClient, *aztables.Client) {
	cred, err := azqueue.NewSharedKeyCredential("devstoreaccount1", "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
	require.NoError(t, err)
	co := azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}
	q, err := azqueue.NewQueueClientWithSharedKeyCredential(queueURL+"/devstoreaccount1/work", cred, &azqueue.ClientOptions{ClientOptions: co})
	require.NoError(t, err)
	tcred, err := aztables.NewSharedKeyCredential("devstoreaccount1", "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
	require.NoError(t, err)
	tc, err := aztables.NewClientWithSharedKey(tableURL+"/devstoreaccount1/results", tcred, &aztables.ClientOptions{ClientOptions: co})
	require.NoError(t, err)
	return q, tc
}

// both starts a proxy with o in front of upstream for both services and
// returns it, its queue endpoint and SDK clients through it.
func both(t *testing.T, upstream string, o Options) (*Proxy, string, *azqueue.QueueClient, *aztables.Client) {
	p, err := New(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	qu, err := p.Listen(Queue, upstream)
	require.NoError(t, err)
	tu, err := p.Listen(Table, upstream)
	require.NoError(t, err)
	q, tc := sdkClients(t, qu, tu)
	return p, qu, q, tc
}

func TestProxyCountsTheSDKsRequestsByOperation(t *testing.T) {
	up, _ := upstream(t)
	p, err := New(Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	qu, err := p.Listen(Queue, up.URL)
	require.NoError(t, err)
	tu, err := p.Listen(Table, up.URL)
	require.NoError(t, err)
	q, tc := sdkClients(t, qu, tu)
	ctx := context.Background()
	n := int32(32)
	// The stand-in answers with no body: some calls fail to decode; only the requests matter.
	for range 3 {
		_, _ = q.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: &n})
	}
	_, _ = q.PeekMessages(ctx, nil)
	_, _ = q.EnqueueMessage(ctx, "x", nil)
	_, _ = q.EnqueueMessage(ctx, "y", nil)
	_, _ = q.DeleteMessage(ctx, "id1", "pop1", nil)
	_, _ = q.UpdateMessage(ctx, "id1", "pop1", "z", nil)
	_, _ = q.GetProperties(ctx, nil)
	ent, _ := json.Marshal(map[string]any{"PartitionKey": "p1", "RowKey": "r1", "data": "x"})
	_, _ = tc.UpsertEntity(ctx, ent, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace})
	_, _ = tc.AddEntity(ctx, ent, nil)
	_, _ = tc.SubmitTransaction(ctx, []aztables.TransactionAction{{ActionType: aztables.TransactionTypeInsertReplace, Entity: ent}}, nil)
	_, _ = tc.NewListEntitiesPager(nil).NextPage(ctx)
	_, _ = tc.DeleteEntity(ctx, "p1", "r1", nil)

	c := p.Counts()
	assert.Equal(t, map[string]int64{
		"queue/dequeue": 3, "queue/peek": 1, "queue/enqueue": 2, "queue/delete": 1, "queue/update": 1, "queue/properties": 1,
		"table/upsert": 1, "table/insert": 1, "table/batch": 1, "table/query": 1, "table/delete": 1,
	}, c.Requests)
	assert.Empty(t, c.Throttled)
	assert.EqualValues(t, 14, c.Total())
	assert.Greater(t, c.BusyTotal(), time.Duration(0))
	assert.Len(t, c.Busy, len(c.Requests), "busy time by operation")
	assert.Equal(t, c.Total()-3, c.Except("queue/dequeue").Total())
}

func TestProxyThrottlesPastTheQueueRateLikeAzure(t *testing.T) {
	up, reached := upstream(t)
	const rate = 100.0
	p, _, q, _ := both(t, up.URL, Options{QueueRate: rate, Burst: 100 * time.Millisecond})

	// 8 clients as fast as they can for 2 s on one queue.
	ctx := context.Background()
	var served, busy atomic.Int64
	var firstBusy error
	var once sync.Once
	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				_, err := q.DeleteMessage(ctx, "id", "pop", nil)
				var re *azcore.ResponseError
				if err != nil && strings.Contains(err.Error(), "ServerBusy") && errorsAs(err, &re) {
					busy.Add(1)
					once.Do(func() { firstBusy = err })
					continue
				}
				served.Add(1)
			}
		})
	}
	wg.Wait()
	// A token bucket: rate × 2 s plus the burst it starts with (10).
	assert.InDelta(t, 2*rate+10, served.Load(), 12, "served requests follow the rate")
	assert.Greater(t, busy.Load(), int64(100), "the rest are answered 503")
	c := p.Counts()
	assert.Equal(t, busy.Load(), c.Throttled["queue/delete"])
	assert.Equal(t, served.Load(), c.Served("queue/"))
	assert.Equal(t, served.Load(), reached.Load(), "a throttled request never reaches storage")

	var re *azcore.ResponseError
	require.True(t, errorsAs(firstBusy, &re))
	assert.Equal(t, http.StatusServiceUnavailable, re.StatusCode)
	assert.Equal(t, "ServerBusy", re.ErrorCode)
	assert.Contains(t, firstBusy.Error(), BusyPartition)

}

func TestProxyLimitIsPerQueue(t *testing.T) {
	up, _ := upstream(t)
	// One request per queue per 500 ms: the accrual between two calls is negligible.
	p, qu, q, tc := both(t, up.URL, Options{QueueRate: 2, Burst: 500 * time.Millisecond})
	other, err := azqueue.NewQueueClientWithNoCredential(qu+"/devstoreaccount1/other", nil)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = q.DeleteMessage(ctx, "id", "pop", nil)
	require.NoError(t, err, "the first request takes the bucket's one token")
	_, err = q.DeleteMessage(ctx, "id", "pop", nil)
	assert.Contains(t, errString(err), "ServerBusy", "the second finds it empty")
	_, err = other.GetProperties(ctx, nil)
	assert.NoError(t, err, "another queue has its own limit")
	for range 3 {
		_, err = tc.UpsertEntity(ctx, []byte(`{"PartitionKey":"p","RowKey":"r"}`), nil)
		assert.NoError(t, err, "the queue limit does not apply to the table")
	}
	assert.EqualValues(t, 1, p.Counts().TotalThrottled())
}

func TestProxyThrottlesPastTheAccountRateOnBothServices(t *testing.T) {
	up, _ := upstream(t)
	p, _, q, tc := both(t, up.URL, Options{AccountRate: 20, Burst: 50 * time.Millisecond})
	ctx := context.Background()
	// The bucket holds one request (20/s × 50 ms): the first passes, the next ones in the same instant do not.
	_, err := q.DeleteMessage(ctx, "id", "pop", nil)
	require.NoError(t, err)
	_, err = tc.UpsertEntity(ctx, []byte(`{"PartitionKey":"p","RowKey":"r"}`), nil)
	var re *azcore.ResponseError
	require.True(t, errorsAs(err, &re), "table answer: %v", err)
	assert.Equal(t, http.StatusServiceUnavailable, re.StatusCode)
	assert.Equal(t, "ServerBusy", re.ErrorCode)
	assert.Contains(t, err.Error(), BusyAccount, "the table service's JSON error body")
	time.Sleep(60 * time.Millisecond)
	_, err = tc.UpsertEntity(ctx, []byte(`{"PartitionKey":"p","RowKey":"r"}`), nil)
	assert.NoError(t, err, "served again once the rate allows")
	assert.EqualValues(t, 1, p.Counts().TotalThrottled())
}

func TestOptionsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		vals map[string]string
		want string
	}{
		{map[string]string{"rtt": "-1ms"}, "rtt -1ms is negative"},
		{map[string]string{"rtt": "10"}, `rtt "10" is not a duration`},
		{map[string]string{"queue-rate": "fast"}, `queue-rate "fast" is not a number`},
		{map[string]string{"account-rate": "-5"}, "account rate -5 must be"},
		{map[string]string{"jitter": "-2ms"}, "jitter -2ms is negative"},
	} {
		_, err := ParseOptions(func(k string) string { return tc.vals[k] })
		assert.ErrorContains(t, err, tc.want)
	}
	o, err := ParseOptions(func(k string) string {
		return map[string]string{"rtt": "10ms", "queue-rate": "2000", "burst": "1s"}[k]
	})
	require.NoError(t, err)
	assert.Equal(t, Options{RTT: 10 * time.Millisecond, QueueRate: 2000, Burst: time.Second}, o)
}

func TestRemoteControlsAProxy(t *testing.T) {
	up, _ := upstream(t)
	p, u := start(t, Options{}, Queue, up.URL)
	ctl := httptest.NewServer(p.ControlHandler())
	t.Cleanup(ctl.Close)
	r := Remote{Control: ctl.URL}
	ctx := context.Background()
	want := Options{RTT: 25 * time.Millisecond, Jitter: time.Millisecond, QueueRate: 7, AccountRate: 9, Burst: time.Second}
	require.NoError(t, r.Set(ctx, want))
	assert.Equal(t, want, p.Options())
	assert.ErrorContains(t, r.Set(ctx, Options{RTT: -time.Second}), "rtt -1s is negative")
	timed(t, u)
	c, err := r.Counts(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, c.Requests["queue/dequeue"])
	assert.GreaterOrEqual(t, c.Busy["queue/dequeue"], 24*time.Millisecond, "rtt 25ms less 1ms of jitter at most")
	assert.Equal(t, c.Requests, c.Sub(Counts{}).Requests)
	assert.Empty(t, c.Sub(c).Requests)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func errorsAs(err error, re **azcore.ResponseError) bool { return errors.As(err, re) }
