// Package azproxy puts Azure's distance and Azure's limits between the
// programs and Azurite. It is a proxy on loopback TCP listeners, one per
// storage service (queue, table), that forwards every request to the
// emulator and
//   - adds a round-trip time (half before the request reaches the emulator,
//     half before the answer goes back), with optional jitter;
//   - counts requests by operation (queue/dequeue, queue/delete, table/batch,
//     ...) and the time each spends in the proxy, so a benchmark can compute
//     requests per message and the requests in flight (Little's law);
//   - answers like Azure Storage once a configured rate is passed: per queue
//     (Azure's target is 2,000 messages/s per queue) or per account (20,000
//     requests/s): 503 with the error code ServerBusy, in the header
//     x-ms-error-code and in the body, XML for the queue service and JSON for
//     the table service, as the services do.
//
// It is HTTP-aware (not a byte pipe) because counting operations and
// answering 503s needs the requests; connections from clients are kept alive
// as with Azure.
package azproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Service is the storage service behind a listener.
type Service string

const (
	// Queue is the queue service.
	Queue Service = "queue"
	// Table is the table service.
	Table Service = "table"
)

// Messages of the ServerBusy answers (Azure Storage's common REST API error
// codes: the partition's "unable to receive requests" and the account's
// "operations per second" limit).
const (
	BusyPartition = "The server is currently unable to receive requests. Please retry your request."
	BusyAccount   = "Operations per second is over the account limit."
)

// Options configure a Proxy. The zero value forwards without delay or limit.
type Options struct {
	// RTT is the round-trip time added to every request.
	RTT time.Duration
	// Jitter spreads each request's added time uniformly over
	// [RTT-Jitter, RTT+Jitter] (never below 0).
	Jitter time.Duration
	// QueueRate is the most requests per second one queue serves (all
	// operations on that queue, messages included); 0 = no limit.
	QueueRate float64
	// AccountRate is the most requests per second the account serves (both
	// services); 0 = no limit.
	AccountRate float64
	// Burst is how long a rate's unused capacity is kept: a limiter holds at
	// most rate × Burst requests (at least 1). Default 100 ms.
	Burst time.Duration
}

// Validate names the first bad option.
func (o Options) Validate() error {
	switch {
	case o.RTT < 0:
		return fmt.Errorf("rtt %s is negative", o.RTT)
	case o.Jitter < 0:
		return fmt.Errorf("jitter %s is negative", o.Jitter)
	case o.QueueRate < 0 || math.IsNaN(o.QueueRate) || math.IsInf(o.QueueRate, 0):
		return fmt.Errorf("queue rate %v must be a finite number >= 0", o.QueueRate)
	case o.AccountRate < 0 || math.IsNaN(o.AccountRate) || math.IsInf(o.AccountRate, 0):
		return fmt.Errorf("account rate %v must be a finite number >= 0", o.AccountRate)
	case o.Burst < 0:
		return fmt.Errorf("burst %s is negative", o.Burst)
	}
	return nil
}

// Counts is a snapshot of what the proxy saw.
type Counts struct {
	// Requests counts every request by operation, e.g. "queue/dequeue",
	// throttled ones included.
	Requests map[string]int64 `json:"requests"`
	// Throttled counts the requests answered 503 ServerBusy, by operation.
	Throttled map[string]int64 `json:"throttled"`
	// Busy is, by operation, the sum over requests of the time from arrival
	// to the end of the answer: divided by a wall-clock interval it is the
	// mean number of those requests in flight over it (Little's law).
	Busy map[string]time.Duration `json:"busyNanos"`
}

func newCounts() Counts {
	return Counts{Requests: map[string]int64{}, Throttled: map[string]int64{}, Busy: map[string]time.Duration{}}
}

// Sub returns c minus an earlier snapshot.
func (c Counts) Sub(prev Counts) Counts {
	out := newCounts()
	for k, v := range c.Busy {
		if d := v - prev.Busy[k]; d != 0 {
			out.Busy[k] = d
		}
	}
	for k, v := range c.Requests {
		if d := v - prev.Requests[k]; d != 0 {
			out.Requests[k] = d
		}
	}
	for k, v := range c.Throttled {
		if d := v - prev.Throttled[k]; d != 0 {
			out.Throttled[k] = d
		}
	}
	return out
}

