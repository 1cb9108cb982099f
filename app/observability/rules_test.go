package observability

import (
	"bytes"
	"fmt"
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
	Namespace: "aqs-demo", Scaler: "aws2az-queue-scaleobj", Container: "consumer", QueueName: "aws2azmsgs",
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
	assert.Contains(t, out, "SUCCESS: 11 rules found")

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
	throttled = `consumer_storage_throttled_total{namespace="aqs-demo",pod="p1",stage="delete"}`
	ready1    = `consumer_ready{namespace="aqs-demo",pod="p1"}`
	storage1  = `consumer_storage_available{namespace="aqs-demo",pod="p1"}`
	storage2  = `consumer_storage_available{namespace="aqs-demo",pod="p2"}`
	kedaValue = `keda_scaler_metrics_value{namespace="aqs-demo",scaledObject="aws2az-queue-scaleobj",scaler="azureQueueScaler",metric="s0-azure-queue-aws2azmsgs",triggerIndex="0",type="scaledobject"}`
	kedaErrs  = `keda_scaler_detail_errors_total{namespace="aqs-demo",scaledObject="aws2az-queue-scaleobj",scaler="azureQueueScaler",metric="s0-azure-queue-aws2azmsgs",triggerIndex="0",type="scaledobject"}`
	kedaSOErr = `keda_scaled_object_errors_total{namespace="aqs-demo",scaledObject="aws2az-queue-scaleobj"}`
	otherNS   = `keda_scaler_metrics_value{namespace="other",scaledObject="aws2az-queue-scaleobj",scaler="azureQueueScaler",metric="m",triggerIndex="0",type="scaledobject"}`
	kedaBuild = `keda_build_info{namespace="kube-system",job="kube-system/aks-edw-keda-operator",pod="keda-operator-5d9c",version="2.17.3",git_commit="x",goversion="go1.24",goos="linux",goarch="amd64"}`

	// kube-state-metrics, as the add-on's kube-state-metrics target exports them.
	hpaDesired  = `kube_horizontalpodautoscaler_status_desired_replicas{job="kube-state-metrics",namespace="aqs-demo",horizontalpodautoscaler="keda-hpa-aws2az-queue-scaleobj"}`
	otherHPA    = `kube_horizontalpodautoscaler_status_desired_replicas{job="kube-state-metrics",namespace="aqs-demo",horizontalpodautoscaler="keda-hpa-other"}`
	jobActive   = `kube_job_status_active{job="kube-state-metrics",namespace="aqs-demo",job_name="aws2az-queue-scaleobj-x%d"}`
	otherJob    = `kube_job_status_active{job="kube-state-metrics",namespace="aqs-demo",job_name="nightly-report-x1"}`
	podReady1   = `kube_pod_container_status_ready{job="kube-state-metrics",namespace="aqs-demo",pod="aqs-app-7d9c-p1",container="consumer",uid="u1"}`
	podReady2   = `kube_pod_container_status_ready{job="kube-state-metrics",namespace="aqs-demo",pod="aqs-app-7d9c-p2",container="consumer",uid="u2"}`
	sidecarRdy  = `kube_pod_container_status_ready{job="kube-state-metrics",namespace="aqs-demo",pod="aqs-app-7d9c-p1",container="istio-proxy",uid="u1"}`
	otherNSRdy  = `kube_pod_container_status_ready{job="kube-state-metrics",namespace="other",pod="x-1",container="consumer",uid="u3"}`
	notReadySum = `KEDA wants 1 consumer pod(s) for the queue and none has been ready for 10 minutes`
	atMaxSum    = `KEDA has wanted its maximum of 5 consumers for 15m: the queue backlog is above 16000 messages ((maxReplicas - 1) x queueLength 4000)`
	missingSum  = `1 consumer container(s) ready and none of their metrics scraped for 10 minutes: the consumer alerts are blind`
	kedaMissing = `KEDA operator metrics were scraped in the last 7 days and none for 15 minutes: the alerts labelled needs=keda-operator-metrics (KedaScalerErrors, QueueBacklogAboveCapacity, KedaBacklogNoReadyConsumer) went blind`
)

