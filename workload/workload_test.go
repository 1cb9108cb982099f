package workload

import (
	"fmt"
	"testing"

	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

const (
	typeK8sProvider = "pulumi:providers:kubernetes"
	typeDeployment  = "kubernetes:apps/v1:Deployment"
	typeScaledJob   = "kubernetes:keda.sh/v1alpha1:ScaledJob"
	typeCluster     = "random:index/randomString:RandomString"
	builtImage      = "acraksdemox7k2p9.azurecr.io/aws2azure/aqs-consumer:sha-0123456789ab"
)

// deploy runs Deploy under the mocks with a stand-in cluster; edit adjusts the args.
func deploy(t *testing.T, s components.ConsumerSettings, edit func(*Args)) (*pulumitest.Mocks, error) {
	t.Helper()
	m := pulumitest.New("aks-edw", "dev")
	err := m.Run(map[string]string{}, func(ctx *pulumi.Context) error {
		cluster, err := random.NewRandomString(ctx, "cluster", &random.RandomStringArgs{Length: pulumi.Int(6), Special: pulumi.Bool(false)})
		if err != nil {
			return err
		}
		args := Args{
			// In clear on purpose: Deploy must make it secret itself.
			Kubeconfig:         pulumi.String(pulumitest.Kubeconfig()).ToStringOutput(),
			Cluster:            cluster,
			Settings:           s,
			StorageAccountName: pulumi.String("storaksdemox7k2p9"),
			QueueName:          pulumi.String("aws2azmsgs"),
			TableName:          pulumi.String("aws2azpmts"),
			ClientID:           pulumi.String("client-id-of-mi-aks-workload-identity-x7k2p9"),
			Image:              pulumi.String(builtImage).ToStringOutput(),
		}
		if edit != nil {
			edit(&args)
		}
		_, err = Deploy(ctx, "consumer", args)
		return err
	})
	return m, err
}

// boolInput reads a provider input that the SDK may send as a bool or as its JSON string.
func boolInput(r *pulumitest.Resource, key string) string {
	return fmt.Sprint(r.Input(key))
}

func TestDeployProvider(t *testing.T) {
	for _, name := range []string{"plain kubeconfig", "secret kubeconfig"} {
		t.Run(name, func(t *testing.T) {
			m, err := deploy(t, components.DefaultConsumerSettings(), func(a *Args) {
				if name == "secret kubeconfig" {
					a.Kubeconfig = pulumi.ToSecret(a.Kubeconfig).(pulumi.StringOutput)
				}
			})
			require.NoError(t, err)
			p := m.Get(t, typeK8sProvider, "consumer-k8s")
			cluster := m.Get(t, typeCluster, "cluster")

			assert.True(t, p.InputIsSecret("kubeconfig"), "SPEC §7.7: the kubeconfig reaches the provider only as a secret")
			kc := p.Inputs["kubeconfig"]
			require.True(t, kc.IsSecret(), "kubeconfig input")
			assert.Equal(t, pulumitest.Kubeconfig(), kc.SecretValue().Element.StringValue(), "kubeconfig value")
			assert.Equal(t, cluster.URN, p.DeletedWith, "provider deletedWith the cluster")
			assert.Equal(t, cluster.ID, p.Input("clusterIdentifier"), "provider is replaced only with the cluster")
			assert.Equal(t, "true", boolInput(p, "deleteUnreachable"))
			assert.Equal(t, "true", boolInput(p, "enableServerSideApply"))

			// Every Kubernetes object goes through this provider and dies with the cluster.
			n := pulumitest.CheckKubernetesObjects(t, m, p, cluster)
			assert.Equal(t, 10, n, "ScaledObject mode: namespace, SA, deployment, PDB, scaled object, trigger auth, node pool, network policy, "+
				"and the KEDA operator's service account and Deployment patches")
			m.One(t, components.QueueConsumerType)
		})
	}
}

// The pods run the image they are given, and wait for the build that produces it when there
// is one (the ACR task run); a prebuilt image adds no dependency.
func TestDeployImage(t *testing.T) {
	const prebuilt = "ghcr.io/aks-edw/consumer@sha256:0123"
	for _, build := range []bool{true, false} {
		for _, mode := range []string{components.ScaleModeScaledObject, components.ScaleModeScaledJob} {
			t.Run(fmt.Sprintf("build=%v/%s", build, mode), func(t *testing.T) {
				s := components.DefaultConsumerSettings()
				s.ScaleMode = mode
				want := builtImage
				if !build {
					s.Image = prebuilt
					want = prebuilt
				}
				m := pulumitest.New("aks-edw", "dev")
				err := m.Run(map[string]string{}, func(ctx *pulumi.Context) error {
					cluster, err := random.NewRandomString(ctx, "cluster", &random.RandomStringArgs{Length: pulumi.Int(6)})
					if err != nil {
						return err
					}
					args := Args{
						Kubeconfig: pulumi.String(pulumitest.Kubeconfig()).ToStringOutput(), Cluster: cluster, Settings: s,
						StorageAccountName: pulumi.String("storaksdemox7k2p9"), QueueName: pulumi.String("aws2azmsgs"),
						TableName: pulumi.String("aws2azpmts"), ClientID: pulumi.String("client-id"),
						Image: pulumi.String(want),
					}
					if build {
						// Stands in for the ACR task run.
						b, err := random.NewRandomString(ctx, "image-build", &random.RandomStringArgs{Length: pulumi.Int(6)})
						if err != nil {
							return err
						}
						args.PodsDependOn = []pulumi.Resource{b}
					}
					_, err = Deploy(ctx, "consumer", args)
					return err
				})
				require.NoError(t, err)

				var runner *pulumitest.Resource
				var got any
				if mode == components.ScaleModeScaledObject {
					runner = m.One(t, typeDeployment)
					got = runner.Input("spec.template.spec.containers.0.image")
				} else {
					runner = m.One(t, typeScaledJob)
					got = runner.Input("spec.jobTargetRef.template.spec.containers.0.image")
				}
				assert.Equal(t, want, got, "%s image", runner.Name)
				for _, r := range m.KubernetesObjects() {
					dependsOnBuild := build && r.DependsOn(m.Get(t, typeCluster, "image-build"))
					assert.Equal(t, build && r == runner, dependsOnBuild, "%s %s depends on the image build", r.Type, r.Name)
				}
			})
		}
	}
}

func TestDeployValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*components.ConsumerSettings)
		edit   func(*Args)
		want   []string
	}{
		{"no kubeconfig", nil, func(a *Args) { a.Kubeconfig = pulumi.StringOutput{} }, []string{"Kubeconfig is required"}},
		{"no cluster", nil, func(a *Args) { a.Cluster = nil }, []string{"Cluster is required"}},
		{"no client id", nil, func(a *Args) { a.ClientID = nil }, []string{"ClientID is required"}},
		{"no queue or table", nil, func(a *Args) { a.QueueName, a.TableName = nil, nil }, []string{"QueueName is required", "TableName is required"}},
		{"no storage account", nil, func(a *Args) { a.StorageAccountName = nil }, []string{"StorageAccountName is required"}},
		{"no image", nil, func(a *Args) { a.Image = nil }, []string{"Image is required"}},
		{"bad settings", func(s *components.ConsumerSettings) { s.QueueLength = 0 }, nil, []string{"settings:", "queueLength (0) must be > 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := components.DefaultConsumerSettings()
			if tt.mutate != nil {
				tt.mutate(&s)
			}
			m, err := deploy(t, s, tt.edit)
			require.Error(t, err)
			assert.Contains(t, err.Error(), `workload "consumer": invalid args`)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Empty(t, m.ByType(typeK8sProvider), "nothing is created on invalid args")
		})
	}
}
