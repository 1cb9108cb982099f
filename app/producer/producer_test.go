package producer

import (
	"context"
	"errors"
	"math"
	"net"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/retry"
)

func TestValidate(t *testing.T) {
	ok := Options{Count: 10, Concurrency: 1}
	require.NoError(t, ok.Validate())
	require.NoError(t, Options{Duration: time.Second, Concurrency: 4, Rate: 50}.Validate())

	err := Options{Count: -1, Duration: -time.Second, Rate: -1, Concurrency: 0, ProgressInterval: -1, MaxConsecutiveFailures: -1}.Validate()
	require.Error(t, err)
	for _, w := range []string{"-count=-1", "-duration=-1s", "-rate=-1", "-concurrency=0", "-progress=-1ns", "-max-consecutive-failures=-1"} {
		assert.Contains(t, err.Error(), w)
	}
	err = Options{Concurrency: 1}.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "set at least one")
}

func TestValidateRate(t *testing.T) {
	for _, r := range []float64{0, 0.5, 1, 1e6} {
		assert.NoError(t, Options{Count: 1, Concurrency: 1, Rate: r}.Validate(), "rate %g", r)
	}
	for _, r := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), -1, -0.001} {
		err := Options{Count: 1, Concurrency: 1, Rate: r}.Validate()
		if assert.Error(t, err, "rate %g", r) {
			assert.Contains(t, err.Error(), "-rate=")
			assert.Contains(t, err.Error(), "finite number >= 0")
		}
	}
}

func TestValidateTTL(t *testing.T) {
	good := []time.Duration{0, -time.Second, time.Second, 90 * time.Second, 7 * 24 * time.Hour, 365 * 24 * time.Hour, math.MaxInt32 * time.Second}
	for _, d := range good {
		assert.NoError(t, Options{Count: 1, Concurrency: 1, TTL: d}.Validate(), "ttl %s", d)
	}
	bad := []time.Duration{
		time.Nanosecond, 500 * time.Millisecond, 1500 * time.Millisecond, time.Minute + time.Millisecond, // not whole seconds
		-time.Nanosecond, -500 * time.Millisecond, -2 * time.Second, -time.Hour, -1001 * time.Millisecond, // negative other than -1s
		(math.MaxInt32 + 1) * time.Second, math.MaxInt64, // beyond the int32 seconds the SDK sends
	}
	for _, d := range bad {
		err := Options{Count: 1, Concurrency: 1, TTL: d}.Validate()
		if assert.Error(t, err, "ttl %s", d) {
			assert.Contains(t, err.Error(), "-ttl="+d.String())
			assert.Contains(t, err.Error(), "-1s (never expires)")
			assert.Contains(t, err.Error(), "whole number of seconds from 1s to 2147483647s")
		}
	}
}

var uuidV4 = `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`

func TestUUIDFormat(t *testing.T) {
	assert.Equal(t, "00000000-0000-4000-8000-000000000000", formatUUIDv4([16]byte{}))
	var ff [16]byte
	for i := range ff {
		ff[i] = 0xff
	}
	assert.Equal(t, "ffffffff-ffff-4fff-bfff-ffffffffffff", formatUUIDv4(ff))
	assert.Equal(t, "00010203-0405-4607-8809-0a0b0c0d0e0f", formatUUIDv4([16]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}))

	re := regexp.MustCompile(uuidV4)
	seen := map[string]bool{}
	for range 10000 {
		id := newUUID()
		require.True(t, re.MatchString(id), "%q is not a UUID v4", id)
		require.False(t, seen[id], "duplicate %s", id)
		seen[id] = true
	}
}

// fakeQueue records every enqueue attempt and answers with fail(attempt
// number of that message text, message number).
type fakeQueue struct {
	mu       sync.Mutex
	attempts map[string][]*azqueue.EnqueueMessageOptions // by message text
	order    []string
	fail     func(attempt, n int) error
}

func newFakeQueue(fail func(attempt, n int) error) *fakeQueue {
	return &fakeQueue{attempts: map[string][]*azqueue.EnqueueMessageOptions{}, fail: fail}
}

func (f *fakeQueue) EnqueueMessage(_ context.Context, content string, o *azqueue.EnqueueMessageOptions) (azqueue.EnqueueMessagesResponse, error) {
	f.mu.Lock()
	f.attempts[content] = append(f.attempts[content], o)
	f.order = append(f.order, content)
	attempt := len(f.attempts[content])
	f.mu.Unlock()
	p, err := message.Parse(content)
	if err != nil {
		return azqueue.EnqueueMessagesResponse{}, err
	}
	var n int
	if i := strings.LastIndex(p.Msg, "#"); i >= 0 {
		for _, c := range p.Msg[i+1:] {
			n = n*10 + int(c-'0')
		}
	}
	if err := f.fail(attempt, n); err != nil {
		return azqueue.EnqueueMessagesResponse{}, err
	}
	return azqueue.EnqueueMessagesResponse{}, nil
}

// distinct returns the distinct messages attempted, parsed.
func (f *fakeQueue) distinct(t *testing.T) map[string]message.Parsed {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]message.Parsed{}
	for text := range f.attempts {
		p, err := message.Parse(text)
		require.NoError(t, err)
		out[text] = p
	}
	return out
}

var refused = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

// fastPolicy is enqueuePolicy with millisecond backoffs.
func fastPolicy() retry.Policy {
	p := enqueuePolicy()
	p.Base, p.Max = time.Millisecond, 2*time.Millisecond
	return p
}

