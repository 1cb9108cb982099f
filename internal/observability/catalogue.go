package observability

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/aks-edw/aks-edw/internal/consumer"
)

// KEDAVersion is the KEDA release whose operator metrics KEDAMetrics lists: the one AKS's KEDA
// add-on runs (docs/cloud-notes.md). A test reads its source from the Go module proxy.
const KEDAVersion = "v2.17.3"

// KEDAMetrics are the KEDA operator's metrics the rules and dashboard may use, as defined in
// github.com/kedacore/keda/v2 pkg/metricscollector/prommetrics.go at KEDAVersion. The scaler
// metrics carry the labels namespace, metric, scaledObject (a ScaledObject's or ScaledJob's
// name), scaler, triggerIndex and type.
var KEDAMetrics = []string{
	"keda_scaler_metrics_value",
	"keda_scaler_metrics_latency_seconds",
	"keda_scaler_active",
	"keda_scaler_detail_errors_total",
	"keda_scaled_object_errors_total",
	"keda_scaled_job_errors_total",
	"keda_scaled_object_paused",
}

// KubeStateMetrics are the kube-state-metrics series the dashboard uses that managed
// Prometheus's default (minimal ingestion) profile keeps (docs/cloud-notes.md).
var KubeStateMetrics = []string{
	"kube_deployment_status_replicas_ready",
	"kube_deployment_spec_replicas",
	"kube_horizontalpodautoscaler_status_current_replicas",
}

// ConsumerMetrics are the series names the consumer exports, read from its own registry
// (a histogram exports _bucket, _sum and _count).
func ConsumerMetrics() ([]string, error) {
	reg := prometheus.NewRegistry()
	if _, err := consumer.NewMetrics(reg); err != nil {
		return nil, err
	}
	families, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range families {
		if f.GetType() == dto.MetricType_HISTOGRAM {
			names = append(names, f.GetName()+"_bucket", f.GetName()+"_sum", f.GetName()+"_count")
			continue
		}
		names = append(names, f.GetName())
	}
	sort.Strings(names)
	return names, nil
}

// Catalogue is every metric name the rules and the dashboard may use.
func Catalogue() (map[string]string, error) {
	names, err := ConsumerMetrics()
	if err != nil {
		return nil, err
	}
	c := map[string]string{}
	for _, n := range names {
		c[n] = "consumer"
	}
	for _, n := range KEDAMetrics {
		c[n] = "KEDA operator " + KEDAVersion
	}
	for _, n := range KubeStateMetrics {
		c[n] = "kube-state-metrics"
	}
	return c, nil
}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRanges   = regexp.MustCompile(`\[[^\[\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	// promqlWords are keywords and aggregation modifiers, never metric names.
	promqlWords = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true,
		"Inf": true, "NaN": true, "atan2": true,
	}
)

// MetricNames returns the metric names an expression selects. It is a small scanner, not a
// parser (promtool parses): it drops string literals, label matchers, ranges and grouping
// clauses, then every identifier not followed by "(" and not a keyword is a metric name. Grafana
// variables ($__rate_interval) are removed first. A `__name__` matcher is refused: the
// cross-check could not see the name.
func MetricNames(expr string) ([]string, error) {
	if strings.Contains(expr, "__name__") {
		return nil, fmt.Errorf("expression selects by __name__, which the metric check cannot follow: %s", expr)
	}
	s := regexp.MustCompile(`\$\{?[A-Za-z_]+\}?`).ReplaceAllString(expr, "1m")
	s = promqlStrings.ReplaceAllString(s, `""`)
	for prev := ""; prev != s; {
		prev = s
		s = promqlMatchers.ReplaceAllString(s, " ")
		s = promqlRanges.ReplaceAllString(s, " ")
		s = promqlGrouping.ReplaceAllString(s, " ")
	}
	seen := map[string]bool{}
	var names []string
	for _, loc := range promqlIdent.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if promqlWords[word] || strings.HasPrefix(rest, "(") {
			continue
		}
		// A number such as 1e3 or a duration suffix after a digit is not a name.
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue
		}
		if !seen[word] {
			seen[word] = true
			names = append(names, word)
		}
	}
	sort.Strings(names)
	return names, nil
}
