package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

// Issue 12, "first contact with Azure": what a real `pulumi up` needs that the mocks cannot see,
// checked for every stack and both scale modes. docs/cloud-notes.md gives the source of each
// Azure behaviour relied on here.

const (
	tServiceAccountPatch = "kubernetes:core/v1:ServiceAccountPatch"
	tDeploymentPatch     = "kubernetes:apps/v1:DeploymentPatch"
	tScaledObject        = "kubernetes:keda.sh/v1alpha1:ScaledObject"
	tTriggerAuth         = "kubernetes:keda.sh/v1alpha1:TriggerAuthentication"
	tNodePool            = "kubernetes:karpenter.sh/v1:NodePool"
)

// forEachStackAndMode runs check on the program's run for every stack in both scale modes.
func forEachStackAndMode(t *testing.T, check func(t *testing.T, stack, mode string, m *pulumitest.Mocks)) {
	for _, stack := range aksStackNames(t) {
		for _, mode := range []string{components.ScaleModeScaledObject, components.ScaleModeScaledJob} {
			t.Run(stack+"/"+mode, func(t *testing.T) {
				t.Parallel()
				run := runStack(t, stack, withConfig(loadStackConfig(t, stack), "scaleMode", mode))
				check(t, stack, mode, run.mocks)
			})
		}
	}
}

// Item 3: Container Insights collects only through a data collection rule (ContainerInsights
// extension into the stack's workspace) associated with the cluster, as `az aks enable-addons
// monitoring` and Microsoft's ARM/Terraform templates create them.
func TestContainerInsightsDataCollection(t *testing.T) {
	forEachStackAndMode(t, func(t *testing.T, stack, mode string, m *pulumitest.Mocks) {
		mc, ws := m.One(t, tCluster), m.One(t, tWorkspace)
		// By name: with managedPrometheus (prod) there is a second rule and association.
		rule, assoc := m.Get(t, tDCR, "cluster-insights-rule"), m.Get(t, tDCRA, "cluster-insights-association")
		rg := m.One(t, tResourceGrp).Input("resourceGroupName")

		assert.Equal(t, "true", mc.Input("addonProfiles.omsagent.config.useAADAuth"), "the add-on authenticates with its identity")
		assert.Equal(t, rg, rule.Input("resourceGroupName"), "rule in the stack's group")
		assert.Equal(t, "MSCI-westus3-aks-aksdemo-"+pulumitest.RandomResult, rule.Input("dataCollectionRuleName"))
		assert.Equal(t, "Linux", rule.Input("kind"))
		assert.Equal(t, mc.Input("location"), rule.Input("location"))
		ext := "dataSources.extensions.0."
		assert.Equal(t, "ContainerInsights", rule.Input(ext+"extensionName"), "the ContainerInsights extension")
		assert.Equal(t, []any{components.ContainerInsightsStream}, rule.Input(ext+"streams"))
		assert.Equal(t, "1m", rule.Input(ext+"extensionSettings.dataCollectionSettings.interval"))
		assert.Equal(t, ws.Output("id"), rule.Input("destinations.logAnalytics.0.workspaceResourceId"), "into the stack's own workspace")
		dest := rule.Input("destinations.logAnalytics.0.name")
		assert.Equal(t, []any{dest}, rule.Input("dataFlows.0.destinations"), "the data flow goes to that destination")
		assert.Equal(t, []any{components.ContainerInsightsStream}, rule.Input("dataFlows.0.streams"))

		assert.Equal(t, components.ContainerInsightsAssociationName, assoc.Input("associationName"))
		assert.Equal(t, mc.Output("id"), assoc.Input("resourceUri"), "associated with the cluster")
		assert.Equal(t, rule.Output("id"), assoc.Input("dataCollectionRuleId"), "associates this rule")
		assert.True(t, assoc.DependsOn(mc) && assoc.DependsOn(rule))
	})
}

