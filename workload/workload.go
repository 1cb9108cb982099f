// Package workload is the Kubernetes side of the stack: an explicit Kubernetes provider built
// from the AKS cluster's kubeconfig, and the queue consumer deployed through it (SPEC §4).
package workload

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/aks-edw/aks-edw/components"
)

// Args are the inputs of Deploy.
type Args struct {
	// Kubeconfig is the cluster's kubeconfig (YAML), from its credentials; treated as a secret
	// whether or not it already is (required).
	Kubeconfig pulumi.StringOutput
	// Cluster is the ManagedCluster; the provider and every object are deleted with it (required).
	Cluster pulumi.Resource
	// Settings are the consumer workload's settings (required; validated here).
	Settings components.ConsumerSettings
	// StorageAccountName, QueueName and TableName locate the queue and table (required).
	StorageAccountName, QueueName, TableName pulumi.StringInput
	// ClientID is the workload identity's client id, not its principal id (required).
	ClientID pulumi.StringInput
	// Image is the consumer image reference: the prebuilt `image` setting or the one the stack
	// builds (required).
	Image pulumi.StringInput
	// PodsDependOn are the Azure resources the consumer's pods need before they start: the
	// image build (when there is one), the kubelet's AcrPull, the service account's federated
	// credential and the data roles. The Deployment or ScaledJob waits for them.
	PodsDependOn []pulumi.Resource
	// KedaDependsOn are what KEDA's operator needs to read the queue with the identity: its
	// federated credential and the queue's data role. The operator restarts after them, and the
	// KEDA objects wait for that restart.
	KedaDependsOn []pulumi.Resource
	// AddonWait bounds the wait for the cluster's add-ons (optional; 15 minutes by default).
	AddonWait AddonWait
	// ScrapeMetrics is true when the stack runs Azure Monitor managed Prometheus (the cluster's
	// azureMonitorProfile.metrics): Deploy then creates PodMonitors for the consumer's and the
	// KEDA operator's metrics (components.MetricsScraping named name+"-metrics"), and the add-on
	// wait also waits for the azmonitoring.coreos.com/v1 PodMonitor kind (optional; default
	// false: no PodMonitor, and nothing waits for that add-on).
	ScrapeMetrics bool
	// KubernetesAccess are resources the deployer's access to the Kubernetes API depends on (its
	// Azure RBAC role on an Entra-only cluster): the provider, so every object, and the add-on
	// wait come after them. Optional.
	KubernetesAccess []pulumi.Resource
	// MaintenanceWindow, when set, confines Karpenter's voluntary disruption of the app pool to it
	// (components.DisruptionBudgets). Optional.
	MaintenanceWindow *components.MaintenanceWindow
}

// Workload is what Deploy created.
type Workload struct {
	// Consumer is the queue consumer component.
	Consumer *components.QueueConsumer
	// KedaIdentity makes the KEDA add-on's operator use the workload identity.
	KedaIdentity *components.KedaOperatorIdentity
	// Metrics are the consumer's and KEDA's PodMonitors; nil unless Args.ScrapeMetrics.
	Metrics *components.MetricsScraping
}

func (a Args) validate() error {
	var errs []error
	if a.Kubeconfig.OutputState == nil {
		errs = append(errs, errors.New("args.Kubeconfig is required"))
	}
	if a.Cluster == nil {
		errs = append(errs, errors.New("args.Cluster is required"))
	}
	for _, in := range []struct {
		name string
		v    pulumi.StringInput
	}{
		{"StorageAccountName", a.StorageAccountName},
		{"QueueName", a.QueueName},
		{"TableName", a.TableName},
		{"ClientID", a.ClientID},
		{"Image", a.Image},
	} {
		if in.v == nil {
			errs = append(errs, fmt.Errorf("args.%s is required", in.name))
		}
	}
	if err := a.Settings.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("settings: %w", err))
	}
	return errors.Join(errs...)
}

// providerArgs is the explicit Kubernetes provider for the cluster.
func providerArgs(kubeconfig pulumi.StringOutput, clusterIdentifier pulumi.StringInput) (*kubernetes.ProviderArgs, error) {
	secret, ok := pulumi.ToSecret(kubeconfig).(pulumi.StringOutput)
	if !ok {
		return nil, errors.New("marking the kubeconfig secret did not yield a string output")
	}
	return &kubernetes.ProviderArgs{
		Kubeconfig: secret,
		// Replace the provider (and so every object) only when the cluster itself is replaced,
		// not when its credentials rotate and the kubeconfig text changes.
		ClusterIdentifier: clusterIdentifier,
		// Set explicitly so PULUMI_K8S_* variables on a workstation cannot change behaviour.
		EnableServerSideApply: pulumi.Bool(true),
		// If the cluster is gone (deleted outside Pulumi, or a half-finished destroy), drop its
		// objects from state instead of failing: they cannot outlive the cluster anyway.
		DeleteUnreachable: pulumi.Bool(true),
	}, nil
}

