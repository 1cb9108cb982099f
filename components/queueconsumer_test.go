package components

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/pulumi/pulumi-azure-native-sdk/managedidentity/v3"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	karpv1 "sigs.k8s.io/karpenter/pkg/apis/v1"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

// Type tokens of what the component registers.
const (
	typeNamespace      = "kubernetes:core/v1:Namespace"
	typeServiceAccount = "kubernetes:core/v1:ServiceAccount"
	typeDeployment     = "kubernetes:apps/v1:Deployment"
	typePDB            = "kubernetes:policy/v1:PodDisruptionBudget"
	typeScaledObject   = "kubernetes:keda.sh/v1alpha1:ScaledObject"
	typeScaledJob      = "kubernetes:keda.sh/v1alpha1:ScaledJob"
	typeTriggerAuth    = "kubernetes:keda.sh/v1alpha1:TriggerAuthentication"
	typeNodePool       = "kubernetes:karpenter.sh/v1:NodePool"
	typeNetworkPolicy  = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
	typeK8sProvider    = "pulumi:providers:kubernetes"
	typeStandInCluster = "random:index/randomString:RandomString"
	typeIdentity       = "azure-native:managedidentity:UserAssignedIdentity"
)

// consumerRun is one run of the component under the mocks.
type consumerRun struct {
	m *pulumitest.Mocks
	// outputs are the component's outputs, resolved.
	outputs map[string]string
}

// Literal inputs of the mock runs; the client id comes from a mock UserAssignedIdentity.
const (
	mockStorageAccount = "storaksdemox7k2p9"
	mockQueue          = "aws2azmsgs"
	mockTable          = "aws2azpmts"
	mockImage          = "acraksdemox7k2p9.azurecr.io/aws2azure/aqs-consumer:v1"
	mockIdentityName   = "mi-aks-workload-identity-x7k2p9"
)

// runConsumer runs NewQueueConsumer named "consumer" under the mocks, with a stand-in cluster,
// an explicit Kubernetes provider and a workload identity whose client and principal ids differ.
func runConsumer(t *testing.T, s ConsumerSettings) consumerRun {
	t.Helper()
	run := consumerRun{m: pulumitest.New("aks-edw", "dev"), outputs: map[string]string{}}
	err := run.m.Run(map[string]string{}, func(ctx *pulumi.Context) error {
		cluster, err := random.NewRandomString(ctx, "cluster", &random.RandomStringArgs{Length: pulumi.Int(6), Special: pulumi.Bool(false)})
		if err != nil {
			return err
		}
		k8s, err := kubernetes.NewProvider(ctx, "k8s", &kubernetes.ProviderArgs{Kubeconfig: pulumi.ToSecret(pulumi.String(pulumitest.Kubeconfig())).(pulumi.StringOutput)})
		if err != nil {
			return err
		}
		identity, err := managedidentity.NewUserAssignedIdentity(ctx, "identity", &managedidentity.UserAssignedIdentityArgs{
			ResourceGroupName: pulumi.String("rg-aksdemo-x7k2p9"),
			ResourceName:      pulumi.String(mockIdentityName),
		})
		if err != nil {
			return err
		}
		c, err := NewQueueConsumer(ctx, "consumer", &QueueConsumerArgs{
			Settings:           s,
			StorageAccountName: pulumi.String(mockStorageAccount),
			QueueName:          pulumi.String(mockQueue),
			TableName:          pulumi.String(mockTable),
			ClientID:           identity.ClientId,
			Image:              pulumi.String(mockImage),
			Cluster:            cluster,
			Provider:           k8s,
		})
		if err != nil {
			return err
		}
		for key, o := range map[string]pulumi.StringOutput{
			"namespace": c.Namespace, "serviceAccountName": c.ServiceAccountName, "deploymentName": c.DeploymentName,
			"scalerKind": c.ScalerKind, "scalerName": c.ScalerName,
			"triggerAuthenticationName": c.TriggerAuthenticationName, "nodePoolName": c.NodePoolName,
		} {
			// Await each output: an ApplyT on an output built without the context
			// (pulumi.String(...).ToStringOutput()) is not waited for by the run.
			res, err := internals.UnsafeAwaitOutput(ctx.Context(), o)
			if err != nil {
				return fmt.Errorf("resolving output %s: %w", key, err)
			}
			v, _ := res.Value.(string)
			run.outputs[key] = v
		}
		return nil
	})
	require.NoError(t, err)
	return run
}

