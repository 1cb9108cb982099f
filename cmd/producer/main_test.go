package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/internal/itest"
	"github.com/aks-edw/aks-edw/internal/message"
	"github.com/aks-edw/aks-edw/internal/procs"
	"github.com/aks-edw/aks-edw/internal/storage"
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
	for _, m := range resp.Messages {
		var raw map[string]any
		require.NoError(t, json.Unmarshal([]byte(*m.MessageText), &raw))
		assert.Len(t, raw, 2, "exactly msg and srcStamp")
		p, err := message.Parse(*m.MessageText)
		require.NoError(t, err)
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
