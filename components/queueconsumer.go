package components

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	networkingv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/networking/v1"
	policyv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/policy/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// QueueConsumerType is the component's type token.
const QueueConsumerType = "aks-edw:workload:QueueConsumer"

// PodRunnerTimeout bounds the consumer Deployment's create and update: long enough for node
// autoprovisioning to bring up a node and for new role assignments to propagate (up to about 10
// minutes, docs/cloud-notes.md), well past the Kubernetes provider's 10-minute default.
const PodRunnerTimeout = "30m"

// QueueConsumerArgs are the inputs of NewQueueConsumer. Every field is required unless its
// comment says optional.
type QueueConsumerArgs struct {
	// Settings are the workload settings (required; start from DefaultConsumerSettings).
	Settings ConsumerSettings
	// StorageAccountName is the storage account holding the queue and the table (required).
	StorageAccountName pulumi.StringInput
	// QueueName is the queue the consumer reads and KEDA scales on (required).
	QueueName pulumi.StringInput
	// TableName is the table the consumer writes (required).
	TableName pulumi.StringInput
	// ClientID is the workload identity's client id, NOT its principal (object) id (required).
	ClientID pulumi.StringInput
	// Image is the full consumer image reference (required).
	Image pulumi.StringInput
	// PodsDependOn are the Azure resources the consumer's pods need before they start: the ACR
	// task run that builds Image, the kubelet's AcrPull, the service account's federated
	// credential and the queue and table data roles. The Deployment (or ScaledJob) depends on
	// them (optional; the stack passes all of them).
	PodsDependOn []pulumi.Resource
	// KedaDependsOn are what KEDA needs to read the queue with the workload identity: the KEDA
	// operator restarted with its identity (KedaOperatorIdentity.Restarted), its federated
	// credential and the queue's data role. The ScaledObject (or ScaledJob) and the
	// TriggerAuthentication depend on them (optional; the stack passes all of them).
	KedaDependsOn []pulumi.Resource
	// AddonsReady, when set, resolves once the API server lets the deployer write what the
	// stack deploys and serves the KEDA and Karpenter kinds; every object waits for it
	// (optional; workload.Deploy sets it).
	AddonsReady pulumi.ResourceArrayInput
	// MaintenanceWindow, when set, confines Karpenter's voluntary disruption of the app pool's
	// nodes to it (DisruptionBudgets; optional: no window, Karpenter's default budget).
	MaintenanceWindow *MaintenanceWindow
	// Cluster is the AKS cluster; every Kubernetes object is deleted with it (required).
	Cluster pulumi.Resource
	// Provider is the explicit Kubernetes provider for that cluster (required).
	Provider pulumi.ProviderResource
}

// QueueConsumer is the queue consumer on AKS: namespace, service account federated with the
// workload identity, the consumer scaled by KEDA on queue depth (Deployment + ScaledObject +
// PodDisruptionBudget, or a ScaledJob), the KEDA TriggerAuthentication and the Karpenter
// NodePool its pods run on.
type QueueConsumer struct {
	pulumi.ResourceState

	// Namespace is the workload's namespace.
	Namespace pulumi.StringOutput
	// ServiceAccountName is the pods' service account (the federated credential's subject uses it).
	ServiceAccountName pulumi.StringOutput
	// DeploymentName is the consumer Deployment; empty in ScaledJob mode.
	DeploymentName pulumi.StringOutput
	// ScalerKind is ScaledObject or ScaledJob.
	ScalerKind pulumi.StringOutput
	// ScalerName is the KEDA ScaledObject's or ScaledJob's name.
	ScalerName pulumi.StringOutput
	// TriggerAuthenticationName is the KEDA TriggerAuthentication's name.
	TriggerAuthenticationName pulumi.StringOutput
	// NodePoolName is the Karpenter NodePool's name.
	NodePoolName pulumi.StringOutput
}

// validate reports every missing input and every settings problem at once.
func (a *QueueConsumerArgs) validate() error {
	if a == nil {
		return errors.New("args are required")
	}
	errs := missing(
		arg{"StorageAccountName", a.StorageAccountName != nil},
		arg{"QueueName", a.QueueName != nil},
		arg{"TableName", a.TableName != nil},
		arg{"ClientID", a.ClientID != nil},
		arg{"Image", a.Image != nil},
		arg{"Cluster", a.Cluster != nil},
		arg{"Provider", a.Provider != nil},
	)
	if err := a.Settings.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("settings: %w", err))
	}
	if a.MaintenanceWindow != nil {
		if err := a.MaintenanceWindow.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("MaintenanceWindow: %w", err))
		}
	}
	return errors.Join(errs...)
}

