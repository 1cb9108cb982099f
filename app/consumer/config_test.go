package consumer

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/message"
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

// recordingEnv is env(kv) that also records every name it is asked for.
func recordingEnv(kv map[string]string, read map[string]bool) func(string) string {
	return func(k string) string {
		read[k] = true
		return kv[k]
	}
}

func settingNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, st := range Settings() {
		require.NotContains(t, names, st.Name, "Settings lists each variable once")
		names = append(names, st.Name)
	}
	slices.Sort(names)
	return names
}

// The help is generated from Settings; Settings must name exactly what
// LoadConfig reads, whichever branch (connection string or not, values set
// or not) it takes.
func TestSettingsAreExactlyWhatLoadConfigReads(t *testing.T) {
	all := map[string]string{
		"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "AZURE_QUEUE_NAME": "work", "AZURE_TABLE_NAME": "records",
		"CONSUMER_VISIBILITY_TIMEOUT": "2m", "CONSUMER_CONCURRENCY": "64", "CONSUMER_BATCH_SIZE": "10",
		"CONSUMER_MAX_DELIVERIES": "3", "CONSUMER_HTTP_ADDR": "127.0.0.1:0", "CONSUMER_DRAIN_TIMEOUT": "5s",
		"CONSUMER_MAX_POLL_INTERVAL": "250ms", "CONSUMER_TABLE_BATCH": "false", "LOG_LEVEL": "debug",
		"CONSUMER_EXIT_WHEN_EMPTY": "true",
	}
	for name, kv := range map[string]map[string]string{
		"empty":            {},
		"account":          {"AZURE_STORAGE_ACCOUNT_NAME": "acct1", "AZURE_QUEUE_NAME": "work", "AZURE_TABLE_NAME": "records"},
		"everything set":   all,
		"everything wrong": {"AZURE_STORAGE_ACCOUNT_NAME": "A", "CONSUMER_CONCURRENCY": "x", "CONSUMER_VISIBILITY_TIMEOUT": "1.5s", "LOG_LEVEL": "loud"},
	} {
		t.Run(name, func(t *testing.T) {
			read := map[string]bool{}
			_, _ = LoadConfig(recordingEnv(kv, read))
			assert.Equal(t, settingNames(t), slices.Sorted(maps.Keys(read)), "variables LoadConfig reads vs Settings()")
		})
	}
}

var helpRow = regexp.MustCompile(`(?m)^  ([A-Za-z0-9_]+) +default: (.+)$`)

func TestHelpListsEverySettingWithItsDefault(t *testing.T) {
	var b strings.Builder
	Help(&b)
	help := b.String()
	rows := map[string]string{}
	for _, m := range helpRow.FindAllStringSubmatch(help, -1) {
		rows[m[1]] = m[2]
	}
	assert.Equal(t, settingNames(t), slices.Sorted(maps.Keys(rows)), "help rows vs Settings()")
	for _, st := range Settings() {
		assert.Equal(t, st.Default, rows[st.Name], "help default of %s", st.Name)
		assert.NotEmpty(t, st.Meaning, "meaning of %s", st.Name)
		// Every word of the meaning is printed (wrapped, in order).
		assert.Contains(t, strings.Join(strings.Fields(help), " "), st.Meaning, "help meaning of %s", st.Name)
	}
	for _, line := range strings.Split(help, "\n") {
		assert.LessOrEqual(t, len(line), 100, "help line too long: %q", line)
	}
	assert.Contains(t, help, "default: 30s")
	assert.Contains(t, help, "default: info")
	assert.Contains(t, help, "UseDevelopmentStorage=true")
}

// The defaults Help prints are the ones LoadConfig applies: setting each
// variable to its printed default changes nothing.
func TestHelpDefaultsAreTheAppliedDefaults(t *testing.T) {
	base := map[string]string{"AZURE_STORAGE_ACCOUNT_NAME": "acct1", "AZURE_QUEUE_NAME": "work", "AZURE_TABLE_NAME": "records"}
	want, err := LoadConfig(env(base))
	require.NoError(t, err)
	n := 0
	for _, st := range Settings() {
		if _, isStorage := base[st.Name]; isStorage || st.Name == "AZURE_STORAGE_CONNECTION_STRING" {
			continue
		}
		kv := maps.Clone(base)
		kv[st.Name] = st.Default
		got, err := LoadConfig(env(kv))
		require.NoError(t, err, "%s=%q (its printed default)", st.Name, st.Default)
		assert.Equal(t, want, got, "%s=%q (its printed default) changes the configuration", st.Name, st.Default)
		n++
	}
	assert.Equal(t, 10, n, "every consumer tuning setting checked")
}