// kubernetesObjects are the recorded Kubernetes objects (not the provider).
func (r consumerRun) kubernetesObjects() []*pulumitest.Resource {
	var out []*pulumitest.Resource
	for _, res := range r.m.Resources() {
		if strings.HasPrefix(res.Type, "kubernetes:") {
			out = append(out, res)
		}
	}
	return out
}

// decodeRecorded strictly decodes one recorded resource's inputs into an API type.
func decodeRecorded[T any](t *testing.T, r *pulumitest.Resource) T {
	t.Helper()
	data, err := r.JSON()
	require.NoError(t, err)
	return decodeStrict[T](t, r.Type+" "+r.Name, data)
}

func TestQueueConsumerInventory(t *testing.T) {
	tests := []struct {
		mode   string
		want   []string // type tokens of the Kubernetes objects, sorted
		absent []string
	}{
		{ScaleModeScaledObject,
			[]string{typeDeployment, typeNamespace, typeServiceAccount, typeNodePool, typeScaledObject, typeTriggerAuth, typePDB, typeNetworkPolicy},
			[]string{typeScaledJob}},
		{ScaleModeScaledJob,
			[]string{typeNamespace, typeServiceAccount, typeNodePool, typeScaledJob, typeTriggerAuth, typeNetworkPolicy},
			[]string{typeDeployment, typePDB, typeScaledObject}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			s := DefaultConsumerSettings()
			s.ScaleMode = tt.mode
			run := runConsumer(t, s)
			var got []string
			for _, r := range run.kubernetesObjects() {
				got = append(got, r.Type)
				assert.True(t, strings.HasPrefix(r.Name, "consumer-"), "%s %q: logical name derived from the component's", r.Type, r.Name)
			}
			sort.Strings(got)
			sort.Strings(tt.want)
			assert.Equal(t, tt.want, got)
			for _, typ := range tt.absent {
				assert.Empty(t, run.m.ByType(typ), "%s must not exist in %s mode", typ, tt.mode)
			}
			component := run.m.One(t, QueueConsumerType)
			assert.Equal(t, "consumer", component.Name)
		})
	}
}

// SPEC §7.8: every Kubernetes object uses the explicit provider and is deleted with the cluster.
func TestQueueConsumerProviderDeletedWithParent(t *testing.T) {
	for _, mode := range []string{ScaleModeScaledObject, ScaleModeScaledJob} {
		t.Run(mode, func(t *testing.T) {
			s := DefaultConsumerSettings()
			s.ScaleMode = mode
			run := runConsumer(t, s)
			provider := run.m.One(t, typeK8sProvider)
			cluster := run.m.Get(t, typeStandInCluster, "cluster")
			component := run.m.One(t, QueueConsumerType)
			objects := run.kubernetesObjects()
			require.NotEmpty(t, objects)
			for _, r := range objects {
				assert.Equal(t, provider.URN, pulumitest.ProviderURN(r.Provider), "%s %s: provider", r.Type, r.Name)
				assert.Equal(t, cluster.URN, r.DeletedWith, "%s %s: deletedWith", r.Type, r.Name)
				assert.Equal(t, component.URN, r.Parent, "%s %s: parent", r.Type, r.Name)
			}
		})
	}
}

// Namespaced objects get the namespace from the Namespace's output (a data dependency), the
// cluster-scoped NodePool has none.
func TestQueueConsumerNamespaceDataFlow(t *testing.T) {
	for _, mode := range []string{ScaleModeScaledObject, ScaleModeScaledJob} {
		t.Run(mode, func(t *testing.T) {
			s := DefaultConsumerSettings()
			s.ScaleMode = mode
			run := runConsumer(t, s)
			ns := run.m.One(t, typeNamespace)
			for _, r := range run.kubernetesObjects() {
				switch r.Type {
				case typeNamespace:
				case typeNodePool:
					assert.Nil(t, r.Input("metadata.namespace"), "NodePool is cluster-scoped")
					assert.False(t, r.DependsOn(ns), "NodePool does not wait for the namespace")
				default:
					assert.Equal(t, "aqs-demo", r.Input("metadata.namespace"), "%s metadata.namespace", r.Type)
					assert.True(t, r.DependsOn(ns), "%s must depend on the Namespace through its output", r.Type)
				}
			}
			if mode == ScaleModeScaledObject {
				so := run.m.One(t, typeScaledObject)
				assert.True(t, so.DependsOn(run.m.One(t, typeDeployment)), "ScaledObject follows its Deployment's output name")
				assert.True(t, so.DependsOn(run.m.One(t, typeTriggerAuth)), "ScaledObject follows its TriggerAuthentication")
			}
		})
	}
}

