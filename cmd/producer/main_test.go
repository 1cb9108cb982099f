package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/itest"
	"github.com/aks-edw/aks-edw/harness/procs"
)

var suite *itest.Suite

func TestMain(m *testing.M) { itest.Main(m, &suite) }

func runProducer(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.Bins.Producer, args...)
	cmd.Env = env
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return out.String(), errb.String(), code
}

func TestSendsTheOriginalFormatWithProgressAndSummary(t *testing.T) {
	e := suite.NewEnv(t)
	q, _ := suite.Names(t)
	env := procs.Env(storage.EnvConnectionString+"="+e.Azurite.ConnectionString(), storage.EnvQueueName+"="+q)
	start := time.Now()
	// 60 messages at 40/s take about 1.5 s: the rate is honoured, progress is
	// printed every 300 ms.
	out, errOut, code := runProducer(t, env, "-create-queue", "-count", "60", "-rate", "40", "-concurrency", "4", "-progress", "300ms", "-msg", "hello", "-json")
	took := time.Since(start)
	require.Equal(t, 0, code, "stderr:\n%s", errOut)
	var sum struct {
		Sent, Failed int
		ElapsedMs    float64
		Rate         float64
	}
	require.NoError(t, json.Unmarshal([]byte(out), &sum), out)
	assert.Equal(t, 60, sum.Sent)
	assert.Equal(t, 0, sum.Failed)
	assert.GreaterOrEqual(t, sum.ElapsedMs, 1400.0, "rate limited to 40/s")
	assert.Less(t, took, 10*time.Second)
	assert.InDelta(t, 40, sum.Rate, 6)
	assert.GreaterOrEqual(t, strings.Count(errOut, "producer: sent="), 3, "periodic progress on stderr:\n%s", errOut)

	c := e.Clients(t, q, "")
	d, err := storage.Depth(itest.Ctx(t, 5*time.Second), c.Queue)
	require.NoError(t, err)
	assert.Equal(t, 60, d)
	n := int32(32)
	resp, err := c.Queue.PeekMessages(itest.Ctx(t, 5*time.Second), &azqueue.PeekMessagesOptions{NumberOfMessages: &n})
	require.NoError(t, err)
	require.NotEmpty(t, resp.Messages)
	ids := map[string]bool{}
	for _, m := range resp.Messages {
		var raw map[string]any
		require.NoError(t, json.Unmarshal([]byte(*m.MessageText), &raw))
		assert.Len(t, raw, 3, "exactly msg, srcStamp and id")
		p, err := message.Parse(*m.MessageText)
		require.NoError(t, err)
		assert.Regexp(t, uuidV4, p.ID, "idempotency id")
		assert.False(t, ids[p.ID], "id %s used twice", p.ID)
		ids[p.ID] = true
		assert.Regexp(t, `^hello #\d+$`, p.Msg)
		assert.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$`, p.SrcStamp)
		assert.WithinDuration(t, time.Now(), p.Src, time.Minute, "UTC")
	}
}

func TestDurationBoundRun(t *testing.T) {
	e := suite.NewEnv(t)
	q, _ := suite.Names(t)
	e.Clients(t, q, "")
	env := procs.Env(storage.EnvConnectionString+"="+e.Azurite.ConnectionString(), storage.EnvQueueName+"="+q,
		"PRODUCER_COUNT=0", "PRODUCER_DURATION=700ms", "PRODUCER_RATE=50")
	start := time.Now()
	out, errOut, code := runProducer(t, env)
	require.Equal(t, 0, code, errOut)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Regexp(t, `producer summary: sent=\d+ failed=0 elapsed=\S+ rate=`, out)
	var sent int
	_, err := fmt.Sscanf(strings.TrimPrefix(out, "producer summary: "), "sent=%d", &sent)
	require.NoError(t, err)
	assert.InDelta(t, 35, sent, 10, "about 0.7 s x 50/s")
}

func TestInvalidSettingsFailFast(t *testing.T) {
	env := procs.Env("PRODUCER_RATE=fast", "AZURE_QUEUE_NAME=Bad_Name")
	out, errOut, code := runProducer(t, env, "-concurrency", "0")
	assert.Equal(t, 2, code)
	assert.Empty(t, out)
	for _, w := range []string{"invalid configuration", `PRODUCER_RATE="fast"`, `AZURE_QUEUE_NAME="Bad_Name"`, "AZURE_STORAGE_ACCOUNT_NAME: required", "concurrency=0"} {
		assert.Contains(t, errOut, w)
	}
}

const uuidV4 = `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`

// runInProcess runs the program's run function with args and the given
// environment (nothing else), returning stdout, stderr and the exit status.
// Only for configurations that never reach the network.
func runInProcess(args []string, env map[string]string) (stdout, stderr string, code int) {
	var out, errb strings.Builder
	code = run(context.Background(), args, func(k string) string { return env[k] }, &out, &errb)
	return out.String(), errb.String(), code
}

func TestInvalidTTLRateAndMaxFailuresExit2(t *testing.T) {
	const ttlRule = "must be 0 (queue default), -1s (never expires) or a whole number of seconds from 1s to 2147483647s"
	const rateRule = "must be a finite number >= 0"
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"sub-second ttl", []string{"-ttl", "500ms"}, nil, []string{"-ttl=500ms: " + ttlRule}},
		{"fractional ttl", []string{"-ttl", "1.5s"}, nil, []string{"-ttl=1.5s: " + ttlRule}},
		{"fractional ttl from env", nil, map[string]string{"PRODUCER_TTL": "90500ms"}, []string{"-ttl=1m30.5s: " + ttlRule}},
		{"negative ttl", []string{"-ttl", "-2s"}, nil, []string{"-ttl=-2s: " + ttlRule}},
		{"negative sub-second ttl", []string{"-ttl", "-500ms"}, nil, []string{"-ttl=-500ms: " + ttlRule}},
		{"ttl beyond int32 seconds", []string{"-ttl", "2147483648s"}, nil, []string{"-ttl=596523h14m8s: " + ttlRule}},
		{"NaN rate", []string{"-rate", "NaN"}, nil, []string{"-rate=NaN: " + rateRule}},
		{"infinite rate", []string{"-rate", "Inf"}, nil, []string{"-rate=+Inf: " + rateRule}},
		{"minus infinite rate", []string{"-rate", "-Inf"}, nil, []string{"-rate=-Inf: " + rateRule}},
		{"negative rate", []string{"-rate", "-3"}, nil, []string{"-rate=-3: " + rateRule}},
		{"NaN rate from env", nil, map[string]string{"PRODUCER_RATE": "nan"}, []string{"-rate=NaN: " + rateRule}},
		{"negative max failures", []string{"-max-consecutive-failures", "-1"}, nil, []string{"-max-consecutive-failures=-1: must be >= 0 (0 = never stop)"}},
		{"max failures env not a number", nil, map[string]string{"PRODUCER_MAX_CONSECUTIVE_FAILURES": "ten"}, []string{`PRODUCER_MAX_CONSECUTIVE_FAILURES="ten": not an integer`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"AZURE_QUEUE_NAME": "q1", "AZURE_STORAGE_ACCOUNT_NAME": "acct"}
			for k, v := range tc.env {
				env[k] = v
			}
			out, errOut, code := runInProcess(tc.args, env)
			assert.Equal(t, 2, code, errOut)
			assert.Empty(t, out)
			assert.Contains(t, errOut, "invalid configuration")
			for _, w := range tc.want {
				assert.Contains(t, errOut, w)
			}
		})
	}
}

func TestBoundaryTTLAndRateAreAccepted(t *testing.T) {
	// No queue name: the run stops at validation (exit 2) whatever the rest,
	// so only the absence of a -ttl / -rate complaint is checked.
	for _, args := range [][]string{
		{"-ttl", "0"}, {"-ttl", "-1s"}, {"-ttl", "1s"}, {"-ttl", "168h"}, {"-ttl", "2147483647s"},
		{"-rate", "0"}, {"-rate", "0.5"}, {"-max-consecutive-failures", "0"},
	} {
		_, errOut, code := runInProcess(args, map[string]string{"AZURE_STORAGE_ACCOUNT_NAME": "acct"})
		assert.Equal(t, 2, code)
		assert.Contains(t, errOut, "AZURE_QUEUE_NAME: required", "%v", args)
		assert.NotContains(t, errOut, "-ttl=", "%v", args)
		assert.NotContains(t, errOut, "-rate=", "%v", args)
		assert.NotContains(t, errOut, "-max-consecutive-failures=", "%v", args)
	}
}

func TestHelpDescribesTheFlags(t *testing.T) {
	out, errOut, code := runInProcess([]string{"-h"}, map[string]string{"PRODUCER_MAX_CONSECUTIVE_FAILURES": ""})
	assert.Equal(t, 0, code)
	assert.Empty(t, out)
	for _, w := range []string{
		"-max-consecutive-failures int",
		"stop and exit 1 once this many messages in a row failed after their retries (0 = never stop) [PRODUCER_MAX_CONSECUTIVE_FAILURES] (default 10)",
		"-ttl duration",
		"whole seconds, up to 2147483647s (0 = queue default of 7 days, -1s = never expires) [PRODUCER_TTL]",
		"finite and >= 0 (0 = as fast as -concurrency allows) [PRODUCER_RATE]",
	} {
		assert.Contains(t, errOut, w)
	}
}

// deadQueueEnv returns the environment of a producer whose queue endpoint is
// a loopback port nobody listens on (a listener opened and closed again),
// authenticated by a SAS whose signature is SECRETSIG123, and that port.
func deadQueueEnv(t *testing.T, extra ...string) (env []string, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr = l.Addr().String()
	require.NoError(t, l.Close())
	conn := "QueueEndpoint=http://" + addr + "/devstoreaccount1;SharedAccessSignature=sv=2023-01-03&sig=SECRETSIG123"
	return procs.Env(append([]string{storage.EnvConnectionString + "=" + conn, storage.EnvQueueName + "=deadq"}, extra...)...), addr
}

func TestStopsAfterConsecutiveFailuresOnDeadEndpoint(t *testing.T) {
	// Defaults only (100 messages, 8 in flight, 10 failures in a row): a
	// queue endpoint where nothing listens is given up on within seconds.
	env, addr := deadQueueEnv(t)
	start := time.Now()
	out, errOut, code := runProducer(t, env)
	took := time.Since(start)
	t.Logf("stopped after %s", took)
	assert.Equal(t, 1, code, "stderr:\n%s", errOut)
	assert.Less(t, took, 30*time.Second, "a dead endpoint is detected well under a minute")
	want := "producer: stopping: 10 messages in a row failed sending to queue http://" + addr + "/devstoreaccount1/deadq (-max-consecutive-failures=10); last error: "
	assert.Contains(t, errOut, want)
	assert.Regexp(t, regexp.QuoteMeta(want)+`.*connection refused`, errOut, "the last error is named")
	m := regexp.MustCompile(`producer summary: sent=0 failed=(\d+) `).FindStringSubmatch(out)
	require.NotNil(t, m, "summary on stdout:\n%s", out)
	var failed int
	_, err := fmt.Sscan(m[1], &failed)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, failed, 10)
	assert.Less(t, failed, 10+8, "nothing started after the tenth failure, only the messages in flight finished")
}

func TestSecretsNeverReachTheOutput(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		extra []string
		code  int
	}{
		// EnsureQueue's error names the queue URL, SAS query included.
		{"create-queue error", []string{"-create-queue"}, nil, 1},
		// Every enqueue error (logged, and repeated in the stop message)
		// names the request URL, SAS query included.
		{"enqueue errors and stop message", []string{"-count", "3", "-concurrency", "1", "-max-consecutive-failures", "1"}, nil, 1},
		// A configuration error quoting a value.
		{"invalid configuration", []string{"-rate", "NaN"}, []string{"PRODUCER_TTL=sig=SECRETSIG123"}, 2},
		// A flag parse error quoting a value (written by the flag package).
		{"flag parse error", []string{"-count", "sig=SECRETSIG123"}, nil, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, _ := deadQueueEnv(t, tc.extra...)
			out, errOut, code := runProducer(t, env, tc.args...)
			assert.Equal(t, tc.code, code, errOut)
			assert.NotContains(t, out, "SECRETSIG123")
			assert.NotContains(t, errOut, "SECRETSIG123")
			// The secret was there to leak: the redacted form shows in its place.
			assert.Contains(t, errOut, "sig=REDACTED", "stderr:\n%s", errOut)
		})
	}
}

func TestTTLReachesTheQueue(t *testing.T) {
	e := suite.NewEnv(t)
	q, _ := suite.Names(t)
	c := e.Clients(t, q, "")
	env := procs.Env(storage.EnvConnectionString+"="+e.Azurite.ConnectionString(), storage.EnvQueueName+"="+q)
	for _, ttl := range []string{"90s", "-1s"} {
		_, errOut, code := runProducer(t, env, "-count", "1", "-ttl", ttl, "-msg", "ttl "+ttl)
		require.Equal(t, 0, code, errOut)
	}
	n := int32(32)
	resp, err := c.Queue.PeekMessages(itest.Ctx(t, 5*time.Second), &azqueue.PeekMessagesOptions{NumberOfMessages: &n})
	require.NoError(t, err)
	require.Len(t, resp.Messages, 2)
	for _, m := range resp.Messages {
		require.NotNil(t, m.InsertionTime)
		require.NotNil(t, m.ExpirationTime)
		switch {
		case strings.HasPrefix(*m.MessageText, `{"msg":"ttl 90s #1"`):
			assert.Equal(t, 90*time.Second, m.ExpirationTime.Sub(*m.InsertionTime))
		case strings.HasPrefix(*m.MessageText, `{"msg":"ttl -1s #1"`):
			assert.Equal(t, 9999, m.ExpirationTime.Year(), "never expires")
		default:
			t.Errorf("unexpected message %s", *m.MessageText)
		}
	}
}
