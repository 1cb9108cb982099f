// Command redrive looks at the poison queue and, once the cause is fixed, puts chosen messages
// back on the work queue they came from, byte for byte (ops/redrive).
//
// By default it only reports: the poison queue by reason and by source queue, with the oldest and
// newest poisoning and a few ids. With selectors (-reason, -since, -until, -id, -id-file, -limit)
// it says how many it would move; with -yes it moves them, at most -rate per second, with a
// progress line every second and a summary. Each message is put on its queue first and only then
// deleted from the poison queue, so a crash or SIGKILL loses nothing (the consumer stores a
// message that ends up on both queues once). SIGTERM or Ctrl-C finishes the message in hand and
// stops.
//
// Storage: a deployed stack's (-stack: its storageAccountName and queueName outputs, Entra
// credentials as verify uses them), or the programs' environment: AZURE_STORAGE_CONNECTION_STRING
// (Azurite) or AZURE_STORAGE_ACCOUNT_NAME, and AZURE_QUEUE_NAME; the poison queue is the work
// queue's name plus "-poison".
//
// Exit status: 0 done; 1 some selected messages were not moved (failed, or stopped early); 2 bad
// input (flags, reason, time, credentials, a queue missing), nothing moved.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aks-edw/aks-edw/app/redact"
	"github.com/aks-edw/aks-edw/app/retry"
	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/ops/cliutil"
	"github.com/aks-edw/aks-edw/ops/redrive"
)

// Exit statuses.
const (
	exitOK       = 0
	exitPartial  = 1
	exitBadInput = 2
)

func main() {
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "redrive: stopping after the message in hand (again to quit now)")
		close(stop)
		<-sigs
		os.Exit(exitPartial)
	}()
	os.Exit(run(context.Background(), os.Args[1:], os.Environ(), stop, os.Stdout, os.Stderr))
}

const usageText = `usage: redrive [flags]

Reports the poison queue by reason and source queue; with -yes moves the selected messages back
to the work queue they came from, byte for byte (put there first, then deleted from the poison
queue: a crash loses nothing).

Storage: -stack NAME (its storageAccountName and queueName outputs; Entra credentials: az login,
AZURE_* of a service principal or workload identity, GitHub OIDC in a job), or the environment:
AZURE_STORAGE_CONNECTION_STRING (Azurite) or AZURE_STORAGE_ACCOUNT_NAME, and AZURE_QUEUE_NAME.
The poison queue is AZURE_QUEUE_NAME plus "-poison".

Exit status: 0 done; 1 some selected messages not moved (failed or stopped); 2 bad input.

Flags:
`