// Every recorded object decodes strictly into its real API type; the decoded objects carry the
// decisions (SPEC §4, §7.6, §7.10).
func TestQueueConsumerScaledObjectModeObjects(t *testing.T) {
	s := DefaultConsumerSettings()
	run := runConsumer(t, s)
	identity := run.m.One(t, typeIdentity)
	clientID, principalID := identity.Output("clientId"), identity.Output("principalId")
	require.NotEqual(t, clientID, principalID)

	ns := decodeRecorded[corev1.Namespace](t, run.m.One(t, typeNamespace))
	assert.Equal(t, "aqs-demo", ns.Name)

	sa := decodeRecorded[corev1.ServiceAccount](t, run.m.One(t, typeServiceAccount))
	assert.Equal(t, "aqs-app-service-account", sa.Name)
	assert.Equal(t, clientID, sa.Annotations["azure.workload.identity/client-id"], "SA annotation is the client id")

	ta := decodeRecorded[kedav1alpha1.TriggerAuthentication](t, run.m.One(t, typeTriggerAuth))
	assert.Equal(t, "keda-az-credentials", ta.Name)
	require.NotNil(t, ta.Spec.PodIdentity)
	assert.Equal(t, kedav1alpha1.PodIdentityProviderAzureWorkload, ta.Spec.PodIdentity.Provider)
	require.NotNil(t, ta.Spec.PodIdentity.IdentityID)
	assert.Equal(t, clientID, *ta.Spec.PodIdentity.IdentityID, "identityId must be the client id (SPEC §7.6)")
	assert.NotEqual(t, principalID, *ta.Spec.PodIdentity.IdentityID, "identityId must not be the principal id")

	dep := decodeRecorded[appsv1.Deployment](t, run.m.One(t, typeDeployment))
	assert.Equal(t, "aqs-app", dep.Name)
	require.NotNil(t, dep.Spec.Selector)
	assert.Equal(t, map[string]string{"app": "aqs-reader"}, dep.Spec.Selector.MatchLabels)
	pod := dep.Spec.Template
	assert.Equal(t, "aqs-reader", pod.Labels["app"], "pod template matches the selector")
	assert.Equal(t, "true", pod.Labels["azure.workload.identity/use"], "SPEC §7.10: workload identity label")
	assert.Equal(t, sa.Name, pod.Spec.ServiceAccountName, "SPEC §7.10: the federated service account")
	netpol := decodeRecorded[networkingv1.NetworkPolicy](t, run.m.One(t, typeNetworkPolicy))
	assertSelects(t, netpol.Spec.PodSelector, pod.Labels, "the NetworkPolicy applies to the Deployment's pods")
	c := pod.Spec.Containers[0]
	assert.Equal(t, mockImage, c.Image)
	env := envMap(c)
	assert.Equal(t, mockQueue, env["AZURE_QUEUE_NAME"])
	assert.Equal(t, mockStorageAccount, env["AZURE_STORAGE_ACCOUNT_NAME"])
	assert.Equal(t, mockTable, env["AZURE_TABLE_NAME"])
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, ptrTo(true), c.SecurityContext.ReadOnlyRootFilesystem)
	assert.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)
	assert.Equal(t, "aqs-app-pool", pod.Spec.NodeSelector["karpenter.sh/nodepool"])
	assert.NotNil(t, toleration(pod.Spec.Tolerations, "node.kubernetes.io/unreachable"))
	assert.NotNil(t, toleration(pod.Spec.Tolerations, "node.kubernetes.io/not-ready"))
	assert.Equal(t, "aqs-app-pool", toleration(pod.Spec.Tolerations, "deployment").Value)

	pdb := decodeRecorded[policyv1.PodDisruptionBudget](t, run.m.One(t, typePDB))
	assert.Equal(t, dep.Spec.Selector.MatchLabels, pdb.Spec.Selector.MatchLabels, "PDB selects the Deployment's pods")
	assert.Equal(t, 1, pdb.Spec.MaxUnavailable.IntValue())

	so := decodeRecorded[kedav1alpha1.ScaledObject](t, run.m.One(t, typeScaledObject))
	assert.Equal(t, "aws2az-queue-scaleobj", so.Name)
	assert.Equal(t, dep.Name, so.Spec.ScaleTargetRef.Name, "ScaledObject targets the Deployment")
	assert.Equal(t, ptrTo(int32(0)), so.Spec.MinReplicaCount)
	assert.Equal(t, ptrTo(int32(s.MaxReplicas)), so.Spec.MaxReplicaCount)
	assert.Equal(t, ptrTo(int32(30)), so.Spec.PollingInterval)
	assert.Equal(t, ptrTo(int32(10)), so.Spec.CooldownPeriod)
	require.Len(t, so.Spec.Triggers, 1)
	tr := so.Spec.Triggers[0]
	assert.Equal(t, "azure-queue", tr.Type)
	assert.Equal(t, mockStorageAccount, tr.Metadata["accountName"], "SPEC §7.6: trigger has accountName")
	assert.Equal(t, mockQueue, tr.Metadata["queueName"])
	assert.Equal(t, "AzurePublicCloud", tr.Metadata["cloud"])
	assert.Equal(t, ta.Name, tr.AuthenticationRef.Name, "trigger uses the TriggerAuthentication")

	np := decodeRecorded[karpv1.NodePool](t, run.m.One(t, typeNodePool))
	assertNodePool(t, s, np)
	assert.Equal(t, np.Name, pod.Spec.NodeSelector["karpenter.sh/nodepool"], "pods select the NodePool the component creates")

	// The component's outputs.
	assert.Equal(t, map[string]string{
		"namespace": "aqs-demo", "serviceAccountName": "aqs-app-service-account", "deploymentName": "aqs-app",
		"scalerKind": "ScaledObject", "scalerName": "aws2az-queue-scaleobj",
		"triggerAuthenticationName": "keda-az-credentials", "nodePoolName": "aqs-app-pool",
	}, run.outputs)
}

