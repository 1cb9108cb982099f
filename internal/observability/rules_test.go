package observability

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// testParams are fixed, so the synthetic series below stay meaningful when defaults change.
var testParams = Params{
	Namespace: "aqs-demo", Scaler: "aws2az-queue-scaleobj", QueueName: "aws2azmsgs",
	MaxReplicas: 5, QueueLength: 4000, BacklogFor: 15 * time.Minute,
}

// promtool finds Prometheus's own rule tester (Debian's `prometheus` package; `make deps`
// installs it). Without it the test fails and says so: it never skips.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool not found: run `make deps` (installs Debian's prometheus package, which brings promtool)")
	return p
}

func runPromtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func writeRules(t *testing.T, dir string, rules []Rule) {
	t.Helper()
	b, err := RuleFile("aks-edw-consumer", rules)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), b, 0o644))
}

func TestRulesParseWithPromtool(t *testing.T) {
	dir := t.TempDir()
	writeRules(t, dir, Rules(testParams))
	out, err := runPromtool(t, dir, "check", "rules", "rules.yml")
	require.NoError(t, err, out)
	assert.Contains(t, out, "SUCCESS: 6 rules found")

	// The check can fail: a broken expression is refused with Prometheus's parser message.
	broken := Rules(testParams)
	broken[0].Expr = "sum by (namespace (rate(x[5m]))"
	writeRules(t, dir, broken)
	out, err = runPromtool(t, dir, "check", "rules", "rules.yml")
	require.Error(t, err)
	assert.Contains(t, out, "parse error")
}

// series is one synthetic input series in promtool's notation ("0+1x20" = 0, 1, ..., 20).
type series struct{ Series, Values string }

// alertCase is one promtool alert test: the alert at evalTime, and the alerts expected then
// (none for a quiet case).
type alertCase struct {
	name     string
	alert    string
	input    []series
	evalTime string
	want     []map[string]string // labels besides alertname and severity
	summary  string              // the expected summary of every firing alert
}

const (
	poisoned  = `consumer_messages_poisoned_total{namespace="aqs-demo",pod="p1",reason="invalid-json"}`
	failed    = `consumer_messages_failed_total{namespace="aqs-demo",pod="p1",stage="table"}`
	dequeued  = `consumer_messages_dequeued_total{namespace="aqs-demo",pod="p1"}`
	ready1    = `consumer_ready{namespace="aqs-demo",pod="p1"}`
	storage1  = `consumer_storage_available{namespace="aqs-demo",pod="p1"}`
	storage2  = `consumer_storage_available{namespace="aqs-demo",pod="p2"}`
	kedaValue = `keda_scaler_metrics_value{namespace="aqs-demo",scaledObject="aws2az-queue-scaleobj",scaler="azureQueueScaler",metric="s0-azure-queue-aws2azmsgs",triggerIndex="0",type="scaledobject"}`
	kedaErrs  = `keda_scaler_detail_errors_total{namespace="aqs-demo",scaledObject="aws2az-queue-scaleobj",scaler="azureQueueScaler",metric="s0-azure-queue-aws2azmsgs",triggerIndex="0",type="scaledobject"}`
	kedaSOErr = `keda_scaled_object_errors_total{namespace="aqs-demo",scaledObject="aws2az-queue-scaleobj"}`
	otherNS   = `keda_scaler_metrics_value{namespace="other",scaledObject="aws2az-queue-scaleobj",scaler="azureQueueScaler",metric="m",triggerIndex="0",type="scaledobject"}`
)