func TestRetriesOfOneMessageReuseItsID(t *testing.T) {
	// Every message fails twice (a lost or refused request) and then goes
	// through: each of its three attempts must carry the same body, id
	// included, and every message a different id.
	q := newFakeQueue(func(attempt, _ int) error {
		if attempt <= 2 {
			return refused
		}
		return nil
	})
	sum, err := run(context.Background(), q, Options{Count: 20, Concurrency: 4, Text: "hi"}, nil, nil, fastPolicy())
	require.NoError(t, err)
	assert.Equal(t, int64(20), sum.Sent)
	assert.Equal(t, int64(0), sum.Failed)

	msgs := q.distinct(t)
	require.Len(t, msgs, 20, "one distinct body per message: retries resend the same text")
	ids := map[string]bool{}
	for text, p := range msgs {
		assert.Len(t, q.attempts[text], 3, "%s: two failures and a success", p.Msg)
		assert.Regexp(t, uuidV4, p.ID)
		ids[p.ID] = true
	}
	assert.Len(t, ids, 20, "every message has its own id")
}

func TestTTLIsSentInSeconds(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want *int32
	}{
		{0, nil},
		{NeverExpires, ptr(int32(-1))},
		{90 * time.Second, ptr(int32(90))},
		{MaxTTL, ptr(int32(math.MaxInt32))},
	} {
		t.Run(tc.ttl.String(), func(t *testing.T) {
			q := newFakeQueue(func(int, int) error { return nil })
			_, err := run(context.Background(), q, Options{Count: 3, Concurrency: 1, TTL: tc.ttl}, nil, nil, fastPolicy())
			require.NoError(t, err)
			require.Len(t, q.attempts, 3)
			for _, attempts := range q.attempts {
				for _, o := range attempts {
					require.NotNil(t, o)
					assert.Equal(t, tc.want, o.TimeToLive)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestStopsAfterConsecutiveFailures(t *testing.T) {
	q := newFakeQueue(func(int, int) error { return refused })
	sum, err := run(context.Background(), q, Options{Count: 1000, Concurrency: 3, MaxConsecutiveFailures: 5}, nil, nil, fastPolicy())
	var stop *ConsecutiveFailuresError
	require.ErrorAs(t, err, &stop)
	assert.GreaterOrEqual(t, stop.Failures, 5)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the last error is kept")
	assert.Contains(t, err.Error(), "messages in a row failed")
	assert.Equal(t, int64(0), sum.Sent)
	// The messages in flight when the fifth failed finish their retries: at
	// most Concurrency-1 more.
	assert.GreaterOrEqual(t, sum.Failed, int64(5))
	assert.LessOrEqual(t, sum.Failed, int64(5+3-1))
	assert.Len(t, q.distinct(t), int(sum.Failed), "no message started after the stop")
	for text, a := range q.attempts {
		assert.Len(t, a, enqueuePolicy().Attempts, "%s: each failed message used all its attempts", text)
	}
}

func TestFailuresInterruptedBySuccessDoNotStop(t *testing.T) {
	// Two failures, one success, repeated: never 3 in a row.
	q := newFakeQueue(func(_, n int) error {
		if n%3 != 0 {
			return refused
		}
		return nil
	})
	sum, err := run(context.Background(), q, Options{Count: 30, Concurrency: 1, MaxConsecutiveFailures: 3}, nil, nil, fastPolicy())
	require.NoError(t, err)
	assert.Equal(t, int64(10), sum.Sent)
	assert.Equal(t, int64(20), sum.Failed)
}

func TestZeroMaxConsecutiveFailuresNeverStops(t *testing.T) {
	q := newFakeQueue(func(int, int) error { return refused })
	sum, err := run(context.Background(), q, Options{Count: 30, Concurrency: 4}, nil, nil, fastPolicy())
	require.NoError(t, err)
	assert.Equal(t, int64(30), sum.Failed)
}

func TestInterruptIsNotAConsecutiveFailureStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	q := newFakeQueue(func(int, int) error { cancel(); return refused })
	_, err := run(ctx, q, Options{Count: 100, Concurrency: 4, MaxConsecutiveFailures: 1}, nil, nil, fastPolicy())
	assert.NoError(t, err, "failures after Ctrl-C are not the endpoint's fault")
}

func TestEnqueuePolicyGivesUpWithinSeconds(t *testing.T) {
	// A queue nobody answers on (connection refused at once) costs a message
	// at most the sum of its backoffs; with the default concurrency (8) and
	// -max-consecutive-failures (10) the run stops after about two of those.
	p := enqueuePolicy()
	var worst time.Duration
	for a := 1; a < p.Attempts; a++ {
		ceil := min(p.Base<<(a-1), p.Max)
		worst += ceil
	}
	assert.LessOrEqual(t, worst, 8*time.Second, "worst-case backoff of one message")
	assert.GreaterOrEqual(t, p.Attempts, 5, "still rides out a short throttling burst")

	// And the policy really gives up: a permanently refused enqueue returns.
	p.Base, p.Max = time.Millisecond, time.Millisecond
	calls := 0
	err := p.Do(context.Background(), func(context.Context) error { calls++; return refused })
	require.Error(t, err)
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED))
	assert.Equal(t, p.Attempts, calls)
}

func TestSummary(t *testing.T) {
	s := Summary{Sent: 100, Failed: 2, Elapsed: 2 * time.Second, Rate: 50}
	assert.Equal(t, "sent=100 failed=2 elapsed=2s rate=50.0 msg/s", s.String())
	assert.True(t, strings.HasPrefix(s.JSON(), `{"sent":100,"failed":2,"elapsedMs":2000,"rate":50}`))
}
