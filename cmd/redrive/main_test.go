package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/itest"
	"github.com/aks-edw/aks-edw/harness/procs"
	"github.com/aks-edw/aks-edw/ops/redrive"
)

var suite *itest.Suite

func TestMain(m *testing.M) { itest.Main(m, &suite) }

// stage is a private Azurite with a work queue, its poison queue and a table.
type stage struct {
	env         *itest.Env
	c           *storage.Clients
	work, table string
	now         time.Time
	selected    map[string]string // id -> original text of the records a test selects
	others      int               // records it does not select
}

func newStage(t *testing.T) *stage {
	t.Helper()
	env := suite.NewEnv(t)
	work, table := suite.Names(t)
	c := env.Clients(t, work, table)
	require.NoError(t, storage.EnsureQueue(itest.Ctx(t, 10*time.Second), c.Poison))
	return &stage{env: env, c: c, work: work, table: table, now: time.Now().UTC(), selected: map[string]string{}}
}

// poison puts n records of reason on the poison queue, each the consumer's record of a message
// the producer sent (with its idempotency id), and returns their ids; rejected ones are the
// selection of the tests.
func (s *stage) poison(t *testing.T, reason message.Decision, n int) {
	t.Helper()
	ttl := int32(-1)
	for i := range n {
		id := rand.Text()
		body, err := message.NewWithID(id, fmt.Sprintf("%s #%d", reason, i), s.now).Encode()
		require.NoError(t, err)
		if reason == message.PoisonMalformed {
			body = fmt.Sprintf("not a message #%d", i)
		}
		rec, err := message.NewPoisonRecord(s.work, "qid-"+id, 6, body, reason, "", s.now).Encode()
		require.NoError(t, err)
		_, err = s.c.Poison.EnqueueMessage(itest.Ctx(t, 10*time.Second), rec, &azqueue.EnqueueMessageOptions{TimeToLive: &ttl})
		require.NoError(t, err)
		if reason == message.PoisonRejected {
			s.selected[id] = body
		} else {
			s.others++
		}
	}
}

func (s *stage) depth(t *testing.T, q *azqueue.QueueClient) int {
	t.Helper()
	n, err := redrive.Depth(itest.Ctx(t, 10*time.Second), q, "queue")
	require.NoError(t, err)
	return n
}

// env is the programs' environment for Azurite, its queue endpoint at queueBase when not "".
func (s *stage) envVia(queueBase string, extra ...string) []string {
	cs := s.env.Azurite.ConnectionString()
	if queueBase != "" {
		cs = s.env.Azurite.ConnectionStringVia(queueBase, fmt.Sprintf("http://127.0.0.1:%d", s.env.Azurite.TablePort))
	}
	return procs.Env(append([]string{storage.EnvConnectionString + "=" + cs, storage.EnvQueueName + "=" + s.work}, extra...)...)
}

// result is one run of the redrive binary.
type result struct {
	code           int
	stdout, stderr string
}

