// Package observability is what watches a deployed stack: the Prometheus alert rules (deployed as
// an Azure Monitor Prometheus rule group, and tested with promtool), the Grafana dashboard, and
// the catalogue of metric names they may use (the consumer's registry, KEDA's operator and
// kube-state-metrics). It is product code with no cloud dependency: the components turn the rules
// into Azure resources.
package observability

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Severity is Azure Monitor's alert severity: 0 critical to 4 verbose.
type Severity int

// The severities the rules use.
const (
	// SeverityError is for an outage of the workload: messages are not being processed.
	SeverityError Severity = 1
	// SeverityWarning is for degraded processing that needs a look.
	SeverityWarning Severity = 2
	// SeverityInformational is for a known gap that needs no action now.
	SeverityInformational Severity = 3
)

// Label is the severity as the `severity` label of the Prometheus rule.
func (s Severity) Label() string {
	switch s {
	case 0:
		return "critical"
	case SeverityError:
		return "error"
	case SeverityWarning:
		return "warning"
	case SeverityInformational:
		return "informational"
	default:
		return "verbose"
	}
}

// Rule is one Prometheus alerting rule.
type Rule struct {
	// Alert is the alert's name.
	Alert string
	// Expr is the PromQL expression; the alert is pending while it returns series.
	Expr string
	// For is how long the expression must hold before the alert fires.
	For time.Duration
	// Severity is the Azure Monitor severity.
	Severity Severity
	// Summary says what is wrong (a Prometheus template: {{ $value }}, {{ $labels.x }}).
	Summary string
	// Action says what to do about it.
	Action string
	// NeedsKEDAMetrics marks a rule on the KEDA operator's series: it fires only where they are
	// scraped, which AKS's KEDA add-on most likely does not allow (KEDAMetrics). The alerts that
	// matter never need them; these are extras, labelled so in Azure (Labels).
	NeedsKEDAMetrics bool
}

// NeedsLabel is the label (with value NeedsKEDAMetricsValue) on the rules that need KEDA's
// operator metrics.
const (
	NeedsLabel            = "needs"
	NeedsKEDAMetricsValue = "keda-operator-metrics"
)

// Labels are the rule's Prometheus labels: its severity, and `needs: keda-operator-metrics` on
// the rules that fire only where KEDA's operator metrics are scraped.
func (r Rule) Labels() map[string]string {
	l := map[string]string{"severity": r.Severity.Label()}
	if r.NeedsKEDAMetrics {
		l[NeedsLabel] = NeedsKEDAMetricsValue
	}
	return l
}

// Params locate the workload's series and size the backlog alert.
type Params struct {
	// Namespace is the consumer's namespace (the `namespace` label of its metrics, and of KEDA's
	// metrics for its scaler).
	Namespace string
	// Scaler is the ScaledObject or ScaledJob name (KEDA's `scaledObject` label carries either).
	// It also finds the scaler's objects in kube-state-metrics: KEDA names a ScaledObject's HPA
	// keda-hpa-<Scaler> and a ScaledJob's jobs <Scaler>-<random>.
	Scaler string
	// Container is the consumer's container name (kube-state-metrics' `container` label), the
	// same in the Deployment's pods and the ScaledJob's.
	Container string
	// QueueName is the queue, for the messages.
	QueueName string
	// MaxReplicas and QueueLength are the scaler's maximum replicas (or jobs) and target
	// messages per replica (or per job): a backlog above their product is more than KEDA will
	// run consumers for.
	MaxReplicas, QueueLength int
	// BacklogFor is how long the backlog may stay above that before the alert fires.
	BacklogFor time.Duration
}

