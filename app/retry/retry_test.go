package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func respErr(status int, code string) error {
	req, _ := http.NewRequest(http.MethodGet, "https://acct.queue.core.windows.net/q/messages", nil)
	h := http.Header{}
	if code != "" {
		h.Set("x-ms-error-code", code)
	}
	return runtime.NewResponseError(&http.Response{StatusCode: status, Status: http.StatusText(status), Header: h, Body: io.NopCloser(strings.NewReader("")), Request: req})
}

func TestTransient(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"throttled 429", respErr(429, ""), true},
		{"server busy 503", respErr(503, "ServerBusy"), true},
		{"internal 500", respErr(500, "InternalError"), true},
		{"timeout 408", respErr(408, ""), true},
		{"role assignment propagating", respErr(403, "AuthorizationPermissionMismatch"), true},
		{"authorization failure", respErr(403, "AuthorizationFailure"), true},
		{"wrapped 403 propagation", fmt.Errorf("dequeue: %w", respErr(403, "AuthorizationPermissionMismatch")), true},
		{"bad key 403", respErr(403, "AuthenticationFailed"), false},
		{"queue not found", respErr(404, "QueueNotFound"), false},
		{"bad request", respErr(400, "InvalidInput"), false},
		{"pop receipt stale", respErr(404, "MessageNotFound"), false},
		{"connection refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{"reset", fmt.Errorf("x: %w", syscall.ECONNRESET), true},
		{"eof", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"cancelled", context.Canceled, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"other", errors.New("boom"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Transient(tc.err))
		})
	}
	assert.Equal(t, 404, StatusCode(respErr(404, "QueueNotFound")))
	assert.Equal(t, "QueueNotFound", ErrorCode(fmt.Errorf("w: %w", respErr(404, "QueueNotFound"))))
	assert.Equal(t, 0, StatusCode(errors.New("x")))
}

func TestBackoffIsCappedExponentialWithJitter(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: time.Second}
	for attempt, ceil := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		var maxSeen time.Duration
		distinct := map[time.Duration]bool{}
		for range 300 {
			d := p.Backoff(attempt)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, ceil, "attempt %d", attempt)
			maxSeen = max(maxSeen, d)
			distinct[d] = true
		}
		assert.Greater(t, maxSeen, ceil/2, "attempt %d uses its whole range", attempt)
		assert.Greater(t, len(distinct), 10, "jittered")
	}
}

func TestDoRetriesTransientOnly(t *testing.T) {
	p := Policy{Base: time.Millisecond, Max: 2 * time.Millisecond}
	calls := 0
	err := p.Do(context.Background(), func(context.Context) error {
		calls++
		if calls < 4 {
			return respErr(403, "AuthorizationPermissionMismatch")
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 4, calls)

	calls = 0
	err = p.Do(context.Background(), func(context.Context) error { calls++; return respErr(404, "QueueNotFound") })
	require.Error(t, err)
	assert.Equal(t, 1, calls, "permanent errors are not retried")
	assert.Equal(t, "QueueNotFound", ErrorCode(err))

	p.Attempts = 3
	calls = 0
	err = p.Do(context.Background(), func(context.Context) error { calls++; return respErr(503, "ServerBusy") })
	require.Error(t, err)
	assert.Equal(t, 3, calls)
	assert.Contains(t, err.Error(), "giving up after 3 attempts")
	assert.Equal(t, 503, StatusCode(err), "last error wrapped")
}

func TestDoStopsWithContextAndRetriesAttemptTimeouts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	p := Policy{Base: 5 * time.Millisecond, Max: 10 * time.Millisecond}
	start := time.Now()
	err := p.Do(ctx, func(context.Context) error { return respErr(500, "") })
	require.Error(t, err)
	assert.Less(t, time.Since(start), time.Second)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	p = Policy{Base: time.Millisecond, Max: time.Millisecond, AttemptTimeout: 10 * time.Millisecond}
	calls := 0
	err = p.Do(context.Background(), func(actx context.Context) error {
		calls++
		if calls == 1 {
			<-actx.Done() // a hung request: its own timeout is transient
			return actx.Err()
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 2, calls)
}

// An outage is storage being unavailable; a rejection is one entity refused for good. The
// consumer pauses on the first and poisons one message on the second, so they must not overlap.
func TestOutageAndRejected(t *testing.T) {
	for _, tc := range []struct {
		name             string
		err              error
		outage, rejected bool
	}{
		{"table deleted", respErr(404, "TableNotFound"), true, false},
		{"queue deleted", respErr(404, "QueueNotFound"), true, false},
		{"table being deleted", respErr(409, "TableBeingDeleted"), true, false},
		{"role not propagated", respErr(403, "AuthorizationPermissionMismatch"), true, false},
		{"authentication failed", respErr(403, "AuthenticationFailed"), true, false},
		{"unauthorized", respErr(401, ""), true, false},
		{"server busy: throttled, not an outage", respErr(503, "ServerBusy"), false, false},
		{"operation timed out: throttled", respErr(500, "OperationTimedOut"), false, false},
		{"429: throttled", respErr(429, ""), false, false},
		{"other 503", respErr(503, "ServiceUnavailable"), true, false},
		{"other 500", respErr(500, "InternalError"), true, false},
		{"timeout", context.DeadlineExceeded, true, false},
		{"refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true, false},
		{"value too large", respErr(400, "PropertyValueTooLarge"), false, true},
		{"entity too large", respErr(400, "EntityTooLarge"), false, true},
		{"invalid input", respErr(400, "InvalidInput"), false, true},
		{"body too large", respErr(413, ""), false, true},
		{"other 400", respErr(400, "InvalidQueryParameterValue"), false, false},
		{"entity missing", respErr(404, "ResourceNotFoundX"), false, false},
		{"message gone", respErr(404, "MessageNotFound"), false, false},
		{"cancelled", context.Canceled, false, false},
		{"nil", nil, false, false},
	} {
		assert.Equal(t, tc.outage, Outage(tc.err), "%s: Outage", tc.name)
		assert.Equal(t, tc.rejected, Rejected(tc.err), "%s: Rejected", tc.name)
	}
}

func TestThrottled(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{respErr(503, "ServerBusy"), true},
		{respErr(500, "OperationTimedOut"), true},
		{respErr(429, "TooManyRequests"), true},
		{respErr(503, ""), false},
		{respErr(500, "InternalError"), false},
		{respErr(403, "AuthorizationPermissionMismatch"), false},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), false},
		{nil, false},
	} {
		assert.Equal(t, tc.want, Throttled(tc.err), "%v", tc.err)
		if tc.want {
			assert.True(t, Transient(tc.err), "throttling is retried: %v", tc.err)
		}
	}
}