func (s *stage) redrive(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.Bins.Redrive, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// trap is a reverse proxy in front of Azurite's queue service that, once armed, lets the n-th
// request matching method and path through to Azurite and then holds its answer until the
// client goes away (or for hold, when set): the test knows that request has been done by
// storage, and that the program has not heard so.
type trap struct {
	srv *httptest.Server

	mu      sync.Mutex
	method  string
	path    string
	n, seen int
	hold    time.Duration
	fired   chan struct{}
	// deny, when set, is answered 403 AuthorizationPermissionMismatch, as Azure answers an
	// identity without the data role.
	denyMethod, denyPath string
}

func newTrap(t *testing.T, queuePort int) *trap {
	t.Helper()
	target, err := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", queuePort))
	require.NoError(t, err)
	tr := &trap{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		tr.mu.Lock()
		hit := false
		if tr.fired != nil && resp.Request.Method == tr.method && strings.Contains(resp.Request.URL.Path, tr.path) {
			tr.seen++
			hit = tr.seen == tr.n
		}
		fired, hold := tr.fired, tr.hold
		tr.mu.Unlock()
		if !hit {
			return nil
		}
		close(fired)
		if hold > 0 {
			time.Sleep(hold)
			return nil
		}
		<-resp.Request.Context().Done()
		return resp.Request.Context().Err()
	}
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		deny := tr.denyMethod != "" && r.Method == tr.denyMethod && strings.Contains(r.URL.Path, tr.denyPath)
		tr.mu.Unlock()
		if deny {
			w.Header().Set("x-ms-error-code", "AuthorizationPermissionMismatch")
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.</Message></Error>`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	return tr
}

// arm sets the trap for the n-th request with method whose path contains path.
func (tr *trap) arm(method, path string, n int, hold time.Duration) <-chan struct{} {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.method, tr.path, tr.n, tr.seen, tr.hold = method, path, n, 0, hold
	tr.fired = make(chan struct{})
	return tr.fired
}

func (tr *trap) disarm() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.fired = nil
}

// TestSIGKILLMidRedriveLosesNothing kills redrive three times in the middle of moving, once
// right after storage took a put (before the poison copy was deleted), once right after storage
// deleted a poison copy, once after a put again; then lets it finish. The work queue then holds
// every selected message, two of them twice; the poison queue exactly the unselected ones; and
// the real consumer stores every selected message once.
func TestSIGKILLMidRedriveLosesNothing(t *testing.T) {
	s := newStage(t)
	s.poison(t, message.PoisonRejected, 30)
	s.poison(t, message.PoisonMalformed, 5)
	tr := newTrap(t, s.env.Azurite.QueuePort)
	env := s.envVia(tr.srv.URL)
	args := []string{"-yes", "-reason", "rejected", "-rate", "0", "-hold", "2s"}
	put, del := "/"+s.work+"/messages", "/"+s.work+storage.PoisonSuffix+"/messages/"

	kills := []struct {
		method, path string
		n            int
	}{{http.MethodPost, put, 4}, {http.MethodDelete, del, 9}, {http.MethodPost, put, 15}}
	for i, k := range kills {
		fired := tr.arm(k.method, k.path, k.n, 0)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, suite.Bins.Redrive, args...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		select {
		case <-fired:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("kill %d: the %d-th %s never came; redrive said:\n%s", i+1, k.n, k.method, out.String())
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		cancel()
		tr.disarm()
		t.Logf("kill %d: SIGKILL right after storage did the %d-th %s; work queue %d, poison queue %d", i+1, k.n, k.method, s.depth(t, s.c.Queue), s.depth(t, s.c.Poison))
		time.Sleep(2500 * time.Millisecond) // the messages it held come back
	}
	last := s.redrive(t, env, args...)
	require.Equal(t, 0, last.code, "the last run finishes: %s%s", last.stdout, last.stderr)
	t.Logf("last run: %s", strings.TrimSpace(last.stdout))

	// The poison queue holds exactly the unselected records.
	texts, err := storage.PeekTexts(itest.Ctx(t, 10*time.Second), s.c.Poison)
	require.NoError(t, err)
	require.Len(t, texts, s.others)
	for _, text := range texts {
		assert.Equal(t, redrive.ReasonMalformed, redrive.Classify("", time.Time{}, text, s.work).Reason)
	}
	// Every selected message is on the work queue; the two killed between put and delete twice.
	assert.Equal(t, len(s.selected)+2, s.depth(t, s.c.Queue), "30 messages, two of them twice")

	// The real consumer processes all 32 and stores each message once.
	c := s.env.StartConsumer(t, s.env.ConsumerEnv(s.work, s.table))
	_, err = c.WaitMetric(itest.Ctx(t, time.Minute), "consumer_messages_processed_total", time.Minute, func(v float64) bool { return v >= float64(len(s.selected)+2) })
	require.NoError(t, err, "the consumer processes the 32")
	require.NoError(t, c.Signal(syscall.SIGTERM))
	code, err := c.Wait(30 * time.Second)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	assert.Equal(t, 0, s.depth(t, s.c.Queue))
	ents, err := storage.ListEntities(itest.Ctx(t, 30*time.Second), s.c.Table)
	require.NoError(t, err)
	stored := map[string]int{}
	for _, e := range ents {
		stored[e.ID]++
		assert.Equal(t, s.selected[e.ID], mustEncode(t, e), "entity %s is the original message", e.ID)
	}
	assert.Len(t, ents, len(s.selected), "one entity per selected message")
	for id := range s.selected {
		assert.Equal(t, 1, stored[id], "message %s stored once", id)
	}
}

// mustEncode is the message an entity was stored from, as the producer encoded it.
func mustEncode(t *testing.T, e message.Entity) string {
	t.Helper()
	text, err := message.Message{Msg: e.Data, SrcStamp: e.SrcStamp, ID: e.ID}.Encode()
	require.NoError(t, err)
	return text
}

// TestSIGTERMFinishesTheMessageInHand stops redrive while storage is deleting a poison copy: that
// message is finished (on the work queue, gone from the poison queue), nothing else is moved,
// and what it read is visible again at once, not after its hold.
func TestSIGTERMFinishesTheMessageInHand(t *testing.T) {
	s := newStage(t)
	s.poison(t, message.PoisonRejected, 20)
	tr := newTrap(t, s.env.Azurite.QueuePort)
	fired := tr.arm(http.MethodDelete, "/"+s.work+storage.PoisonSuffix+"/messages/", 6, 1500*time.Millisecond)
	cmd := exec.Command(suite.Bins.Redrive, "-yes", "-rate", "0", "-hold", "10m")
	cmd.Env = s.envVia(tr.srv.URL)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	select {
	case <-fired:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the 6th delete never came: %s%s", stdout.String(), stderr.String())
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	err := cmd.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "stdout: %s", stdout.String())
	assert.Equal(t, exitPartial, exit.ExitCode())
	assert.Contains(t, stderr.String(), "redrive: stopping after the message in hand")
	// The one it had picked when the signal came is not started: 7 selected, 6 moved.
	assert.Contains(t, stdout.String(), "redrive: selected 7, moved 6, skipped 0, failed 0")
	assert.Contains(t, stdout.String(), "(stopped: the rest are still on the poison queue)")
	assert.Equal(t, 6, s.depth(t, s.c.Queue))
	assert.Equal(t, 14, s.depth(t, s.c.Poison))
	rep := s.redrive(t, s.envVia(""), "-json")
	require.Equal(t, 0, rep.code, rep.stderr)
	var res redrive.Result
	require.NoError(t, json.Unmarshal([]byte(rep.stdout), &res))
	assert.Equal(t, 14, res.Report.Read, "the 14 it read and did not move are visible at once")
}

// TestReportAndProgress runs the report (table and JSON), then a rate-limited move with its
// progress lines and summary.
func TestReportAndProgress(t *testing.T) {
	s := newStage(t)
	s.poison(t, message.PoisonRejected, 30)
	s.poison(t, message.PoisonMalformed, 2)
	rep := s.redrive(t, s.envVia(""), "-reason", "rejected")
	require.Equal(t, 0, rep.code, rep.stderr)
	assert.Contains(t, rep.stdout, fmt.Sprintf("poison queue %s-poison (work queue %s): 32 read, approximate count 32", s.work, s.work))
	assert.Regexp(t, `  malformed\s+2\s+\d{4}-\d\d-\d\d `, rep.stdout)
	assert.Regexp(t, `  rejected\s+30\s+`, rep.stdout)
	assert.Contains(t, rep.stdout, fmt.Sprintf("from queues: %s 32", s.work))
	assert.Contains(t, rep.stdout, fmt.Sprintf("selected 30 (nothing moved: -yes moves them to %s)", s.work))
	assert.Equal(t, 0, s.depth(t, s.c.Queue))

	run := s.redrive(t, s.envVia(""), "-yes", "-reason", "rejected", "-rate", "12")
	require.Equal(t, 0, run.code, run.stdout+run.stderr)
	assert.Regexp(t, `redrive: selected 30, moved 30, skipped 0, failed 0 in \d+\.\ds`, run.stdout)
	assert.Regexp(t, `(?m)^redrive: 1s: moved \d+ of \d+ selected, skipped 0, failed 0 \(\d+ msg/s\)$`, run.stderr)
	assert.GreaterOrEqual(t, strings.Count(run.stderr, "msg/s"), 2, "a progress line a second: %s", run.stderr)
	assert.Equal(t, 30, s.depth(t, s.c.Queue))
	assert.Equal(t, 2, s.depth(t, s.c.Poison))
}

// TestStackOutputs reads the queue from a stack's outputs (a stand-in pulumi), the connection
// string from the environment.
func TestStackOutputs(t *testing.T) {
	s := newStage(t)
	s.poison(t, message.PoisonRejected, 1)
	dir := t.TempDir()
	out := fmt.Sprintf(`{"storageAccountName":"acct","queueName":%q}`, s.work)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pulumi"), []byte("#!/bin/sh\necho '"+out+"'\n"), 0o755))
	env := []string{"PATH=" + dir, "HOME=" + dir, storage.EnvConnectionString + "=" + s.env.Azurite.ConnectionString()}
	rep := s.redrive(t, env, "-stack", "dev", "-cwd", dir)
	require.Equal(t, 0, rep.code, rep.stderr)
	assert.Contains(t, rep.stdout, fmt.Sprintf("poison queue %s-poison (work queue %s): 1 read", s.work, s.work))
}

// TestBadInput: one clear error on stderr, exit 2, nothing moved.
func TestBadInput(t *testing.T) {
	s := newStage(t)
	s.poison(t, message.PoisonRejected, 2)
	ok := s.envVia("")
	dir := t.TempDir()
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown reason", ok, []string{"-yes", "-reason", "rejected,poisoned"}, `-reason "poisoned": unknown; the reasons are malformed, over_delivered, rejected, too_large`},
		{"bad time", ok, []string{"-yes", "-since", "yesterday"}, `-since "yesterday": not a time`},
		{"since after until", ok, []string{"-since", "2026-12-02", "-until", "2026-12-01"}, "-since 2026-12-02 is not before -until 2026-12-01"},
		{"empty id", ok, []string{"-yes", "-id", " "}, "-id: empty"},
		{"id file missing", ok, []string{"-id-file", filepath.Join(dir, "nope")}, "-id-file: open"},
		{"bad -to", ok, []string{"-yes", "-to", "Bad_Name"}, `-to "Bad_Name": not a queue name`},
		{"bad -hold", ok, []string{"-hold", "1500ms"}, "-hold 1.5s: must be whole seconds"},
		{"no queue name", procs.Env(storage.EnvConnectionString + "=" + s.env.Azurite.ConnectionString()), nil, "AZURE_QUEUE_NAME: required"},
		{"no credentials", []string{"PATH=" + dir, "HOME=" + dir, "AZURE_TOKEN_CREDENTIALS=dev", storage.EnvAccountName + "=acct", storage.EnvQueueName + "=" + s.work},
			nil, "no Azure credentials: none that can get a token for Azure Storage: sign in with `az login`"},
		{"poison queue missing", procs.Env(storage.EnvConnectionString+"="+s.env.Azurite.ConnectionString(), storage.EnvQueueName+"=nosuch"), nil,
			"the poison queue: queue missing: nosuch-poison does not exist"},
		{"target queue missing", ok, []string{"-yes", "-to", "nosuch"}, "the queue to move into: queue missing: nosuch does not exist"},
		{"storage unreachable", procs.Env(storage.EnvConnectionString+"="+s.env.Azurite.ConnectionStringVia("http://127.0.0.1:1", "http://127.0.0.1:1"), storage.EnvQueueName+"="+s.work),
			[]string{"-hold", "1s"}, "storage: queue " + s.work + "-poison"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.redrive(t, c.env, c.args...)
			assert.Equal(t, exitBadInput, r.code, "stdout %s stderr %s", r.stdout, r.stderr)
			assert.Empty(t, r.stdout)
			assert.True(t, strings.HasPrefix(r.stderr, "redrive: "), r.stderr)
			assert.Equal(t, 1, strings.Count(r.stderr, "redrive: "), "one error: %s", r.stderr)
			assert.Contains(t, r.stderr, c.want)
			assert.NotContains(t, r.stderr, storage.DevAccountKey, "no secret in an error")
		})
	}
	assert.Equal(t, 2, s.depth(t, s.c.Poison), "nothing moved")
	assert.Equal(t, 0, s.depth(t, s.c.Queue))
}

// TestRefusedByStorage: a 403 (the identity lacks the data role) is one clear error naming the
// roles and the config key, exit 2, and nothing moved or hidden.
func TestRefusedByStorage(t *testing.T) {
	s := newStage(t)
	s.poison(t, message.PoisonRejected, 3)
	tr := newTrap(t, s.env.Azurite.QueuePort)
	for _, c := range []struct{ name, method, path string }{
		{"reading the poison queue", http.MethodGet, "/" + s.work + storage.PoisonSuffix + "/messages"},
		{"putting a message back", http.MethodPost, "/" + s.work + "/messages"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr.mu.Lock()
			tr.denyMethod, tr.denyPath = c.method, c.path
			tr.mu.Unlock()
			r := s.redrive(t, s.envVia(tr.srv.URL), "-yes", "-hold", "600s")
			assert.Equal(t, exitBadInput, r.code, "stdout %s stderr %s", r.stdout, r.stderr)
			assert.Empty(t, r.stdout)
			assert.Len(t, errorLines(r.stderr), 1, r.stderr)
			assert.Contains(t, r.stderr, "storage answered 403 AuthorizationPermissionMismatch: the identity redrive runs as needs Storage Queue Data Contributor on the poison queue "+s.work+"-poison")
			assert.Contains(t, r.stderr, "pulumi config set grantDeployerRedriveAccess true --stack <stack>")
			assert.Equal(t, 0, s.depth(t, s.c.Queue))
			texts, err := storage.PeekTexts(itest.Ctx(t, 10*time.Second), s.c.Poison)
			require.NoError(t, err)
			assert.Len(t, texts, 3, "all three visible at once")
		})
	}
}

// errorLines are stderr's lines but the progress lines (the retries of a 403 can take seconds).
func errorLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.HasSuffix(l, "msg/s)") {
			out = append(out, l)
		}
	}
	return out
}

// TestIDFileAndLimit: -id-file (comments and blank lines ignored) with -id, and -limit, through
// the binary.
func TestIDFileAndLimit(t *testing.T) {
	s := newStage(t)
	s.poison(t, message.PoisonRejected, 6)
	var ids []string
	for id := range s.selected {
		ids = append(ids, id)
	}
	file := filepath.Join(t.TempDir(), "ids")
	require.NoError(t, os.WriteFile(file, []byte("# the two to replay\n\nqid-"+ids[0]+"\n  qid-"+ids[1]+"  \n"), 0o644))
	r := s.redrive(t, s.envVia(""), "-yes", "-id-file", file, "-id", "qid-"+ids[2], "-rate", "0")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "redrive: selected 3, moved 3")
	texts, err := storage.PeekTexts(itest.Ctx(t, 10*time.Second), s.c.Queue)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{s.selected[ids[0]], s.selected[ids[1]], s.selected[ids[2]]}, texts)

	r = s.redrive(t, s.envVia(""), "-yes", "-limit", "2", "-rate", "0")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "redrive: selected 2, moved 2")
	assert.Equal(t, 5, s.depth(t, s.c.Queue))
	assert.Equal(t, 1, s.depth(t, s.c.Poison))
}