// config is what the flags say.
type config struct {
	stack, cwd string
	reasons    []string
	since      string
	until      string
	ids        []string
	idFile     string
	limit      int
	yes        bool
	to         string
	rate       float64
	hold       time.Duration
	json       bool
}

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags(args []string, stderr io.Writer) (cfg config, help bool, err error) {
	fs := flag.NewFlagSet("redrive", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.stack, "stack", "", "a deployed stack: its storage account and queue (default: the environment's)")
	fs.StringVar(&cfg.cwd, "cwd", ".", "the Pulumi project folder (with -stack)")
	fs.Var((*list)(&cfg.reasons), "reason", "select by reason (repeatable, or comma-separated): "+strings.Join(redrive.Reasons, ", "))
	fs.StringVar(&cfg.since, "since", "", "select messages poisoned at or after: RFC 3339, \"2026-12-01 10:00:00\" (UTC), 2026-12-01, or a duration before now (36h)")
	fs.StringVar(&cfg.until, "until", "", "select messages poisoned before (same forms as -since)")
	fs.Var((*list)(&cfg.ids), "id", "select by message id (repeatable): the id the report shows")
	fs.StringVar(&cfg.idFile, "id-file", "", "select the message ids in this file (one per line; blank lines and # comments ignored)")
	fs.IntVar(&cfg.limit, "limit", 0, "move at most this many (0: all selected)")
	fs.BoolVar(&cfg.yes, "yes", false, "move the selected messages (without it: report only)")
	fs.StringVar(&cfg.to, "to", "", "move into this queue, whatever queue the records name")
	fs.Float64Var(&cfg.rate, "rate", 50, "moves per second at most (0: no limit)")
	fs.DurationVar(&cfg.hold, "hold", redrive.DefaultHold, "how long a message read stays invisible to others (whole seconds, 1s-7 days); after a crash it reappears when this ends")
	fs.BoolVar(&cfg.json, "json", false, "print the report and summary as one JSON object")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usageText)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return cfg, true, nil
		}
		return cfg, false, fmt.Errorf("bad flags: %v (redrive -h lists them)", err)
	}
	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments %q", fs.Args()))
	}
	if cfg.limit < 0 {
		problems = append(problems, fmt.Sprintf("-limit %d: must be 0 (all) or more", cfg.limit))
	}
	if cfg.rate < 0 {
		problems = append(problems, fmt.Sprintf("-rate %g: must be 0 (no limit) or more", cfg.rate))
	}
	if cfg.hold < time.Second || cfg.hold > 7*24*time.Hour || cfg.hold%time.Second != 0 {
		problems = append(problems, fmt.Sprintf("-hold %s: must be whole seconds from 1s to 168h (the Queue service's visibility timeout)", cfg.hold))
	}
	if cfg.to != "" && !storage.ValidQueueName(cfg.to) {
		problems = append(problems, fmt.Sprintf("-to %q: not a queue name (3-63 lowercase letters, digits and single inner hyphens)", cfg.to))
	}
	if len(problems) > 0 {
		return cfg, false, fmt.Errorf("bad flags: %s", strings.Join(problems, "; "))
	}
	return cfg, false, nil
}