// Add adds other's counts to c's.
func (c *Counts) Add(other Counts) {
	if c.Requests == nil {
		*c = newCounts()
	}
	for k, v := range other.Requests {
		c.Requests[k] += v
	}
	for k, v := range other.Throttled {
		c.Throttled[k] += v
	}
	for k, v := range other.Busy {
		c.Busy[k] += v
	}
}

// Total is the number of requests, throttled ones included.
func (c Counts) Total() int64 { return sum(c.Requests) }

// Except returns the counts without the operations named (e.g.
// "queue/dequeue").
func (c Counts) Except(ops ...string) Counts {
	out := newCounts()
	out.Add(c)
	for _, op := range ops {
		delete(out.Requests, op)
		delete(out.Throttled, op)
		delete(out.Busy, op)
	}
	return out
}

// BusyTotal is the summed time of all requests in the proxy.
func (c Counts) BusyTotal() time.Duration { return sum(c.Busy) }

// TotalThrottled is the number of 503 ServerBusy answers.
func (c Counts) TotalThrottled() int64 { return sum(c.Throttled) }

// Served is the number of requests of the operations with the given prefix
// (e.g. "queue/") that were not throttled.
func (c Counts) Served(prefix string) int64 {
	var n int64
	for k, v := range c.Requests {
		if strings.HasPrefix(k, prefix) {
			n += v - c.Throttled[k]
		}
	}
	return n
}

func sum[V int64 | time.Duration](m map[string]V) V {
	var n V
	for _, v := range m {
		n += v
	}
	return n
}

// Proxy is a running proxy. Create it with New, add listeners with Listen,
// stop it with Close.
type Proxy struct {
	mu        sync.Mutex
	opts      Options
	counts    Counts
	queues    map[string]*bucket // "account/queue" -> limiter
	account   map[string]*bucket // account -> limiter
	servers   []*http.Server
	listeners []net.Listener
	now       func() time.Time
}

// New returns a proxy with the given options.
func New(opts Options) (*Proxy, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Proxy{
		opts:    opts,
		counts:  newCounts(),
		queues:  map[string]*bucket{},
		account: map[string]*bucket{},
		now:     time.Now,
	}, nil
}

// Set replaces the options; limiters start afresh.
func (p *Proxy) Set(opts Options) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.opts = opts
	p.queues = map[string]*bucket{}
	p.account = map[string]*bucket{}
	return nil
}

// Options returns the options in force.
func (p *Proxy) Options() Options {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts
}

// Counts returns a snapshot of the counts.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Counts{Requests: maps.Clone(p.counts.Requests), Throttled: maps.Clone(p.counts.Throttled), Busy: maps.Clone(p.counts.Busy)}
}

// Listen starts a listener on a free loopback port that forwards svc's
// requests to upstream (e.g. http://127.0.0.1:10001) and returns its URL.
func (p *Proxy) Listen(svc Service, upstream string) (string, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("upstream %q is not a URL with a host", upstream)
	}
	if svc != Queue && svc != Table {
		return "", fmt.Errorf("service %q is neither %q nor %q", svc, Queue, Table)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen: %w", err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		// The emulator did not answer: the client sees a gateway error (a 5xx, transient).
		http.Error(w, "azproxy: upstream: "+err.Error(), http.StatusBadGateway)
	}
	srv := &http.Server{Handler: p.handler(svc, rp), ReadHeaderTimeout: 30 * time.Second}
	p.mu.Lock()
	p.servers = append(p.servers, srv)
	p.listeners = append(p.listeners, l)
	p.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), nil
}

// Close stops the listeners and closes their connections.
func (p *Proxy) Close() error {
	p.mu.Lock()
	servers := p.servers
	p.servers = nil
	p.mu.Unlock()
	var errs []error
	for _, s := range servers {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

func (p *Proxy) handler(svc Service, rp *httputil.ReverseProxy) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := p.now()
		account, resource, op := Classify(svc, r)
		key := string(svc) + "/" + op
		p.mu.Lock()
		opts := p.opts
		p.mu.Unlock()
		delay := addedDelay(opts.RTT, opts.Jitter)
		// Half the round trip on the way there, half on the way back.
		if !wait(r.Context(), delay/2) {
			return
		}
		busy := p.admit(svc, account, resource, key, opts)
		if busy != "" {
			if wait(r.Context(), delay-delay/2) {
				serverBusy(w, svc, busy)
			}
		} else {
			rp.ServeHTTP(&delayedWriter{ResponseWriter: w, ctx: r.Context(), delay: delay - delay/2}, r)
		}
		p.mu.Lock()
		p.counts.Busy[key] += p.now().Sub(start)
		p.mu.Unlock()
	})
}