var alertCases = []alertCase{
	{"poison: a message poisoned", "ConsumerMessagesPoisoned",
		[]series{{poisoned, "0 0 1 1 1 1 1 1"}}, "5m",
		[]map[string]string{{"namespace": "aqs-demo", "reason": "invalid-json"}},
		"Messages moved to the poison queue in the last 10 minutes (reason invalid-json)"},
	{"poison: quiet when the counter is flat", "ConsumerMessagesPoisoned",
		[]series{{poisoned, "3x20"}}, "15m", nil, ""},
	{"failures: 10% of dequeued for 20 minutes", "ConsumerFailuresSustained",
		[]series{{failed, "0+10x25"}, {dequeued, "0+100x25"}}, "20m",
		[]map[string]string{{"namespace": "aqs-demo"}}, "Consumer failures above 5% of dequeued messages for 15 minutes"},
	{"failures: quiet at 1%", "ConsumerFailuresSustained",
		[]series{{failed, "0+1x25"}, {dequeued, "0+100x25"}}, "20m", nil, ""},
	{"failures: quiet before 15 minutes have passed", "ConsumerFailuresSustained",
		[]series{{failed, "0+10x25"}, {dequeued, "0+100x25"}}, "10m", nil, ""},
	{"not ready: backlog and no consumer series (scaled to zero, KEDA not scaling)", "ConsumerNotReadyWithBacklog",
		[]series{{kedaValue, "500x20"}}, "15m",
		[]map[string]string{{"namespace": "aqs-demo"}}, "500 messages wait in the queue and no consumer pod is ready"},
	{"not ready: backlog and a pod reporting not ready", "ConsumerNotReadyWithBacklog",
		[]series{{kedaValue, "500x20"}, {ready1, "0x20"}}, "15m",
		[]map[string]string{{"namespace": "aqs-demo"}}, "500 messages wait in the queue and no consumer pod is ready"},
	{"not ready: quiet during the first 10 minutes", "ConsumerNotReadyWithBacklog",
		[]series{{kedaValue, "0x8 500x12"}}, "15m", nil, ""},
	{"not ready: quiet when a pod is ready", "ConsumerNotReadyWithBacklog",
		[]series{{kedaValue, "500x20"}, {ready1, "1x20"}}, "15m", nil, ""},
	{"not ready: quiet with an empty queue", "ConsumerNotReadyWithBacklog",
		[]series{{kedaValue, "0x20"}}, "15m", nil, ""},
	{"not ready: quiet for another namespace's scaler", "ConsumerNotReadyWithBacklog",
		[]series{{otherNS, "500x20"}}, "15m", nil, ""},
	{"keda: scaler errors (authentication failing)", "KedaScalerErrors",
		[]series{{kedaErrs, "0+1x20"}}, "10m",
		[]map[string]string{{"namespace": "aqs-demo", "scaledObject": "aws2az-queue-scaleobj"}},
		"KEDA cannot read queue aws2azmsgs for aws2az-queue-scaleobj: the queue can grow with no consumer"},
	{"keda: scaled object errors", "KedaScalerErrors",
		[]series{{kedaErrs, "0x20"}, {kedaSOErr, "0+2x20"}}, "10m",
		[]map[string]string{{"namespace": "aqs-demo", "scaledObject": "aws2az-queue-scaleobj"}},
		"KEDA cannot read queue aws2azmsgs for aws2az-queue-scaleobj: the queue can grow with no consumer"},
	{"keda: quiet while errors are younger than 5 minutes", "KedaScalerErrors",
		[]series{{kedaErrs, "0x6 1+1x14"}}, "9m", nil, ""},
	{"keda: quiet without errors", "KedaScalerErrors",
		[]series{{kedaErrs, "0x20"}, {kedaSOErr, "0x20"}}, "10m", nil, ""},
	{"backlog: above maxReplicas x queueLength for 20 minutes", "QueueBacklogAboveCapacity",
		[]series{{kedaValue, "25000x25"}}, "20m",
		[]map[string]string{{"namespace": "aqs-demo"}}, "Queue backlog 25k above 20000 (maxReplicas 5 x queueLength 4000) for 15m"},
	{"backlog: quiet below capacity", "QueueBacklogAboveCapacity",
		[]series{{kedaValue, "15000x25"}}, "20m", nil, ""},
	{"backlog: quiet while younger than backlogFor", "QueueBacklogAboveCapacity",
		[]series{{kedaValue, "100x10 25000x15"}}, "20m", nil, ""},
	{"backlog: quiet when drained within the duration", "QueueBacklogAboveCapacity",
		[]series{{kedaValue, "25000x10 100x15"}}, "20m", nil, ""},
	{"storage: one pod paused for 15 minutes", "ConsumerStorageUnavailable",
		[]series{{storage1, "0x20"}, {storage2, "1x20"}}, "15m",
		[]map[string]string{{"namespace": "aqs-demo"}}, "A consumer pod has paused for 10 minutes: the queue, poison queue or table is unavailable to it"},
	{"storage: quiet when available", "ConsumerStorageUnavailable",
		[]series{{storage1, "1x20"}}, "15m", nil, ""},
	{"storage: quiet while an outage is younger than 10 minutes", "ConsumerStorageUnavailable",
		[]series{{storage1, "1x10 0x10"}}, "15m", nil, ""},
	{"storage: quiet for a short outage", "ConsumerStorageUnavailable",
		[]series{{storage1, "1x5 0x5 1x10"}}, "15m", nil, ""},
}

