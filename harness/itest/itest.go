// Package itest is the fixture of the integration tests: the real consumer
// and producer binaries built once per test binary, a private Azurite per
// test, unique queue and table names, and polling helpers with deadlines.
//
// Why an Azurite per test: no test sees another's leftovers, and a test that
// freezes Azurite (SIGSTOP) freezes only its own. A fresh instance takes
// about 1.5 s to start. (The minute-long stalls of Azurite's in-memory queue
// garbage collector are gone for good: harness/azurite keeps the queue on
// disk.)
package itest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/azurite"
	"github.com/aks-edw/aks-edw/harness/procs"
)

// Suite is the shared fixture of one test binary.
type Suite struct {
	// Bins are the freshly built programs.
	Bins procs.Binaries
	// Root is the repository root.
	Root string

	dir string
	seq atomic.Int64
}

// Setup installs Azurite if needed (npm ci), checks that it starts, and
// builds the binaries. Call it from TestMain and fail the whole run (never
// skip) when it returns an error.
func Setup(ctx context.Context) (*Suite, error) {
	root, err := azurite.RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "aks-edw-itest-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	s := &Suite{Root: root, dir: dir}
	type built struct {
		b   procs.Binaries
		err error
	}
	ch := make(chan built, 1)
	go func() {
		b, err := procs.Build(ctx, root, dir)
		ch <- built{b, err}
	}()
	az, azErr := azurite.Start(ctx, azurite.Options{Root: root, Log: os.Stderr})
	b := <-ch
	if az != nil {
		az.Stop()
	}
	if azErr != nil || b.err != nil {
		_ = os.RemoveAll(dir)
		if azErr != nil {
			return nil, fmt.Errorf("azurite could not start (the integration tests need it; run `npm ci` in %s, Node.js 20+): %w", root, azErr)
		}
		return nil, b.err
	}
	s.Bins = b.b
	return s, nil
}

// Close removes the binaries.
func (s *Suite) Close() { _ = os.RemoveAll(s.dir) }

// Env is one test's private Azurite plus the suite's binaries.
type Env struct {
	*Suite
	// Azurite is this test's emulator, stopped when the test ends.
	Azurite *azurite.Instance
}

// NewEnv starts a private Azurite for t; the test fails (never skips) if it
// cannot start.
func (s *Suite) NewEnv(t testing.TB) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	az, err := azurite.Start(ctx, azurite.Options{Root: s.Root, Log: os.Stderr})
	if err != nil {
		t.Fatalf("azurite could not start (the integration tests need it; run `npm ci` in %s, Node.js 20+): %v", s.Root, err)
	}
	t.Cleanup(az.Stop)
	return &Env{Suite: s, Azurite: az}
}

var nonAlnum = regexp.MustCompile(`[^a-z0-9]+`)

// Names returns a queue and a table name unique to this test.
func (s *Suite) Names(t testing.TB) (queue, table string) {
	base := nonAlnum.ReplaceAllString(strings.ToLower(t.Name()), "")
	if len(base) > 30 {
		base = base[:30]
	}
	n := s.seq.Add(1)
	return fmt.Sprintf("q%s%d", base, n), fmt.Sprintf("t%s%d", base, n)
}

// Clients returns SDK clients for queue and table and creates both.
func (s *Env) Clients(t testing.TB, queue, table string) *storage.Clients {
	t.Helper()
	c, err := storage.NewClients(storage.Settings{QueueName: queue, TableName: table, ConnectionString: s.Azurite.ConnectionString()}, storage.NewHTTPClient(16))
	if err != nil {
		t.Fatalf("clients: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := storage.EnsureQueue(ctx, c.Queue); err != nil {
		t.Fatalf("create queue: %v\nazurite output:\n%s", err, s.Azurite.Output())
	}
	if table != "" {
		if err := storage.EnsureTable(ctx, c.Table); err != nil {
			t.Fatalf("create table: %v", err)
		}
	}
	return c
}

// ConsumerEnv returns the environment for a consumer on queue and table,
// followed by extra KEY=VALUE settings.
func (s *Env) ConsumerEnv(queue, table string, extra ...string) []string {
	kv := []string{
		storage.EnvConnectionString + "=" + s.Azurite.ConnectionString(),
		storage.EnvQueueName + "=" + queue,
		storage.EnvTableName + "=" + table,
	}
	return procs.Env(append(kv, extra...)...)
}

// StartConsumer starts the consumer binary and registers its cleanup (a kill
// if the test left it running).
func (s *Env) StartConsumer(t testing.TB, env []string) *procs.Consumer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := procs.StartConsumer(ctx, s.Bins.Consumer, env)
	if err != nil {
		t.Fatalf("start consumer: %v", err)
	}
	t.Cleanup(func() {
		select {
		case <-c.Exited():
		default:
			c.Kill()
		}
		if t.Failed() {
			t.Logf("consumer output:\n%s\nstderr:\n%s", tailLines(c.Stdout(), 40), c.Stderr())
		}
	})
	return c
}

// Produce runs the producer binary on queue with args and returns its
// stdout; the test fails if it exits non-zero.
func (s *Env) Produce(t testing.TB, queue string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Bins.Producer, args...)
	cmd.Env = procs.Env(storage.EnvConnectionString+"="+s.Azurite.ConnectionString(), storage.EnvQueueName+"="+queue)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("producer %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, stderr.String())
	}
	return string(out)
}

// Eventually polls cond every 20 ms until it returns true or timeout passes;
// then the test fails with cond's last description.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %s", timeout, desc)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Ctx returns a context bounded by d, cancelled at the end of the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Main is a test binary's TestMain body: it sets up the shared fixture into *suite, runs the
// tests and cleans up. It fails the run (never skips) if Azurite cannot start or the binaries do
// not build.
func Main(m *testing.M, suite **Suite) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	s, err := Setup(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: integration fixture: %v\n", err)
		os.Exit(1)
	}
	*suite = s
	code := m.Run()
	s.Close()
	os.Exit(code)
}
