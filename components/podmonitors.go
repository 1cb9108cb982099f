package components

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// MetricsScrapingType is the component's type token.
const MetricsScrapingType = "aks-edw:workload:MetricsScraping"

// Facts of Azure Monitor managed Prometheus (the ama-metrics add-on) and of what it scrapes.
const (
	// azMonitoringAPIVersion is the add-on's PodMonitor group: prometheus-operator's CRD with
	// the group renamed from monitoring.coreos.com. The add-on ignores OSS monitoring.coreos.com
	// objects (Azure/prometheus-collector internal/docs/Operator-CRD.md).
	azMonitoringAPIVersion = "azmonitoring.coreos.com/v1"
	// metricsPath is where the consumer and the KEDA operator (controller-runtime's default)
	// serve Prometheus metrics.
	metricsPath = "/metrics"
	// scrapeInterval is how often both are scraped.
	scrapeInterval = "30s"

	// kedaOperatorAppLabel is the `app` label of the KEDA operator's pods in upstream KEDA's
	// manifests and Helm chart (whose own PodMonitor selects it). NOT confirmed for the AKS KEDA
	// add-on: no Microsoft source documents its pod labels (/tmp/obs-findings.md §4); check with
	// `kubectl get deploy keda-operator -n kube-system -o yaml`.
	kedaOperatorAppLabel = "keda-operator"
	// kedaMetricsPort is the operator's --metrics-bind-address port (default ":8080"). Selected
	// by number, not by name: the add-on's container port name is not documented either.
	kedaMetricsPort = 8080
	// kedaPodMonitorName is prefixed so it cannot take over a PodMonitor someone else put in
	// kube-system (server-side apply would adopt an existing object of the same name).
	kedaPodMonitorName = "aks-edw-keda-operator"

	// The label limits Microsoft's PodMonitor template says every PodMonitor should carry, so
	// series are not dropped by the add-on's pipeline for exceeding what it supports
	// (Azure/prometheus-collector otelcollector/customresources/pod-monitor-template.yaml).
	azLabelLimit            = 63
	azLabelNameLengthLimit  = 511
	azLabelValueLengthLimit = 1023
)

// MetricsScrapingArgs are the inputs of NewMetricsScraping. Every field is required unless its
// comment says optional.
type MetricsScrapingArgs struct {
	// Settings are the consumer's settings (required): its AppLabel selects the consumer pods,
	// with the same selector labels as the consumer's Deployment.
	Settings ConsumerSettings
	// Namespace is the consumer's namespace, QueueConsumer.Namespace (required): the consumer's
	// PodMonitor goes there, after the namespace exists.
	Namespace pulumi.StringInput
	// AddonsReady, when set, resolves once the cluster serves the azmonitoring.coreos.com/v1
	// PodMonitor kind (the managed Prometheus add-on); both PodMonitors wait for it (optional;
	// workload.Deploy sets it).
	AddonsReady pulumi.ResourceArrayInput
	// Cluster is the AKS cluster; both PodMonitors are deleted with it (required).
	Cluster pulumi.Resource
	// Provider is the explicit Kubernetes provider for that cluster (required).
	Provider pulumi.ProviderResource
}

// MetricsScraping makes Azure Monitor managed Prometheus scrape the consumer's and the KEDA
// operator's /metrics, with two azmonitoring.coreos.com/v1 PodMonitors: the add-on's default
// targets include neither.
type MetricsScraping struct {
	pulumi.ResourceState

	// ConsumerPodMonitorName is the consumer's PodMonitor, in the consumer's namespace.
	ConsumerPodMonitorName pulumi.StringOutput
	// KedaPodMonitorName is the KEDA operator's PodMonitor, in kube-system.
	KedaPodMonitorName pulumi.StringOutput
}

func (a *MetricsScrapingArgs) validate() error {
	if a == nil {
		return errors.New("args are required")
	}
	errs := missing(
		arg{"Namespace", a.Namespace != nil},
		arg{"Cluster", a.Cluster != nil},
		arg{"Provider", a.Provider != nil},
	)
	if err := a.Settings.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("settings: %w", err))
	}
	return errors.Join(errs...)
}

// azLabelLimits are the label limits every PodMonitor for the add-on carries.
func azLabelLimits(spec pulumi.Map) pulumi.Map {
	spec["labelLimit"] = pulumi.Int(azLabelLimit)
	spec["labelNameLengthLimit"] = pulumi.Int(azLabelNameLengthLimit)
	spec["labelValueLengthLimit"] = pulumi.Int(azLabelValueLengthLimit)
	return spec
}

