package consumer

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/aks-edw/aks-edw/app/redact"
	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/internal/suggest"
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

// settingPrefix starts the name of every consumer tuning setting;
// UnknownSettings looks for misspelt ones under it.
const settingPrefix = "CONSUMER_"

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

// Setting is one environment variable LoadConfig reads.
type Setting struct {
	// Name is the environment variable.
	Name string
	// Default is what applies when it is unset, or why it has none.
	Default string
	// Meaning says what it sets and which values it takes.
	Meaning string
}

// Settings lists every environment variable LoadConfig reads, in the order
// Help prints them; the defaults are taken from Defaults. Help and
// UnknownSettings are generated from it, and a test checks that it names
// exactly the variables LoadConfig reads.
func Settings() []Setting {
	d := Defaults()
	return []Setting{
		{storage.EnvAccountName, "none (required without " + storage.EnvConnectionString + ")",
			"Storage account; https://<account>.queue.core.windows.net and .table.core.windows.net, authenticated with DefaultAzureCredential (workload identity in the pod)."},
		{storage.EnvQueueName, "none (required)",
			fmt.Sprintf("Work queue; 3-%d lowercase letters, digits and inner hyphens, so that <queue>%s fits 63.", 63-len(storage.PoisonSuffix), storage.PoisonSuffix)},
		{storage.EnvTableName, "none (required)", "Table for the entities; 3-63 letters and digits, starting with a letter."},
		{storage.EnvConnectionString, "unset",
			"When set, used instead of DefaultAzureCredential (Azurite, local runs). UseDevelopmentStorage=true means the local emulator: devstoreaccount1, queue 127.0.0.1:10001, table 127.0.0.1:10002."},
		{EnvVisibilityTimeout, d.VisibilityTimeout.String(), "Go duration, whole seconds, 1s-168h: how long a dequeued message stays invisible."},
		{EnvConcurrency, strconv.Itoa(d.Concurrency), "1-512: storage requests (table writes, deletes, poison moves) in flight."},
		{EnvBatchSize, strconv.Itoa(d.BatchSize), fmt.Sprintf("1-%d: messages per dequeue call.", MaxBatchSize)},
		{EnvMaxDeliveries, strconv.Itoa(d.MaxDeliveries), "1-1000: deliveries a message gets; on the next one it goes to the poison queue."},
		{EnvHTTPAddr, d.HTTPAddr, "host:port of /healthz, /readyz, /metrics (port 0 = any free port; the address is logged)."},
		{EnvDrainTimeout, d.DrainTimeout.String(), "100ms-10m: bound on finishing in-flight work after SIGTERM; keep it below the pod's grace period."},
		{EnvMaxPollInterval, d.MaxPollInterval.String(), "10ms-1m: longest wait between dequeues on an empty queue."},
		{EnvTableBatch, strconv.FormatBool(d.TableBatch), "Entity-group transactions per partition (false: one upsert per message)."},
		{EnvExitWhenEmpty, strconv.FormatBool(d.ExitWhenEmpty), "Drain and exit 0 once the queue is empty and nothing is in flight (KEDA ScaledJob mode)."},
		{EnvLogLevel, strings.ToLower(d.LogLevel.String()), "debug, info, warn or error."},
	}
}

// Help writes the consumer's usage: what it does and every setting with its
// default and meaning.
func Help(w io.Writer) {
	settings := Settings()
	width := 0
	for _, st := range settings {
		width = max(width, len(st.Name))
	}
	var b strings.Builder
	b.WriteString(`Usage: consumer [-h]

consumer reads JSON messages from an Azure Storage queue and stores one entity
per message in an Azure table. It takes no arguments: every setting comes from
the environment. Invalid settings are all reported at once and exit 2 before
any network call.

Settings (environment variables):

`)
	for _, st := range settings {
		fmt.Fprintf(&b, "  %-*s  default: %s\n", width, st.Name, st.Default)
		wrap(&b, st.Meaning, "      ", 80)
	}
	b.WriteString(`
Also read: AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE by
DefaultAzureCredential (set by the workload identity webhook), GOMEMLIMIT by
the Go runtime. An unknown ` + settingPrefix + `* variable is logged as a warning.
`)
	_, _ = io.WriteString(w, b.String())
}

// wrap writes text to b in lines of at most width columns (longer words
// stay whole), each starting with indent.
func wrap(b *strings.Builder, text, indent string, width int) {
	line := indent
	for _, w := range strings.Fields(text) {
		if line != indent && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += w
	}
	b.WriteString(line + "\n")
}

// HandleArgs deals with the command line, which holds no settings: -h,
// -help or --help writes Help to stdout; anything else is a usage error on
// stderr. exit says the program should stop now with status code (0 after
// the help, 2 after a usage error); it is false, and nothing is written, for
// an empty command line.
func HandleArgs(args []string, stdout, stderr io.Writer) (code int, exit bool) {
	fs := flag.NewFlagSet("consumer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // the help goes to stdout below; errors get a one-line hint
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		Help(stdout)
		return 0, true
	case err != nil:
		fmt.Fprintln(stderr, "consumer: settings come from the environment; run consumer -h for the list")
		return 2, true
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "consumer: unexpected argument %q: settings come from the environment; run consumer -h for the list\n", fs.Arg(0))
		return 2, true
	}
	return 0, false
}

// Unknown is an environment variable named like a consumer setting
// (CONSUMER_..., in any case) that LoadConfig does not read.
type Unknown struct {
	// Name is the variable as set.
	Name string
	// Closest is the setting it most likely means; empty when none is close.
	Closest string
}

// String says what is wrong, for a log line or a terminal.
func (u Unknown) String() string {
	if u.Closest == "" {
		return fmt.Sprintf("%s is not a consumer setting and is ignored (consumer -h lists them)", u.Name)
	}
	return fmt.Sprintf("%s is not a consumer setting and is ignored; did you mean %s?", u.Name, u.Closest)
}

// UnknownSettings returns the variables of environ (os.Environ's KEY=value
// form) named CONSUMER_... that are not settings, each with the setting it
// most likely means, in environ's order. They are warnings: LoadConfig
// ignores them.
func UnknownSettings(environ []string) []Unknown {
	settings := Settings()
	known := make(map[string]bool, len(settings))
	// Compared lower-case and without the prefix every consumer setting
	// shares, so that suggest.Closest weighs the words that differ.
	stripped := make([]string, len(settings))
	for i, st := range settings {
		known[st.Name] = true
		stripped[i] = bareName(st.Name)
	}
	var out []Unknown
	seen := map[string]bool{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if known[name] || seen[name] || !strings.HasPrefix(strings.ToUpper(name), settingPrefix) {
			continue
		}
		seen[name] = true
		u := Unknown{Name: name}
		if c, ok := suggest.Closest(bareName(name), stripped); ok {
			for i, s := range stripped {
				if s == c {
					u.Closest = settings[i].Name
					break
				}
			}
		}
		out = append(out, u)
	}
	return out
}

// bareName lower-cases name and drops the CONSUMER_ prefix.
func bareName(name string) string {
	n := strings.ToLower(name)
	return strings.TrimPrefix(n, strings.ToLower(settingPrefix))
}

// NewLogger returns the consumer's JSON logger on w at level. Every message
// and attribute goes through redact.Handler, so no line can carry a SAS
// signature, an account key or a bearer token (the SDK's errors quote request
// URLs, SAS query included).
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(redact.Handler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})))
}
