package components

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	k8scorev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	k8smetav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

// typePodMonitor is the type token of the add-on's PodMonitor custom resource.
const typePodMonitor = "kubernetes:azmonitoring.coreos.com/v1:PodMonitor"

// renderPodMonitor renders a PodMonitor builder's args with the apiVersion and kind the builder
// sets (renderArgs takes them as parameters) and decodes strictly into prometheus-operator's
// PodMonitor (v0.86.0), the type Microsoft builds the add-on's CRD from, group renamed.
func renderPodMonitor(t *testing.T, args *apiextensions.CustomResourceArgs) monitoringv1.PodMonitor {
	t.Helper()
	apiVersion, _ := resolve(t, args.ApiVersion).(string)
	kind, _ := resolve(t, args.Kind).(string)
	return decodeStrict[monitoringv1.PodMonitor](t, "pod monitor", renderArgs(t, apiVersion, kind, args))
}

// assertAzPodMonitor checks what every PodMonitor for the managed Prometheus add-on needs.
func assertAzPodMonitor(t *testing.T, pm monitoringv1.PodMonitor) {
	t.Helper()
	// The add-on ignores OSS monitoring.coreos.com objects; the Go type's group is that one.
	assert.Equal(t, "azmonitoring.coreos.com/v1", pm.APIVersion, "%s: apiVersion", pm.Name)
	assert.NotEqual(t, monitoringv1.SchemeGroupVersion.String(), pm.APIVersion, "%s: not the OSS group", pm.Name)
	assert.Equal(t, monitoringv1.PodMonitorsKind, pm.Kind, "%s: kind", pm.Name)
	// Microsoft's template's limits, so the add-on's pipeline does not drop series.
	assert.Equal(t, ptrTo(uint64(63)), pm.Spec.LabelLimit, "%s: labelLimit", pm.Name)
	assert.Equal(t, ptrTo(uint64(511)), pm.Spec.LabelNameLengthLimit, "%s: labelNameLengthLimit", pm.Name)
	assert.Equal(t, ptrTo(uint64(1023)), pm.Spec.LabelValueLengthLimit, "%s: labelValueLengthLimit", pm.Name)
	// Pods in the PodMonitor's own namespace only.
	assert.Equal(t, monitoringv1.NamespaceSelector{}, pm.Spec.NamespaceSelector, "%s: namespaceSelector", pm.Name)
	assert.Empty(t, pm.Spec.Selector.MatchExpressions, "%s: matchExpressions", pm.Name)
}

// selects reports whether a PodMonitor's selector matches a pod's labels.
func selects(t *testing.T, sel metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(&sel)
	require.NoError(t, err)
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

func TestConsumerPodMonitorArgs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*ConsumerSettings)
	}{
		{"defaults", func(*ConsumerSettings) {}},
		{"renamed app", func(s *ConsumerSettings) { s.AppLabel, s.DeploymentName = "reader-app", "reader" }},
		{"scaled job", func(s *ConsumerSettings) { s.ScaleMode = ScaleModeScaledJob }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultConsumerSettings()
			tt.mutate(&s)
			require.NoError(t, s.Validate())
			pm := renderPodMonitor(t, consumerPodMonitorArgs(s, testInputs().Namespace))
			assertAzPodMonitor(t, pm)
			assert.Equal(t, s.AppLabel, pm.Name, "name")
			assert.Equal(t, "aqs-demo", pm.Namespace, "in the consumer's namespace")

			// The pods it must find: the Deployment's and the ScaledJob's, rendered by their own
			// builders.
			dep := renderDeployment(t, s)
			job := renderScaledJob(t, s)
			require.NotNil(t, dep.Spec.Selector)
			assert.Equal(t, dep.Spec.Selector.MatchLabels, pm.Spec.Selector.MatchLabels, "selector is the Deployment's")
			assert.True(t, selects(t, pm.Spec.Selector, dep.Spec.Template.Labels), "selects the Deployment's pods")
			assert.True(t, selects(t, pm.Spec.Selector, job.Spec.JobTargetRef.Template.Labels), "selects the ScaledJob's pods")
			other := map[string]string{"app": s.AppLabel + "-other"}
			assert.False(t, selects(t, pm.Spec.Selector, other), "does not select other apps' pods")

			require.Len(t, pm.Spec.PodMetricsEndpoints, 1)
			port := pm.Spec.PodMetricsEndpoints[0].Port
			require.NotNil(t, port, "port")
			assert.Equal(t, dep.Spec.Template.Spec.Containers[0].Ports[0].Name, *port, "port is the Deployment container port's name")
			assert.Equal(t, job.Spec.JobTargetRef.Template.Spec.Containers[0].Ports[0].Name, *port, "port is the job container port's name")
			assert.Equal(t, monitoringv1.PodMetricsEndpoint{
				Port:     ptrTo("http"),
				Path:     "/metrics",
				Interval: "30s",
			}, pm.Spec.PodMetricsEndpoints[0], "the one endpoint, every field (honorLabels false: the consumer's labels are not trusted over the target's)")
		})
	}
}

