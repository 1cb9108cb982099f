package workload

import (
	"context"
	"fmt"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

const (
	typePodMonitor   = "kubernetes:azmonitoring.coreos.com/v1:PodMonitor"
	typeNamespace    = "kubernetes:core/v1:Namespace"
	podMonitorsGroup = "/apis/azmonitoring.coreos.com/v1"
)

// withMetrics is the add-on discovery plus what the managed Prometheus add-on installs, served
// with the given resources in its group-version document.
func withMetrics(resources ...string) map[string]any {
	out := without()
	var rs []any
	for _, r := range resources {
		rs = append(rs, map[string]any{"name": r, "namespaced": true})
	}
	out[podMonitorsGroup] = map[string]any{"kind": "APIResourceList", "apiVersion": "v1",
		"groupVersion": "azmonitoring.coreos.com/v1", "resources": rs}
	return out
}

// The PodMonitor kind is in the wait only when the stack scrapes metrics; the base list is kept.
func TestRequiredAddonsDependOnScrapeMetrics(t *testing.T) {
	// Put the shared lists back whatever happens, so a failure here does not leave the other
	// tests waiting for a path that does not exist.
	saved, savedMetrics := append([]addonPath{}, RequiredAddons...), append([]addonPath{}, MetricsAddons...)
	defer func() { copy(RequiredAddons, saved); copy(MetricsAddons, savedMetrics) }()

	off := requiredAddons(false, true, "ns")
	assert.Equal(t, RequiredAddons, off, "ScrapeMetrics false: the wait list is unchanged")
	for _, p := range off {
		assert.NotEqual(t, podMonitorsGroup, p.Path, "ScrapeMetrics false must not wait for %s", p.What)
	}

	on := requiredAddons(true, true, "ns")
	require.Len(t, on, len(RequiredAddons)+1)
	assert.Equal(t, RequiredAddons, on[:len(RequiredAddons)], "ScrapeMetrics true keeps every base path")
	last := on[len(on)-1]
	assert.Equal(t, podMonitorsGroup, last.Path)
	assert.Equal(t, "podmonitors", last.Resource)

	// The results are copies: editing them does not change the shared lists.
	before := RequiredAddons[0]
	on[0].Path = "/changed"
	off[0].Path = "/changed"
	on[len(on)-1].Path = "/changed"
	assert.Equal(t, before, RequiredAddons[0])
	assert.Equal(t, podMonitorsGroup, MetricsAddons[0].Path)
}

// Against the harness's API server: the managed Prometheus add-on's kind is waited for, named
// when missing (group absent, or served without podmonitors yet), and not waited for when the
// stack does not scrape metrics.
func TestWaitForAddonsPodMonitorKind(t *testing.T) {
	tests := []struct {
		name          string
		served        map[string]any
		scrapeMetrics bool
		wantErr       bool
	}{
		{"served, scraping", withMetrics("podmonitors", "servicemonitors"), true, false},
		{"group missing, scraping", without(podMonitorsGroup), true, true},
		{"kind not established yet, scraping", withMetrics("servicemonitors"), true, true},
		{"group missing, not scraping", without(podMonitorsGroup), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, kc := pulumitest.NewAPIServer(tt.served)
			defer srv.Close()
			err := WaitForAddons(context.Background(), kc, requiredAddons(tt.scrapeMetrics, true, "ns"), fast)
			if !tt.wantErr {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "Azure Monitor's PodMonitor kind (azmonitoring.coreos.com/v1 podmonitors")
			assert.Contains(t, err.Error(), "that managed Prometheus is enabled")
			assert.NotContains(t, err.Error(), "KEDA's ScaledObject kind", "only what is missing is named")
		})
	}
}

// ScrapeMetrics false: Deploy creates nothing new, and a cluster without the managed Prometheus
// add-on is fine. ScrapeMetrics true: the component and both PodMonitors, through the provider,
// deleted with the cluster, parented, the consumer's in the consumer's namespace.
func TestDeployScrapeMetrics(t *testing.T) {
	for _, scrape := range []bool{false, true} {
		for _, mode := range []string{components.ScaleModeScaledObject, components.ScaleModeScaledJob} {
			t.Run(fmt.Sprintf("scrape=%v/%s", scrape, mode), func(t *testing.T) {
				served := without(podMonitorsGroup)
				if scrape {
					served = withMetrics("podmonitors", "servicemonitors")
				}
				srv, kc := pulumitest.NewAPIServer(served)
				defer srv.Close()
				s := components.DefaultConsumerSettings()
				s.ScaleMode = mode
				m, err := deploy(t, s, func(a *Args) {
					a.Kubeconfig = pulumi.String(kc).ToStringOutput()
					a.AddonWait = fast
					a.ScrapeMetrics = scrape
				})
				require.NoError(t, err)
				p := m.Get(t, typeK8sProvider, "consumer-k8s")
				cluster := m.Get(t, typeCluster, "cluster")
				n := pulumitest.CheckKubernetesObjects(t, m, p, cluster)
				base := map[string]int{components.ScaleModeScaledObject: 10, components.ScaleModeScaledJob: 8}[mode]

				if !scrape {
					assert.Equal(t, base, n, "no new Kubernetes object")
					assert.Empty(t, m.ByType(components.MetricsScrapingType), "no metrics component")
					assert.Empty(t, m.ByType(typePodMonitor), "no PodMonitor")
					return
				}
				assert.Equal(t, base+2, n, "the two PodMonitors on top")
				component := m.Get(t, components.MetricsScrapingType, "consumer-metrics")
				monitors := m.ByType(typePodMonitor)
				require.Len(t, monitors, 2)
				for _, r := range monitors {
					assert.Equal(t, component.URN, r.Parent, "%s: parent", r.Name)
				}
				consumer := m.Get(t, typePodMonitor, "consumer-metrics-consumer-pod-monitor")
				assert.Equal(t, s.Namespace, consumer.Input("metadata.namespace"))
				assert.True(t, consumer.DependsOn(m.Get(t, typeNamespace, "consumer-namespace")),
					"the consumer's PodMonitor takes the consumer's namespace from its output")
				assert.Equal(t, s.AppLabel, consumer.Input("spec.selector.matchLabels.app"))
				keda := m.Get(t, typePodMonitor, "consumer-metrics-keda-pod-monitor")
				assert.Equal(t, components.KedaNamespace, keda.Input("metadata.namespace"))
				assert.Equal(t, true, keda.Input("spec.podMetricsEndpoints.0.honorLabels"))
			})
		}
	}
}

// Through Deploy: with ScrapeMetrics and a cluster that does not serve the PodMonitor kind yet,
// `pulumi up` fails with the wait's message and registers no PodMonitor: both wait for the
// add-on.
func TestDeployScrapeMetricsWaitsForPodMonitorKind(t *testing.T) {
	for name, served := range map[string]map[string]any{
		"group missing":            without(podMonitorsGroup),
		"kind not established yet": withMetrics("servicemonitors"),
	} {
		t.Run(name, func(t *testing.T) {
			srv, kc := pulumitest.NewAPIServer(served)
			defer srv.Close()
			m, err := deploy(t, components.DefaultConsumerSettings(), func(a *Args) {
				a.Kubeconfig = pulumi.String(kc).ToStringOutput()
				a.AddonWait = fast
				a.ScrapeMetrics = true
			})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "waiting for the deployer's access and the cluster's add-ons")
			assert.Contains(t, err.Error(), "Azure Monitor's PodMonitor kind")
			assert.Empty(t, m.ByType(typePodMonitor), "no PodMonitor before the add-on serves the kind")
		})
	}
}