// admit counts the request and returns "" when it may pass, or the
// ServerBusy message when a limit is exceeded.
func (p *Proxy) admit(svc Service, account, resource, key string, opts Options) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts.Requests[key]++
	now := p.now()
	busy := ""
	if opts.AccountRate > 0 && !limiter(p.account, account, opts.AccountRate, opts.Burst, now).take(now) {
		busy = BusyAccount
	}
	if busy == "" && svc == Queue && opts.QueueRate > 0 && resource != "" &&
		!limiter(p.queues, account+"/"+resource, opts.QueueRate, opts.Burst, now).take(now) {
		busy = BusyPartition
	}
	if busy != "" {
		p.counts.Throttled[key]++
	}
	return busy
}

func addedDelay(rtt, jitter time.Duration) time.Duration {
	if jitter > 0 {
		rtt += time.Duration(rand.Int64N(int64(2*jitter)+1)) - jitter
	}
	return max(rtt, 0)
}

func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// delayedWriter holds the answer back by delay: the wait happens before the
// status line is written.
type delayedWriter struct {
	http.ResponseWriter
	ctx    context.Context
	delay  time.Duration
	waited bool
}

func (d *delayedWriter) hold() {
	if !d.waited {
		d.waited = true
		wait(d.ctx, d.delay)
	}
}

func (d *delayedWriter) WriteHeader(code int) { d.hold(); d.ResponseWriter.WriteHeader(code) }

func (d *delayedWriter) Write(b []byte) (int, error) { d.hold(); return d.ResponseWriter.Write(b) }

func (d *delayedWriter) Flush() {
	if f, ok := d.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// serverBusy writes Azure Storage's 503 ServerBusy answer for svc.
func serverBusy(w http.ResponseWriter, svc Service, message string) {
	id := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", rand.Uint32(), rand.Uint32N(1<<16), rand.Uint32N(1<<16), rand.Uint32N(1<<16), rand.Uint64N(1<<48))
	h := w.Header()
	h.Set("x-ms-error-code", "ServerBusy")
	h.Set("x-ms-request-id", id)
	h.Set("x-ms-version", "2019-02-02")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	if svc == Table {
		h.Set("Content-Type", "application/json;odata=minimalmetadata;streaming=true;charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"odata.error":{"code":"ServerBusy","message":{"lang":"en-US","value":%q}}}`,
			message+"\nRequestId:"+id+"\nTime:"+time.Now().UTC().Format("2006-01-02T15:04:05.0000000Z"))
		return
	}
	h.Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintf(w, "\ufeff<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ServerBusy</Code><Message>%s\nRequestId:%s\nTime:%s</Message></Error>",
		message, id, time.Now().UTC().Format("2006-01-02T15:04:05.0000000Z"))
}

// Classify names a request's account, resource (queue or table name, "" for
// service-level requests) and operation, from its method and path-style URL
// (/account/resource/...), as Azurite and Azure's path-style endpoints use.
func Classify(svc Service, r *http.Request) (account, resource, op string) {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 4)
	account = parts[0]
	if len(parts) > 1 {
		resource = parts[1]
	}
	q := r.URL.Query()
	if svc == Queue {
		switch {
		case resource == "":
			return account, "", "service"
		case len(parts) == 2 && q.Get("comp") == "metadata":
			return account, resource, "properties"
		case len(parts) == 2 && r.Method == http.MethodPut:
			return account, resource, "create"
		case len(parts) == 2 && r.Method == http.MethodDelete:
			return account, resource, "delete-queue"
		case len(parts) == 2:
			return account, resource, "queue-other"
		case parts[2] != "messages":
			return account, resource, "other"
		case len(parts) == 3 && r.Method == http.MethodGet && q.Get("peekonly") == "true":
			return account, resource, "peek"
		case len(parts) == 3 && r.Method == http.MethodGet:
			return account, resource, "dequeue"
		case len(parts) == 3 && r.Method == http.MethodPost:
			return account, resource, "enqueue"
		case len(parts) == 3 && r.Method == http.MethodDelete:
			return account, resource, "clear"
		case r.Method == http.MethodDelete:
			return account, resource, "delete"
		case r.Method == http.MethodPut:
			return account, resource, "update"
		}
		return account, resource, "other"
	}
	// Table service: /account/$batch, /account/Tables..., /account/name(PK,RK) or /account/name().
	name, keyed := resource, false
	if i := strings.IndexByte(name, '('); i >= 0 {
		keyed = !strings.HasSuffix(name, "()")
		name = name[:i]
	}
	switch {
	case name == "$batch":
		return account, "", "batch"
	case name == "" || strings.EqualFold(name, "Tables"):
		return account, "", "tables"
	case r.Method == http.MethodGet:
		return account, name, "query"
	case r.Method == http.MethodPost && !keyed:
		return account, name, "insert"
	case r.Method == http.MethodPut:
		return account, name, "upsert"
	case r.Method == http.MethodPatch || r.Method == "MERGE":
		return account, name, "merge"
	case r.Method == http.MethodDelete:
		return account, name, "delete"
	}
	return account, name, "other"
}

