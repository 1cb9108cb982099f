package consumer

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/internal/message"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := LoadConfig(env(map[string]string{
		"AZURE_STORAGE_ACCOUNT_NAME": "storaksdemo1a2b3c", "AZURE_QUEUE_NAME": "aws2azmsgs", "AZURE_TABLE_NAME": "aws2azpmts",
	}))
	require.NoError(t, err)
	want := Defaults()
	want.Storage = c.Storage
	assert.Equal(t, want, c)
	assert.Equal(t, 30*time.Second, c.VisibilityTimeout)
	assert.Equal(t, 32, c.BatchSize)
	assert.Equal(t, 5, c.MaxDeliveries)
	assert.Equal(t, ":8080", c.HTTPAddr)
	assert.Less(t, c.DrainTimeout, 60*time.Second, "well under the pod's grace period")
	assert.Equal(t, "aws2azmsgs-poison", c.Storage.PoisonQueueName())
	assert.Equal(t, "DefaultAzureCredential", c.Storage.Auth())
}

func TestLoadConfigOverrides(t *testing.T) {
	c, err := LoadConfig(env(map[string]string{
		"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "AZURE_QUEUE_NAME": "work-q", "AZURE_TABLE_NAME": "Records",
		"CONSUMER_VISIBILITY_TIMEOUT": "2m", "CONSUMER_CONCURRENCY": "64", "CONSUMER_BATCH_SIZE": "10",
		"CONSUMER_MAX_DELIVERIES": "3", "CONSUMER_HTTP_ADDR": "127.0.0.1:0", "CONSUMER_DRAIN_TIMEOUT": "5s",
		"CONSUMER_MAX_POLL_INTERVAL": "250ms", "CONSUMER_TABLE_BATCH": "false", "LOG_LEVEL": "debug",
		"CONSUMER_EXIT_WHEN_EMPTY": "true",
	}))
	require.NoError(t, err)
	assert.Equal(t, 2*time.Minute, c.VisibilityTimeout)
	assert.Equal(t, 64, c.Concurrency)
	assert.Equal(t, 10, c.BatchSize)
	assert.Equal(t, 3, c.MaxDeliveries)
	assert.Equal(t, "127.0.0.1:0", c.HTTPAddr)
	assert.Equal(t, 5*time.Second, c.DrainTimeout)
	assert.Equal(t, 250*time.Millisecond, c.MaxPollInterval)
	assert.False(t, c.TableBatch)
	assert.True(t, c.ExitWhenEmpty)
	assert.Equal(t, slog.LevelDebug, c.LogLevel)
	assert.Equal(t, "connection-string", c.Storage.Auth())
	assert.Empty(t, c.Storage.AccountName, "no account needed with a connection string")
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"empty", map[string]string{}, []string{
			"AZURE_STORAGE_ACCOUNT_NAME: required when AZURE_STORAGE_CONNECTION_STRING is not set",
			"AZURE_QUEUE_NAME: required", "AZURE_TABLE_NAME: required"}},
		{"batch over 32", map[string]string{"CONSUMER_BATCH_SIZE": "33"}, []string{`CONSUMER_BATCH_SIZE="33": must be between 1 and 32`}},
		{"batch not a number", map[string]string{"CONSUMER_BATCH_SIZE": "many"}, []string{`CONSUMER_BATCH_SIZE="many": not an integer`}},
		{"visibility not a duration", map[string]string{"CONSUMER_VISIBILITY_TIMEOUT": "30"}, []string{`CONSUMER_VISIBILITY_TIMEOUT="30": not a Go duration`}},
		{"visibility too short", map[string]string{"CONSUMER_VISIBILITY_TIMEOUT": "500ms"}, []string{`CONSUMER_VISIBILITY_TIMEOUT="500ms": must be between 1s and 168h0m0s`}},
		{"visibility fractional", map[string]string{"CONSUMER_VISIBILITY_TIMEOUT": "1.5s"}, []string{`must be whole seconds`}},
		{"concurrency zero", map[string]string{"CONSUMER_CONCURRENCY": "0"}, []string{`CONSUMER_CONCURRENCY="0": must be between 1 and 512`}},
		{"max deliveries zero", map[string]string{"CONSUMER_MAX_DELIVERIES": "0"}, []string{`CONSUMER_MAX_DELIVERIES="0"`}},
		{"addr without port", map[string]string{"CONSUMER_HTTP_ADDR": "localhost"}, []string{`CONSUMER_HTTP_ADDR="localhost": not host:port`}},
		{"addr bad port", map[string]string{"CONSUMER_HTTP_ADDR": ":99999"}, []string{`CONSUMER_HTTP_ADDR=":99999": port must be 0-65535`}},
		{"drain negative", map[string]string{"CONSUMER_DRAIN_TIMEOUT": "-1s"}, []string{`CONSUMER_DRAIN_TIMEOUT="-1s"`}},
		{"table batch", map[string]string{"CONSUMER_TABLE_BATCH": "sometimes"}, []string{`CONSUMER_TABLE_BATCH="sometimes"`}},
		{"exit when empty", map[string]string{"CONSUMER_EXIT_WHEN_EMPTY": "yes"}, []string{`CONSUMER_EXIT_WHEN_EMPTY="yes": not a boolean`}},
		{"log level", map[string]string{"LOG_LEVEL": "chatty"}, []string{`LOG_LEVEL="chatty"`}},
		{"queue name", map[string]string{"AZURE_QUEUE_NAME": "Work_Queue"}, []string{`AZURE_QUEUE_NAME="Work_Queue"`}},
		{"queue name leaves no room for -poison", map[string]string{"AZURE_QUEUE_NAME": "a234567890123456789012345678901234567890123456789012345678"}, []string{`-poison" also fits 63`}},
		{"table name", map[string]string{"AZURE_TABLE_NAME": "my-table"}, []string{`AZURE_TABLE_NAME="my-table"`}},
		{"account name", map[string]string{"AZURE_STORAGE_ACCOUNT_NAME": "My-Account"}, []string{`AZURE_STORAGE_ACCOUNT_NAME="My-Account"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := map[string]string{"AZURE_STORAGE_ACCOUNT_NAME": "acct1", "AZURE_QUEUE_NAME": "work", "AZURE_TABLE_NAME": "records"}
			if tc.name == "empty" {
				base = map[string]string{}
			}
			for k, v := range tc.env {
				base[k] = v
			}
			_, err := LoadConfig(env(base))
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestGroupByPartition(t *testing.T) {
	ids := make([]item, 0, 32)
	for i := range 32 {
		ids = append(ids, item{id: time.Duration(i).String() + "-id"})
	}
	c := &Consumer{cfg: Config{TableBatch: true}}
	groups := c.group(ids)
	total := 0
	for _, g := range groups {
		require.NotEmpty(t, g)
		pk := ""
		for _, it := range g {
			p, _ := keysOf(it)
			if pk == "" {
				pk = p
			}
			assert.Equal(t, pk, p, "a transaction holds one partition")
		}
		total += len(g)
	}
	assert.Equal(t, 32, total)
	assert.LessOrEqual(t, len(groups), 4)

	c.cfg.TableBatch = false
	assert.Len(t, c.group(ids), 32, "one write per message when batching is off")
	assert.Nil(t, c.group(nil))
}

func keysOf(it item) (string, string) { return message.Keys(it.id) }