// promtoolTests renders the cases as promtool's test file.
func promtoolTests(t *testing.T, rules []Rule, cases []alertCase) []byte {
	t.Helper()
	byName := map[string]Rule{}
	for _, r := range rules {
		byName[r.Alert] = r
	}
	type expAlert struct {
		ExpLabels      map[string]string `json:"exp_labels"`
		ExpAnnotations map[string]string `json:"exp_annotations"`
	}
	type ruleTest struct {
		EvalTime  string     `json:"eval_time"`
		Alertname string     `json:"alertname"`
		ExpAlerts []expAlert `json:"exp_alerts"`
	}
	type inSeries struct {
		Series string `json:"series"`
		Values string `json:"values"`
	}
	type testGroup struct {
		Name      string     `json:"name"`
		Interval  string     `json:"interval"`
		Input     []inSeries `json:"input_series"`
		AlertTest []ruleTest `json:"alert_rule_test"`
	}
	var groups []testGroup
	for _, c := range cases {
		r, ok := byName[c.alert]
		require.True(t, ok, "case %q names alert %s, which no rule defines", c.name, c.alert)
		exp := []expAlert{}
		for _, labels := range c.want {
			l := map[string]string{"severity": r.Severity.Label()}
			for k, v := range labels {
				l[k] = v
			}
			exp = append(exp, expAlert{ExpLabels: l, ExpAnnotations: map[string]string{"summary": c.summary, "description": r.Action}})
		}
		g := testGroup{Name: c.name, Interval: "1m", AlertTest: []ruleTest{{EvalTime: c.evalTime, Alertname: c.alert, ExpAlerts: exp}}}
		for _, s := range c.input {
			g.Input = append(g.Input, inSeries(s))
		}
		groups = append(groups, g)
	}
	b, err := yaml.Marshal(map[string]any{"rule_files": []string{"rules.yml"}, "evaluation_interval": "1m", "tests": groups})
	require.NoError(t, err)
	return b
}

// Every alert fires when it should and stays quiet when it should, in Prometheus's own rule
// tester, on synthetic series.
func TestAlertsFireAndStayQuietInPromtool(t *testing.T) {
	rules := Rules(testParams)
	fires, quiet := map[string]int{}, map[string]int{}
	for _, c := range alertCases {
		if len(c.want) > 0 {
			fires[c.alert]++
		} else {
			quiet[c.alert]++
		}
	}
	for _, r := range rules {
		assert.Positive(t, fires[r.Alert], "%s has no case where it fires", r.Alert)
		assert.Positive(t, quiet[r.Alert], "%s has no case where it stays quiet", r.Alert)
	}

	dir := t.TempDir()
	writeRules(t, dir, rules)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tests.yml"), promtoolTests(t, rules, alertCases), 0o644))
	out, err := runPromtool(t, dir, "test", "rules", "tests.yml")
	require.NoError(t, err, "promtool test rules:\n%s", out)
	assert.Contains(t, out, "SUCCESS")
}

// The promtool run can fail: a rule that never fires, and a threshold off by a factor, are
// caught by the same cases.
func TestPromtoolCatchesBrokenRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func([]Rule)
	}{
		{"backlog threshold ignores maxReplicas", func(rs []Rule) {
			for i := range rs {
				if rs[i].Alert == "QueueBacklogAboveCapacity" {
					rs[i].Expr = strings.Replace(rs[i].Expr, "> 20000", "> 30000", 1)
				}
			}
		}},
		{"not-ready alert without the backlog condition", func(rs []Rule) {
			for i := range rs {
				if rs[i].Alert == "ConsumerNotReadyWithBacklog" {
					rs[i].Expr = strings.Replace(rs[i].Expr, "> 0 unless", ">= 0 unless", 1)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules := Rules(testParams)
			tc.break_(rules)
			dir := t.TempDir()
			writeRules(t, dir, rules)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "tests.yml"), promtoolTests(t, Rules(testParams), alertCases), 0o644))
			out, err := runPromtool(t, dir, "test", "rules", "tests.yml")
			require.Error(t, err, "promtool passed a broken rule:\n%s", out)
			assert.Contains(t, out, "FAILED")
		})
	}
}

func TestParamsValidate(t *testing.T) {
	assert.NoError(t, testParams.Validate())
	p := testParams
	p.MaxReplicas, p.BacklogFor, p.Scaler = 0, time.Second, ""
	err := p.Validate()
	require.Error(t, err)
	for _, want := range []string{"scaler", "maxReplicas (0)", "backlog duration (1s)"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestDurations(t *testing.T) {
	assert.Equal(t, "15m", promDuration(15*time.Minute))
	assert.Equal(t, "1h30m", promDuration(90*time.Minute))
	assert.Equal(t, "PT1H30M", ISODuration(90*time.Minute))
	assert.Equal(t, "PT10M", ISODuration(10*time.Minute))
	assert.Equal(t, "PT45S", ISODuration(45*time.Second))
}