func TestHandleArgs(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		code     int
		exit     bool
		help     bool
		inStderr string
	}{
		{name: "no arguments runs", args: nil},
		{name: "-h", args: []string{"-h"}, exit: true, help: true},
		{name: "--help", args: []string{"--help"}, exit: true, help: true},
		{name: "-help", args: []string{"-help"}, exit: true, help: true},
		{name: "unknown flag", args: []string{"-batch", "3"}, code: 2, exit: true, inStderr: "flag provided but not defined: -batch"},
		{name: "argument", args: []string{"run"}, code: 2, exit: true, inStderr: `unexpected argument "run"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code, exit := HandleArgs(tc.args, &stdout, &stderr)
			assert.Equal(t, tc.code, code)
			assert.Equal(t, tc.exit, exit)
			if tc.help {
				assert.Contains(t, stdout.String(), "Usage: consumer")
				assert.Contains(t, stdout.String(), "CONSUMER_BATCH_SIZE")
				assert.Empty(t, stderr.String())
			} else {
				assert.Empty(t, stdout.String())
			}
			if tc.inStderr != "" {
				assert.Contains(t, stderr.String(), tc.inStderr)
				assert.Contains(t, stderr.String(), "consumer -h")
			}
		})
	}
}

func TestUnknownSettings(t *testing.T) {
	environ := []string{
		"PATH=/usr/bin", "AZURE_CLIENT_ID=abc", "AZURE_QUEUE_NAME=work", // not ours or known
		"CONSUMER_BATCH_SIZE=10", "CONSUMER_EXIT_WHEN_EMPTY=true", // known
		"CONSUMER_BATCHSIZE=10",           // a missing underscore
		"CONSUMER_CONCURENCY=8",           // a typo inside a word
		"consumer_visibility_timeout=30s", // wrong case: LoadConfig would not read it
		"CONSUMER_DRAIN=5s",               // a word left out
		"CONSUMER_LOG_LEVEL=debug",        // the prefix where there is none
		"CONSUMER_QUEUE_NAME=work",        // the wrong prefix
		"CONSUMER_XYZZY=1",                // nothing close
		"CONSUMER_BATCHSIZE=11",           // listed once
		"CONSUMER_MAX_DELIVERY=3=x",       // value with '='
	}
	want := []Unknown{
		{"CONSUMER_BATCHSIZE", "CONSUMER_BATCH_SIZE"},
		{"CONSUMER_CONCURENCY", "CONSUMER_CONCURRENCY"},
		{"consumer_visibility_timeout", "CONSUMER_VISIBILITY_TIMEOUT"},
		{"CONSUMER_DRAIN", "CONSUMER_DRAIN_TIMEOUT"},
		{"CONSUMER_LOG_LEVEL", "LOG_LEVEL"},
		{"CONSUMER_QUEUE_NAME", "AZURE_QUEUE_NAME"},
		{"CONSUMER_XYZZY", ""},
		{"CONSUMER_MAX_DELIVERY", "CONSUMER_MAX_DELIVERIES"},
	}
	assert.Equal(t, want, UnknownSettings(environ))
	assert.Empty(t, UnknownSettings(nil))

	assert.Equal(t, "CONSUMER_BATCHSIZE is not a consumer setting and is ignored; did you mean CONSUMER_BATCH_SIZE?", want[0].String())
	assert.Equal(t, "CONSUMER_XYZZY is not a consumer setting and is ignored (consumer -h lists them)", want[6].String())

	// Unknown settings are warnings: the configuration still loads.
	kv := map[string]string{"AZURE_STORAGE_ACCOUNT_NAME": "acct1", "AZURE_QUEUE_NAME": "work", "AZURE_TABLE_NAME": "records", "CONSUMER_BATCHSIZE": "10"}
	c, err := LoadConfig(env(kv))
	require.NoError(t, err)
	assert.Equal(t, MaxBatchSize, c.BatchSize)
}

func TestNewLoggerRedactsSecrets(t *testing.T) {
	const (
		sig = "sv=2023-01-03&ss=q&sig=c2VjcmV0U2lnbmF0dXJl%3D"
		key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	)
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelInfo)
	log.Debug("hidden below the level")
	log.Error("dequeue failed https://acct1.queue.core.windows.net/work/messages?"+sig,
		"err", errors.New("GET https://acct1.queue.core.windows.net/work?"+sig+": 403"),
		"connectionString", "AccountName=acct1;AccountKey="+key,
		"auth", "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
	out := buf.String()
	for _, secret := range []string{"c2VjcmV0U2lnbmF0dXJl", key, "eyJhbGciOiJSUzI1NiJ9"} {
		assert.NotContains(t, out, secret)
	}
	assert.Contains(t, out, "REDACTED")
	assert.NotContains(t, out, "hidden below the level")
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(out)), &line), "one JSON line: %s", out)
	assert.Equal(t, "ERROR", line["level"])
	assert.Contains(t, line["err"], "403", "the rest of the error is kept")
}