// Item 4: KEDA's operator reads the queue with the workload identity only if its service account
// carries the client id and its pods were created after the identity: the stack annotates the
// add-on's service account and rolls the operator out, after the KEDA federated credential and
// the queue role exist; every KEDA object that authenticates waits for that restart.
func TestKedaOperatorUsesTheWorkloadIdentity(t *testing.T) {
	forEachStackAndMode(t, func(t *testing.T, stack, mode string, m *pulumitest.Mocks) {
		wi := m.Get(t, tIdentity, "workload-identity-identity")
		clientID := wi.Output("clientId")
		sa, restart := m.One(t, tServiceAccountPatch), m.One(t, tDeploymentPatch)

		for _, r := range []*pulumitest.Resource{sa, restart} {
			assert.Equal(t, components.KedaOperatorName, r.Input("metadata.name"), "%s patches the add-on's operator", r.Type)
			assert.Equal(t, components.KedaNamespace, r.Input("metadata.namespace"), r.Type)
		}
		assert.Equal(t, clientID, sa.Input("metadata.annotations.azure\\.workload\\.identity/client-id"), "the client id, not the principal id")
		assert.Equal(t, "true", restart.Input("spec.template.metadata.labels.azure\\.workload\\.identity/use"), "webhook label on the operator's pods")
		assert.Equal(t, clientID, restart.Input("spec.template.metadata.annotations."+strings.ReplaceAll(components.KedaIdentityAnnotation, ".", `\.`)),
			"a pod-template change that rolls the operator out when the identity changes")
		assert.True(t, restart.DependsOn(sa), "restart after the annotation")
		assert.True(t, restart.DependsOn(m.Get(t, tFIC, "workload-identity-keda-credential")), "restart after the KEDA federated credential")
		assert.True(t, restart.DependsOn(m.Get(t, tRole, "workload-identity-queue-data-contributor")), "restart after the queue role")

		scaler := tScaledObject
		if mode == components.ScaleModeScaledJob {
			scaler = tScaledJob
		}
		for _, typ := range []string{scaler, tTriggerAuth} {
			assert.True(t, m.One(t, typ).DependsOn(restart), "%s waits for KEDA's operator to run with the identity", typ)
		}
	})
}

// Item 5: the objects that run pods wait for every Azure permission the pods use (AcrPull for the
// kubelet, the service account's federated credential, the data roles) and the image build; the
// Deployment's timeouts cover a NAP node and role propagation; the custom resources and patches
// wait for the add-ons that serve their kinds (the program polls the API server for them).
func TestPodsStartAfterTheirPermissions(t *testing.T) {
	forEachStackAndMode(t, func(t *testing.T, stack, mode string, m *pulumitest.Mocks) {
		runner, _ := podRunner(t, m, mode)
		for _, need := range []*pulumitest.Resource{
			m.Get(t, tRole, "cluster-kubelet-acrpull"),
			m.Get(t, tFIC, "workload-identity-sa-credential"),
			m.Get(t, tRole, "workload-identity-queue-data-contributor"),
			m.Get(t, tRole, "workload-identity-poison-queue-data-contributor"),
			m.Get(t, tRole, "workload-identity-table-data-contributor"),
			m.One(t, tTaskRun),
		} {
			assert.True(t, runner.DependsOn(need), "%s must wait for %s %s", runner.Type, need.Type, need.Name)
		}
		if mode == components.ScaleModeScaledObject {
			assert.Equal(t, components.PodRunnerTimeout, runner.CreateTimeout, "Deployment create timeout")
			assert.Equal(t, components.PodRunnerTimeout, runner.UpdateTimeout, "Deployment update timeout")
		}
		// The add-on wait's output carries the cluster: the objects whose kinds or targets the
		// add-ons install depend on the cluster directly, not only through their namespace.
		mc := m.One(t, tCluster)
		for _, typ := range []string{tNodePool, tTriggerAuth, tServiceAccountPatch, tDeploymentPatch} {
			assert.True(t, m.One(t, typ).DependsOn(mc), "%s waits for the cluster's add-ons", typ)
		}
	})
}