// Validate names what is missing or out of range.
func (p Params) Validate() error {
	var problems []string
	if p.Namespace == "" || p.Scaler == "" || p.Container == "" || p.QueueName == "" {
		problems = append(problems, "namespace, scaler, container and queue name are required")
	}
	if p.MaxReplicas < 1 || p.QueueLength < 1 {
		problems = append(problems, fmt.Sprintf("maxReplicas (%d) and queueLength (%d) must be >= 1", p.MaxReplicas, p.QueueLength))
	}
	if p.BacklogFor < time.Minute {
		problems = append(problems, fmt.Sprintf("the backlog duration (%s) must be at least 1m", p.BacklogFor))
	}
	if len(problems) > 0 {
		return fmt.Errorf("alert rule parameters: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Rules are the workload's alerts. Each names only metrics in the catalogue (Catalogue), which
// a test checks, and each fires and stays quiet when it should, which promtool checks.
//
// The alerts that matter use only the consumer's own series and kube-state-metrics series that
// the minimal ingestion profile keeps. The consumer does not export the queue's depth, so with
// no KEDA metrics the backlog is read from what KEDA did about it: the desired replicas of the
// HPA it manages (ScaledObject) or its active jobs (ScaledJob). A backlog KEDA fails to read
// while at zero replicas is invisible to them; the KEDA-based extras (NeedsKEDAMetrics) see it
// where KEDA's metrics are scraped. ConsumerMetricsMissing and KedaMetricsMissing make a scrape
// target that went missing visible instead of leaving its alerts silently blind (KEDA's only once
// it has been scraped: the AKS add-on never serves metrics).
func Rules(p Params) []Rule {
	ns := strconv.Quote(p.Namespace)
	consumer := func(metric string) string { return fmt.Sprintf(`%s{namespace=%s}`, metric, ns) }
	keda := func(metric string) string {
		return fmt.Sprintf(`%s{namespace=%s,scaledObject=%s}`, metric, ns, strconv.Quote(p.Scaler))
	}
	// KEDA's HPA for a ScaledObject, and a ScaledJob's jobs; only one of them exists.
	hpaDesired := fmt.Sprintf(`kube_horizontalpodautoscaler_status_desired_replicas{namespace=%s,horizontalpodautoscaler=%s}`,
		ns, strconv.Quote("keda-hpa-"+p.Scaler))
	activeJobs := fmt.Sprintf(`kube_job_status_active{namespace=%s,job_name=~%s}`, ns, strconv.Quote(regexp.QuoteMeta(p.Scaler)+"-.+"))
	// consumersWanted: the consumers KEDA has asked for (HPA desired replicas, or active jobs),
	// where that count compares to n by cmp; its value is the count.
	consumersWanted := func(cmp string, n int) string {
		return fmt.Sprintf(`max by (namespace) (%s) %s %d or sum by (namespace) (%s) %s %d`, hpaDesired, cmp, n, activeJobs, cmp, n)
	}
	consumerReady := fmt.Sprintf(`sum by (namespace) (kube_pod_container_status_ready{namespace=%s,container=%s}) > 0`,
		ns, strconv.Quote(p.Container))
	capacity := p.MaxReplicas * p.QueueLength
	notReadyAction := "No consumer is processing. If no pod exists or pods are Pending, check the NodePool (pending pods, node " +
		"autoprovisioning events). If pods exist but are not ready, they report storage unavailable: check the identity's " +
		"role assignments and the storage firewall."
	return []Rule{
		{
			Alert:    "ConsumerMessagesPoisoned",
			Expr:     fmt.Sprintf(`sum by (namespace, reason) (increase(%s[10m])) > 0`, consumer("consumer_messages_poisoned_total")),
			Severity: SeverityWarning,
			Summary:  `Messages moved to the poison queue in the last 10 minutes (reason {{ $labels.reason }})`,
			Action: fmt.Sprintf("Read %s-poison: each record holds the reason and the original message. Fix the producer "+
				"(invalid JSON, missing fields) or the table (rejected entity), then re-enqueue the records worth keeping.", p.QueueName),
		},
		{
			Alert: "ConsumerFailuresSustained",
			Expr: fmt.Sprintf(`sum by (namespace) (rate(%s[5m])) > 0.05 * sum by (namespace) (rate(%s[5m]))`,
				consumer("consumer_messages_failed_total"), consumer("consumer_messages_dequeued_total")),
			For:      15 * time.Minute,
			Severity: SeverityWarning,
			Summary:  `Consumer failures above 5% of dequeued messages for 15 minutes`,
			Action: "The failed messages reappear after their visibility timeout and count towards the poison limit. " +
				"Check the consumer logs by stage (table, delete, poison) for throttling (429) or storage errors.",
		},
		{
			// Storage pushing back for good: the consumers retry 503 ServerBusy with backoff and
			// lose nothing (docs/programs.md), so this is a ceiling on throughput, not a failure.
			Alert: "ConsumerStorageThrottled",
			Expr: fmt.Sprintf(`sum by (namespace) (rate(%s[5m])) > 0.05 * sum by (namespace) (rate(%s[5m]))`,
				consumer("consumer_storage_throttled_total"), consumer("consumer_messages_dequeued_total")),
			For:      15 * time.Minute,
			Severity: SeverityWarning,
			Summary:  `Storage throttled the consumers (503 ServerBusy) more than once per 20 dequeued messages for 15 minutes`,
			Action: "The queue or the storage account is past Azure Storage's scalability targets (about 2,000 messages/s per " +
				"queue, 20,000 requests/s per account). The consumers back off and lose nothing, but throughput is capped there " +
				"and more replicas do not help: keep maxReplicas at what one queue sustains, spread the work over more queues or " +
				"accounts, or find the account's other clients. consumer_storage_throttled_total's stage label shows which calls.",
		},
		{
			// KEDA asked for consumers (the queue reached activationQueueLength, or minReplicas > 0)
			// and no consumer container is ready: kube-state-metrics only.
			Alert:    "ConsumerNotReadyWithBacklog",
			Expr:     fmt.Sprintf(`(%s) unless on (namespace) (%s)`, consumersWanted(">", 0), consumerReady),
			For:      10 * time.Minute,
			Severity: SeverityError,
			Summary:  `KEDA wants {{ $value | humanize }} consumer pod(s) for the queue and none has been ready for 10 minutes`,
			Action:   notReadyAction,
		},
		{
			// The backlog alert without KEDA's metrics: KEDA has asked for its maximum. An HPA
			// wants ceil(backlog / queueLength) replicas, capped at the maximum, so this holds
			// while the backlog is above (maxReplicas - 1) x queueLength.
			Alert:    "ConsumerScaledToMaximum",
			Expr:     consumersWanted(">=", p.MaxReplicas),
			For:      p.BacklogFor,
			Severity: SeverityWarning,
			Summary: fmt.Sprintf(`KEDA has wanted its maximum of %d consumers for %s: the queue backlog is above %d messages ((maxReplicas - 1) x queueLength %d)`,
				p.MaxReplicas, promDuration(p.BacklogFor), (p.MaxReplicas-1)*p.QueueLength, p.QueueLength),
			Action: "KEDA is at its maximum and the backlog has not come down. Raise maxReplicas (up to the queue's " +
				"~2,000 messages/s ceiling) or check why per-replica throughput dropped (latency panel, throttling).",
		},
		{
			Alert:    "ConsumerStorageUnavailable",
			Expr:     fmt.Sprintf(`min by (namespace) (%s) == 0`, consumer("consumer_storage_available")),
			For:      10 * time.Minute,
			Severity: SeverityError,
			Summary:  `A consumer pod has paused for 10 minutes: the queue, poison queue or table is unavailable to it`,
			Action: "The consumer pauses instead of poisoning messages. Check that the queue and table exist, the role assignments " +
				"of the workload identity, the storage firewall (the AKS subnet), and Azure Storage's health.",
		},
		{
			// The consumer's scrape target is missing or failing while consumer containers are
			// ready: every consumer-metric alert above is blind. Conditioned on ready containers,
			// because the consumer scales to zero and then has no target by design.
			Alert:    "ConsumerMetricsMissing",
			Expr:     fmt.Sprintf(`(%s) unless on (namespace) count by (namespace) (%s)`, consumerReady, consumer("consumer_ready")),
			For:      10 * time.Minute,
			Severity: SeverityWarning,
			Summary:  `{{ $value | humanize }} consumer container(s) ready and none of their metrics scraped for 10 minutes: the consumer alerts are blind`,
			Action: "Check the consumer's PodMonitor (azmonitoring.coreos.com/v1, in the consumer's namespace): its selector and the " +
				"port name; that the namespace's NetworkPolicy lets the ama-metrics pods (kube-system) reach that port; and the " +
				"ama-metrics pods' target status (kubectl -n kube-system port-forward <ama-metrics pod> 9090, then /targets).",
		},
		{
			// KEDA's operator metrics were scraped and stopped: the extras below went blind. Never
			// scraped is not a failure: AKS's KEDA add-on serves none (Azure/AKS#4090), and an
			// alert that fires forever there teaches people to ignore alerts; docs say so once.
			Alert:    "KedaMetricsMissing",
			Expr:     `absent_over_time(keda_build_info[15m]) and on () count(last_over_time(keda_build_info[7d]))`,
			Severity: SeverityWarning,
			Summary: `KEDA operator metrics were scraped in the last 7 days and none for 15 minutes: the alerts labelled needs=keda-operator-metrics ` +
				`(KedaScalerErrors, QueueBacklogAboveCapacity, KedaBacklogNoReadyConsumer) went blind`,
			Action: "A scrape that worked broke: check the aks-edw-keda-operator PodMonitor in kube-system (pod label app=keda-operator, " +
				"port 8080), the ama-metrics pods' targets (kubectl -n kube-system port-forward <ama-metrics pod> 9090, then /targets), " +
				"and whether an add-on update turned the operator's metrics off (kubectl -n kube-system get deploy keda-operator " +
				"-o jsonpath='{.spec.template.spec.containers[0].args}'). Where KEDA never served metrics (the AKS add-on today) this does not fire.",
		},
		{
			Alert: "KedaScalerErrors",
			Expr: fmt.Sprintf(`sum by (namespace, scaledObject) (increase(%s[5m])) > 0 or sum by (namespace, scaledObject) (increase(%s[5m])) > 0`,
				keda("keda_scaler_detail_errors_total"), keda("keda_scaled_object_errors_total")),
			For:      5 * time.Minute,
			Severity: SeverityError,
			Summary:  `KEDA cannot read queue ` + p.QueueName + ` for {{ $labels.scaledObject }}: the queue can grow with no consumer`,
			Action: "Read the keda-operator logs in kube-system. An authentication error means the operator's workload identity: " +
				"its service account annotation, the federated credential for system:serviceaccount:kube-system:keda-operator, " +
				"and the queue role assignment (allow up to 10 minutes for a new one). Restart the operator after fixing the identity.",
			NeedsKEDAMetrics: true,
		},
		{
			Alert:    "QueueBacklogAboveCapacity",
			Expr:     fmt.Sprintf(`max by (namespace) (%s) > %d`, keda("keda_scaler_metrics_value"), capacity),
			For:      p.BacklogFor,
			Severity: SeverityWarning,
			Summary:  fmt.Sprintf(`Queue backlog {{ $value | humanize }} above %d (maxReplicas %d x queueLength %d) for %s`, capacity, p.MaxReplicas, p.QueueLength, promDuration(p.BacklogFor)),
			Action: "KEDA is at its maximum and the backlog still grows or stays. Raise maxReplicas (up to the queue's " +
				"~2,000 messages/s ceiling) or check why per-replica throughput dropped (latency panel, throttling).",
			NeedsKEDAMetrics: true,
		},
		{
			// The queue's depth as KEDA reads it, with no consumer ready: also sees a backlog
			// KEDA reads but does not scale for, which ConsumerNotReadyWithBacklog cannot.
			Alert:            "KedaBacklogNoReadyConsumer",
			Expr:             fmt.Sprintf(`max by (namespace) (%s) > 0 unless on (namespace) (%s)`, keda("keda_scaler_metrics_value"), consumerReady),
			For:              10 * time.Minute,
			Severity:         SeverityError,
			Summary:          `{{ $value | humanize }} messages wait in the queue and no consumer pod is ready`,
			Action:           "If no pod exists and KEDA wants none, check KEDA (KedaScalerErrors, the ScaledObject's conditions). " + notReadyAction,
			NeedsKEDAMetrics: true,
		},
	}
}

// promDuration renders a duration the way Prometheus writes one (1h30m, 15m, 90s).
func promDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dh", h)
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%dm", m)
		d -= m * time.Minute
	}
	if s := d / time.Second; s > 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}

// ISODuration renders a duration as ISO 8601 (PT1H30M), the form Azure's rule group takes.
func ISODuration(d time.Duration) string {
	return "PT" + strings.ToUpper(promDuration(d))
}

// ruleFile is Prometheus's rule file format.
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name     string     `json:"name"`
	Interval string     `json:"interval"`
	Rules    []fileRule `json:"rules"`
}

type fileRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// RuleFile renders rules as a Prometheus rule file (one group evaluated every minute), for
// promtool and for any Prometheus.
func RuleFile(group string, rules []Rule) ([]byte, error) {
	g := ruleGroup{Name: group, Interval: "1m"}
	for _, r := range rules {
		fr := fileRule{
			Alert: r.Alert, Expr: r.Expr,
			Labels:      r.Labels(),
			Annotations: map[string]string{"summary": r.Summary, "description": r.Action},
		}
		if r.For > 0 {
			fr.For = promDuration(r.For)
		}
		g.Rules = append(g.Rules, fr)
	}
	return yaml.Marshal(ruleFile{Groups: []ruleGroup{g}})
}

// Names are the rules' alert names, sorted.
func Names(rules []Rule) []string {
	var names []string
	for _, r := range rules {
		names = append(names, r.Alert)
	}
	sort.Strings(names)
	return names
}
