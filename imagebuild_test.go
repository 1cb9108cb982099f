package main

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
	"github.com/aks-edw/aks-edw/infra"
)

const (
	tTaskRun    = "azure-native:containerregistry:TaskRun"
	tDeployment = "kubernetes:apps/v1:Deployment"
	tScaledJob  = "kubernetes:keda.sh/v1alpha1:ScaledJob"
	revisionA   = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
	revisionB   = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
)

// podRunner is the object whose pods run the consumer image, and the path of its pod spec.
func podRunner(t *testing.T, m *pulumitest.Mocks, mode string) (*pulumitest.Resource, string) {
	t.Helper()
	if mode == components.ScaleModeScaledJob {
		return m.One(t, tScaledJob), "spec.jobTargetRef.template.spec"
	}
	return m.One(t, tDeployment), "spec.template.spec"
}

// Issue 5: `pulumi up` builds the image in the stack's registry from the configured git source,
// tags it from the revision, and the workload waits for the build.
func TestImageBuildWiring(t *testing.T) {
	for _, mode := range []string{components.ScaleModeScaledObject, components.ScaleModeScaledJob} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			cfg := withConfig(loadStackConfig(t, "dev"), "scaleMode", mode, "imageSourceRef", revisionA,
				"imageSourceFolder", "app", "imageDockerfile", "build/Dockerfile")
			run := runStack(t, "dev", cfg)
			m := run.mocks
			sfx := pulumitest.RandomResult
			loginServer := "acraksdemo" + sfx + ".azurecr.io"
			tag := "sha-" + revisionA[:12]

			tr := m.One(t, tTaskRun)
			comp := m.One(t, components.ImageBuildType)
			assert.Equal(t, comp.URN, tr.Parent, "task run parented to the image build component")
			registry := m.One(t, tRegistry)
			assert.Equal(t, registry.Input("registryName"), tr.Input("registryName"), "builds in the stack's registry")
			assert.Equal(t, "rg-aksdemo-"+sfx, tr.Input("resourceGroupName"))
			assert.Equal(t, "westus3", tr.Input("location"))
			assert.True(t, tr.DependsOn(registry), "task run waits for the registry")
			assert.Equal(t, pulumitest.ImageSourceRepository+"#"+revisionA+":app", tr.Input("runRequest.sourceLocation"))
			assert.Equal(t, "build/Dockerfile", tr.Input("runRequest.dockerFilePath"))
			assert.Equal(t, []any{infra.ConsumerImageRepository + ":" + tag}, tr.Input("runRequest.imageNames"))
			assert.Equal(t, true, tr.Input("runRequest.isPushEnabled"))
			assert.Equal(t, tag, tr.Input("forceUpdateTag"))

			runner, podSpec := podRunner(t, m, mode)
			image := loginServer + "/" + infra.ConsumerImageRepository + ":" + tag
			assert.Equal(t, image, runner.Input(podSpec+".containers.0.image"), "%s runs the built image", runner.Name)
			assert.True(t, runner.DependsOn(tr), "%s must wait for the ACR task run", runner.Name)
			assert.Equal(t, image, run.outputs["consumerImage"].Value)
			// The kubelet identity pulls it: AcrPull on this registry (pitfall 4 checks the principal).
			acrPull := m.Get(t, tRole, "cluster-kubelet-acrpull")
			assert.Equal(t, registry.Output("id"), acrPull.Input("scope"))
		})
	}
}

// A new revision gives a new tag, so the run request and the pod template change (a rebuild and
// a rollout); the same revision gives the same plan (no rebuild).
func TestImageTagFollowsRevision(t *testing.T) {
	base := loadStackConfig(t, "dev")
	seen := map[string][2]any{}
	for i, rev := range []string{revisionA, revisionB, revisionA} {
		m := runStack(t, "dev", withConfig(base, "imageSourceRef", rev)).mocks
		tr := m.One(t, tTaskRun)
		dep := m.One(t, tDeployment)
		got := [2]any{tr.Input("runRequest.imageNames.0"), dep.Input("spec.template.spec.containers.0.image")}
		assert.Contains(t, got[0], "sha-"+rev[:12], "run %d", i)
		assert.Contains(t, got[1], "sha-"+rev[:12], "run %d", i)
		if prev, ok := seen[rev]; ok {
			assert.Equal(t, prev, got, "the same revision must give the same image")
		}
		seen[rev] = got
	}
	assert.NotEqual(t, seen[revisionA], seen[revisionB], "a new revision must give a new image")
}

// With a prebuilt image no build runs: no task run, the pods run that image, and nothing in the
// workload depends on the registry's build machinery (the build keys are not even validated).
func TestPrebuiltImageSkipsBuild(t *testing.T) {
	const prebuilt = "ghcr.io/aks-edw/aqs-consumer@sha256:4b825dc642cb6eb9a060e54bf8d69288fbee49044b825dc642cb6eb9a060e54b"
	for _, mode := range []string{components.ScaleModeScaledObject, components.ScaleModeScaledJob} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			cfg := withConfig(loadStackConfig(t, "dev"), "scaleMode", mode, "image", prebuilt, "imageSourceRef", "abc1234")
			run := runStack(t, "dev", cfg)
			m := run.mocks
			assert.Empty(t, m.ByType(tTaskRun), "no ACR task run with a prebuilt image")
			assert.Empty(t, m.ByType(components.ImageBuildType))
			runner, podSpec := podRunner(t, m, mode)
			assert.Equal(t, prebuilt, runner.Input(podSpec+".containers.0.image"))
			for _, d := range runner.Dependencies {
				if r := m.ByURN(d); r != nil {
					assert.NotContains(t, r.Type, "containerregistry", "%s must not wait on %s", runner.Name, r.Name)
				}
			}
			assert.Equal(t, prebuilt, run.outputs["consumerImage"].Value)
		})
	}
}