// limiter returns m's bucket for key, created full when missing.
func limiter(m map[string]*bucket, key string, rate float64, burst time.Duration, now time.Time) *bucket {
	b := m[key]
	if b == nil {
		b = newBucket(rate, burst, now)
		m[key] = b
	}
	return b
}

// bucket is a token bucket: rate tokens per second, at most capacity kept.
type bucket struct {
	rate, capacity, tokens float64
	last                   time.Time
}

func newBucket(rate float64, burst time.Duration, now time.Time) *bucket {
	if burst <= 0 {
		burst = 100 * time.Millisecond
	}
	c := max(1, rate*burst.Seconds())
	return &bucket{rate: rate, capacity: c, tokens: c, last: now}
}

func (b *bucket) take(now time.Time) bool {
	b.tokens = min(b.capacity, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// ControlHandler serves GET /counts (the Counts as JSON) and POST /settings
// (form values rtt, jitter, burst as Go durations; queue-rate, account-rate
// as numbers; missing values are 0) for a proxy run as its own process.
func (p *Proxy) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counts", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p.Counts())
	})
	mux.HandleFunc("POST /settings", func(w http.ResponseWriter, r *http.Request) {
		opts, err := ParseOptions(r.URL.Query().Get)
		if err == nil {
			err = p.Set(opts)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// ParseOptions reads Options from named values (rtt, jitter, burst,
// queue-rate, account-rate), as the command's flags and the control
// endpoint's query name them.
func ParseOptions(get func(string) string) (Options, error) {
	var o Options
	var errs []error
	dur := func(name string, d *time.Duration) {
		if v := get(name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %q is not a duration (e.g. 10ms)", name, v))
			}
			*d = x
		}
	}
	num := func(name string, f *float64) {
		if v := get(name); v != "" {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %q is not a number", name, v))
			}
			*f = x
		}
	}
	dur("rtt", &o.RTT)
	dur("jitter", &o.Jitter)
	dur("burst", &o.Burst)
	num("queue-rate", &o.QueueRate)
	num("account-rate", &o.AccountRate)
	if err := errors.Join(errs...); err != nil {
		return Options{}, err
	}
	return o, o.Validate()
}

// Query returns the options as the control endpoint's query string.
func (o Options) Query() string {
	v := url.Values{}
	v.Set("rtt", o.RTT.String())
	v.Set("jitter", o.Jitter.String())
	v.Set("burst", o.Burst.String())
	v.Set("queue-rate", strconv.FormatFloat(o.QueueRate, 'g', -1, 64))
	v.Set("account-rate", strconv.FormatFloat(o.AccountRate, 'g', -1, 64))
	return v.Encode()
}

// Remote is a proxy run as its own process (cmd/azproxy), reached through
// its control endpoint.
type Remote struct {
	// Control is the control endpoint's base URL.
	Control string
}

// Counts fetches the proxy's counts.
func (r Remote) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.Control+"/counts", nil)
	if err != nil {
		return c, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c, fmt.Errorf("azproxy counts: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("azproxy counts: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return c, fmt.Errorf("azproxy counts: %w", err)
	}
	return c, nil
}

// Set replaces the proxy's options.
func (r Remote) Set(ctx context.Context, o Options) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.Control+"/settings?"+o.Query(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("azproxy settings: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("azproxy settings: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}
