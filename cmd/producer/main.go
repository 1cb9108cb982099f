// Command producer puts JSON messages {"msg": "...", "srcStamp": "..."} on an
// Azure Storage queue at a given rate, for a count or a duration. Flags fall
// back to environment variables; the storage settings are the consumer's
// (AZURE_STORAGE_ACCOUNT_NAME, AZURE_QUEUE_NAME,
// AZURE_STORAGE_CONNECTION_STRING).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/aks-edw/aks-edw/internal/producer"
	"github.com/aks-edw/aks-edw/internal/storage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit status: 0 when every message
// was sent, 1 when some failed, 2 for a bad configuration.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("producer", flag.ContinueOnError)
	fs.SetOutput(stderr)
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
	fs.Float64Var(&o.Rate, "rate", envFloat("PRODUCER_RATE", 0), "messages per second (0 = as fast as possible) [PRODUCER_RATE]")
	fs.IntVar(&o.Concurrency, "concurrency", envInt("PRODUCER_CONCURRENCY", 8), "enqueue requests in flight [PRODUCER_CONCURRENCY]")
	fs.StringVar(&o.Text, "msg", envStr("PRODUCER_MESSAGE", "Hello from the producer"), "message text; \" #<n>\" is appended [PRODUCER_MESSAGE]")
	fs.DurationVar(&o.ProgressInterval, "progress", envDur("PRODUCER_PROGRESS_INTERVAL", 2*time.Second), "progress interval on stderr (0 = off) [PRODUCER_PROGRESS_INTERVAL]")
	fs.DurationVar(&o.TTL, "ttl", envDur("PRODUCER_TTL", 0), "message time to live (0 = queue default) [PRODUCER_TTL]")
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
		fmt.Fprintf(stderr, "producer: invalid configuration:\n%v\n", err)
		return 2
	}
	st.TableName = "" // the producer never touches the table
	clients, err := storage.NewClients(st, storage.NewHTTPClient(o.Concurrency))
	if err != nil {
		fmt.Fprintf(stderr, "producer: invalid configuration:\n%v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if *create {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := storage.EnsureQueue(cctx, clients.Queue)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "producer: %v\n", err)
			return 1
		}
	}
	sum, err := producer.Run(ctx, clients.Queue, o, stderr, log)
	if err != nil {
		fmt.Fprintf(stderr, "producer: %v\n", err)
		return 2
	}
	if *jsonSummary {
		fmt.Fprintln(stdout, sum.JSON())
	} else {
		fmt.Fprintf(stdout, "producer summary: %s\n", sum)
	}
	if sum.Failed > 0 {
		return 1
	}
	return 0
}