// NewQueueConsumer creates the consumer workload's Kubernetes objects through args.Provider.
func NewQueueConsumer(ctx *pulumi.Context, name string, args *QueueConsumerArgs, opts ...pulumi.ResourceOption) (*QueueConsumer, error) {
	if err := args.validate(); err != nil {
		return nil, fmt.Errorf("queue consumer %q: invalid args: %w", name, err)
	}
	s := args.Settings

	c := &QueueConsumer{}
	if err := ctx.RegisterComponentResource(QueueConsumerType, name, c, opts...); err != nil {
		return nil, fmt.Errorf("registering queue consumer component %q: %w", name, err)
	}
	// DeletedWith is not inherited from the component: every object carries it itself, so
	// `pulumi destroy` does not wait on an API server that is being deleted.
	child := []pulumi.ResourceOption{
		pulumi.Parent(c),
		pulumi.Provider(args.Provider),
		pulumi.DeletedWith(args.Cluster),
	}
	if args.AddonsReady != nil {
		// Every object, the namespace first: on an Entra-only cluster the API server refuses
		// the deployer until its role has propagated, and a refused create is not retried.
		child = append(child, pulumi.DependsOnInputs(args.AddonsReady))
	}

	ns, err := corev1.NewNamespace(ctx, name+"-namespace", namespaceArgs(s), child...)
	if err != nil {
		return nil, fmt.Errorf("creating namespace %q: %w", s.Namespace, err)
	}
	// Namespaced objects take the namespace from this output: created after it, deleted before.
	nsName := ns.Metadata.Name().Elem()

	sa, err := corev1.NewServiceAccount(ctx, name+"-service-account", serviceAccountArgs(s, nsName, args.ClientID), child...)
	if err != nil {
		return nil, fmt.Errorf("creating service account %q: %w", s.ServiceAccountName, err)
	}

	// Options: every object waits for the deployer's access and the add-ons (child); KEDA
	// objects also wait for KEDA's identity; whatever runs the consumer's pods waits for
	// everything the pods need in Azure.
	opt := func(more ...pulumi.ResourceOption) []pulumi.ResourceOption {
		return append(append([]pulumi.ResourceOption{}, child...), more...)
	}
	kedaOpts := opt(pulumi.DependsOn(args.KedaDependsOn))

	auth, err := apiextensions.NewCustomResource(ctx, name+"-trigger-auth", triggerAuthenticationArgs(s, nsName, args.ClientID), kedaOpts...)
	if err != nil {
		return nil, fmt.Errorf("creating KEDA TriggerAuthentication %q: %w", s.TriggerAuthenticationName, err)
	}

	if _, err := networkingv1.NewNetworkPolicy(ctx, name+"-network-policy", networkPolicyArgs(s, nsName), child...); err != nil {
		return nil, fmt.Errorf("creating network policy %q: %w", NetworkPolicyName(s), err)
	}

	pool, err := apiextensions.NewCustomResource(ctx, name+"-node-pool", nodePoolArgs(s, args.MaintenanceWindow), child...)
	if err != nil {
		return nil, fmt.Errorf("creating Karpenter NodePool %q: %w", s.NodePoolName, err)
	}

	in := consumerInputs{
		Namespace:                 nsName,
		StorageAccountName:        args.StorageAccountName,
		QueueName:                 args.QueueName,
		TableName:                 args.TableName,
		ClientID:                  args.ClientID,
		Image:                     args.Image,
		ServiceAccountName:        sa.Metadata.Name().Elem(),
		TriggerAuthenticationName: auth.Metadata.Name().Elem(),
	}

	var deploymentName, scalerName pulumi.StringOutput
	switch s.ScaleMode {
	case ScaleModeScaledJob:
		// A KEDA object that also runs the pods: it waits for both.
		job, err := apiextensions.NewCustomResource(ctx, name+"-scaled-job", scaledJobArgs(s, in),
			opt(pulumi.DependsOn(append(append([]pulumi.Resource{}, args.PodsDependOn...), args.KedaDependsOn...)))...)
		if err != nil {
			return nil, fmt.Errorf("creating KEDA ScaledJob %q: %w", s.ScaledJobName, err)
		}
		deploymentName = pulumi.String("").ToStringOutput()
		scalerName = job.Metadata.Name().Elem()
	default: // ScaleModeScaledObject; Validate rejected anything else.
		// The rollout waits for a NAP node and for the consumer to reach storage, which it cannot
		// until new role assignments propagate: the timeouts cover both.
		dep, err := appsv1.NewDeployment(ctx, name+"-deployment", deploymentArgs(s, in),
			opt(pulumi.DependsOn(args.PodsDependOn), pulumi.Timeouts(&pulumi.CustomTimeouts{Create: PodRunnerTimeout, Update: PodRunnerTimeout}))...)
		if err != nil {
			return nil, fmt.Errorf("creating deployment %q: %w", s.DeploymentName, err)
		}
		if _, err := policyv1.NewPodDisruptionBudget(ctx, name+"-pdb", podDisruptionBudgetArgs(s, nsName), child...); err != nil {
			return nil, fmt.Errorf("creating pod disruption budget for %q: %w", s.DeploymentName, err)
		}
		deploymentName = dep.Metadata.Name().Elem()
		so, err := apiextensions.NewCustomResource(ctx, name+"-scaled-object", scaledObjectArgs(s, in, deploymentName), kedaOpts...)
		if err != nil {
			return nil, fmt.Errorf("creating KEDA ScaledObject %q: %w", s.ScaledObjectName, err)
		}
		scalerName = so.Metadata.Name().Elem()
	}

	c.Namespace = nsName
	c.ServiceAccountName = sa.Metadata.Name().Elem()
	c.DeploymentName = deploymentName
	c.ScalerKind = pulumi.String(s.ScaleMode).ToStringOutput()
	c.ScalerName = scalerName
	c.TriggerAuthenticationName = auth.Metadata.Name().Elem()
	c.NodePoolName = pool.Metadata.Name().Elem()

	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{
		"namespace":                 c.Namespace,
		"serviceAccountName":        c.ServiceAccountName,
		"deploymentName":            c.DeploymentName,
		"scalerKind":                c.ScalerKind,
		"scalerName":                c.ScalerName,
		"triggerAuthenticationName": c.TriggerAuthenticationName,
		"nodePoolName":              c.NodePoolName,
	}); err != nil {
		return nil, fmt.Errorf("registering outputs of queue consumer %q: %w", name, err)
	}
	return c, nil
}
