package consumer

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/aks-edw/aks-edw/internal/storage"
)

// Environment variable names of the consumer's own settings.
const (
	EnvVisibilityTimeout = "CONSUMER_VISIBILITY_TIMEOUT"
	EnvConcurrency       = "CONSUMER_CONCURRENCY"
	EnvBatchSize         = "CONSUMER_BATCH_SIZE"
	EnvMaxDeliveries     = "CONSUMER_MAX_DELIVERIES"
	EnvHTTPAddr          = "CONSUMER_HTTP_ADDR"
	EnvDrainTimeout      = "CONSUMER_DRAIN_TIMEOUT"
	EnvMaxPollInterval   = "CONSUMER_MAX_POLL_INTERVAL"
	EnvTableBatch        = "CONSUMER_TABLE_BATCH"
	EnvExitWhenEmpty     = "CONSUMER_EXIT_WHEN_EMPTY"
	EnvLogLevel          = "LOG_LEVEL"
)

// MaxBatchSize is the most messages one dequeue call may return.
const MaxBatchSize = 32

// Config is the consumer's whole configuration.
type Config struct {
	// Storage says which account, queue and table to use.
	Storage storage.Settings
	// VisibilityTimeout is how long a dequeued message stays invisible; a
	// message not deleted within it is delivered again.
	VisibilityTimeout time.Duration
	// Concurrency is the most storage requests (table writes, deletes,
	// poison moves) in flight at once.
	Concurrency int
	// BatchSize is how many messages one dequeue call asks for (1-32).
	BatchSize int
	// MaxDeliveries is how many deliveries a message gets; on the next one it
	// goes to the poison queue.
	MaxDeliveries int
	// HTTPAddr is the listen address of /healthz, /readyz and /metrics.
	HTTPAddr string
	// DrainTimeout bounds how long in-flight work may take after SIGTERM.
	DrainTimeout time.Duration
	// MaxPollInterval caps the wait between dequeue calls on an empty queue.
	MaxPollInterval time.Duration
	// TableBatch writes the entities of one dequeued batch that share a
	// partition as one entity-group transaction instead of one upsert each.
	TableBatch bool
	// ExitWhenEmpty makes the consumer stop (and exit 0) once the queue is
	// empty and nothing is in flight: one-shot runs such as KEDA ScaledJobs.
	ExitWhenEmpty bool
	// LogLevel is the minimum level logged.
	LogLevel slog.Level
}

// Defaults returns the default settings (storage settings empty).
func Defaults() Config {
	return Config{
		VisibilityTimeout: 30 * time.Second,
		Concurrency:       16,
		BatchSize:         MaxBatchSize,
		MaxDeliveries:     5,
		HTTPAddr:          ":8080",
		DrainTimeout:      20 * time.Second,
		MaxPollInterval:   time.Second,
		TableBatch:        true,
		LogLevel:          slog.LevelInfo,
	}
}

// LoadConfig reads the configuration from getenv (os.Getenv in main) and
// validates it. Every problem is reported at once (errors.Join), each naming
// its environment variable.
func LoadConfig(getenv func(string) string) (Config, error) {
	c := Defaults()
	var errs []error
	st, err := storage.LoadSettings(getenv, true)
	if err != nil {
		errs = append(errs, err)
	}
	c.Storage = st

	duration := func(name string, dst *time.Duration, lo, hi time.Duration) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a Go duration such as 30s or 1m: %w", name, v, err))
			return
		}
		if d < lo || d > hi {
			errs = append(errs, fmt.Errorf("%s=%q: must be between %s and %s", name, v, lo, hi))
			return
		}
		*dst = d
	}
	integer := func(name string, dst *int, lo, hi int) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not an integer: %w", name, v, err))
			return
		}
		if n < lo || n > hi {
			errs = append(errs, fmt.Errorf("%s=%q: must be between %d and %d", name, v, lo, hi))
			return
		}
		*dst = n
	}

	duration(EnvVisibilityTimeout, &c.VisibilityTimeout, time.Second, 7*24*time.Hour)
	if c.VisibilityTimeout%time.Second != 0 {
		errs = append(errs, fmt.Errorf("%s=%q: must be whole seconds (the queue counts in seconds)", EnvVisibilityTimeout, getenv(EnvVisibilityTimeout)))
	}
	integer(EnvConcurrency, &c.Concurrency, 1, 512)
	integer(EnvBatchSize, &c.BatchSize, 1, MaxBatchSize)
	integer(EnvMaxDeliveries, &c.MaxDeliveries, 1, 1000)
	duration(EnvDrainTimeout, &c.DrainTimeout, 100*time.Millisecond, 10*time.Minute)
	duration(EnvMaxPollInterval, &c.MaxPollInterval, 10*time.Millisecond, time.Minute)

	if v := strings.TrimSpace(getenv(EnvHTTPAddr)); v != "" {
		if _, port, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not host:port (e.g. :8080): %w", EnvHTTPAddr, v, err))
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s=%q: port must be 0-65535", EnvHTTPAddr, v))
		} else {
			c.HTTPAddr = v
		}
	}
	boolean := func(name string, dst *bool) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a boolean (true/false): %w", name, v, err))
			return
		}
		*dst = b
	}
	boolean(EnvTableBatch, &c.TableBatch)
	boolean(EnvExitWhenEmpty, &c.ExitWhenEmpty)
	if v := strings.TrimSpace(getenv(EnvLogLevel)); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: must be debug, info, warn or error: %w", EnvLogLevel, v, err))
		}
	}
	return c, errors.Join(errs...)
}