func TestQueueConsumerScaledJobModeObjects(t *testing.T) {
	s := DefaultConsumerSettings()
	s.ScaleMode = ScaleModeScaledJob
	run := runConsumer(t, s)
	identity := run.m.One(t, typeIdentity)
	clientID := identity.Output("clientId")

	for _, r := range run.kubernetesObjects() {
		switch r.Type {
		case typeNamespace:
			decodeRecorded[corev1.Namespace](t, r)
		case typeServiceAccount:
			sa := decodeRecorded[corev1.ServiceAccount](t, r)
			assert.Equal(t, clientID, sa.Annotations["azure.workload.identity/client-id"])
		case typeTriggerAuth:
			ta := decodeRecorded[kedav1alpha1.TriggerAuthentication](t, r)
			assert.Equal(t, clientID, *ta.Spec.PodIdentity.IdentityID)
		case typeNodePool:
			assertNodePool(t, s, decodeRecorded[karpv1.NodePool](t, r))
		case typeScaledJob:
			sj := decodeRecorded[kedav1alpha1.ScaledJob](t, r)
			assert.Equal(t, "aws2az-queue-scaledjob", sj.Name)
			pod := sj.Spec.JobTargetRef.Template
			assert.Equal(t, "true", pod.Labels["azure.workload.identity/use"])
			assert.Equal(t, "aqs-app-service-account", pod.Spec.ServiceAccountName)
			assert.Equal(t, corev1.RestartPolicyNever, pod.Spec.RestartPolicy)
			env := envMap(pod.Spec.Containers[0])
			assert.Equal(t, "true", env["CONSUMER_EXIT_WHEN_EMPTY"])
			assert.Equal(t, mockQueue, env["AZURE_QUEUE_NAME"])
			require.Len(t, sj.Spec.Triggers, 1)
			assert.Equal(t, mockStorageAccount, sj.Spec.Triggers[0].Metadata["accountName"])
			assert.Equal(t, mockQueue, sj.Spec.Triggers[0].Metadata["queueName"])
			assert.Equal(t, "keda-az-credentials", sj.Spec.Triggers[0].AuthenticationRef.Name)
			np := decodeRecorded[networkingv1.NetworkPolicy](t, run.m.One(t, typeNetworkPolicy))
			assertSelects(t, np.Spec.PodSelector, pod.Labels, "the NetworkPolicy applies to the jobs' pods")
		case typeNetworkPolicy:
			// checked with the ScaledJob's pods above
		default:
			t.Errorf("unexpected %s %s in ScaledJob mode", r.Type, r.Name)
		}
	}
	assert.Equal(t, "", run.outputs["deploymentName"], "no Deployment in ScaledJob mode")
	assert.Equal(t, "ScaledJob", run.outputs["scalerKind"])
	assert.Equal(t, "aws2az-queue-scaledjob", run.outputs["scalerName"])
}