func TestKedaPodMonitorArgs(t *testing.T) {
	pm := renderPodMonitor(t, kedaPodMonitorArgs())
	assertAzPodMonitor(t, pm)
	assert.Equal(t, "aks-edw-keda-operator", pm.Name, "name")
	assert.Equal(t, KedaNamespace, pm.Namespace, "namespace")
	assert.Equal(t, "kube-system", pm.Namespace, "in the KEDA add-on's namespace")
	assert.Equal(t, map[string]string{"app": "keda-operator"}, pm.Spec.Selector.MatchLabels, "selector (upstream KEDA's label)")
	require.Len(t, pm.Spec.PodMetricsEndpoints, 1)
	ep := pm.Spec.PodMetricsEndpoints[0]
	assert.True(t, ep.HonorLabels, "honorLabels keeps KEDA's namespace label (else exported_namespace)")
	assert.Equal(t, monitoringv1.PodMetricsEndpoint{
		PortNumber:  ptrTo(int32(8080)),
		Path:        "/metrics",
		Interval:    "30s",
		HonorLabels: true,
	}, ep, "the one endpoint, every field (by port number: the add-on's port name is undocumented)")
}

// The Go type has no catch-all for unknown fields: a misspelt field fails the strict decode, so
// the builder tests above catch typos the API server would drop or reject.
func TestPodMonitorDecodeIsStrict(t *testing.T) {
	args := kedaPodMonitorArgs()
	ep := args.OtherFields["spec"].(pulumi.Map)["podMetricsEndpoints"].(pulumi.Array)[0].(pulumi.Map)
	ep["honourLabels"] = ep["honorLabels"] // a plausible typo
	dec := json.NewDecoder(bytes.NewReader(renderArgs(t, azMonitoringAPIVersion, "PodMonitor", args)))
	dec.DisallowUnknownFields()
	var pm monitoringv1.PodMonitor
	assert.ErrorContains(t, dec.Decode(&pm), `unknown field "honourLabels"`)
}

// runMetricsScraping runs NewMetricsScraping named "consumer-metrics" under the mocks, with a
// namespace and an add-on readiness output that resolves to a stand-in resource ("addons").
func runMetricsScraping(t *testing.T, s ConsumerSettings) *pulumitest.Mocks {
	t.Helper()
	m := pulumitest.New("aks-edw", "dev")
	err := m.Run(map[string]string{}, func(ctx *pulumi.Context) error {
		cluster, err := random.NewRandomString(ctx, "cluster", &random.RandomStringArgs{Length: pulumi.Int(6)})
		if err != nil {
			return err
		}
		addons, err := random.NewRandomString(ctx, "addons", &random.RandomStringArgs{Length: pulumi.Int(6)})
		if err != nil {
			return err
		}
		k8s, err := kubernetes.NewProvider(ctx, "k8s", &kubernetes.ProviderArgs{})
		if err != nil {
			return err
		}
		ns, err := k8scorev1.NewNamespace(ctx, "namespace", &k8scorev1.NamespaceArgs{
			Metadata: &k8smetav1.ObjectMetaArgs{Name: pulumi.String(s.Namespace)},
		}, pulumi.Provider(k8s))
		if err != nil {
			return err
		}
		ready := addons.Result.ApplyT(func(string) []pulumi.Resource { return []pulumi.Resource{addons} }).(pulumi.ResourceArrayOutput)
		_, err = NewMetricsScraping(ctx, "consumer-metrics", &MetricsScrapingArgs{
			Settings:    s,
			Namespace:   ns.Metadata.Name().Elem(),
			AddonsReady: ready,
			Cluster:     cluster,
			Provider:    k8s,
		})
		return err
	})
	require.NoError(t, err)
	return m
}