// selector builds the selection from the flags; every problem is named.
func selector(cfg config, now time.Time) (redrive.Selector, error) {
	var sel redrive.Selector
	var problems []string
	var err error
	if sel.Reasons, err = redrive.ParseReasons(cfg.reasons); err != nil {
		problems = append(problems, err.Error())
	}
	if cfg.since != "" {
		if sel.Since, err = redrive.ParseTime("-since", cfg.since, now); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if cfg.until != "" {
		if sel.Until, err = redrive.ParseTime("-until", cfg.until, now); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if !sel.Since.IsZero() && !sel.Until.IsZero() && !sel.Since.Before(sel.Until) {
		problems = append(problems, fmt.Sprintf("-since %s is not before -until %s", cfg.since, cfg.until))
	}
	ids := append([]string(nil), cfg.ids...)
	if cfg.idFile != "" {
		more, err := readIDs(cfg.idFile)
		if err != nil {
			problems = append(problems, err.Error())
		}
		ids = append(ids, more...)
	}
	if len(ids) > 0 {
		sel.IDs = map[string]bool{}
		for _, id := range ids {
			if id = strings.TrimSpace(id); id != "" {
				sel.IDs[id] = true
			}
		}
		if len(sel.IDs) == 0 {
			problems = append(problems, "-id: empty (an empty id would select everything)")
		}
	}
	if len(problems) > 0 {
		return sel, errors.New(strings.Join(problems, "; "))
	}
	return sel, nil
}

// readIDs reads one id per line; blank lines and # comments are ignored.
func readIDs(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("-id-file: %v", err)
	}
	defer func() { _ = f.Close() }()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			ids = append(ids, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("-id-file %s: %v", path, err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("-id-file %s: no ids in it", path)
	}
	return ids, nil
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args, env []string, stop <-chan struct{}, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "redrive: %s\n", redact.String(err.Error()))
		return exitBadInput
	}
	cfg, help, err := parseFlags(args, stderr)
	if help {
		return exitOK
	}
	if err != nil {
		return fail(err)
	}
	sel, err := selector(cfg, time.Now())
	if err != nil {
		return fail(err)
	}
	settings, err := loadSettings(ctx, cfg, env)
	if err != nil {
		return fail(err)
	}
	if settings.ConnectionString == "" {
		if details, err := storage.CheckCredential(ctx, time.Minute); err != nil {
			if details != "" {
				err = fmt.Errorf("%w.\nDetails: %s", err, cliutil.Condense(details, 12))
			}
			return fail(err)
		}
	}
	clients, err := storage.NewClients(settings, storage.NewHTTPClient(16))
	if err != nil {
		return fail(fmt.Errorf("storage clients: %w", err))
	}
	queueNamed := func(name string) redrive.Queue { return clients.Service.NewQueueClient(name) }
	// Both queues must be there before anything is read: a missing one is bad input.
	if _, err := redrive.Depth(ctx, clients.Poison, settings.PoisonQueueName()); err != nil {
		return fail(missing(err, "the poison queue"))
	}
	if cfg.yes {
		target := settings.QueueName
		if cfg.to != "" {
			target = cfg.to
		}
		if _, err := redrive.Depth(ctx, queueNamed(target), target); err != nil {
			return fail(missing(err, "the queue to move into"))
		}
	}
	o := redrive.Options{
		Work: settings.QueueName, Poison: clients.Poison, PoisonName: settings.PoisonQueueName(),
		QueueNamed: queueNamed, To: cfg.to, Select: sel, Limit: cfg.limit, Move: cfg.yes,
		Rate: cfg.rate, Hold: cfg.hold, Stop: stop,
		Progress: func(s redrive.Summary) {
			fmt.Fprintf(stderr, "redrive: %.0fs: moved %d of %d selected, skipped %d, failed %d (%.0f msg/s)\n",
				s.Elapsed, s.Moved, s.Selected, skipped(s), s.Failed, float64(s.Moved)/max(s.Elapsed, 1e-9))
		},
	}
	res, runErr := redrive.Run(ctx, o)
	if runErr != nil && redrive.Denied(runErr) && res.Summary.Moved == 0 && res.Summary.Failed == 0 {
		return fail(refused(runErr, cfg, settings))
	}
	if cfg.json {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
	} else {
		printReport(stdout, res.Report)
		printSummary(stdout, cfg, res)
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "redrive: %s\n", redact.String(runErr.Error()))
		return exitPartial
	}
	if res.Summary.Stopped || cfg.yes && (res.Summary.Failed > 0 || skipped(res.Summary) > 0) {
		return exitPartial
	}
	return exitOK
}

// refused explains a 403: the storage firewall, or a data role the identity lacks.
func refused(err error, cfg config, s storage.Settings) error {
	stack := cfg.stack
	if stack == "" {
		stack = "<stack>"
	}
	if retry.ErrorCode(err) == "AuthorizationFailure" {
		return fmt.Errorf("storage answered 403 AuthorizationFailure: the storage firewall refuses this machine's public IP; add it to operatorIpRanges (pulumi config set --path 'operatorIpRanges[0]' <your-public-ip> --stack %s, then pulumi up)", stack)
	}
	target := s.QueueName
	if cfg.to != "" {
		target = cfg.to
	}
	return fmt.Errorf("storage answered 403 %s: the identity redrive runs as needs Storage Queue Data Contributor on the poison queue %s (read, hide and delete its messages) and Storage Queue Data Message Sender on %s (put them back). "+
		"`grantDeployerRedriveAccess: true` in the stack config grants both to the stack's dataOperators (unset: to whoever runs pulumi up; pulumi config set grantDeployerRedriveAccess true --stack %s, then pulumi up; a new role assignment takes a few minutes to apply)",
		retry.ErrorCode(err), s.PoisonQueueName(), target, stack)
}

// missing says which queue is missing, or passes other errors on.
func missing(err error, which string) error {
	if errors.Is(err, redrive.ErrQueueMissing) {
		return fmt.Errorf("%s: %w", which, err)
	}
	return fmt.Errorf("storage: %w", err)
}

