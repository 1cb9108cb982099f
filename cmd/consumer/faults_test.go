package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/azurite"
	"github.com/aks-edw/aks-edw/harness/itest"
	"github.com/aks-edw/aks-edw/harness/procs"
)

// faultProxy sits between the consumer and Azurite and injects the errors
// Azure returns: 403 AuthorizationPermissionMismatch while a role assignment
// propagates, then throttling (429), 503 ServerBusy and 500s, some of them
// after the request reached storage (the response is lost, the write was
// done).
type faultProxy struct {
	until    time.Time // every request fails with 403 before this
	requests atomic.Int64
	writes   atomic.Int64 // table writes after the 403 window
	injected sync.Map     // kind -> *atomic.Int64
}

func (f *faultProxy) count(kind string) {
	v, _ := f.injected.LoadOrStore(kind, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (f *faultProxy) get(kind string) int64 {
	v, ok := f.injected.Load(kind)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

func storageError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("x-ms-error-code", code)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>injected</Message></Error>`, code)
}

func (f *faultProxy) handler(target string) http.Handler {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.requests.Add(1)
		switch {
		case time.Now().Before(f.until):
			f.count("403")
			storageError(w, http.StatusForbidden, "AuthorizationPermissionMismatch")
		case isTableWrite(r) && f.writes.Add(1)%4 == 1:
			// The write happens, the answer is lost: the retry upserts the
			// same entity again.
			rec := &discard{header: http.Header{}}
			rp.ServeHTTP(rec, r)
			f.count("500 after write")
			storageError(w, http.StatusInternalServerError, "InternalError")
		case n%11 == 0:
			f.count("429")
			storageError(w, http.StatusTooManyRequests, "TooManyRequests")
		case n%13 == 0:
			f.count("503")
			storageError(w, http.StatusServiceUnavailable, "ServerBusy")
		default:
			rp.ServeHTTP(w, r)
		}
	})
}

// isTableWrite matches an entity upsert (PUT) or an entity-group
// transaction (POST .../$batch).
func isTableWrite(r *http.Request) bool {
	return r.Method == http.MethodPut || (r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "$batch"))
}

type discard struct{ header http.Header }

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

func serveProxy(t *testing.T, h http.Handler) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func TestTransientErrorsAreRetriedWithoutLossOrDuplicates(t *testing.T) {
	e := suite.NewEnv(t)
	q, tbl := suite.Names(t)
	c := e.Clients(t, q, tbl)
	const n = 400
	e.Produce(t, q, "-count", fmt.Sprint(n), "-concurrency", "8", "-msg", "faults")

	f := &faultProxy{until: time.Now().Add(1500 * time.Millisecond)}
	qp := serveProxy(t, f.handler(fmt.Sprintf("http://127.0.0.1:%d", e.Azurite.QueuePort)))
	tp := serveProxy(t, f.handler(fmt.Sprintf("http://127.0.0.1:%d", e.Azurite.TablePort)))
	conn := fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;QueueEndpoint=http://127.0.0.1:%d/%s;TableEndpoint=http://127.0.0.1:%d/%s",
		azurite.AccountName, azurite.AccountKey, qp, azurite.AccountName, tp, azurite.AccountName)
	cons := e.StartConsumer(t, procs.Env(
		storage.EnvConnectionString+"="+conn, storage.EnvQueueName+"="+q, storage.EnvTableName+"="+tbl,
		"CONSUMER_VISIBILITY_TIMEOUT=10s", "LOG_LEVEL=debug",
	))
	ctx := itest.Ctx(t, 90*time.Second)

	// While every call is refused with 403 the consumer is alive, not ready.
	itest.Eventually(t, 3*time.Second, func() (bool, string) { return f.get("403") > 0, "no 403 injected yet" })
	assert.False(t, cons.Ready(ctx), "not ready while the role assignment propagates")
	_, err := cons.WaitReady(ctx, 15*time.Second)
	require.NoError(t, err, "ready once the 403s stop")

	itest.Eventually(t, 60*time.Second, func() (bool, string) {
		d, err := storage.Depth(ctx, c.Queue)
		return err == nil && d == 0, fmt.Sprintf("queue depth %d (%v)", d, err)
	})
	storedOnce(t, c, n)
	for _, kind := range []string{"403", "429", "503", "500 after write"} {
		assert.Positive(t, f.get(kind), "injected %s", kind)
		t.Logf("injected %-15s %d times", kind, f.get(kind))
	}
	_, retried := cons.FindLog("transient storage error, retrying")
	assert.True(t, retried)
	assert.Equal(t, 0, depth(t, c.Poison), "transient errors never poison a message")

	select {
	case <-cons.Exited():
		t.Fatal("the consumer exited on transient errors")
	default:
	}
	require.NoError(t, cons.Signal(syscall.SIGTERM))
	code, err := cons.Wait(15 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
}