// consumerPodMonitorArgs: the consumer pods' /metrics on their named container port. It selects
// them with the Deployment's own selector labels, which the ScaledJob's job pods carry too (one
// pod template for both modes); pods are looked up in the PodMonitor's namespace.
func consumerPodMonitorArgs(s ConsumerSettings, namespace pulumi.StringInput) *apiextensions.CustomResourceArgs {
	return &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String(azMonitoringAPIVersion),
		Kind:       pulumi.String("PodMonitor"),
		Metadata: &metav1.ObjectMetaArgs{
			Name:      pulumi.String(s.AppLabel),
			Namespace: namespace,
			Labels:    commonLabels(),
		},
		OtherFields: map[string]any{
			"spec": azLabelLimits(pulumi.Map{
				"selector": pulumi.Map{"matchLabels": selectorLabels(s)},
				"podMetricsEndpoints": pulumi.Array{pulumi.Map{
					"port":     pulumi.String(httpPortName),
					"path":     pulumi.String(metricsPath),
					"interval": pulumi.String(scrapeInterval),
				}},
			}),
		},
	}
}

// kedaPodMonitorArgs: the KEDA operator's /metrics on port 8080, in the add-on's namespace.
//
// honorLabels is required: KEDA's series carry their own `namespace` label (the namespace of the
// ScaledObject or ScaledJob, next to `scaledObject`/`scaledJob`). Without honor_labels the scrape
// sets `namespace` to the target's (kube-system) and renames KEDA's to `exported_namespace`
// (Prometheus docs, scrape_config honor_labels), so per-workload queries by namespace would
// match nothing.
func kedaPodMonitorArgs() *apiextensions.CustomResourceArgs {
	return &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String(azMonitoringAPIVersion),
		Kind:       pulumi.String("PodMonitor"),
		Metadata: &metav1.ObjectMetaArgs{
			Name:      pulumi.String(kedaPodMonitorName),
			Namespace: pulumi.String(KedaNamespace),
			Labels:    commonLabels(),
		},
		OtherFields: map[string]any{
			"spec": azLabelLimits(pulumi.Map{
				"selector": pulumi.Map{"matchLabels": pulumi.StringMap{"app": pulumi.String(kedaOperatorAppLabel)}},
				"podMetricsEndpoints": pulumi.Array{pulumi.Map{
					"portNumber":  pulumi.Int(kedaMetricsPort),
					"path":        pulumi.String(metricsPath),
					"interval":    pulumi.String(scrapeInterval),
					"honorLabels": pulumi.Bool(true),
				}},
			}),
		},
	}
}

// NewMetricsScraping creates the consumer's and the KEDA operator's PodMonitors through
// args.Provider.
func NewMetricsScraping(ctx *pulumi.Context, name string, args *MetricsScrapingArgs, opts ...pulumi.ResourceOption) (*MetricsScraping, error) {
	if err := args.validate(); err != nil {
		return nil, fmt.Errorf("metrics scraping %q: invalid args: %w", name, err)
	}
	m := &MetricsScraping{}
	if err := ctx.RegisterComponentResource(MetricsScrapingType, name, m, opts...); err != nil {
		return nil, fmt.Errorf("registering metrics scraping component %q: %w", name, err)
	}
	// DeletedWith is not inherited from the component: each object carries it itself.
	child := []pulumi.ResourceOption{
		pulumi.Parent(m),
		pulumi.Provider(args.Provider),
		pulumi.DeletedWith(args.Cluster),
	}
	// The add-on installs the PodMonitor kind some time after the cluster reports success.
	if args.AddonsReady != nil {
		child = append(child, pulumi.DependsOnInputs(args.AddonsReady))
	}

	consumer, err := apiextensions.NewCustomResource(ctx, name+"-consumer-pod-monitor",
		consumerPodMonitorArgs(args.Settings, args.Namespace), child...)
	if err != nil {
		return nil, fmt.Errorf("creating the consumer's PodMonitor %q: %w", args.Settings.AppLabel, err)
	}
	keda, err := apiextensions.NewCustomResource(ctx, name+"-keda-pod-monitor", kedaPodMonitorArgs(), child...)
	if err != nil {
		return nil, fmt.Errorf("creating the KEDA operator's PodMonitor %q: %w", kedaPodMonitorName, err)
	}

	m.ConsumerPodMonitorName = consumer.Metadata.Name().Elem()
	m.KedaPodMonitorName = keda.Metadata.Name().Elem()
	if err := ctx.RegisterResourceOutputs(m, pulumi.Map{
		"consumerPodMonitorName": m.ConsumerPodMonitorName,
		"kedaPodMonitorName":     m.KedaPodMonitorName,
	}); err != nil {
		return nil, fmt.Errorf("registering outputs of metrics scraping %q: %w", name, err)
	}
	return m, nil
}