// loadSettings reads the storage settings from the stack's outputs (-stack) or the environment.
func loadSettings(ctx context.Context, cfg config, env []string) (storage.Settings, error) {
	getenv := cliutil.EnvLookup(env)
	if cfg.stack != "" {
		raw, err := cliutil.StackOutputs(ctx, cfg.stack, cfg.cwd, env)
		if err != nil {
			return storage.Settings{}, err
		}
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			return storage.Settings{}, fmt.Errorf("pulumi stack output --json for stack %s is not a JSON object: %v", cfg.stack, err)
		}
		account, _ := out["storageAccountName"].(string)
		queue, _ := out["queueName"].(string)
		if account == "" || queue == "" {
			return storage.Settings{}, fmt.Errorf("stack %s lacks the outputs storageAccountName and queueName (deploy it: pulumi up --stack %s)", cfg.stack, cfg.stack)
		}
		inner := getenv
		getenv = func(name string) string {
			switch name {
			case storage.EnvAccountName:
				return account
			case storage.EnvQueueName:
				return queue
			}
			return inner(name)
		}
	}
	s, err := storage.LoadSettings(getenv, false)
	if err != nil {
		return s, fmt.Errorf("storage settings: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return s, nil
}

func skipped(s redrive.Summary) int {
	n := 0
	for _, v := range s.Skipped {
		n += v
	}
	return n
}

func printReport(w io.Writer, r redrive.Report) {
	fmt.Fprintf(w, "poison queue %s (work queue %s): %d read, approximate count %d\n", r.PoisonQueue, r.WorkQueue, r.Read, r.Approximate)
	if len(r.Reasons) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  reason\tcount\toldest poisonedAt\tnewest poisonedAt\tsample ids")
		for _, rc := range r.Reasons {
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\n", rc.Reason, rc.Count, rc.Oldest, rc.Newest, strings.Join(rc.SampleIDs, ", "))
		}
		_ = tw.Flush()
		var from []string
		for _, s := range r.Sources {
			from = append(from, fmt.Sprintf("%s %d", s.Queue, s.Count))
		}
		fmt.Fprintf(w, "  from queues: %s\n", strings.Join(from, ", "))
	}
	if len(r.Unparseable) > 0 {
		fmt.Fprintf(w, "  unparseable, left alone: %d\n", len(r.Unparseable))
		for _, l := range r.Unparseable {
			fmt.Fprintf(w, "    %s: %s\n", l.ID, l.Why)
		}
	}
}

func printSummary(w io.Writer, cfg config, res redrive.Result) {
	s := res.Summary
	if !cfg.yes {
		if s.Stopped {
			fmt.Fprintln(w, "stopped: the report covers the messages read until then")
		}
		target := res.Report.WorkQueue
		if cfg.to != "" {
			target = cfg.to
		}
		fmt.Fprintf(w, "selected %d (nothing moved: -yes moves them to %s)\n", s.Selected, target)
		return
	}
	state := ""
	if s.Stopped {
		state = " (stopped: the rest are still on the poison queue)"
	}
	fmt.Fprintf(w, "redrive: selected %d, moved %d, skipped %d, failed %d in %.1fs%s\n", s.Selected, s.Moved, skipped(s), s.Failed, s.Elapsed, state)
	var whys []string
	for why := range s.Skipped {
		whys = append(whys, why)
	}
	sort.Strings(whys)
	for _, why := range whys {
		fmt.Fprintf(w, "  skipped, %s: %d\n", why, s.Skipped[why])
	}
	for _, l := range s.SkippedList {
		fmt.Fprintf(w, "    %s: %s\n", l.ID, l.Why)
	}
	for _, l := range s.Failures {
		fmt.Fprintf(w, "  failed: %s: %s\n", l.ID, l.Why)
	}
	if s.Unreleased > 0 {
		fmt.Fprintf(w, "  %d messages read could not be made visible again: they reappear after -hold %s\n", s.Unreleased, cfg.hold)
	}
}
