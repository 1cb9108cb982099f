package observability

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/harness/localcluster"
)

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum by (namespace, reason) (increase(consumer_messages_poisoned_total{namespace="aqs-demo"}[10m])) > 0`, []string{"consumer_messages_poisoned_total"}},
		{`max by (namespace) (keda_scaler_metrics_value{namespace="a",scaledObject="b"}) > 0 unless on (namespace) (sum by (namespace) (consumer_ready{namespace="a"}) > 0)`,
			[]string{"consumer_ready", "keda_scaler_metrics_value"}},
		{`histogram_quantile(0.99, sum by (le) (rate(consumer_message_latency_seconds_bucket{namespace="$namespace"}[$__rate_interval])))`, []string{"consumer_message_latency_seconds_bucket"}},
		{`rate(x[5m]) * 1e3 + y offset 5m`, []string{"x", "y"}},
		{`sum(a{l="has {braces} and \"quotes\""}) without (pod)`, []string{"a"}},
		{`label_replace(up, "dst", "$1", "src", "(.*)")`, []string{"up"}},
		{`absent_over_time(keda_build_info[15m])`, []string{"keda_build_info"}},
		{`max by (namespace) (a{h="keda-hpa-x"}) >= 5 or sum by (namespace) (b{job_name=~"x-.+"}) >= 5`, []string{"a", "b"}},
	} {
		got, err := MetricNames(tc.expr)
		require.NoError(t, err, tc.expr)
		assert.Equal(t, tc.want, got, tc.expr)
	}
	_, err := MetricNames(`{__name__=~"consumer_.*"}`)
	assert.ErrorContains(t, err, "__name__")
}

func TestCatalogueReadsTheConsumerRegistry(t *testing.T) {
	names, err := ConsumerMetrics()
	require.NoError(t, err)
	for _, want := range []string{"consumer_messages_processed_total", "consumer_messages_poisoned_total", "consumer_ready",
		"consumer_message_latency_seconds_bucket", "consumer_storage_available"} {
		assert.Contains(t, names, want)
	}
	assert.NotContains(t, names, "consumer_message_latency_seconds", "a histogram has no series of its bare name")
}

// checkNames fails for every metric an expression names that nothing exports.
func checkNames(t *testing.T, what, expr string, catalogue map[string]string) {
	t.Helper()
	names, err := MetricNames(expr)
	require.NoError(t, err, what)
	require.NotEmpty(t, names, "%s selects no metric: %s", what, expr)
	for _, n := range names {
		assert.Contains(t, catalogue, n, "%s names %s, which neither the consumer, KEDA nor kube-state-metrics exports", what, n)
	}
}

// Every metric an alert names is exported by the consumer (its registry), KEDA or
// kube-state-metrics.
func TestRulesNameOnlyExportedMetrics(t *testing.T) {
	catalogue, err := Catalogue()
	require.NoError(t, err)
	for _, r := range Rules(testParams) {
		checkNames(t, "alert "+r.Alert, r.Expr, catalogue)
	}
}

// Every kube-state-metrics series the rules and dashboard use is kept by managed Prometheus's
// minimal ingestion profile (the add-on's default): any other is dropped before it is stored,
// and a rule on it never fires.
func TestKubeStateMetricsAreKeptByMinimalIngestion(t *testing.T) {
	for _, n := range KubeStateMetrics {
		assert.True(t, KeptByMinimalIngestion(n), "%s is not in the minimal ingestion profile's keep list: the add-on drops it", n)
	}
	// The check can fail: these are dropped. The keep list is matched whole, as a relabel regex
	// is: kube_node_status_capacity does not keep kube-state-metrics v1's
	// kube_node_status_capacity_cpu_cores.
	for _, n := range []string{"kube_deployment_status_replicas", "kube_pod_status_ready", "kube_node_status_capacity_cpu_cores",
		"kube_pod_container_resource_requests_cpu_cores"} {
		assert.False(t, KeptByMinimalIngestion(n), "%s must not be kept", n)
	}
}

// The alerts that matter never depend on metrics AKS's KEDA add-on may not expose (SPEC §11):
// a rule naming a KEDA operator metric is marked NeedsKEDAMetrics (and labelled so), except the
// guard that alerts on their absence; a marked rule does name one.
func TestOnlyMarkedRulesNeedKEDAMetrics(t *testing.T) {
	keda := map[string]bool{}
	for _, n := range KEDAMetrics {
		keda[n] = true
	}
	marked := 0
	for _, r := range Rules(testParams) {
		names, err := MetricNames(r.Expr)
		require.NoError(t, err, r.Alert)
		var kedaNames []string
		for _, n := range names {
			if keda[n] {
				kedaNames = append(kedaNames, n)
			}
		}
		switch {
		case r.NeedsKEDAMetrics:
			marked++
			assert.NotEmpty(t, kedaNames, "%s is marked NeedsKEDAMetrics but names no KEDA metric", r.Alert)
			assert.Equal(t, NeedsKEDAMetricsValue, r.Labels()[NeedsLabel], "%s is not labelled", r.Alert)
		case r.Alert == "KedaMetricsMissing":
			assert.Equal(t, "absent_over_time(keda_build_info[15m]) and on () count(last_over_time(keda_build_info[7d]))", r.Expr,
				"the guard fires when KEDA's metrics stop, not where they never were")
			assert.NotContains(t, r.Labels(), NeedsLabel)
		default:
			assert.Empty(t, kedaNames, "%s needs KEDA's operator metrics, which the AKS add-on most likely does not serve: "+
				"base it on the consumer's or kube-state-metrics' series, or mark it NeedsKEDAMetrics", r.Alert)
			assert.NotContains(t, r.Labels(), NeedsLabel, r.Alert)
		}
	}
	assert.Equal(t, 3, marked, "the KEDA-based extras: KedaScalerErrors, QueueBacklogAboveCapacity, KedaBacklogNoReadyConsumer")
	// The alerts that must not need KEDA: the backlog, not-ready and both blind-spot alerts.
	for _, want := range []string{"ConsumerNotReadyWithBacklog", "ConsumerScaledToMaximum", "ConsumerMetricsMissing", "KedaMetricsMissing"} {
		assert.Contains(t, Names(Rules(testParams)), want)
	}
}

// The check can fail: a rule naming a metric nothing exports (a typo, or KEDA's old
// keda_scaler_errors_total, removed in 2.16) is caught.
func TestRuleMetricCheckCatchesUnknownMetrics(t *testing.T) {
	catalogue, err := Catalogue()
	require.NoError(t, err)
	for _, expr := range []string{
		`increase(keda_scaler_errors_total{namespace="a"}[5m]) > 0`,
		`sum(rate(consumer_messages_procesed_total[5m]))`,
	} {
		names, err := MetricNames(expr)
		require.NoError(t, err)
		missing := 0
		for _, n := range names {
			if _, ok := catalogue[n]; !ok {
				missing++
			}
		}
		assert.Equal(t, 1, missing, "the check must flag the unknown metric in %s", expr)
	}
}

// KEDAMetrics are real: each name is defined in KEDA's own source at KEDAVersion, read from the
// Go module proxy (or cache), and the removed keda_scaler_errors_total is not.
func TestKEDAMetricsAreDefinedInKEDASource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := localcluster.ModuleDir(ctx, "github.com/kedacore/keda/v2", KEDAVersion)
	require.NoError(t, err, "downloading KEDA's module to read its metric definitions")
	src, err := os.ReadFile(filepath.Join(dir, "pkg", "metricscollector", "prommetrics.go"))
	require.NoError(t, err)
	defined := kedaDefinitions(string(src))
	require.Contains(t, defined, "keda_build_info", "the parse of KEDA's definitions found nothing")
	for _, name := range KEDAMetrics {
		assert.True(t, defined[name], "%s is not defined in KEDA %s pkg/metricscollector/prommetrics.go (defined: %v)", name, KEDAVersion, defined)
	}
	assert.False(t, defined["keda_scaler_errors_total"], "keda_scaler_errors_total was removed in 2.16")
}

// kedaDefinitions reads `Namespace: DefaultPromMetricsNamespace, Subsystem: "x", Name: "y"`
// option blocks into full names (keda_x_y).
func kedaDefinitions(src string) map[string]bool {
	defined := map[string]bool{}
	block := regexp.MustCompile(`(?s)Namespace:\s*DefaultPromMetricsNamespace,\s*(?:Subsystem:\s*"([a-z_]+)",\s*)?Name:\s*"([a-z_]+)"`)
	for _, m := range block.FindAllStringSubmatch(src, -1) {
		name := "keda_"
		if m[1] != "" {
			name += m[1] + "_"
		}
		defined[name+m[2]] = true
	}
	return defined
}
