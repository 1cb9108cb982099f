package observability

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/aks-edw/aks-edw/app/consumer"
)

// KEDAVersion is the KEDA release whose operator metrics KEDAMetrics lists: the one AKS's KEDA
// add-on runs (docs/cloud-notes.md). A test reads its source from the Go module proxy.
const KEDAVersion = "v2.17.3"

// KEDAMetrics are the KEDA operator's metrics the rules and dashboard may use, as defined in
// github.com/kedacore/keda/v2 pkg/metricscollector/prommetrics.go at KEDAVersion. The scaler
// metrics carry the labels namespace, metric, scaledObject (a ScaledObject's or ScaledJob's
// name), scaler, triggerIndex and type.
//
// AKS's KEDA add-on most likely serves none of them: it renders KEDA's Helm chart with
// prometheus.operator.enabled left false, which runs the operator with
// --enable-prometheus-metrics=false, and KEDA 2.17 then starts no metrics listener at all
// (docs/cloud-notes.md; Azure/AKS#4090). Rules on these series are marked NeedsKEDAMetrics, and
// KedaMetricsMissing (on keda_build_info) says when they are blind.
var KEDAMetrics = []string{
	"keda_build_info",
	"keda_scaler_metrics_value",
	"keda_scaler_metrics_latency_seconds",
	"keda_scaler_active",
	"keda_scaler_detail_errors_total",
	"keda_scaled_object_errors_total",
	"keda_scaled_job_errors_total",
	"keda_scaled_object_paused",
}

// KubeStateMetrics are the kube-state-metrics series the rules and the dashboard use. Each is
// kept by managed Prometheus's default (minimal ingestion) profile, which a test checks against
// MinimalIngestionKubeStateKeepList: the add-on drops every other kube-state-metrics series
// (kube_deployment_status_replicas and kube_pod_status_ready among them).
var KubeStateMetrics = []string{
	"kube_deployment_status_replicas_ready",
	"kube_deployment_spec_replicas",
	"kube_horizontalpodautoscaler_status_current_replicas",
	"kube_horizontalpodautoscaler_status_desired_replicas",
	"kube_job_status_active",
	"kube_pod_container_status_ready",
}

// MinimalIngestionKubeStateKeepList is the kube-state-metrics keep list of managed Prometheus's
// minimal ingestion profile (on by default for the add-on), verbatim: kubestateRegex_minimal_mac
// in github.com/Azure/prometheus-collector
// otelcollector/shared/configmap/mp/tomlparser-default-targets-metrics-keep-list.go, line 31, at
// commit 39583fd50b2f828f83cc18fc0cece9e3074f56db (file last changed in 8b94c4f6). The add-on
// ORs it with the user's keeplistRegexes.kubeState (empty by default) into a relabel regex,
// which Prometheus anchors: only whole names match.
const MinimalIngestionKubeStateKeepList = "kube_job_status_succeeded|kube_job_spec_completions|kube_daemonset_status_desired_number_scheduled|kube_daemonset_status_current_number_scheduled|kube_daemonset_status_number_misscheduled|kube_daemonset_status_number_ready|kube_deployment_status_replicas_ready|kube_pod_container_status_last_terminated_reason|kube_pod_container_status_waiting_reason|kube_pod_container_status_restarts_total|kube_node_status_allocatable|kube_pod_owner|kube_pod_container_resource_requests|kube_pod_status_phase|kube_pod_container_resource_limits|kube_replicaset_owner|kube_resourcequota|kube_namespace_status_phase|kube_node_status_capacity|kube_node_info|kube_pod_info|kube_deployment_spec_replicas|kube_deployment_status_replicas_available|kube_deployment_status_replicas_updated|kube_statefulset_status_replicas_ready|kube_statefulset_status_replicas|kube_statefulset_status_replicas_updated|kube_job_status_start_time|kube_job_status_active|kube_job_failed|kube_horizontalpodautoscaler_status_desired_replicas|kube_horizontalpodautoscaler_status_current_replicas|kube_horizontalpodautoscaler_spec_min_replicas|kube_horizontalpodautoscaler_spec_max_replicas|kubernetes_build_info|kube_node_status_condition|kube_node_spec_taint|kube_pod_container_info|kube_.*_labels|kube_.*_annotations|kube_service_info|kube_pod_container_status_running|kube_pod_container_status_waiting|kube_pod_container_status_terminated|kube_pod_container_state_started|kube_pod_created|kube_pod_start_time|kube_pod_init_container_info|kube_pod_init_container_status_terminated|kube_pod_init_container_status_terminated_reason|kube_pod_init_container_status_ready|kube_pod_init_container_resource_limits|kube_pod_init_container_status_running|kube_pod_init_container_status_waiting|kube_pod_init_container_status_restarts_total|kube_pod_container_status_ready|kube_pod_init_container_*|kube_pod_deletion_timestamp|kube_pod_status_reason|kube_pod_init_container_resource_requests"

// KeptByMinimalIngestion reports whether the minimal ingestion profile keeps a kube-state-metrics
// series name (the whole name must match, as in a Prometheus relabel rule).
func KeptByMinimalIngestion(name string) bool {
	return minimalKeep.MatchString(name)
}

var minimalKeep = regexp.MustCompile(`^(?:` + MinimalIngestionKubeStateKeepList + `)$`)

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
