// Command producer puts JSON messages {"msg": "...", "srcStamp": "...",
// "id": "<uuid>"} on an Azure Storage queue at a given rate, for a count or a
// duration. Flags fall back to environment variables; the storage settings
// are the consumer's (AZURE_STORAGE_ACCOUNT_NAME, AZURE_QUEUE_NAME,
// AZURE_STORAGE_CONNECTION_STRING). Everything it writes to stderr (logs,
// errors) goes through app/redact, so a SAS signature or account key in
// the connection string never reaches the output.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/aks-edw/aks-edw/app/producer"
	"github.com/aks-edw/aks-edw/app/redact"
	"github.com/aks-edw/aks-edw/app/storage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit status: 0 when every message
// was sent, 1 when some failed (or the run stopped after
// -max-consecutive-failures), 2 for a bad configuration.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("producer", flag.ContinueOnError)
	fs.SetOutput(redactWriter{stderr})
	var errs []error
	envInt := func(name string, def int) int {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not an integer", name, v))
				return def
			}
			return n
		}
		return def
	}
	envFloat := func(name string, def float64) float64 {
		if v := getenv(name); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not a number", name, v))
				return def
			}
			return f
		}
		return def
	}
	envDur := func(name string, def time.Duration) time.Duration {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not a Go duration such as 30s", name, v))
				return def
			}
			return d
		}
		return def
	}
	envStr := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var o producer.Options
	fs.IntVar(&o.Count, "count", envInt("PRODUCER_COUNT", 100), "messages to send (0 = until -duration ends) [PRODUCER_COUNT]")
	fs.DurationVar(&o.Duration, "duration", envDur("PRODUCER_DURATION", 0), "stop after this long (0 = until -count is sent) [PRODUCER_DURATION]")
	fs.Float64Var(&o.Rate, "rate", envFloat("PRODUCER_RATE", 0), "messages per second, finite and >= 0 (0 = as fast as -concurrency allows) [PRODUCER_RATE]")
	fs.IntVar(&o.Concurrency, "concurrency", envInt("PRODUCER_CONCURRENCY", 8), "enqueue requests in flight [PRODUCER_CONCURRENCY]")
	fs.StringVar(&o.Text, "msg", envStr("PRODUCER_MESSAGE", "Hello from the producer"), "message text; \" #<n>\" is appended [PRODUCER_MESSAGE]")
	fs.DurationVar(&o.ProgressInterval, "progress", envDur("PRODUCER_PROGRESS_INTERVAL", 2*time.Second), "progress interval on stderr (0 = off) [PRODUCER_PROGRESS_INTERVAL]")
	fs.DurationVar(&o.TTL, "ttl", envDur("PRODUCER_TTL", 0), "message time to live in whole seconds, up to 2147483647s (0 = queue default of 7 days, -1s = never expires) [PRODUCER_TTL]")
	fs.IntVar(&o.MaxConsecutiveFailures, "max-consecutive-failures", envInt("PRODUCER_MAX_CONSECUTIVE_FAILURES", 10), "stop and exit 1 once this many messages in a row failed after their retries (0 = never stop) [PRODUCER_MAX_CONSECUTIVE_FAILURES]")
	jsonSummary := fs.Bool("json", false, "print the summary as one JSON line")
	create := fs.Bool("create-queue", false, "create the queue if it does not exist")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	st, err := storage.LoadSettings(getenv, false)
	if err != nil {
		errs = append(errs, err)
	}
	if err := o.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		errorf(stderr, "producer: invalid configuration:\n%v\n", err)
		return 2
	}
	st.TableName = "" // the producer never touches the table
	clients, err := storage.NewClients(st, storage.NewHTTPClient(o.Concurrency))
	if err != nil {
		errorf(stderr, "producer: invalid configuration:\n%v\n", err)
		return 2
	}
	log := slog.New(redact.Handler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if *create {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := storage.EnsureQueue(cctx, clients.Queue)
		cancel()
		if err != nil {
			errorf(stderr, "producer: %v\n", err)
			return 1
		}
	}
	sum, err := producer.Run(ctx, clients.Queue, o, stderr, log)
	var stop *producer.ConsecutiveFailuresError
	switch {
	case errors.As(err, &stop):
		errorf(stderr, "producer: stopping: %d messages in a row failed sending to queue %s (-max-consecutive-failures=%d); last error: %v\n",
			stop.Failures, endpoint(clients.Queue.URL()), o.MaxConsecutiveFailures, stop.Last)
	case err != nil:
		errorf(stderr, "producer: %v\n", err)
		return 2
	}
	if *jsonSummary {
		fmt.Fprintln(stdout, sum.JSON())
	} else {
		fmt.Fprintf(stdout, "producer summary: %s\n", sum)
	}
	if sum.Failed > 0 || stop != nil {
		return 1
	}
	return 0
}

// errorf writes a formatted message to w with every secret redacted (SDK
// errors carry the request URL, SAS signature included).
func errorf(w io.Writer, format string, args ...any) {
	_, _ = io.WriteString(w, redact.String(fmt.Sprintf(format, args...)))
}

// redactWriter redacts what the flag package writes (usage, parse errors).
type redactWriter struct{ w io.Writer }

func (r redactWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, redact.String(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// endpoint returns the queue URL without its query (where a SAS token would
// be), redacted anyway: scheme, host and path name the queue.
func endpoint(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return redact.String(rawURL)
	}
	u.RawQuery, u.Fragment = "", ""
	return redact.String(u.String())
}
