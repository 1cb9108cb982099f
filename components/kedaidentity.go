package components

import (
	"errors"
	"fmt"

	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// KedaOperatorIdentityType is the component's type token.
const KedaOperatorIdentityType = "aks-edw:workload:KedaOperatorIdentity"

// KedaIdentityAnnotation is the pod-template annotation that carries the identity's client id on
// the KEDA operator: a new value rolls the operator out, so its new pods are created after the
// federated credential exists and get the workload identity webhook's injection.
const KedaIdentityAnnotation = "aks-edw.io/keda-workload-identity-client-id"

// KedaOperatorIdentityArgs are the inputs of NewKedaOperatorIdentity. Every field is required
// except DependsOn.
type KedaOperatorIdentityArgs struct {
	// ClientID is the workload identity's client id (not its principal id) (required).
	ClientID pulumi.StringInput
	// DependsOn are what the operator's identity needs before it restarts: the keda-operator
	// federated credential and the queue's data role (optional, but the stack passes them).
	DependsOn []pulumi.Resource
	// Cluster is the AKS cluster; both patches are deleted with it (required).
	Cluster pulumi.Resource
	// Provider is the explicit Kubernetes provider for that cluster (required).
	Provider pulumi.ProviderResource
}

// KedaOperatorIdentity makes the AKS KEDA add-on's operator use the workload identity, as the AKS
// documentation for the add-on with workload identity does by hand (docs/cloud-notes.md):
// it annotates the kube-system/keda-operator service account with the identity's client id and
// restarts the operator, whose pods must be created after the identity exists for the workload
// identity webhook to inject AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE.
// Both are server-side apply patches of objects the add-on owns: only the fields set here are
// managed, and deleting the component removes just those fields.
type KedaOperatorIdentity struct {
	pulumi.ResourceState

	// Restarted completes once the operator has rolled out with the identity; KEDA objects that
	// authenticate with it depend on it.
	Restarted *appsv1.DeploymentPatch
}

func (a *KedaOperatorIdentityArgs) validate() error {
	if a == nil {
		return errors.New("args are required")
	}
	return errors.Join(missing(
		arg{"ClientID", a.ClientID != nil},
		arg{"Cluster", a.Cluster != nil},
		arg{"Provider", a.Provider != nil},
	)...)
}

// kedaServiceAccountPatchArgs annotates the operator's service account with the client id.
func kedaServiceAccountPatchArgs(clientID pulumi.StringInput) *corev1.ServiceAccountPatchArgs {
	return &corev1.ServiceAccountPatchArgs{
		Metadata: &metav1.ObjectMetaPatchArgs{
			Name:        pulumi.String(KedaOperatorName),
			Namespace:   pulumi.String(KedaNamespace),
			Annotations: pulumi.StringMap{workloadIdentityClientIDAnnotation: clientID},
		},
	}
}

// kedaDeploymentPatchArgs labels the operator's pods for the workload identity webhook and
// stamps the client id on the pod template, which rolls the operator out when it changes.
func kedaDeploymentPatchArgs(clientID pulumi.StringInput) *appsv1.DeploymentPatchArgs {
	return &appsv1.DeploymentPatchArgs{
		Metadata: &metav1.ObjectMetaPatchArgs{
			Name:      pulumi.String(KedaOperatorName),
			Namespace: pulumi.String(KedaNamespace),
		},
		Spec: &appsv1.DeploymentSpecPatchArgs{
			Template: &corev1.PodTemplateSpecPatchArgs{
				Metadata: &metav1.ObjectMetaPatchArgs{
					Labels:      pulumi.StringMap{workloadIdentityUseLabel: pulumi.String("true")},
					Annotations: pulumi.StringMap{KedaIdentityAnnotation: clientID},
				},
			},
		},
	}
}

// NewKedaOperatorIdentity patches the KEDA add-on's operator to use the workload identity.
// Extra options (e.g. pulumi.DependsOnInputs of an add-on readiness output) go to both patches.
func NewKedaOperatorIdentity(ctx *pulumi.Context, name string, args *KedaOperatorIdentityArgs, opts ...pulumi.ResourceOption) (*KedaOperatorIdentity, error) {
	if err := args.validate(); err != nil {
		return nil, fmt.Errorf("KEDA operator identity %q: invalid args: %w", name, err)
	}
	k := &KedaOperatorIdentity{}
	if err := ctx.RegisterComponentResource(KedaOperatorIdentityType, name, k); err != nil {
		return nil, fmt.Errorf("registering KEDA operator identity %q: %w", name, err)
	}
	child := append([]pulumi.ResourceOption{
		pulumi.Parent(k), pulumi.Provider(args.Provider), pulumi.DeletedWith(args.Cluster),
	}, opts...)
	sa, err := corev1.NewServiceAccountPatch(ctx, name+"-service-account", kedaServiceAccountPatchArgs(args.ClientID), child...)
	if err != nil {
		return nil, fmt.Errorf("annotating the KEDA operator's service account: %w", err)
	}
	after := append([]pulumi.Resource{sa}, args.DependsOn...)
	restart, err := appsv1.NewDeploymentPatch(ctx, name+"-restart", kedaDeploymentPatchArgs(args.ClientID),
		append(child, pulumi.DependsOn(after))...)
	if err != nil {
		return nil, fmt.Errorf("restarting the KEDA operator with its identity: %w", err)
	}
	k.Restarted = restart
	if err := ctx.RegisterResourceOutputs(k, pulumi.Map{
		"serviceAccount": sa.Metadata.Name(),
		"deployment":     restart.Metadata.Name(),
	}); err != nil {
		return nil, fmt.Errorf("registering outputs of KEDA operator identity %q: %w", name, err)
	}
	return k, nil
}