// clusterIdentifier is the cluster's resource id when it has one (a replaced cluster gets a new
// id, and its objects must be recreated in it), else its URN.
func clusterIdentifier(cluster pulumi.Resource) pulumi.StringInput {
	if cr, ok := cluster.(pulumi.CustomResource); ok {
		return cr.ID().ToStringOutput()
	}
	return cluster.URN().ToStringOutput()
}

// Deploy creates the explicit Kubernetes provider for the cluster and, through it, the KEDA
// operator's identity (components.KedaOperatorIdentity named name+"-keda-identity") and the
// queue consumer (components.QueueConsumer named name), and with args.ScrapeMetrics the
// PodMonitors that have managed Prometheus scrape them (components.MetricsScraping named
// name+"-metrics"). Objects that need the cluster's add-ons (KEDA, node autoprovisioning,
// managed Prometheus) wait until the API server serves them.
func Deploy(ctx *pulumi.Context, name string, args Args) (*Workload, error) {
	if err := args.validate(); err != nil {
		return nil, fmt.Errorf("workload %q: invalid args: %w", name, err)
	}
	pargs, err := providerArgs(args.Kubeconfig, clusterIdentifier(args.Cluster))
	if err != nil {
		return nil, fmt.Errorf("building Kubernetes provider args for %q: %w", name, err)
	}
	provider, err := kubernetes.NewProvider(ctx, name+"-k8s", pargs, pulumi.DeletedWith(args.Cluster), pulumi.DependsOn(args.KubernetesAccess))
	if err != nil {
		return nil, fmt.Errorf("creating Kubernetes provider %q: %w", name+"-k8s", err)
	}
	// Every object waits until the API server lets the deployer write what the stack deploys
	// (its Azure RBAC role propagates for up to five minutes after the grant exists) and serves
	// the add-ons' kinds.
	wait := args.AddonWait
	wait.Preview = ctx.DryRun()
	ready := addonsReady(ctx, afterAccess(args.Kubeconfig, args.KubernetesAccess),
		requiredAddons(args.ScrapeMetrics, wait.Preview, args.Settings.Namespace), wait)
	keda, err := components.NewKedaOperatorIdentity(ctx, name+"-keda-identity", &components.KedaOperatorIdentityArgs{
		ClientID:  args.ClientID,
		DependsOn: args.KedaDependsOn,
		Cluster:   args.Cluster,
		Provider:  provider,
	}, pulumi.DependsOnInputs(ready))
	if err != nil {
		return nil, fmt.Errorf("deploying the KEDA operator's identity for %q: %w", name, err)
	}
	consumer, err := components.NewQueueConsumer(ctx, name, &components.QueueConsumerArgs{
		Settings:           args.Settings,
		StorageAccountName: args.StorageAccountName,
		QueueName:          args.QueueName,
		TableName:          args.TableName,
		ClientID:           args.ClientID,
		Image:              args.Image,
		PodsDependOn:       args.PodsDependOn,
		KedaDependsOn:      append(append([]pulumi.Resource{}, args.KedaDependsOn...), keda.Restarted),
		AddonsReady:        ready,
		MaintenanceWindow:  args.MaintenanceWindow,
		Cluster:            args.Cluster,
		Provider:           provider,
	})
	if err != nil {
		return nil, fmt.Errorf("deploying queue consumer %q: %w", name, err)
	}
	w := &Workload{Consumer: consumer, KedaIdentity: keda}
	if args.ScrapeMetrics {
		// After the consumer: its PodMonitor goes into the consumer's namespace, whose output
		// name it takes.
		w.Metrics, err = components.NewMetricsScraping(ctx, name+"-metrics", &components.MetricsScrapingArgs{
			Settings:    args.Settings,
			Namespace:   consumer.Namespace,
			AddonsReady: ready,
			Cluster:     args.Cluster,
			Provider:    provider,
		})
		if err != nil {
			return nil, fmt.Errorf("deploying metrics scraping for %q: %w", name, err)
		}
	}
	return w, nil
}

// afterAccess is the kubeconfig, resolved only once the access resources exist (their ids are
// known), so the add-on wait does not poll before the deployer's role is even assigned.
func afterAccess(kubeconfig pulumi.StringOutput, access []pulumi.Resource) pulumi.StringOutput {
	if len(access) == 0 {
		return kubeconfig
	}
	inputs := []any{kubeconfig}
	for _, r := range access {
		if cr, ok := r.(pulumi.CustomResource); ok {
			inputs = append(inputs, cr.ID())
		} else {
			inputs = append(inputs, r.URN())
		}
	}
	return pulumi.All(inputs...).ApplyT(func(v []any) string { return v[0].(string) }).(pulumi.StringOutput)
}