// Two consumers in one stack do not collide: logical names come from the component's name.
func TestQueueConsumerTwoInstances(t *testing.T) {
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
		for _, name := range []string{"orders", "payments"} {
			s := DefaultConsumerSettings()
			s.Namespace, s.NodePoolName = name, name+"-pool"
			if _, err := NewQueueConsumer(ctx, name, &QueueConsumerArgs{
				Settings: s, StorageAccountName: pulumi.String("st"), QueueName: pulumi.String(name),
				TableName: pulumi.String(name), ClientID: pulumi.String("cid"), Image: pulumi.String("img:1"),
				Cluster: cluster, Provider: k8s,
			}); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
	assert.Len(t, m.ByType(typeNamespace), 2)
	assert.Len(t, m.ByType(typeNodePool), 2)
	m.Get(t, typeDeployment, "orders-deployment")
	m.Get(t, typeDeployment, "payments-deployment")
}

func TestQueueConsumerArgsValidation(t *testing.T) {
	valid := func(cluster pulumi.Resource, k8s pulumi.ProviderResource) *QueueConsumerArgs {
		return &QueueConsumerArgs{
			Settings: DefaultConsumerSettings(), StorageAccountName: pulumi.String("st"), QueueName: pulumi.String("q"),
			TableName: pulumi.String("t"), ClientID: pulumi.String("cid"), Image: pulumi.String("img:1"),
			Cluster: cluster, Provider: k8s,
		}
	}
	tests := []struct {
		name   string
		mutate func(*QueueConsumerArgs) *QueueConsumerArgs
		want   []string
	}{
		{"nil args", func(*QueueConsumerArgs) *QueueConsumerArgs { return nil }, []string{"args are required"}},
		{"no storage account", func(a *QueueConsumerArgs) *QueueConsumerArgs { a.StorageAccountName = nil; return a }, []string{"StorageAccountName is required"}},
		{"no queue", func(a *QueueConsumerArgs) *QueueConsumerArgs { a.QueueName = nil; return a }, []string{"QueueName is required"}},
		{"no table", func(a *QueueConsumerArgs) *QueueConsumerArgs { a.TableName = nil; return a }, []string{"TableName is required"}},
		{"no client id", func(a *QueueConsumerArgs) *QueueConsumerArgs { a.ClientID = nil; return a }, []string{"ClientID is required"}},
		{"no image", func(a *QueueConsumerArgs) *QueueConsumerArgs { a.Image = nil; return a }, []string{"Image is required"}},
		{"no cluster", func(a *QueueConsumerArgs) *QueueConsumerArgs { a.Cluster = nil; return a }, []string{"Cluster is required"}},
		{"no provider", func(a *QueueConsumerArgs) *QueueConsumerArgs { a.Provider = nil; return a }, []string{"Provider is required"}},
		{"bad settings", func(a *QueueConsumerArgs) *QueueConsumerArgs {
			a.Settings.MinReplicas, a.Settings.MaxReplicas, a.Settings.ScaleMode = 5, 3, "Nope"
			return a
		}, []string{"settings:", "maxReplicas (3) must be >= minReplicas (5)", "scaleMode"}},
		{"everything missing", func(*QueueConsumerArgs) *QueueConsumerArgs {
			return &QueueConsumerArgs{Settings: DefaultConsumerSettings()}
		},
			[]string{"StorageAccountName", "QueueName", "TableName", "ClientID", "Image", "Cluster", "Provider"}},
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
				_, err = NewQueueConsumer(ctx, "consumer", tt.mutate(valid(cluster, k8s)))
				return err
			})
			require.Error(t, err)
			assert.Contains(t, err.Error(), `queue consumer "consumer": invalid args`)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Empty(t, m.ByType(QueueConsumerType), "args are validated before anything is registered")
			for _, r := range m.Resources() {
				assert.False(t, strings.HasPrefix(r.Type, "kubernetes:"), "no Kubernetes object on invalid args, got %s", r.Type)
			}
		})
	}
}