// Item 2: no default points at a repository that does not exist: without a prebuilt image,
// imageSourceRepository is required, in one error naming both keys.
func TestImageSourceRepositoryIsRequired(t *testing.T) {
	for _, stack := range stackNames(t) {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			cfg, err := pulumitest.LoadStackConfig(".", stack)
			require.NoError(t, err)
			_, err = runProgram(stack, cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "(1 problem(s))")
			assert.Contains(t, err.Error(), "aks-edw:imageSourceRepository is required when image is empty")
			assert.Contains(t, err.Error(), "or set image to")

			m, err := runProgram(stack, withConfig(cfg, "image", "ghcr.io/your-org/aqs-consumer:1.0"))
			require.NoError(t, err, "a prebuilt image needs no repository")
			assert.Empty(t, m.ByType(tTaskRun))
		})
	}
}

// Item 6: a version pin beside a channel that moves it is refused, naming the key; the inline
// pool pins no orchestratorVersion, so nothing on it drifts when the channel upgrades it.
func TestVersionPinBesideAMovingChannelIsRefused(t *testing.T) {
	for _, stack := range aksStackNames(t) {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			cfg := loadStackConfig(t, stack)
			m := runStack(t, stack, cfg).mocks
			mc := m.One(t, tCluster)
			assert.Nil(t, mc.Input("agentPoolProfiles.0.orchestratorVersion"), "the inline pool follows the control plane")
			if ch := mc.Input("autoUpgradeProfile.upgradeChannel"); ch == "stable" || ch == "rapid" {
				assert.Nil(t, mc.Input("kubernetesVersion"), "no pin beside %s", ch)
			}
			for _, bad := range [][2]string{{"1.33", "stable"}, {"1.33", "rapid"}, {"1.33.2", "patch"}} {
				_, err := runProgram(stack, withConfig(cfg, "kubernetesVersion", bad[0], "upgradeChannel", bad[1]))
				require.Error(t, err, "%s + %s", bad[0], bad[1])
				assert.Contains(t, err.Error(), "aks-edw:kubernetesVersion")
				assert.Contains(t, err.Error(), "downgrade")
			}
			_, err := runProgram(stack, withConfig(cfg, "kubernetesVersion", "1.33", "upgradeChannel", "patch"))
			assert.NoError(t, err, "a minor pin with the patch channel is fine")
		})
	}
}

// Item 7: every config problem at once (a type error does not hide the rest), documentation
// addresses refused with what to put there.
func TestConfigErrorsAreAllReported(t *testing.T) {
	for _, stack := range stackNames(t) {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			cfg := withConfig(loadStackConfig(t, stack),
				"maxReplicas", "abc", "minReplicas", "20", "storageSku", "Premium_XYZ",
				"operatorIpRanges", `["203.0.113.0/24"]`, "systemNodeCount", "three")
			_, err := runProgram(stack, cfg)
			require.Error(t, err)
			msg := err.Error()
			assert.Contains(t, msg, "(4 problem(s))", msg)
			assert.Contains(t, msg, `aks-edw:maxReplicas: must be an integer, got "abc"`)
			assert.Contains(t, msg, `aks-edw:systemNodeCount: must be an integer, got "three"`)
			assert.Contains(t, msg, "aks-edw:storageSku:", "a type error does not hide the other keys")
			assert.Contains(t, msg, "RFC 5737 documentation range")
			assert.Contains(t, msg, "public egress addresses", "says what to put there")
			assert.NotContains(t, msg, "must be >= minReplicas", "no rule about a value that did not parse")
		})
	}
}

// Item 7: the engine passes undeclared keys through (it validates only declared ones), so the
// program reads the keys it was given (PULUMI_CONFIG, as the Go SDK does) and names the key the
// user most likely meant. Not parallel: it sets the process environment.
func TestUndeclaredKeyGetsADidYouMean(t *testing.T) {
	cfg := withConfig(loadStackConfig(t, "dev"), "storageAccountSku", "Standard_ZRS")
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	t.Setenv(pulumi.EnvConfig, string(raw))
	_, err = runProgram("dev", cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `aks-edw:storageAccountSku: is not a config key of this project (Pulumi.yaml declares every key); did you mean "storageSku"?`)
}