// jobs are n active jobs of the ScaledJob, one active pod each, for promtool's notation values.
func jobs(n int, values string) []series {
	var s []series
	for i := 1; i <= n; i++ {
		s = append(s, series{fmt.Sprintf(jobActive, i), values})
	}
	return s
}

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
	{"throttled: 10% of dequeued for 20 minutes", "ConsumerStorageThrottled",
		[]series{{throttled, "0+10x25"}, {dequeued, "0+100x25"}}, "20m",
		[]map[string]string{{"namespace": "aqs-demo"}}, "Storage throttled the consumers (503 ServerBusy) more than once per 20 dequeued messages for 15 minutes"},
	{"throttled: quiet at 1%", "ConsumerStorageThrottled",
		[]series{{throttled, "0+1x25"}, {dequeued, "0+100x25"}}, "20m", nil, ""},
	{"throttled: quiet for a burst shorter than 15 minutes", "ConsumerStorageThrottled",
		[]series{{throttled, "0+10x10 100+0x15"}, {dequeued, "0+100x25"}}, "25m", nil, ""},
	// Without KEDA's metrics: KEDA's HPA (ScaledObject) or jobs (ScaledJob) against ready consumer containers.
	{"not ready: KEDA wants a pod and none exists (Pending, no node)", "ConsumerNotReadyWithBacklog",
		[]series{{hpaDesired, "1x20"}}, "15m",
		[]map[string]string{{"namespace": "aqs-demo"}}, notReadySum},
	{"not ready: KEDA wants 2 pods and they are not ready (storage unavailable)", "ConsumerNotReadyWithBacklog",
		[]series{{hpaDesired, "2x20"}, {podReady1, "0x20"}, {podReady2, "0x20"}}, "15m",
		[]map[string]string{{"namespace": "aqs-demo"}}, `KEDA wants 2 consumer pod(s) for the queue and none has been ready for 10 minutes`},
	{"not ready: ScaledJob has an active job and no ready container", "ConsumerNotReadyWithBacklog",
		jobs(1, "1x20"), "15m",
		[]map[string]string{{"namespace": "aqs-demo"}}, notReadySum},
	{"not ready: a ready sidecar is not a consumer", "ConsumerNotReadyWithBacklog",
		[]series{{hpaDesired, "1x20"}, {podReady1, "0x20"}, {sidecarRdy, "1x20"}}, "15m",
		[]map[string]string{{"namespace": "aqs-demo"}}, notReadySum},
	{"not ready: a ready consumer in another namespace does not count", "ConsumerNotReadyWithBacklog",
		[]series{{hpaDesired, "1x20"}, {otherNSRdy, "1x20"}}, "15m",
		[]map[string]string{{"namespace": "aqs-demo"}}, notReadySum},
	{"not ready: quiet during the first 10 minutes", "ConsumerNotReadyWithBacklog",
		[]series{{hpaDesired, "0x8 1x12"}}, "15m", nil, ""},
	{"not ready: quiet when a consumer is ready", "ConsumerNotReadyWithBacklog",
		[]series{{hpaDesired, "2x20"}, {podReady1, "1x20"}, {podReady2, "0x20"}}, "15m", nil, ""},
	{"not ready: quiet for a ScaledJob's ready job pod", "ConsumerNotReadyWithBacklog",
		append(jobs(1, "1x20"), series{podReady1, "1x20"}), "15m", nil, ""},
	{"not ready: quiet at zero (empty queue)", "ConsumerNotReadyWithBacklog",
		append([]series{{hpaDesired, "0x20"}}, jobs(2, "0x20")...), "15m", nil, ""},
	{"not ready: quiet for another scaler's HPA and jobs", "ConsumerNotReadyWithBacklog",
		[]series{{otherHPA, "3x20"}, {otherJob, "1x20"}}, "15m", nil, ""},

	{"at maximum: KEDA's HPA wants maxReplicas for 20 minutes", "ConsumerScaledToMaximum",
		[]series{{hpaDesired, "5x25"}}, "20m",
		[]map[string]string{{"namespace": "aqs-demo"}}, atMaxSum},
	{"at maximum: the ScaledJob runs maxReplicas jobs for 20 minutes", "ConsumerScaledToMaximum",
		jobs(5, "1x25"), "20m",
		[]map[string]string{{"namespace": "aqs-demo"}}, atMaxSum},
	{"at maximum: quiet one below", "ConsumerScaledToMaximum",
		append([]series{{hpaDesired, "4x25"}}, jobs(4, "1x25")...), "20m", nil, ""},
	{"at maximum: quiet while younger than backlogFor", "ConsumerScaledToMaximum",
		[]series{{hpaDesired, "3x10 5x15"}}, "20m", nil, ""},
	{"at maximum: quiet when it came down within the duration", "ConsumerScaledToMaximum",
		[]series{{hpaDesired, "5x10 2x15"}}, "20m", nil, ""},
	{"at maximum: quiet for another scaler's HPA", "ConsumerScaledToMaximum",
		[]series{{otherHPA, "9x25"}}, "20m", nil, ""},

	{"consumer metrics: a ready consumer never scraped", "ConsumerMetricsMissing",
		[]series{{podReady1, "1x20"}}, "15m",
		[]map[string]string{{"namespace": "aqs-demo"}}, missingSum},
	{"consumer metrics: scrapes stopped (PodMonitor deleted, NetworkPolicy) while the pod stays ready", "ConsumerMetricsMissing",
		[]series{{podReady1, "1x30"}, {ready1, "1x3"}}, "25m",
		[]map[string]string{{"namespace": "aqs-demo"}}, missingSum},
	{"consumer metrics: quiet while scraped", "ConsumerMetricsMissing",
		[]series{{podReady1, "1x20"}, {ready1, "1x20"}}, "15m", nil, ""},
	{"consumer metrics: quiet when scaled to zero (no target by design)", "ConsumerMetricsMissing",
		[]series{{hpaDesired, "0x20"}}, "15m", nil, ""},
	{"consumer metrics: quiet while pods are not ready", "ConsumerMetricsMissing",
		[]series{{podReady1, "0x20"}}, "15m", nil, ""},
	{"consumer metrics: quiet during the first 10 minutes of a pod", "ConsumerMetricsMissing",
		[]series{{podReady1, "0x8 1x12"}}, "15m", nil, ""},

	{"keda metrics: quiet when never scraped (the AKS add-on serves none)", "KedaMetricsMissing",
		[]series{{ready1, "1x20"}}, "20m", nil, ""},
	{"keda metrics: gone for more than 15 minutes", "KedaMetricsMissing",
		[]series{{kedaBuild, "1x2"}}, "20m",
		[]map[string]string{{}}, kedaMissing},
	{"keda metrics: quiet while scraped", "KedaMetricsMissing",
		[]series{{kedaBuild, "1x20"}}, "20m", nil, ""},
	{"keda metrics: quiet for a gap shorter than 15 minutes", "KedaMetricsMissing",
		[]series{{kedaBuild, "1x10"}}, "20m", nil, ""},

	// The KEDA-based extras (NeedsKEDAMetrics): they fire only where KEDA's operator metrics are scraped.
	{"keda not ready: backlog and no consumer (scaled to zero, KEDA not scaling)", "KedaBacklogNoReadyConsumer",
		[]series{{kedaValue, "500x20"}}, "15m",
		[]map[string]string{{"namespace": "aqs-demo"}}, "500 messages wait in the queue and no consumer pod is ready"},
	{"keda not ready: backlog and a pod not ready", "KedaBacklogNoReadyConsumer",
		[]series{{kedaValue, "500x20"}, {podReady1, "0x20"}}, "15m",
		[]map[string]string{{"namespace": "aqs-demo"}}, "500 messages wait in the queue and no consumer pod is ready"},
	{"keda not ready: quiet during the first 10 minutes", "KedaBacklogNoReadyConsumer",
		[]series{{kedaValue, "0x8 500x12"}}, "15m", nil, ""},
	{"keda not ready: quiet when a pod is ready", "KedaBacklogNoReadyConsumer",
		[]series{{kedaValue, "500x20"}, {podReady1, "1x20"}}, "15m", nil, ""},
	{"keda not ready: quiet with an empty queue", "KedaBacklogNoReadyConsumer",
		[]series{{kedaValue, "0x20"}}, "15m", nil, ""},
	{"keda not ready: quiet for another namespace's scaler", "KedaBacklogNoReadyConsumer",
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
			l := r.Labels()
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

// breakRule replaces old by new in the named rule's expression, and fails the test if the
// expression does not contain old (the mutation would test nothing).
func breakRule(alert, old, new string) func(*testing.T, []Rule) {
	return func(t *testing.T, rs []Rule) {
		t.Helper()
		for i := range rs {
			if rs[i].Alert == alert {
				require.Contains(t, rs[i].Expr, old, "mutation of %s", alert)
				rs[i].Expr = strings.Replace(rs[i].Expr, old, new, 1)
				return
			}
		}
		t.Fatalf("no rule %s", alert)
	}
}

// The promtool run can fail: each rule broken in a plausible way (a threshold off, a condition
// dropped, a selector too wide or on the wrong series) is caught by the same cases.
func TestPromtoolCatchesBrokenRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(*testing.T, []Rule)
	}{
		{"backlog threshold ignores maxReplicas", breakRule("QueueBacklogAboveCapacity", "> 20000", "> 30000")},
		{"KEDA not-ready alert without the backlog condition", breakRule("KedaBacklogNoReadyConsumer", "> 0 unless", ">= 0 unless")},
		{"not-ready alert without KEDA's request for consumers", breakRule("ConsumerNotReadyWithBacklog", ") > 0 or", ") >= 0 or")},
		{"not-ready alert counting every container of the namespace", breakRule("ConsumerNotReadyWithBacklog", `,container="consumer"`, "")},
		{"not-ready alert blind to ScaledJobs", breakRule("ConsumerNotReadyWithBacklog", "kube_job_status_active{", "kube_job_status_succeeded{")},
		{"at-maximum threshold off by one", breakRule("ConsumerScaledToMaximum", ">= 5", ">= 4")},
		{"at-maximum alert reading the HPA's current replicas", breakRule("ConsumerScaledToMaximum",
			"kube_horizontalpodautoscaler_status_desired_replicas", "kube_horizontalpodautoscaler_status_current_replicas")},
		{"consumer-metrics alert not conditioned on ready pods", breakRule("ConsumerMetricsMissing",
			`(sum by (namespace) (kube_pod_container_status_ready{namespace="aqs-demo",container="consumer"}) > 0)`, `(vector(1))`)},
		{"consumer-metrics alert without the metrics condition", breakRule("ConsumerMetricsMissing", "count by (namespace) (consumer_ready", "count by (namespace) (consumer_readyx")},
		{"KEDA-metrics alert on an instant instead of 15 minutes", breakRule("KedaMetricsMissing", "absent_over_time(keda_build_info[15m])", "absent(keda_build_info)")},
		{"KEDA-metrics alert on a series KEDA does not serve", breakRule("KedaMetricsMissing", "keda_build_info", "keda_info")},
		{"KEDA-metrics alert that fires where KEDA never served metrics", breakRule("KedaMetricsMissing",
			" and on () count(last_over_time(keda_build_info[7d]))", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules := Rules(testParams)
			tc.break_(t, rules)
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
	p = testParams
	p.Container = ""
	err = p.Validate()
	require.Error(t, err, "the container is required: the not-ready and metrics-missing alerts select it")
	for _, want := range []string{"container"} {
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

// Each alert's severity is a decision: an outage of processing is an error; degraded processing
// and a blind consumer target are warnings; KEDA's missing metrics are informational, because on
// AKS's KEDA add-on they are expected to stay missing (a standing warning would teach people to
// ignore warnings), while the alerts that matter do not need them.
func TestAlertSeverities(t *testing.T) {
	want := map[string]Severity{
		"ConsumerMessagesPoisoned":    SeverityWarning,
		"ConsumerFailuresSustained":   SeverityWarning,
		"ConsumerStorageThrottled":    SeverityWarning,
		"ConsumerNotReadyWithBacklog": SeverityError,
		"ConsumerScaledToMaximum":     SeverityWarning,
		"ConsumerStorageUnavailable":  SeverityError,
		"ConsumerMetricsMissing":      SeverityWarning,
		"KedaMetricsMissing":          SeverityWarning,
		"KedaScalerErrors":            SeverityError,
		"QueueBacklogAboveCapacity":   SeverityWarning,
		"KedaBacklogNoReadyConsumer":  SeverityError,
	}
	rules := Rules(testParams)
	require.Len(t, rules, len(want))
	for _, r := range rules {
		assert.Equal(t, want[r.Alert], r.Severity, "%s severity", r.Alert)
	}
	assert.Equal(t, "informational", SeverityInformational.Label())
}