// SPEC §7.8 for the PodMonitors: the explicit provider, deleted with the cluster, parented to the
// component, after the add-on readiness; the consumer's in its namespace through its output.
func TestMetricsScrapingProviderDeletedWithParent(t *testing.T) {
	s := DefaultConsumerSettings()
	m := runMetricsScraping(t, s)
	provider := m.One(t, typeK8sProvider)
	cluster := m.Get(t, typeStandInCluster, "cluster")
	addons := m.Get(t, typeStandInCluster, "addons")
	ns := m.One(t, typeNamespace)
	component := m.One(t, MetricsScrapingType)
	assert.Equal(t, "consumer-metrics", component.Name)

	monitors := m.ByType(typePodMonitor)
	require.Len(t, monitors, 2)
	byName := map[string]*pulumitest.Resource{}
	for _, r := range monitors {
		byName[r.Name] = r
		assert.True(t, strings.HasPrefix(r.Name, "consumer-metrics-"), "%s: logical name derived from the component's", r.Name)
		assert.Equal(t, provider.URN, pulumitest.ProviderURN(r.Provider), "%s: provider", r.Name)
		assert.Equal(t, cluster.URN, r.DeletedWith, "%s: deletedWith", r.Name)
		assert.Equal(t, component.URN, r.Parent, "%s: parent", r.Name)
		assert.True(t, r.DependsOn(addons), "%s: waits for the add-ons", r.Name)
		pm := decodeRecorded[monitoringv1.PodMonitor](t, r)
		assertAzPodMonitor(t, pm)
	}

	consumer := byName["consumer-metrics-consumer-pod-monitor"]
	require.NotNil(t, consumer, "consumer PodMonitor")
	assert.True(t, consumer.DependsOn(ns), "consumer PodMonitor takes the namespace from its output")
	pm := decodeRecorded[monitoringv1.PodMonitor](t, consumer)
	assert.Equal(t, s.Namespace, pm.Namespace)
	assert.Equal(t, map[string]string{"app": s.AppLabel}, pm.Spec.Selector.MatchLabels)
	require.Len(t, pm.Spec.PodMetricsEndpoints, 1)
	assert.Equal(t, ptrTo(httpPortName), pm.Spec.PodMetricsEndpoints[0].Port)
	assert.False(t, pm.Spec.PodMetricsEndpoints[0].HonorLabels, "consumer: honorLabels off")

	keda := byName["consumer-metrics-keda-pod-monitor"]
	require.NotNil(t, keda, "KEDA PodMonitor")
	pm = decodeRecorded[monitoringv1.PodMonitor](t, keda)
	assert.Equal(t, KedaNamespace, pm.Namespace)
	require.Len(t, pm.Spec.PodMetricsEndpoints, 1)
	assert.True(t, pm.Spec.PodMetricsEndpoints[0].HonorLabels, "KEDA: honorLabels on")
	assert.Equal(t, ptrTo(int32(8080)), pm.Spec.PodMetricsEndpoints[0].PortNumber)
}

func TestMetricsScrapingArgsValidation(t *testing.T) {
	tests := []struct {
		name string
		args func(cluster pulumi.Resource, k8s pulumi.ProviderResource) *MetricsScrapingArgs
		want []string
	}{
		{"nil args", func(pulumi.Resource, pulumi.ProviderResource) *MetricsScrapingArgs { return nil }, []string{"args are required"}},
		{"everything missing", func(pulumi.Resource, pulumi.ProviderResource) *MetricsScrapingArgs {
			return &MetricsScrapingArgs{Settings: DefaultConsumerSettings()}
		}, []string{"Namespace is required", "Cluster is required", "Provider is required"}},
		{"bad settings", func(c pulumi.Resource, k pulumi.ProviderResource) *MetricsScrapingArgs {
			s := DefaultConsumerSettings()
			s.AppLabel = ""
			return &MetricsScrapingArgs{Settings: s, Namespace: pulumi.String("ns"), Cluster: c, Provider: k}
		}, []string{"settings:", "appLabel"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := pulumitest.New("aks-edw", "dev")
			err := m.Run(map[string]string{}, func(ctx *pulumi.Context) error {
				cluster, err := random.NewRandomString(ctx, "cluster", &random.RandomStringArgs{Length: pulumi.Int(6)})
				if err != nil {
					return err
				}
				k8s, err := kubernetes.NewProvider(ctx, "k8s", &kubernetes.ProviderArgs{})
				if err != nil {
					return err
				}
				_, err = NewMetricsScraping(ctx, "metrics", tt.args(cluster, k8s))
				return err
			})
			require.Error(t, err)
			assert.Contains(t, err.Error(), `metrics scraping "metrics": invalid args`)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Empty(t, m.ByType(MetricsScrapingType), "args are validated before anything is registered")
			assert.Empty(t, m.ByType(typePodMonitor), "no PodMonitor on invalid args")
		})
	}
}
