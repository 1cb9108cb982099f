// Package retry classifies Azure Storage errors as transient or permanent and
// retries transient ones with capped exponential backoff and full jitter.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// Transient reports whether err is worth retrying: throttling (429), timeouts
// (408), server errors (5xx), network failures, and the 403
// AuthorizationPermissionMismatch / AuthorizationFailure that Azure returns
// for minutes while a new role assignment propagates. A cancelled or expired
// context is never transient.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == http.StatusTooManyRequests, re.StatusCode == http.StatusRequestTimeout:
			return true
		case re.StatusCode >= 500:
			return true
		case re.StatusCode == http.StatusForbidden:
			return re.ErrorCode == "AuthorizationPermissionMismatch" || re.ErrorCode == "AuthorizationFailure"
		default:
			return false
		}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) ||
		// A connection the server closed mid-response surfaces as (unexpected) EOF.
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// StatusCode returns the HTTP status of an Azure response error, or 0.
func StatusCode(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// ErrorCode returns the Azure Storage error code (e.g. "QueueNotFound") of an
// Azure response error, or "".
func ErrorCode(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// Policy is a capped exponential backoff with full jitter.
type Policy struct {
	// Base is the backoff cap of the first retry.
	Base time.Duration
	// Max caps every backoff.
	Max time.Duration
	// Attempts is the maximum number of attempts; 0 means until the context
	// ends.
	Attempts int
	// AttemptTimeout bounds each attempt; 0 means no per-attempt bound.
	AttemptTimeout time.Duration
	// OnRetry, when set, is called before each backoff with the attempt
	// number (1-based), the error and the chosen delay.
	OnRetry func(attempt int, err error, delay time.Duration)
}

// Default is the policy the programs use: 100 ms doubling up to 10 s, each
// attempt bounded to 30 s, retried until the context ends.
func Default() Policy {
	return Policy{Base: 100 * time.Millisecond, Max: 10 * time.Second, AttemptTimeout: 30 * time.Second}
}

// Backoff returns the delay before retry number attempt (1-based): a uniform
// random duration in [0, min(Max, Base*2^(attempt-1))].
func (p Policy) Backoff(attempt int) time.Duration {
	ceil := p.Max
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 32 {
		if d := p.Base << (attempt - 1); d > 0 && d < p.Max {
			ceil = d
		}
	}
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil + 1)
}

// Do runs op until it succeeds, returns a permanent error, the attempts are
// used up or ctx ends. The returned error wraps the last error from op.
func (p Policy) Do(ctx context.Context, op func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := p.attempt(ctx, op)
		if err == nil {
			return nil
		}
		// An attempt that hit its own timeout (not the caller's) is transient.
		timedOut := errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
		if !timedOut && !Transient(err) {
			return err
		}
		if p.Attempts > 0 && attempt >= p.Attempts {
			return fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		delay := p.Backoff(attempt)
		if p.OnRetry != nil {
			p.OnRetry(attempt, err, delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("retry stopped after %d attempts (%w): %w", attempt, context.Cause(ctx), err)
		case <-t.C:
		}
	}
}

func (p Policy) attempt(ctx context.Context, op func(ctx context.Context) error) error {
	if p.AttemptTimeout <= 0 {
		return op(ctx)
	}
	actx, cancel := context.WithTimeout(ctx, p.AttemptTimeout)
	defer cancel()
	return op(actx)
}

// Throttled reports whether err is storage asking the client to slow down:
// 503 ServerBusy or 500 OperationTimedOut, which Azure Storage returns when
// a partition (one queue, one table partition) or the account passes its
// scalability target, and 429. Azure's guidance is to retry them with
// exponential backoff (Queue Storage scalability targets); they are
// Transient, and not an Outage.
func Throttled(err error) bool {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	switch re.StatusCode {
	case http.StatusTooManyRequests:
		return true
	case http.StatusServiceUnavailable:
		return re.ErrorCode == "ServerBusy"
	case http.StatusInternalServerError:
		return re.ErrorCode == "OperationTimedOut"
	}
	return false
}

// Outage reports whether err says storage itself is unavailable rather than
// that one request or message is bad: everything Transient covers except
// throttling, a missing
// table or queue (404 TableNotFound, QueueNotFound, ResourceNotFound; 409
// TableBeingDeleted, QueueBeingDeleted), and any authentication or
// authorization failure (401, 403: a role assignment not yet propagated, or
// removed). The consumer pauses on an outage instead of failing messages.
func Outage(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if Throttled(err) {
		// Storage is answering: it asks for less, not for a pause.
		return false
	}
	if Transient(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	switch re.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return true
	case http.StatusNotFound:
		switch re.ErrorCode {
		case "TableNotFound", "QueueNotFound", "ResourceNotFound", "ContainerNotFound":
			return true
		}
	case http.StatusConflict:
		return re.ErrorCode == "TableBeingDeleted" || re.ErrorCode == "QueueBeingDeleted"
	}
	return false
}

// rejectedCodes are the Table service's answers that refuse one entity for
// good: writing it again can never succeed.
var rejectedCodes = map[string]bool{
	"PropertyValueTooLarge": true, "EntityTooLarge": true, "InvalidInput": true,
	"PropertyNameTooLong": true, "PropertyNameInvalid": true, "TooManyProperties": true,
	"InvalidValueType": true, "OutOfRangeInput": true, "KeyValueTooLarge": true,
	"InvalidDuplicateRow": true, "RequestBodyTooLarge": true, "InvalidXmlDocument": true,
}

// Rejected reports whether err is the table refusing an entity for good (an
// oversized or invalid property, 400 or 413), as opposed to an outage.
func Rejected(err error) bool {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	if re.StatusCode == http.StatusRequestEntityTooLarge {
		return true
	}
	return re.StatusCode == http.StatusBadRequest && rejectedCodes[re.ErrorCode]
}
